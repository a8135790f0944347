//! `tasks[]`: each task's type, files, columns, labels (or scores), head (or loss) and loss weight.
//!
//! A task's type decides its keys: `classification` (the default) has a text and a label column, labels and a
//! head; `sts` has two sentence columns and a score column with its `score_range`; `pairs` has an anchor and a
//! positive column (and optionally a negative one). The type-specific keys are optional in the YAML; `resolve`
//! refuses a key of another type, naming it, and fills in the type's defaults, so that afterwards a key is
//! `Some` exactly when it belongs to the task's type (and the written config.yaml reads back the same).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{count_range, in_range};
use crate::data::LabelMap;

/// What a task learns: a label per sentence, a similarity score per pair, or which positive goes with an anchor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskType {
    #[default]
    Classification,
    /// pairs of sentences with a gold similarity score; no head, a loss on the pooled embeddings
    Sts,
    /// (anchor, positive[, negative]) rows; no head, MultipleNegativesRankingLoss on the pooled embeddings
    Pairs,
}

impl std::fmt::Display for TaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskType::Classification => "classification",
            TaskType::Sts => "sts",
            TaskType::Pairs => "pairs",
        })
    }
}

impl TaskType {
    fn is_classification(&self) -> bool {
        *self == TaskType::Classification
    }

    /// Whether tasks of this type have a head (the others' loss acts on the pooled embeddings).
    pub fn has_head(self) -> bool {
        self.is_classification()
    }
}

/// The objective of an sts or pairs task, as the config names it (`model::objective` computes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairLoss {
    /// sentence-transformers' CoSENTLoss (sts; the default)
    Cosent,
    /// CosineSimilarityLoss (sts)
    CosineMse,
    /// MultipleNegativesRankingLoss (pairs; its only loss)
    Mnrl,
}

impl std::fmt::Display for PairLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PairLoss::Cosent => "cosent",
            PairLoss::CosineMse => "cosine_mse",
            PairLoss::Mnrl => "mnrl",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    /// written only when not `classification`, so that a classification task's config.yaml is as it was
    #[serde(default, rename = "type", skip_serializing_if = "TaskType::is_classification")]
    pub kind: TaskType,
    pub train: PathBuf,
    pub eval: PathBuf,
    // classification keys: `Some` after `resolve` exactly on a classification task
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// class names, in class order; with integer labels they are display names only
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// integer: the label cell is a number (minus label_offset); name: the cell is one of `labels`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_format: Option<LabelFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadConfig>,
    #[serde(default = "one")]
    pub loss_weight: f64,
    #[serde(default)]
    pub limit_train: Option<usize>,
    #[serde(default)]
    pub limit_eval: Option<usize>,
    // sts keys
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentence1_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentence2_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_column: Option<String>,
    /// the gold scores' range [lo, hi]: scores are scaled to 0..1 by (s - lo) / (hi - lo); required for sts
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_range: Option<[f64; 2]>,
    // pairs keys
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_column: Option<String>,
    /// sts and pairs: the objective on the pooled embeddings
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<PairLoss>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelFormat {
    #[default]
    Integer,
    Name,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum HeadConfig {
    Linear(LinearConfig),
    Mlp(MlpConfig),
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig::Linear(LinearConfig {})
    }
}

/// A linear head has no settings; the struct exists so that a stray key inside it is an error.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    pub hidden: i64,
    pub dropout: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: 256,
            dropout: 0.1,
        }
    }
}

/// Which type each optional key belongs to (`negative_column` is optional within `pairs`).
fn key_type(key: &str) -> TaskType {
    match key {
        "text_column" | "label_column" | "labels" | "num_labels" | "label_format" | "label_offset" | "head" => {
            TaskType::Classification
        }
        "sentence1_column" | "sentence2_column" | "score_column" | "score_range" => TaskType::Sts,
        _ => TaskType::Pairs,
    }
}

