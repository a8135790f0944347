//! Files read and written the one way the harness does it: reads whose errors name the file, and atomic
//! writes that are durable (a temporary file beside the target, fsync'd, renamed over it, the folder fsync'd),
//! so a crash at any instant leaves either the old content or the new, never a torn file.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// The whole file as text; the error names the file.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Writes `bytes` to `path` durably: complete or not at all, and on disk when this returns.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    write_synced(&tmp, bytes)?;
    fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    sync_dir(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// Creates (or truncates) `path` with `bytes` and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    f.sync_all().with_context(|| format!("{}: cannot sync", path.display()))
}

/// Makes a folder's entries (a rename into it, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("{}: cannot sync", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(read_text(&p).unwrap(), "two");
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn a_read_error_names_the_file() {
        let e = read_text(Path::new("/nonexistent/x.yaml")).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("/nonexistent/x.yaml: cannot read"),
            "{e:#}"
        );
    }
}
