//! A task's data as training sees it: token ids and labels of its train and eval files, its kind and loss
//! weight. Made once by the run from the config and the files; read-only afterwards.

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
    pub train_labels: Vec<i64>,
    pub eval_ids: Vec<Vec<i64>>,
    pub eval_labels: Vec<i64>,
}

impl TaskData {
    pub(crate) fn train_lengths(&self) -> Vec<usize> {
        self.train_ids.iter().map(Vec::len).collect()
    }
}