impl TaskConfig {
    /// The optional keys given, by name (`loss` is checked on its own: sts and pairs both have it).
    fn given(&self) -> Vec<&'static str> {
        let set = [
            ("text_column", self.text_column.is_some()),
            ("label_column", self.label_column.is_some()),
            ("labels", self.labels.is_some()),
            ("num_labels", self.num_labels.is_some()),
            ("label_format", self.label_format.is_some()),
            ("label_offset", self.label_offset.is_some()),
            ("head", self.head.is_some()),
            ("sentence1_column", self.sentence1_column.is_some()),
            ("sentence2_column", self.sentence2_column.is_some()),
            ("score_column", self.score_column.is_some()),
            ("score_range", self.score_range.is_some()),
            ("anchor_column", self.anchor_column.is_some()),
            ("positive_column", self.positive_column.is_some()),
            ("negative_column", self.negative_column.is_some()),
        ];
        set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
    }

    /// Refuses a key of another task type (naming it) and fills in this type's defaults.
    pub(super) fn resolve(&mut self) -> Result<()> {
        let kind = self.kind;
        if let Some(key) = self.given().into_iter().find(|k| key_type(k) != kind) {
            bail!(
                "{key}: is a key of a `{}` task, but this task's type is `{kind}` (set `type: {}` or remove `{key}`)",
                key_type(key),
                key_type(key)
            );
        }
        let fill = |v: &mut Option<String>, d: &str| {
            v.get_or_insert_with(|| d.to_string());
        };
        match kind {
            TaskType::Classification => {
                if let Some(l) = self.loss {
                    bail!("loss: `{l}` is for sts and pairs tasks; a classification task trains with cross-entropy on its head (remove `loss`)");
                }
                fill(&mut self.text_column, "sentence");
                fill(&mut self.label_column, "label");
                self.label_format.get_or_insert_with(LabelFormat::default);
                self.label_offset.get_or_insert(0);
                self.head.get_or_insert_with(HeadConfig::default);
            }
            TaskType::Sts => {
                fill(&mut self.sentence1_column, "sentence1");
                fill(&mut self.sentence2_column, "sentence2");
                fill(&mut self.score_column, "score");
                match *self.loss.get_or_insert(PairLoss::Cosent) {
                    PairLoss::Cosent | PairLoss::CosineMse => {}
                    l => bail!("loss: `{l}` is not a loss of an `sts` task (expected cosent or cosine_mse)"),
                }
            }
            TaskType::Pairs => {
                fill(&mut self.anchor_column, "anchor");
                fill(&mut self.positive_column, "positive");
                match *self.loss.get_or_insert(PairLoss::Mnrl) {
                    PairLoss::Mnrl => {}
                    l => bail!("loss: `{l}` is not a loss of a `pairs` task (expected mnrl)"),
                }
            }
        }
        Ok(())
    }

    /// The text column of a classification task (`resolve` filled it in).
    pub fn text_column(&self) -> &str {
        self.text_column.as_deref().unwrap_or("sentence")
    }

    pub fn label_column(&self) -> &str {
        self.label_column.as_deref().unwrap_or("label")
    }

    /// The head of a classification task.
    pub fn head(&self) -> HeadConfig {
        self.head.clone().unwrap_or_default()
    }

    /// The sentence columns of an sts or pairs task, in the order the loss takes them (sts: sentence1,
    /// sentence2; pairs: anchor, positive, then the negative if given).
    pub fn pair_columns(&self) -> Vec<String> {
        let cols = match self.kind {
            TaskType::Classification => vec![],
            TaskType::Sts => vec![&self.sentence1_column, &self.sentence2_column],
            TaskType::Pairs => vec![&self.anchor_column, &self.positive_column, &self.negative_column],
        };
        cols.into_iter().flatten().cloned().collect()
    }

    pub fn label_map(&self) -> Result<LabelMap> {
        Ok(match self.label_format.unwrap_or_default() {
            LabelFormat::Name => LabelMap::Names(
                self.labels
                    .clone()
                    .with_context(|| format!("task `{}`: label_format name needs `labels`", self.name))?,
            ),
            LabelFormat::Integer => LabelMap::Integer {
                offset: self.label_offset.unwrap_or(0),
                num_labels: self.num_labels()?,
            },
        })
    }

    pub fn num_labels(&self) -> Result<usize> {
        match (&self.labels, self.num_labels) {
            (Some(l), Some(n)) if l.len() != n => {
                bail!(
                    "task `{}`: `labels` has {} names but num_labels is {n}",
                    self.name,
                    l.len()
                )
            }
            (Some(l), _) => Ok(l.len()),
            (None, Some(n)) => Ok(n),
            (None, None) => bail!("task `{}`: give `labels` (class names) or `num_labels`", self.name),
        }
    }

    /// Display names for classes: the configured names, else the class index.
    pub fn label_names(&self) -> Vec<String> {
        match &self.labels {
            Some(l) => l.clone(),
            None => (0..self.num_labels.unwrap_or(0))
                .map(|i| (i as i64 + self.label_offset.unwrap_or(0)).to_string())
                .collect(),
        }
    }
}

