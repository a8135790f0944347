//! A run's place on disk, and the only code that creates, renames or deletes it.
//!
//! A run named `N` in `output_dir` owns exactly `N/` (the finished result), `N.partial/` (the run in
//! progress, or an interrupted or failed one), `N.lock` (held for the life of a run) and, only while a
//! new result replaces an old one, `N.old/`. Nothing else is ever written, renamed or deleted. The lock is
//! an OS file lock (`File::try_lock`), so a lock left by a dead process is simply free, and the lock file
//! itself is never deleted (another process may hold it).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::record::{Summary, ERROR_FILE, SUMMARY_FILE};
use crate::util::names::{check_run_name, LOCK, OLD, PARTIAL};
use crate::util::time::now_utc;

/// Where a run lives: the folder it writes into and its name, checked to be one plain folder name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunDir {
    output_dir: PathBuf,
    name: String,
}

/// What is on disk for a run, as `sweep --list`, `compare` and `run` see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunState {
    /// nothing yet
    Missing,
    /// another process holds the lock
    Running(String),
    /// interrupted: a `.partial` without an error, resumable when it has a checkpoint
    Partial { resumable: bool },
    /// a `.partial` whose run stopped with this error
    Failed(String),
    /// a finished result
    Complete,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunState::Missing => f.write_str("missing"),
            RunState::Running(_) => f.write_str("running"),
            RunState::Partial { .. } => f.write_str("partial"),
            RunState::Failed(_) => f.write_str("failed"),
            RunState::Complete => f.write_str("done"),
        }
    }
}

/// Who holds a run's lock, written into the lock file once it is held.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub pid: u32,
    pub host: String,
    pub started: String,
}

impl Holder {
    /// What a lock file says about its holder, for messages; an unreadable one is just "another process".
    fn describe(lock_text: &str) -> String {
        serde_json::from_str::<Holder>(lock_text).map_or_else(|_| "another process".into(), |h| h.to_string())
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {}, started {}", self.pid, self.host, self.started)
    }
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

impl RunDir {
    pub(crate) fn new(output_dir: &Path, name: &str) -> Result<Self> {
        check_run_name(name)?;
        Ok(RunDir {
            output_dir: output_dir.to_path_buf(),
            name: name.to_string(),
        })
    }

    /// The run whose result folder is `path` (`<output_dir>/<name>`).
    pub(crate) fn from_path(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: not a run folder", path.display()))?;
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Self::new(parent, name)
    }

    /// The finished result, `<output_dir>/<name>/`.
    pub(crate) fn path(&self) -> PathBuf {
        self.output_dir.join(&self.name)
    }

    pub(crate) fn partial(&self) -> PathBuf {
        self.output_dir.join(format!("{}{PARTIAL}", self.name))
    }

    pub(crate) fn lock_path(&self) -> PathBuf {
        self.output_dir.join(format!("{}{LOCK}", self.name))
    }

    fn old(&self) -> PathBuf {
        self.output_dir.join(format!("{}{OLD}", self.name))
    }

    /// Takes the run's lock, or fails at once naming the process that holds it.
    pub(crate) fn lock(&self) -> Result<RunLock> {
        fs::create_dir_all(&self.output_dir)
            .with_context(|| format!("{}: cannot create the output folder", self.output_dir.display()))?;
        let path = self.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{}: cannot open the run lock", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = Holder::describe(&text);
                bail!(
                    "run `{}` is already running ({holder}); its lock is {}",
                    self.name,
                    path.display()
                );
            }
            Err(fs::TryLockError::Error(e)) => {
                bail!(
                    "{}: cannot lock ({e}); runs need a filesystem with working file locks",
                    path.display()
                )
            }
        }
        let holder = Holder {
            pid: std::process::id(),
            host: hostname(),
            started: now_utc(),
        };
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(serde_json::to_string(&holder)?.as_bytes())?;
        file.sync_all()?;
        let lock = RunLock {
            dir: self.clone(),
            _file: file,
        };
        lock.recover()?;
        Ok(lock)
    }

    /// What is on disk for this run, without changing anything.
    pub(crate) fn state(&self) -> RunState {
        if let Ok(file) = File::open(self.lock_path()) {
            if let Err(fs::TryLockError::WouldBlock) = file.try_lock_shared() {
                let text = fs::read_to_string(self.lock_path()).unwrap_or_default();
                let holder = Holder::describe(&text);
                return RunState::Running(holder);
            }
        }
        if Summary::read(&self.path().join(SUMMARY_FILE)).is_ok_and(|s| s.complete) {
            return RunState::Complete;
        }
        let partial = self.partial();
        if !partial.is_dir() {
            return RunState::Missing;
        }
        match fs::read_to_string(partial.join(ERROR_FILE)) {
            Ok(e) if e.trim().is_empty() => RunState::Failed("no reason was recorded (was the disk full?)".into()),
            Ok(e) => RunState::Failed(e.trim().to_string()),
            Err(_) => RunState::Partial {
                resumable: crate::train::resume::has_checkpoint(&partial),
            },
        }
    }
}

/// A held run lock; the only way to change a run's paths. Dropping it releases the lock (the OS also
/// releases it when the process dies, however it dies).
pub(crate) struct RunLock {
    dir: RunDir,
    _file: File,
}

impl RunLock {
    pub(crate) fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// Undoes a crash in the middle of `commit`: with `.old/` and no result, `.old/` is the result.
    fn recover(&self) -> Result<()> {
        let (old, fin) = (self.dir.old(), self.dir.path());
        if old.is_dir() {
            if fin.exists() {
                fs::remove_dir_all(&old).with_context(|| format!("{}: cannot remove", old.display()))?;
            } else {
                fs::rename(&old, &fin)
                    .with_context(|| format!("cannot restore {} to {}", old.display(), fin.display()))?;
            }
        }
        Ok(())
    }

