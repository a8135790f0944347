//! Task kinds: what a task predicts, the loss it trains with and the metrics it is scored by. Classification
//! (a head's logits; cross-entropy; accuracy and macro-F1) and the head-less kinds of `embedding_task` (sts,
//! pairs: a loss on the pooled embeddings; correlation or retrieval metrics). A new kind is a new variant here
//! and the loop needs no branch of its own beyond "does the kind have a head": it asks the kind for the loss,
//! the predictions and the metrics.

use std::collections::BTreeMap;

use anyhow::Result;
use tch::{Reduction, Tensor};

use crate::model::embedding_task;
use crate::model::metrics::{accuracy, macro_f1};
use crate::model::objective::PairLoss;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// one label of `num_labels` per sentence, from a head's logits
    Classification { num_labels: usize },
    /// two sentences with a gold similarity in 0..1; `loss` is CoSENT or cosine MSE
    Sts { loss: PairLoss },
    /// an anchor and its positive (and, with `negatives`, a hard negative); MNRL with in-batch negatives
    Pairs { negatives: bool },
}

/// A task's scores on one split at one evaluation point.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct TaskMetrics {
    /// classification only (empty cells for the other kinds)
    pub accuracy: Option<f64>,
    pub macro_f1: Option<f64>,
    /// the kind's other metrics, by metrics.csv column name
    pub extra: BTreeMap<String, f64>,
}

impl TaskKind {
    /// Whether the kind scores a head's outputs (else its loss and metrics act on the sentence embeddings).
    pub(crate) fn has_head(&self) -> bool {
        matches!(self, TaskKind::Classification { .. })
    }

    /// Sentences per example: 1, or the pair's (sts: 2; pairs: 2, 3 with a negative column).
    pub(crate) fn columns(&self) -> usize {
        match self {
            TaskKind::Classification { .. } => 1,
            TaskKind::Sts { .. } => 2,
            TaskKind::Pairs { negatives } => 2 + *negatives as usize,
        }
    }

    /// The loss of a batch's head outputs against its gold labels (`Reduction::Mean` to train,
    /// `Reduction::Sum` to accumulate an evaluation); classification only.
    pub(crate) fn loss(&self, logits: &Tensor, labels: &Tensor, reduction: Reduction) -> Tensor {
        logits.cross_entropy_loss::<Tensor>(labels, None, reduction, -100, 0.0)
    }

    /// The mean loss of a batch of a head-less kind: `columns` are the embeddings of each sentence column
    /// (`[batch, dim]` each), `gold` the scores in 0..1 (sts).
    pub(crate) fn embedding_loss(&self, columns: &[Tensor], gold: Option<&Tensor>) -> Result<Tensor> {
        match self {
            TaskKind::Sts { loss } => embedding_task::sts_loss(*loss, columns, gold),
            TaskKind::Pairs { .. } => embedding_task::pairs_loss(columns),
            TaskKind::Classification { .. } => anyhow::bail!("a classification task's loss is on its head"),
        }
    }

    /// The predictions the metrics score, on the device (class indices).
    pub(crate) fn predict(&self, logits: &Tensor) -> Tensor {
        logits.argmax(-1, false)
    }

    /// Metrics of predictions against gold labels: classification's; the head-less kinds have none on their
    /// train rows (their loss is the training metric).
    pub(crate) fn metrics(&self, preds: &[i64], gold: &[i64]) -> TaskMetrics {
        match self {
            TaskKind::Classification { num_labels } => TaskMetrics {
                accuracy: Some(accuracy(preds, gold)),
                macro_f1: Some(macro_f1(preds, gold, *num_labels)),
                extra: BTreeMap::new(),
            },
            TaskKind::Sts { .. } | TaskKind::Pairs { .. } => TaskMetrics::default(),
        }
    }

    /// Metrics of a head-less kind on a whole evaluation set's embeddings (`columns` as for the loss; `gold`
    /// the scores, sts only).
    pub(crate) fn embedding_metrics(&self, columns: &[Tensor], gold: &[f64]) -> Result<TaskMetrics> {
        let extra = match self {
            TaskKind::Sts { .. } => embedding_task::sts_metrics(columns, gold)?,
            TaskKind::Pairs { .. } => embedding_task::pairs_metrics(columns)?,
            TaskKind::Classification { .. } => anyhow::bail!("a classification task is scored on its head"),
        };
        Ok(TaskMetrics {
            extra,
            ..TaskMetrics::default()
        })
    }

    /// The metrics.csv columns this kind adds beyond the base ones.
    pub(crate) fn extra_columns(&self) -> &'static [&'static str] {
        match self {
            TaskKind::Classification { .. } => &[],
            TaskKind::Sts { .. } => embedding_task::STS_COLUMNS,
            TaskKind::Pairs { .. } => embedding_task::PAIRS_COLUMNS,
        }
    }
}
