//! Build script: embeds an rpath to the libtorch that torch-sys linked against (the venv's torch/lib when built
//! with LIBTORCH_USE_PYTORCH=1, or the libtorch `scripts/setup --torch-python` chose), so `harness` runs without
//! LD_LIBRARY_PATH, and records the tch and libtorch versions and the git commit that `harness --version` and
//! summary.json report. Compiles csrc/amp.cpp, the autocast shim, against the headers of that same libtorch with
//! the C++ ABI it was built with.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // The install itself, not a view of it made of symlinks (scripts/setup's CPU-only view): the model package
        // is looked up beside it, and --version names it.
        let real = std::fs::canonicalize(Path::new(&lib).join("libtorch_cpu.so"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| lib.clone().into());
        println!("cargo:rustc-env=HARNESS_LIBTORCH_LIB={}", real.display());
        println!("cargo:rustc-env=HARNESS_LIBTORCH_VERSION={}", libtorch_version(&real));
        compile_amp_shim(&real);
    }
    println!("cargo:rustc-env=HARNESS_TCH_VERSION={}", locked_version("tch"));
    if let Some(c) = git_commit() {
        println!("cargo:rustc-env=HARNESS_GIT_COMMIT={c}");
    }
    // (outside a git checkout, e.g. a container build's copy of the sources, there is nothing to watch)
    for f in [".git/HEAD", ".git/refs/heads"]
        .into_iter()
        .filter(|f| Path::new(f).exists())
    {
        println!("cargo:rerun-if-changed={f}");
    }
}

/// The checkout's commit, so a result can name the code that made it (None outside a git checkout).
fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// libtorch has no version call that tch 0.17 exposes, so the version is read from the install at build time:
/// a Python wheel's `torch/version.py` (`__version__ = '2.11.0+cu130'`) or a libtorch zip's `build-version`.
fn libtorch_version(lib: &Path) -> String {
    let Some(root) = lib.parent() else {
        return "unknown".into();
    };
    let version_py = root.join("version.py");
    let build_version = root.join("build-version");
    // only a file that exists: cargo reruns a build script whose watched file is missing on every command
    // (rust-lang/cargo#4076), which rebuilt the harness and relinked every test binary each time
    for f in [&version_py, &build_version].into_iter().filter(|f| f.exists()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    if let Ok(text) = std::fs::read_to_string(&version_py) {
        let found = text.lines().find_map(|l| {
            let v = l.strip_prefix("__version__")?.trim_start().strip_prefix('=')?.trim();
            Some(v.trim_matches(|c| c == '\'' || c == '"').to_string())
        });
        if let Some(v) = found {
            return v;
        }
    }
    match std::fs::read_to_string(&build_version) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => "unknown".into(),
    }
}

/// The version Cargo.lock pins for a package (the lock is committed and builds use --locked).
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == format!("name = \"{name}\"") {
            if let Some(v) = lines.next().and_then(|v| v.strip_prefix("version = \"")) {
                return v.trim_end_matches('"').to_string();
            }
        }
    }
    "unknown".into()
}

/// Builds the autocast shim with the include directories of the libtorch in `lib` (`<root>/lib` beside
/// `<root>/include`, in a Python wheel as in a libtorch zip) and the ABI torch-sys used for its own C++.
fn compile_amp_shim(lib: &Path) {
    println!("cargo:rerun-if-changed=csrc/amp.cpp");
    let root = lib.parent().expect("libtorch lib dir has a parent");
    let include = root.join("include");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={}", cxx11_abi()))
        .file("csrc/amp.cpp")
        .compile("harness_amp");
}

/// The `_GLIBCXX_USE_CXX11_ABI` of the libtorch torch-sys builds against, found the way torch-sys finds it: from
/// the Python torch with LIBTORCH_USE_PYTORCH, else LIBTORCH_CXX11_ABI (default 1). A mismatch would fail at link
/// time on every std::string in the signatures, never silently.
fn cxx11_abi() -> String {
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-env-changed=PYTHON_SYS_EXECUTABLE");
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = std::env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python".into());
        let out = std::process::Command::new(&python)
            .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python} to ask torch for its C++ ABI: {e}"));
        let abi = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            abi == "0" || abi == "1",
            "{python}: torch did not report its C++ ABI ({abi:?})"
        );
        return abi;
    }
    std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into())
}