    /// An empty `.partial/` for a fresh start (an earlier one is discarded: the caller decided so).
    pub(crate) fn fresh_partial(&self) -> Result<PathBuf> {
        let p = self.dir.partial();
        if p.exists() {
            fs::remove_dir_all(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        }
        fs::create_dir_all(&p).with_context(|| format!("{}: cannot create", p.display()))?;
        Ok(p)
    }

    /// Records why the run stopped, so `sweep --list` can say `failed`; the `.partial` stays for inspection.
    pub(crate) fn mark_failed(&self, error: &str) -> Result<()> {
        let p = self.dir.partial();
        if !p.is_dir() {
            return Ok(());
        }
        // On a full disk the record may not fit: no file then, rather than an empty one that reads as a reason.
        let file = p.join(ERROR_FILE);
        fs::write(&file, format!("{error}\n")).map_err(|e| {
            let _ = fs::remove_file(&file);
            anyhow::Error::new(e).context(format!("{}: cannot write", file.display()))
        })
    }

    /// Clears a failure mark before the run goes on.
    pub(crate) fn clear_failed(&self) -> Result<()> {
        let e = self.dir.partial().join(ERROR_FILE);
        if e.exists() {
            fs::remove_file(&e).with_context(|| format!("{}: cannot remove", e.display()))?;
        }
        Ok(())
    }

    /// Makes `.partial/` the result. An earlier result is moved aside to `.old/` first and deleted only
    /// once the new one is in place, so at every instant one complete result exists.
    pub(crate) fn commit(&self) -> Result<PathBuf> {
        let (partial, fin, old) = (self.dir.partial(), self.dir.path(), self.dir.old());
        if fin.exists() {
            fs::rename(&fin, &old)
                .with_context(|| format!("cannot move {} aside to {}", fin.display(), old.display()))?;
        }
        fs::rename(&partial, &fin)
            .with_context(|| format!("cannot move {} to {}", partial.display(), fin.display()))?;
        if old.exists() {
            fs::remove_dir_all(&old).with_context(|| format!("{}: cannot remove", old.display()))?;
        }
        Ok(fin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, &str)], path: &Path) {
        fs::create_dir_all(path).unwrap();
        for (f, text) in files {
            fs::write(path.join(f), text).unwrap();
        }
    }

    #[test]
    fn commit_replaces_an_earlier_result_only_once_the_new_one_is_in_place() {
        let d = tempfile::tempdir().unwrap();
        let rd = RunDir::new(d.path(), "r").unwrap();
        dir_with(&[("a.txt", "old")], &rd.path());
        let lock = rd.lock().unwrap();
        let p = lock.fresh_partial().unwrap();
        fs::write(p.join("a.txt"), "new").unwrap();
        lock.commit().unwrap();
        assert_eq!(fs::read_to_string(rd.path().join("a.txt")).unwrap(), "new");
        let mut names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["r", "r.lock"], "nothing but the run's own paths");
    }

    #[test]
    fn a_crash_between_the_two_renames_restores_the_earlier_result() {
        let d = tempfile::tempdir().unwrap();
        let rd = RunDir::new(d.path(), "r").unwrap();
        // the state a crash after `r -> r.old` and before `r.partial -> r` leaves
        dir_with(&[("a.txt", "old")], &d.path().join("r.old"));
        dir_with(&[("a.txt", "new")], &rd.partial());
        drop(rd.lock().unwrap());
        assert_eq!(fs::read_to_string(rd.path().join("a.txt")).unwrap(), "old");
        assert!(!d.path().join("r.old").exists() && rd.partial().exists());
        // and after the second rename, a leftover .old is simply removed
        dir_with(&[], &d.path().join("r.old"));
        drop(rd.lock().unwrap());
        assert!(!d.path().join("r.old").exists() && rd.path().join("a.txt").exists());
    }

    #[test]
    fn a_held_lock_refuses_a_second_holder_and_names_the_first() {
        let d = tempfile::tempdir().unwrap();
        let rd = RunDir::new(d.path(), "r").unwrap();
        let lock = rd.lock().unwrap();
        let err = format!("{:#}", rd.lock().err().unwrap());
        assert!(
            err.contains("already running") && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(matches!(rd.state(), RunState::Running(_)));
        drop(lock);
        assert_eq!(rd.state(), RunState::Missing);
        drop(rd.lock().unwrap());
        assert!(rd.lock_path().exists(), "the lock file is never deleted");
    }

    #[test]
    fn states_follow_what_is_on_disk() {
        let d = tempfile::tempdir().unwrap();
        let rd = RunDir::new(d.path(), "r").unwrap();
        dir_with(&[], &rd.partial());
        assert_eq!(rd.state(), RunState::Partial { resumable: false });
        dir_with(&[("checkpoint.json", "{}")], &rd.partial());
        assert_eq!(rd.state(), RunState::Partial { resumable: true });
        dir_with(&[(ERROR_FILE, "boom\n")], &rd.partial());
        assert_eq!(rd.state(), RunState::Failed("boom".into()));
        // an empty record (written by an earlier version on a full disk) is not shown as the reason
        dir_with(&[(ERROR_FILE, "")], &rd.partial());
        assert!(matches!(rd.state(), RunState::Failed(r) if r.contains("no reason was recorded")));
        assert!(RunDir::new(d.path(), "..").is_err() && RunDir::new(d.path(), "a/b").is_err());
    }
}
