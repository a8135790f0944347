//! `train.early_stopping:` and `train.keep_best`: which evaluation metric decides the best evaluation, and how
//! many evaluations without improvement end training; the tracking itself is `train::best`.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// What an evaluation is judged by (higher is better for each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StopMetric {
    /// the mean over tasks of the eval accuracy
    MeanAccuracy,
    /// one task's eval accuracy (`<task>.accuracy`)
    Accuracy(String),
    /// one task's eval macro-F1 (`<task>.macro_f1`)
    MacroF1(String),
}

impl TryFrom<String> for StopMetric {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        if s == "mean_accuracy" {
            return Ok(StopMetric::MeanAccuracy);
        }
        match s.rsplit_once('.') {
            Some((task, "accuracy")) if !task.is_empty() => Ok(StopMetric::Accuracy(task.into())),
            Some((task, "macro_f1")) if !task.is_empty() => Ok(StopMetric::MacroF1(task.into())),
            _ => Err(format!(
                "metric `{s}` is not one of mean_accuracy, <task>.accuracy, <task>.macro_f1"
            )),
        }
    }
}

impl From<StopMetric> for String {
    fn from(m: StopMetric) -> String {
        m.to_string()
    }
}

impl std::fmt::Display for StopMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopMetric::MeanAccuracy => f.write_str("mean_accuracy"),
            StopMetric::Accuracy(t) => write!(f, "{t}.accuracy"),
            StopMetric::MacroF1(t) => write!(f, "{t}.macro_f1"),
        }
    }
}

impl StopMetric {
    /// The task it names, if any.
    pub fn task(&self) -> Option<&str> {
        match self {
            StopMetric::MeanAccuracy => None,
            StopMetric::Accuracy(t) | StopMetric::MacroF1(t) => Some(t),
        }
    }
}

/// `train.early_stopping:`: stop once `patience` evaluations in a row have not improved `metric` by more than
/// `min_delta` over the best so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EarlyStopping {
    pub metric: StopMetric,
    pub patience: usize,
    pub min_delta: f64,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            metric: StopMetric::MeanAccuracy,
            patience: 3,
            min_delta: 0.0,
        }
    }
}

impl EarlyStopping {
    /// `tasks`: the config's task names, which a per-task metric must be one of.
    pub(crate) fn validate(&self, tasks: &[&str]) -> Result<()> {
        if let Some(t) = self.metric.task() {
            if !tasks.contains(&t) {
                bail!(
                    "train.early_stopping.metric: `{}` names unknown task `{t}` (tasks: {})",
                    self.metric,
                    tasks.join(", ")
                );
            }
        }
        if self.patience == 0 {
            bail!("train.early_stopping.patience: must be at least 1 (evaluations without improvement)");
        }
        if !(self.min_delta >= 0.0 && self.min_delta <= 1.0) {
            bail!(
                "train.early_stopping.min_delta: {} is out of range (expected 0 to 1)",
                self.min_delta
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_read_and_write_as_the_same_string() {
        for s in ["mean_accuracy", "sentiment.accuracy", "a.b.macro_f1"] {
            let m = StopMetric::try_from(s.to_string()).unwrap();
            assert_eq!(m.to_string(), s);
        }
        assert_eq!(
            StopMetric::try_from("a.b.macro_f1".to_string()).unwrap().task(),
            Some("a.b")
        );
        for bad in ["accuracy", ".accuracy", "a.loss", ""] {
            assert!(StopMetric::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
