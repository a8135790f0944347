//! What a run writes: metrics.csv (one row per evaluation point, task and split), summary.json, and the
//! parameter-group table.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::freeze::FreezePlan;
use crate::group::{Group, ParamGroup};

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

#[derive(Debug, Clone, Serialize)]
pub struct MetricRow {
    pub run: String,
    pub scenario: String,
    pub epoch: usize,
    pub step: usize,
    pub task: String,
    pub split: &'static str,
    pub loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub examples_seen: usize,
    pub elapsed_s: f64,
}

/// Appends rows and flushes each one, so an interrupted run keeps what it measured.
pub struct MetricsWriter {
    w: csv::Writer<File>,
    pub rows: Vec<MetricRow>,
}

impl MetricsWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        w.write_record(METRICS_HEADER)?;
        w.flush()?;
        Ok(MetricsWriter { w, rows: Vec::new() })
    }

    pub fn write(&mut self, row: MetricRow) -> Result<()> {
        self.w.serialize(&row)?;
        self.w.flush()?;
        self.rows.push(row);
        Ok(())
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalMetrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub loss: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub run: String,
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
}

pub fn group_infos(groups: &[ParamGroup], plan: &FreezePlan) -> Result<BTreeMap<String, GroupInfo>> {
    groups
        .iter()
        .map(|g| {
            Ok((
                g.group.to_string(),
                GroupInfo {
                    params: g.numel(),
                    trainable: plan.trains(&g.group)?,
                    absent: g.absent,
                },
            ))
        })
        .collect()
}

/// The table `harness inspect` prints and every run logs.
pub fn groups_table(groups: &[ParamGroup], plan: &FreezePlan) -> Result<String> {
    let mut s = format!("{:<24} {:>12}  {}\n", "group", "params", "trainable");
    let (mut total, mut trainable) = (0i64, 0i64);
    for g in groups {
        let on = plan.trains(&g.group)?;
        let note = if g.absent {
            "  (absent: not in the checkpoint, unused by pooling)"
        } else if g.group == Group::Pooler {
            "  (unused by pooling)"
        } else {
            ""
        };
        let name = g.group.to_string();
        s.push_str(&format!(
            "{name:<24} {:>12}  {}{note}\n",
            g.numel(),
            if on { "yes" } else { "no" }
        ));
        total += g.numel();
        if on {
            trainable += g.numel();
        }
    }
    s.push_str(&format!(
        "{:<24} {:>12}\n{:<24} {:>12}\n",
        "total", total, "trainable", trainable
    ));
    Ok(s)
}
