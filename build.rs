// Embeds an rpath to the libtorch that torch-sys linked against (the venv's torch/lib when built
// with LIBTORCH_USE_PYTORCH=1), so `harness` runs without LD_LIBRARY_PATH.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        println!("cargo:rustc-env=HARNESS_LIBTORCH_LIB={lib}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
