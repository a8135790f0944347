//! `tasks[]`: each task's files, columns, labels, head and loss weight.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{count_range, in_range};
use crate::data::LabelMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    pub train: PathBuf,
    pub eval: PathBuf,
    #[serde(default = "default_text_column")]
    pub text_column: String,
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// class names, in class order; with integer labels they are display names only
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// integer: the label cell is a number (minus label_offset); name: the cell is one of `labels`
    #[serde(default)]
    pub label_format: LabelFormat,
    #[serde(default)]
    pub label_offset: i64,
    #[serde(default)]
    pub head: HeadConfig,
    #[serde(default = "one")]
    pub loss_weight: f64,
    #[serde(default)]
    pub limit_train: Option<usize>,
    #[serde(default)]
    pub limit_eval: Option<usize>,
}

fn default_text_column() -> String {
    "sentence".into()
}
fn default_label_column() -> String {
    "label".into()
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

impl TaskConfig {
    pub fn label_map(&self) -> Result<LabelMap> {
        Ok(match self.label_format {
            LabelFormat::Name => LabelMap::Names(
                self.labels
                    .clone()
                    .with_context(|| format!("task `{}`: label_format name needs `labels`", self.name))?,
            ),
            LabelFormat::Integer => LabelMap::Integer {
                offset: self.label_offset,
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
                .map(|i| (i as i64 + self.label_offset).to_string())
                .collect(),
        }
    }
}

impl TaskConfig {
    pub(super) fn validate(&self) -> Result<()> {
        crate::util::names::check_task_name(&self.name).context("name")?;
        if self.text_column.is_empty() || self.label_column.is_empty() {
            bail!("text_column, label_column: must not be empty");
        }
        if self.text_column == self.label_column {
            bail!(
                "text_column: `{}` is also the label_column: the model would read the answer (give the column of the texts)",
                self.text_column
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
        if let HeadConfig::Mlp(m) = &self.head {
            count_range("head.hidden", m.hidden.max(0) as usize, 1, 1 << 20)?;
            if !(0.0..1.0).contains(&m.dropout) {
                bail!("head.dropout: {} is out of range (expected 0 to below 1)", m.dropout);
            }
        }
        in_range("loss_weight", self.loss_weight, 0.0, 1e6)?;
        for (key, limit) in [("limit_train", self.limit_train), ("limit_eval", self.limit_eval)] {
            if limit == Some(0) {
                bail!("{key}: must be at least 1 (or null for all rows)");
            }
        }
        Ok(())
    }
}
