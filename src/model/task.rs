//! Task kinds: what a task predicts, the loss it trains with and the metrics its predictions are scored by.
//! Today one kind, classification (cross-entropy; accuracy and macro-F1); a new kind is a new variant here and
//! the loop needs no branch of its own: it asks the kind for the loss, the predictions and the metrics.

use std::collections::BTreeMap;

use tch::{Reduction, Tensor};

use crate::model::metrics::{accuracy, macro_f1};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// one label of `num_labels` per sentence, from a head's logits
    Classification { num_labels: usize },
}

/// A task's scores on one split at one evaluation point.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskMetrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    /// the kind's other metrics, by metrics.csv column name
    pub extra: BTreeMap<String, f64>,
}

impl TaskKind {
    /// The loss of a batch's head outputs against its gold labels (`Reduction::Mean` to train,
    /// `Reduction::Sum` to accumulate an evaluation).
    pub(crate) fn loss(&self, logits: &Tensor, labels: &Tensor, reduction: Reduction) -> Tensor {
        match self {
            TaskKind::Classification { .. } => logits.cross_entropy_loss::<Tensor>(labels, None, reduction, -100, 0.0),
        }
    }

    /// The predictions the metrics score, on the device (class indices).
    pub(crate) fn predict(&self, logits: &Tensor) -> Tensor {
        match self {
            TaskKind::Classification { .. } => logits.argmax(-1, false),
        }
    }

    pub(crate) fn metrics(&self, preds: &[i64], gold: &[i64]) -> TaskMetrics {
        match self {
            TaskKind::Classification { num_labels } => TaskMetrics {
                accuracy: accuracy(preds, gold),
                macro_f1: macro_f1(preds, gold, *num_labels),
                extra: BTreeMap::new(),
            },
        }
    }

    /// The metrics.csv columns this kind adds beyond the base ones.
    pub(crate) fn extra_columns(&self) -> &'static [&'static str] {
        match self {
            TaskKind::Classification { .. } => &[],
        }
    }
}
