//! The records a run writes, one definition each, written and read by serde: `metrics.csv` rows
//! (`MetricRow`), `summary.json` (`Summary`), and the names of the files in a run folder.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

use crate::amp::Precision;

pub const METRICS_FILE: &str = "metrics.csv";
pub const SUMMARY_FILE: &str = "summary.json";
pub const CONFIG_FILE: &str = "config.yaml";
/// written into a `.partial` when its run stopped with an error
pub const ERROR_FILE: &str = "error.txt";

pub const METRICS_HEADER: [&str; 11] = [
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
pub enum Split {
    Train,
    Eval,
}

/// One row of metrics.csv: one task, one split, at one evaluation point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub run: String,
    pub scenario: String,
    pub epoch: usize,
    pub step: usize,
    pub task: String,
    pub split: Split,
    pub loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub examples_seen: usize,
    pub elapsed_s: f64,
}

impl MetricRow {
    pub fn is_finite(&self) -> bool {
        self.loss.is_finite() && self.accuracy.is_finite() && self.macro_f1.is_finite()
    }
}

/// Reads metrics.csv strictly: the exact header, every cell of its type; errors name the file and line.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rdr = csv::Reader::from_reader(file);
    let header = rdr
        .headers()
        .with_context(|| format!("{}: cannot read header", path.display()))?
        .clone();
    if header.iter().ne(METRICS_HEADER) {
        bail!(
            "{}: unexpected header `{}`, expected `{}`",
            path.display(),
            header.iter().collect::<Vec<_>>().join(","),
            METRICS_HEADER.join(",")
        );
    }
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.with_context(|| format!("{}: malformed CSV", path.display()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let row: MetricRow = rec.deserialize(Some(&header)).map_err(|e| {
            let col = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err.field().map(|f| METRICS_HEADER[f as usize]),
                _ => None,
            };
            let cell = col
                .and_then(|c| header.iter().position(|h| h == c))
                .and_then(|i| rec.get(i))
                .unwrap_or("");
            match col {
                Some(c) => anyhow::anyhow!("{} line {line}: column `{c}`: invalid value `{cell}`", path.display()),
                None => anyhow::anyhow!("{} line {line}: {e}", path.display()),
            }
        })?;
        rows.push(row);
    }
    Ok(rows)
}

/// Appends rows to metrics.csv and flushes each one, so an interrupted run keeps what it measured.
pub struct MetricsWriter {
    w: csv::Writer<File>,
    written: usize,
}

impl MetricsWriter {
    /// A new file with the header.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        w.write_record(METRICS_HEADER)?;
        w.flush()?;
        Ok(MetricsWriter { w, written: 0 })
    }

    /// An existing file cut back to its header and first `keep` rows (a resumed run rewrites the rest).
    pub fn truncate_to(path: &Path, keep: usize) -> Result<Self> {
        let rows = read_metrics(path)?;
        if rows.len() < keep {
            bail!(
                "{}: has {} rows but the checkpoint counted {keep}",
                path.display(),
                rows.len()
            );
        }
        let mut w = Self::create(path)?;
        for r in rows.into_iter().take(keep) {
            w.write(&r)?;
        }
        Ok(w)
    }

    pub fn write(&mut self, row: &MetricRow) -> Result<()> {
        self.w.serialize(row)?;
        self.w.flush()?;
        self.written += 1;
        Ok(())
    }

    /// Rows in the file, header aside.
    pub fn written(&self) -> usize {
        self.written
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupInfo {
    pub params: i64,
    pub trainable: bool,
    /// not in the checkpoint (BERT's pooler saved with add_pooling_layer=False); written only when true
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
}

/// serde_json writes a non-finite float as null; read it back as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalMetrics {
    #[serde(deserialize_with = "nan_if_null")]
    pub accuracy: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub macro_f1: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
}

impl FinalMetrics {
    pub fn is_finite(&self) -> bool {
        self.accuracy.is_finite() && self.macro_f1.is_finite() && self.loss.is_finite()
    }
}

/// Where and with what a run ran, so a result can be traced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// the resolved model folder
    pub model_path: String,
    pub precision: String,
    pub threads: i64,
    /// CPU model or GPU name
    pub device_name: String,
    pub tch_version: String,
    pub libtorch_version: String,
    /// the harness checkout's commit, when known
    pub git_commit: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run: String,
    /// the config's name before a sweep added seed or grid suffixes: `compare` merges runs by it
    #[serde(default)]
    pub base_name: String,
    pub scenario: String,
    pub device: String,
    pub seed: u64,
    pub model: String,
    pub params_total: i64,
    pub params_trainable: i64,
    pub groups: BTreeMap<String, GroupInfo>,
    pub frozen_unchanged: bool,
    pub frozen_tensors_checked: usize,
    #[serde(rename = "final")]
    pub final_metrics: BTreeMap<String, FinalMetrics>,
    pub train_examples: BTreeMap<String, usize>,
    pub eval_examples: BTreeMap<String, usize>,
    pub epochs: usize,
    pub steps: usize,
    pub examples_seen: usize,
    pub features_cached: bool,
    pub wall_s: f64,
    pub train_s: f64,
    pub train_examples_per_s: f64,
    pub complete: bool,
    /// what the config asked for and what the run trained in (older summaries: fp32)
    #[serde(default)]
    pub precision: PrecisionRecord,
    #[serde(default)]
    pub provenance: Provenance,
}

/// A run's precision: requested (`auto` included), used, and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PrecisionRecord {
    pub requested: Precision,
    pub used: Precision,
    #[serde(default)]
    pub why: String,
    /// TF32 float32 matmuls allowed (CUDA only)
    #[serde(default)]
    pub tf32: bool,
}

impl Summary {
    pub fn read(path: &Path) -> Result<Summary> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).with_context(|| format!("{}: invalid summary", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("{}: cannot write", path.display()))
    }

    /// Every final metric is a number (a diverged run's are not).
    pub fn is_finite(&self) -> bool {
        self.final_metrics.values().all(FinalMetrics::is_finite)
    }
}
