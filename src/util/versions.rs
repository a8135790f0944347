//! What this binary was built with, as build.rs recorded it: for `--version` and summary.json.

pub(crate) const HARNESS: &str = env!("CARGO_PKG_VERSION");

pub(crate) const TCH: &str = match option_env!("HARNESS_TCH_VERSION") {
    Some(v) => v,
    None => "unknown",
};

pub(crate) fn libtorch() -> &'static str {
    option_env!("HARNESS_LIBTORCH_VERSION").unwrap_or("unknown")
}

/// The checkout's commit at build time (None outside a git checkout).
pub(crate) fn git_commit() -> Option<&'static str> {
    option_env!("HARNESS_GIT_COMMIT")
}
