//! `probes[]` and `analysis.drift`: what a run measures of its encoder without training on it. A probe is scored
//! before training and at every evaluation point (rows of metrics.csv, split `probe`); drift compares each
//! layer's representations of fixed sentences with the pretrained encoder's (drift.csv).
//!
//! Invariants: a probe's name is a task name in form and is used by no task and no other probe (its rows share
//! metrics.csv's `task` column); the files are read before the run's lock, so a bad one fails before anything
//! is written.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::count_range;

/// The kinds of probe. `sts`: pairs with a gold similarity, scored as sentence-transformers'
/// EmbeddingSimilarityEvaluator scores them (Spearman and Pearson of the cosine similarity, x100).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeType {
    #[default]
    Sts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: ProbeType,
    /// a TSV or CSV file with a header
    pub data: PathBuf,
    #[serde(default = "sentence1")]
    pub sentence1_column: String,
    #[serde(default = "sentence2")]
    pub sentence2_column: String,
    #[serde(default = "score")]
    pub score_column: String,
    /// the first N pairs only; null: all
    #[serde(default)]
    pub limit: Option<usize>,
}

fn sentence1() -> String {
    "sentence1".into()
}
fn sentence2() -> String {
    "sentence2".into()
}
fn score() -> String {
    "score".into()
}

impl ProbeConfig {
    pub(super) fn validate(&self) -> Result<()> {
        crate::util::names::check_task_name(&self.name).map_err(|e| anyhow::anyhow!("name: {e}"))?;
        let cols = [&self.sentence1_column, &self.sentence2_column, &self.score_column];
        if cols.iter().any(|c| c.is_empty()) {
            bail!("sentence1_column, sentence2_column, score_column: must not be empty");
        }
        if cols[0] == cols[1] || cols[0] == cols[2] || cols[1] == cols[2] {
            bail!(
                "sentence1_column, sentence2_column, score_column: must be three different columns (got `{}`, `{}`, `{}`)",
                cols[0],
                cols[1],
                cols[2]
            );
        }
        if let Some(n) = self.limit {
            count_range("limit", n, 2, 10_000_000)?;
        }
        Ok(())
    }
}

/// `analysis:`: measurements of the run that are not tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalysisConfig {
    pub drift: Option<DriftConfig>,
}

/// When drift is measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftEvery {
    /// before training and at each epoch's end
    #[default]
    Epoch,
    /// at every evaluation point (also `train.eval_every_steps`'s)
    Eval,
}

/// `analysis.drift:`: linear CKA, layer by layer, between the pretrained encoder's and the current encoder's
/// representations of the first `sentences` rows of `data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// a TSV or CSV file with a header
    pub data: PathBuf,
    #[serde(default = "default_column")]
    pub column: String,
    #[serde(default = "default_sentences")]
    pub sentences: usize,
    #[serde(default)]
    pub every: DriftEvery,
}

fn default_column() -> String {
    "sentence".into()
}
fn default_sentences() -> usize {
    512
}

impl DriftConfig {
    pub(super) fn validate(&self) -> Result<()> {
        if self.column.is_empty() {
            bail!("analysis.drift.column: must not be empty");
        }
        // CKA needs two sentences; every measurement encodes them all (twice at the start)
        count_range("analysis.drift.sentences", self.sentences, 2, 100_000)
    }
}
