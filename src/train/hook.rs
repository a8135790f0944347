//! Evaluation hooks: something measured at every evaluation point besides the tasks (an STS probe of the
//! embedding, representation drift). The trainer calls each hook after the tasks' evaluation, in the order
//! added; a hook returns rows for metrics.csv, or writes a file of its own (whose row count the checkpoint
//! keeps, so a resumed run cuts it back to where the checkpoint was taken).

use anyhow::Result;

use crate::model::MultiTaskModel;
use crate::record::MetricRow;
use crate::runtime::amp::Precision;

/// Where in training an evaluation happens.
#[derive(Debug, Clone)]
pub(crate) struct EvalPoint {
    pub run: String,
    pub scenario: String,
    /// 0 before training
    pub epoch: usize,
    pub step: usize,
    pub examples_seen: usize,
    pub elapsed_s: f64,
    /// before training or at an epoch's end (not a `train.eval_every_steps` evaluation within an epoch)
    pub epoch_end: bool,
}

/// Its rows go to metrics.csv after the tasks' rows of the same point; `extra_columns` are the metric
/// columns they use beyond the base ones.
pub(crate) trait EvalHook {
    fn extra_columns(&self) -> Vec<String> {
        Vec::new()
    }
    fn evaluate(&mut self, at: &EvalPoint, model: &MultiTaskModel, precision: Precision) -> Result<Vec<MetricRow>>;
    /// A file of its own and the rows written to it so far, for the checkpoint.
    fn own_file(&self) -> Option<(String, usize)> {
        None
    }
}
