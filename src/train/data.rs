//! A task's data as training sees it: token ids and labels (or gold scores) of its train and eval files, its
//! kind and loss weight. Made once by the run from the config and the files; read-only afterwards.
//!
//! Every example has `kind.columns()` sentences: the first column's ids are `*_ids` (a classification task's
//! only one), the others `*_more` (an sts or pairs task's second, and third, sentence), so that everything
//! that counts, sorts or samples examples works on `*_ids` alone.

use crate::model::task::TaskKind;

/// Which of a task's files: the one it trains on or the one it is scored on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Train,
    Eval,
}

/// One task's tokenised data.
pub(crate) struct TaskData {
    pub name: String,
    pub kind: TaskKind,
    pub loss_weight: f64,
    pub train_ids: Vec<Vec<i64>>,
    /// class indices (classification); empty for the head-less kinds
    pub train_labels: Vec<i64>,
    pub eval_ids: Vec<Vec<i64>>,
    pub eval_labels: Vec<i64>,
    /// the sentence columns after the first, each one per example (sts, pairs; empty for classification)
    pub train_more: Vec<Vec<Vec<i64>>>,
    pub eval_more: Vec<Vec<Vec<i64>>>,
    /// gold scores in 0..1 (sts; empty otherwise)
    pub train_scores: Vec<f64>,
    pub eval_scores: Vec<f64>,
}

impl TaskData {
    /// Lengths for length bucketing: an example's longest sentence.
    pub(crate) fn train_lengths(&self) -> Vec<usize> {
        (0..self.train_ids.len())
            .map(|i| {
                let more = self.train_more.iter().map(|c| c[i].len());
                more.fold(self.train_ids[i].len(), usize::max)
            })
            .collect()
    }

    /// Sentence column `col` of a split.
    pub(crate) fn column(&self, split: Part, col: usize) -> &[Vec<i64>] {
        match (split, col) {
            (Part::Train, 0) => &self.train_ids,
            (Part::Eval, 0) => &self.eval_ids,
            (Part::Train, c) => &self.train_more[c - 1],
            (Part::Eval, c) => &self.eval_more[c - 1],
        }
    }
}
