//! A CSV file of one serde row type that a run appends to and a resumed run cuts back to the rows its
//! checkpoint counted (`conflict.csv`, `drift.csv`): one definition of reading, writing and cutting back, over
//! `Appender`, so every failure names the file (and the line, when a row does not read).

use std::marker::PhantomData;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{de::DeserializeOwned, Serialize};

use crate::record::appender::Appender;

/// A row type of its own CSV file.
pub(crate) trait CsvRow: Serialize + DeserializeOwned {
    /// the file's header: the row's fields, in order
    const HEADER: &'static [&'static str];
    /// the row kind, for errors (`a conflict row`)
    const WHAT: &'static str;
}

/// Reads every row of `path`.
pub(crate) fn read_rows<R: CsvRow>(path: &Path) -> Result<Vec<R>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("{}: line {}: not {}", path.display(), i + 2, R::WHAT)))
        .collect()
}

/// Appends rows of `R`, each flushed.
pub(crate) struct RowLog<R> {
    w: Appender,
    _rows: PhantomData<R>,
}

impl<R: CsvRow> RowLog<R> {
    /// A new file holding the header.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        Ok(RowLog {
            w: Appender::create(path, R::HEADER.iter().copied())?,
            _rows: PhantomData,
        })
    }

    /// An existing file (or none) cut back to its first `keep` rows: a resumed run writes the rest again.
    pub(crate) fn truncate_to(path: &Path, keep: usize) -> Result<Self> {
        let rows: Vec<R> = if path.exists() { read_rows(path)? } else { Vec::new() };
        if rows.len() < keep {
            bail!(
                "{}: has {} rows but the checkpoint counted {keep}",
                path.display(),
                rows.len()
            );
        }
        let mut w = Self::create(path)?;
        for r in rows.iter().take(keep) {
            w.write(r)?;
        }
        Ok(w)
    }

    pub(crate) fn write(&mut self, row: &R) -> Result<()> {
        self.w.serialize(row)
    }

    pub(crate) fn written(&self) -> usize {
        self.w.written()
    }
}
