//! Files read and written the one way the harness does it: reads whose errors name the file, and atomic
//! writes that are durable (a temporary file beside the target, fsync'd, renamed over it, the folder fsync'd),
//! so a crash at any instant leaves either the old content or the new, never a torn file.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// The whole file as text; the error names the file. Only a regular file is read (see `open_regular`).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(&mut open_regular(path)?, &mut text)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text)
}

/// Opens a file for reading, refusing anything but a regular file (after symlinks) in one line: opening a
/// FIFO blocks until a writer appears, and a directory or device is never what a data or config path means.
pub(crate) fn open_regular(path: &Path) -> Result<File> {
    if let Some(why) = not_a_file(path) {
        let tilde = path.to_str().is_some_and(|s| s.starts_with("~/")) && why == "missing";
        let hint = if tilde {
            " (a leading `~` is expanded only by a shell, unquoted: write the full path)"
        } else {
            ""
        };
        anyhow::bail!("{}: {why}{hint}", path.display());
    }
    File::open(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Why `path` is not a readable regular file (missing, a directory, a FIFO...), or `None` when it is one.
pub(crate) fn not_a_file(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = fs::metadata(path) else {
        if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            return Some("a broken symlink (its target is missing)");
        }
        return Some("missing");
    };
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("is a directory, not a file")
    } else if t.is_fifo() {
        Some("is a FIFO (named pipe), not a regular file")
    } else if t.is_socket() {
        Some("is a socket, not a regular file")
    } else {
        Some("is a device, not a regular file")
    }
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

/// Like `write_atomic` for a file another library writes: `write` fills the temporary path given to it, which is
/// then fsync'd and renamed over `path`, and the folder fsync'd.
pub(crate) fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.tmp"));
    write(&tmp)?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("{}: cannot sync", tmp.display()))?;
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
    fn a_directory_or_fifo_is_refused_saying_what_it_is() {
        let d = tempfile::tempdir().unwrap();
        let e = read_text(d.path()).unwrap_err();
        assert!(format!("{e:#}").contains("is a directory, not a file"), "{e:#}");
        let fifo = d.path().join("f");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let e = read_text(&fifo).unwrap_err(); // would block forever if it were opened
        assert!(format!("{e:#}").contains("is a FIFO"), "{e:#}");
    }

    #[test]
    fn a_read_error_names_the_file() {
        let e = read_text(Path::new("/nonexistent/x.yaml")).unwrap_err();
        assert!(format!("{e:#}").starts_with("/nonexistent/x.yaml: missing"), "{e:#}");
    }
}
