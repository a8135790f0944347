//! A CSV file that grows a row at a time, each row flushed as it is written so an interrupted run keeps what it
//! measured: the one writer under `metrics.csv`, `conflict.csv` and `drift.csv`. Every failure names the file and says what
//! the system said (`/x/metrics.csv: cannot write: No space left on device (os error 28)`).

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

pub(crate) struct Appender {
    w: csv::Writer<File>,
    path: PathBuf,
    /// rows in the file, header aside
    written: usize,
}

impl Appender {
    /// A new (or truncated) file holding `header`.
    pub(crate) fn create<'a>(path: &Path, header: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let w = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        let mut a = Appender {
            w,
            path: path.to_path_buf(),
            written: 0,
        };
        let header: csv::StringRecord = header.into_iter().collect();
        a.put(|w| w.write_record(&header))?;
        Ok(a)
    }

    /// Appends a row that serde writes.
    pub(crate) fn serialize(&mut self, row: &impl Serialize) -> Result<()> {
        self.put(|w| w.serialize(row))?;
        self.written += 1;
        Ok(())
    }

    /// Appends a row given as its cells.
    pub(crate) fn record(&mut self, rec: &csv::StringRecord) -> Result<()> {
        self.put(|w| w.write_record(rec))?;
        self.written += 1;
        Ok(())
    }

    /// `f`, then a flush, the file named on failure.
    fn put(&mut self, f: impl FnOnce(&mut csv::Writer<File>) -> csv::Result<()>) -> Result<()> {
        f(&mut self.w)
            .and_then(|()| self.w.flush().map_err(csv::Error::from))
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }

    pub(crate) fn written(&self) -> usize {
        self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_on_disk_as_soon_as_written() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.csv");
        let mut a = Appender::create(&p, ["x", "y"]).unwrap();
        a.serialize(&(1, "a")).unwrap();
        a.record(&csv::StringRecord::from(vec!["2", "b"])).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "x,y\n1,a\n2,b\n");
        assert_eq!(a.written(), 2);
    }

    #[test]
    fn a_full_disk_is_named_with_the_file() {
        let Err(e) = Appender::create(Path::new("/dev/full"), ["x"]) else {
            panic!("/dev/full took the header")
        };
        let msg = format!("{e:#}");
        assert!(
            msg.starts_with("/dev/full: cannot write: No space left on device"),
            "{msg}"
        );
    }
}
