//! Evaluation hooks: something measured at every evaluation point besides the tasks (an STS probe of the
//! embedding, representation drift), returning its own metrics rows. The trainer calls each hook after the
//! tasks' evaluation, in the order added.

use anyhow::Result;

use crate::model::MultiTaskModel;
use crate::record::MetricRow;
use crate::runtime::amp::Precision;

/// Where in training an evaluation happens.
// the seam for probes and analyses: no hook is built in yet, so nothing reads it
#[allow(dead_code)]
#[derive(Debug, Clone)]
pub(crate) struct EvalPoint {
    pub run: String,
    pub scenario: String,
    /// 0 before training
    pub epoch: usize,
    pub step: usize,
    pub examples_seen: usize,
    pub elapsed_s: f64,
}

/// Its rows go to metrics.csv after the tasks' rows of the same point; `extra_columns` are the metric
/// columns they use beyond the base ones.
pub(crate) trait EvalHook {
    #[allow(dead_code)] // read by the run when it builds hooks, which none does yet
    fn extra_columns(&self) -> Vec<String> {
        Vec::new()
    }
    fn evaluate(&self, at: &EvalPoint, model: &MultiTaskModel, precision: Precision) -> Result<Vec<MetricRow>>;
}
