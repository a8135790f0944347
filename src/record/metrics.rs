//! `metrics.csv`: one row per task, split and evaluation point, appended and flushed as it is made so an
//! interrupted run keeps what it measured; read back strictly (the exact header, every cell of its type, errors
//! naming the file and line).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::record::appender::Appender;

pub(crate) const METRICS_HEADER: [&str; 11] = [
    "run",
    "scenario",
    "epoch",
    "step",
    "task",
    "split",
    "loss",
    "accuracy",
    "macro_f1",
    "examples_seen",
    "elapsed_s",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Split {
    Train,
    Eval,
    /// a measurement of the encoder that trains nothing (`probes`): its metrics are extra columns, and its
    /// loss, accuracy and macro-F1 cells are empty
    Probe,
}

/// One row of metrics.csv: one task, one split, at one evaluation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetricRow {
    pub run: String,
    pub scenario: String,
    pub epoch: usize,
    pub step: usize,
    pub task: String,
    pub split: Split,
    /// None (an empty cell) where the row's kind has no such metric: a probe, or a task scored otherwise
    pub loss: Option<f64>,
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    pub examples_seen: usize,
    pub elapsed_s: f64,
    /// metrics beyond accuracy and macro-F1 (a task kind's own), by column name; format 2 appends their
    /// columns after `elapsed_s`, and a row without one leaves its cell empty
    #[serde(skip)]
    pub extra: BTreeMap<String, f64>,
}

impl MetricRow {
    /// `<task> acc 0.8125 f1 0.8000` for the epoch's log line, then the row's other metrics.
    pub(crate) fn brief(&self) -> String {
        let mut s = self.task.clone();
        for (name, v) in [("acc", self.accuracy), ("f1", self.macro_f1)] {
            if let Some(v) = v {
                s += &format!(" {name} {v:.4}");
            }
        }
        for (name, v) in &self.extra {
            s += &format!(" {name} {v:.4}");
        }
        s
    }

    /// Whether the row's loss, accuracy and macro-F1, where it has them, are numbers (a diverged run's are
    /// not). Extra metrics are left out: a correlation is undefined (NaN) for constant inputs without anything
    /// having diverged.
    pub(crate) fn is_finite(&self) -> bool {
        [self.loss, self.accuracy, self.macro_f1]
            .into_iter()
            .flatten()
            .all(f64::is_finite)
    }
}

/// Reads metrics.csv strictly: the base header (then any extra metric columns), every cell of its type; errors
/// name the file and line.
pub(crate) fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let file = File::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut rdr = csv::Reader::from_reader(file);
    let header = rdr
        .headers()
        .with_context(|| format!("{}: cannot read header", path.display()))?
        .clone();
    let n = METRICS_HEADER.len();
    if header.len() < n || header.iter().take(n).ne(METRICS_HEADER) {
        bail!(
            "{}: unexpected header `{}`, expected `{}` (then any extra metric columns)",
            path.display(),
            header.iter().collect::<Vec<_>>().join(","),
            METRICS_HEADER.join(",")
        );
    }
    let base = csv::StringRecord::from(METRICS_HEADER.to_vec());
    let extras: Vec<String> = header.iter().skip(n).map(str::to_string).collect();
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let at = |col: &str, cell: &str| {
            anyhow::anyhow!("{} line {line}: column `{col}`: invalid value `{cell}`", path.display())
        };
        let head: csv::StringRecord = rec.iter().take(n).collect();
        let mut row: MetricRow = head.deserialize(Some(&base)).map_err(|e| {
            let col = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err.field().map(|f| METRICS_HEADER[f as usize]),
                _ => None,
            };
            match col {
                Some(c) => at(
                    c,
                    head.get(METRICS_HEADER.iter().position(|h| *h == c).unwrap_or(0))
                        .unwrap_or(""),
                ),
                None => anyhow::anyhow!("{} line {line}: {e}", path.display()),
            }
        })?;
        for (name, cell) in extras.iter().zip(rec.iter().skip(n)) {
            if !cell.is_empty() {
                row.extra
                    .insert(name.clone(), cell.parse().map_err(|_| at(name, cell))?);
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Appends rows to metrics.csv and flushes each one, so an interrupted run keeps what it measured.
pub(crate) struct MetricsWriter {
    w: Appender,
    /// the extra metric columns, in header order
    extras: Vec<String>,
}

impl MetricsWriter {
    /// A new file with the header: the base columns, then `extras` (none: the format-1 header).
    pub(crate) fn create(path: &Path, extras: &[String]) -> Result<Self> {
        let header = METRICS_HEADER.iter().copied().chain(extras.iter().map(String::as_str));
        Ok(MetricsWriter {
            w: Appender::create(path, header)?,
            extras: extras.to_vec(),
        })
    }

    /// An existing file cut back to its header and first `keep` rows (a resumed run rewrites the rest).
    pub(crate) fn truncate_to(path: &Path, keep: usize, extras: &[String]) -> Result<Self> {
        let rows = read_metrics(path)?;
        if rows.len() < keep {
            bail!(
                "{}: has {} rows but the checkpoint counted {keep}",
                path.display(),
                rows.len()
            );
        }
        let mut w = Self::create(path, extras)?;
        for r in rows.into_iter().take(keep) {
            w.write(&r)?;
        }
        Ok(w)
    }

    pub(crate) fn write(&mut self, row: &MetricRow) -> Result<()> {
        if let Some(name) = row.extra.keys().find(|k| !self.extras.contains(k)) {
            bail!("metric `{name}` has no column in this metrics.csv");
        }
        if self.extras.is_empty() {
            self.w.serialize(row)
        } else {
            // the base cells exactly as serde writes them, then the extra metrics (empty where absent)
            let mut rec = base_record(row)?;
            for name in &self.extras {
                rec.push_field(&row.extra.get(name).map_or(String::new(), |v| format!("{v:?}")));
            }
            self.w.record(&rec)
        }
    }

    /// Rows in the file, header aside.
    pub(crate) fn written(&self) -> usize {
        self.w.written()
    }
}

/// A row's base cells as the csv serializer formats them.
fn base_record(row: &MetricRow) -> Result<csv::StringRecord> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    w.serialize(row)?;
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice());
    Ok(r.records().next().context("an empty metrics row")??)
}
