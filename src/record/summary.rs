//! `summary.json`: what a finished run was and what it reached, one serde definition read by `compare`,
//! `predict` and the scripts, written once when the run completes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer, Serialize};

use crate::record::metrics::{MetricRow, Split};
use crate::runtime::amp::Precision;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupInfo {
    pub params: i64,
    pub trainable: bool,
    /// not in the checkpoint (BERT's pooler saved with add_pooling_layer=False); written only when true
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
    /// trainable parameters when only some of the group's tensors train (`freeze.train`); written only then
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable_params: Option<i64>,
}

impl GroupInfo {
    /// The group's trainable parameters: all, none, or `trainable_params` where only some train.
    pub fn trainable_count(&self) -> i64 {
        self.trainable_params
            .unwrap_or(if self.trainable { self.params } else { 0 })
    }
}

fn format_one() -> u32 {
    1
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
    /// a task kind's other metrics, as metrics.csv's extra columns name them (format 2; absent when none)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, f64>,
}

impl FinalMetrics {
    /// A task's metrics as its metrics.csv row holds them.
    pub(crate) fn of(row: &MetricRow) -> Self {
        FinalMetrics {
            accuracy: row.accuracy.unwrap_or(f64::NAN),
            macro_f1: row.macro_f1.unwrap_or(f64::NAN),
            loss: row.loss.unwrap_or(f64::NAN),
            other: row.extra.clone(),
        }
    }

    pub fn is_finite(&self) -> bool {
        self.accuracy.is_finite() && self.macro_f1.is_finite() && self.loss.is_finite()
    }
}

/// Where and with what a run ran, so a result can be traced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// the resolved model folder, absolute (older runs: as resolved, possibly relative)
    pub model_path: String,
    /// `util::fingerprint` of its weights files (`<bytes>:<hash>`, `,` between shards; older runs: empty)
    pub model_fingerprint: String,
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
    /// the records' format version (`record::FORMAT`); summaries written before versions existed read as 1
    #[serde(default = "format_one")]
    pub format: u32,
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
    /// a joint step's loss weighting (`train.mtl.weighting`), when one other than `fixed` ran
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighting: Option<WeightingSummary>,
    /// the best evaluation during training by `train.early_stopping.metric`, when early stopping ran
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best: Option<BestEvaluation>,
    /// training ended before its last planned step because the metric stopped improving
    #[serde(default)]
    pub stopped_early: bool,
    /// each probe (`probes`) before training, at the end, and the change, by probe name
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, ProbeChange>,
}

/// A probe's metrics (e.g. `spearman`, `pearson`) before training and at the last evaluation, and the change
/// (after - before).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ProbeChange {
    pub before: BTreeMap<String, f64>,
    pub after: BTreeMap<String, f64>,
    pub change: BTreeMap<String, f64>,
}

impl ProbeChange {
    /// Every probe's first and last row in `rows` (metrics.csv's, in order).
    pub(crate) fn of_rows(rows: &[MetricRow]) -> BTreeMap<String, ProbeChange> {
        let mut out: BTreeMap<String, ProbeChange> = BTreeMap::new();
        for r in rows.iter().filter(|r| r.split == Split::Probe) {
            let p = out.entry(r.task.clone()).or_insert_with(|| ProbeChange {
                before: r.extra.clone(),
                ..ProbeChange::default()
            });
            p.after = r.extra.clone();
        }
        for p in out.values_mut() {
            p.change = p
                .after
                .iter()
                .filter_map(|(k, a)| p.before.get(k).map(|b| (k.clone(), a - b)))
                .collect();
        }
        out
    }
}

/// The best evaluation during training (`train.early_stopping`): where it was, its score and every task's
/// eval metrics there; `weights` names the run file that holds its weights (`train.keep_best`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BestEvaluation {
    pub epoch: usize,
    pub step: usize,
    /// the metric as the config names it, and its value there
    pub metric: String,
    pub value: f64,
    pub metrics: BTreeMap<String, FinalMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
}

/// What a loss weighting ended with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WeightingSummary {
    pub method: String,
    /// the last step's effective loss weights, by task
    pub final_weights: BTreeMap<String, f64>,
    /// its learnable parameters' final values (e.g. uncertainty's `loss_scale`, one per task in task order)
    #[serde(default)]
    pub params: BTreeMap<String, Vec<f64>>,
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
        let text = crate::util::fsx::read_text(path)?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        serde_path_to_error::deserialize(de).with_context(|| format!("{}: invalid summary", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::util::fsx::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }

    /// Every final metric is a number (a diverged run's are not).
    pub fn is_finite(&self) -> bool {
        self.final_metrics.values().all(FinalMetrics::is_finite)
    }
}