impl TaskConfig {
    pub(super) fn validate(&self) -> Result<()> {
        crate::util::names::check_task_name(&self.name).context("name")?;
        in_range("loss_weight", self.loss_weight, 0.0, 1e6)?;
        for (key, limit) in [("limit_train", self.limit_train), ("limit_eval", self.limit_eval)] {
            if limit == Some(0) {
                bail!("{key}: must be at least 1 (or null for all rows)");
            }
        }
        match self.kind {
            TaskType::Classification => self.validate_classification(),
            TaskType::Sts | TaskType::Pairs => self.validate_pairs(),
        }
    }

    /// An sts or pairs task's columns are distinct and non-empty; sts's score column too, and its range is finite
    /// with lo < hi.
    fn validate_pairs(&self) -> Result<()> {
        let mut cols = self.pair_columns();
        if self.kind == TaskType::Sts {
            let [lo, hi] = self.score_range.context(
                "score_range: is required for an sts task: the gold scores' range [lo, hi], e.g. [0, 5] for STS-B",
            )?;
            if !lo.is_finite() || !hi.is_finite() || lo >= hi {
                bail!("score_range: [{lo}, {hi}] is not a range (expected finite [lo, hi] with lo < hi)");
            }
            cols.extend(self.score_column.clone());
        }
        if let Some(c) = cols.iter().find(|c| c.is_empty()) {
            bail!("a column name is empty (`{c}`): give each column's header");
        }
        if let Some((i, c)) = cols.iter().enumerate().find(|(i, c)| cols[..*i].contains(c)) {
            bail!(
                "column `{c}` is named twice (as column {} and {} of this task's columns)",
                cols.iter().position(|x| x == c).unwrap_or(0) + 1,
                i + 1
            );
        }
        Ok(())
    }

    fn validate_classification(&self) -> Result<()> {
        let (text, label) = (self.text_column(), self.label_column());
        if text.is_empty() || label.is_empty() {
            bail!("text_column, label_column: must not be empty");
        }
        if text == label {
            bail!(
                "text_column: `{text}` is also the label_column: the model would read the answer (give the column of the texts)"
            );
        }
        if let Some(l) = &self.labels {
            let unique: std::collections::HashSet<&String> = l.iter().collect();
            if l.len() < 2 || unique.len() != l.len() || l.iter().any(|n| n.trim().is_empty()) {
                bail!("labels: give at least 2 distinct, non-empty class names");
            }
        }
        if let Some(n) = self.num_labels {
            count_range("num_labels", n, 2, 1_000_000)?;
        }
        self.num_labels()?;
        self.label_map()?;
        if let HeadConfig::Mlp(m) = &self.head() {
            count_range("head.hidden", m.hidden.max(0) as usize, 1, 1 << 20)?;
            if !(0.0..1.0).contains(&m.dropout) {
                bail!("head.dropout: {} is out of range (expected 0 to below 1)", m.dropout);
            }
        }
        Ok(())
    }
}
