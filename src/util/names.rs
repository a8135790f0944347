//! What a run may be called, and the suffixes of the paths a run owns beside its result folder. One
//! definition: `run_dir` builds the paths from these, config validation and `compare` recognise them.

use anyhow::{bail, Result};

/// `<name>.partial/`: the run in progress, or an interrupted or failed one.
pub(crate) const PARTIAL: &str = ".partial";
/// `<name>.old/`: an earlier result, only while a new one replaces it.
pub(crate) const OLD: &str = ".old";
/// `<name>.lock`: held for the life of a run.
pub(crate) const LOCK: &str = ".lock";

/// The suffixes a run's own non-result paths end in.
pub(crate) const RUN_SUFFIXES: [&str; 3] = [PARTIAL, OLD, LOCK];

/// A run name is one plain folder name: letters, digits, `.`, `-`, `_`; not `.` or `..`; at most 200 bytes
/// (file systems allow 255, and the run's own paths add a suffix and a temporary name); not ending in one of
/// a run's suffixes.
pub(crate) fn check_run_name(name: &str) -> Result<()> {
    if !is_plain(name) || name == "." || name == ".." {
        bail!("`{name}` must be one plain folder name (letters, digits, `.`, `-`, `_`; not `.` or `..`)");
    }
    if name.len() > MAX_LEN {
        bail!(
            "`{name}` is {} characters long; a run name has at most {MAX_LEN}",
            name.len()
        );
    }
    if let Some(suffix) = RUN_SUFFIXES.iter().find(|s| name.ends_with(*s)) {
        bail!("`{name}` must be a plain folder name not ending in {suffix} (a run's own paths end so)");
    }
    Ok(())
}

const MAX_LEN: usize = 200;

/// Letters, digits, `.`, `-`, `_` (ASCII), and not empty: the one character class of names that become
/// folder names, CSV cells or group names (runs, sweeps, tasks).
pub(crate) fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// A task name: plain (see `is_plain`); it names a head group (`head:<task>`) and metrics rows.
pub(crate) fn check_task_name(name: &str) -> Result<()> {
    if !is_plain(name) {
        bail!("`{name}` must be non-empty letters, digits, `.`, `-`, `_`");
    }
    Ok(())
}

/// Whether `path`'s last component is one of a run's own non-result paths (`x.partial`, `x.old`, `x.lock`).
pub(crate) fn is_run_sidecar(path: &std::path::Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    RUN_SUFFIXES.iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "full_finetune-seed1", "x.y", "lr=1e-5".replace('=', "_").as_str()] {
            check_run_name(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a b",
            "r.partial",
            "r.lock",
            "r.old",
            &"x".repeat(201),
        ] {
            assert!(check_run_name(bad).is_err(), "{bad}");
        }
        assert!(is_run_sidecar(std::path::Path::new("results/a.partial")));
        assert!(!is_run_sidecar(std::path::Path::new("results/a")));
    }
}
