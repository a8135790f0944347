// Embeds an rpath to the libtorch that torch-sys linked against (the venv's torch/lib when built
// with LIBTORCH_USE_PYTORCH=1), so `harness` runs without LD_LIBRARY_PATH; and records the versions
// that summary.json reports (tch from Cargo.lock, libtorch from the torch folder, the git commit).
use std::path::Path;

fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=HARNESS_LIBTORCH_LIB={lib}");
        if let Some(v) = libtorch_version(Path::new(&lib)) {
            println!("cargo:rustc-env=HARNESS_LIBTORCH_VERSION={v}");
        }
    }
    if let Some(v) = locked_version("tch") {
        println!("cargo:rustc-env=HARNESS_TCH_VERSION={v}");
    }
    if let Some(c) = git_commit() {
        println!("cargo:rustc-env=HARNESS_GIT_COMMIT={c}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

/// `<torch>/version.py` (a Python wheel) or `<libtorch>/build-version` (a libtorch zip).
fn libtorch_version(lib: &Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn locked_version(krate: &str) -> Option<String> {
    let lock = std::fs::read_to_string("Cargo.lock").ok()?;
    let mut lines = lock.lines();
    lines.find(|l| *l == format!("name = \"{krate}\""))?;
    Some(
        lines
            .next()?
            .strip_prefix("version = \"")?
            .trim_end_matches('"')
            .to_string(),
    )
}

fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
