//! `train.step` and `train.mtl:`: whether a step trains one task's batch or one batch of every task, and how
//! a joint step combines the tasks' gradients of the shared encoder.
//!
//! The method names are plain strings checked here against [`AGGREGATORS`] (config sits below `train`, so it
//! cannot see `train::mtl`; a unit test there checks every name here builds), so an unknown one gets the
//! nearest name suggested.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::in_range;

/// What one optimisation step trains on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepMode {
    /// one task's batch per step, the tasks' batches mixed by `train.sampling`
    #[default]
    PerTask,
    /// one batch of every trained task per step
    Joint,
}

/// The aggregator names `train.mtl.aggregator` accepts (`train::mtl::AggregatorKind::from_name`'s).
pub const AGGREGATORS: [&str; 10] = [
    "sum",
    "mean",
    "pcgrad",
    "mgda",
    "imtl_g",
    "cagrad",
    "upgrad",
    "dualproj",
    "aligned_mtl",
    "config",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MtlConfig {
    /// how a joint step combines the tasks' encoder gradients; None: backward the weighted sum of the losses
    pub aggregator: Option<String>,
    /// CAGrad's c (the radius of the ball around the mean gradient)
    pub cagrad_c: f64,
    /// MGDA's Frank-Wolfe stopping tolerance
    pub mgda_epsilon: f64,
    /// MGDA's Frank-Wolfe iterations at most
    pub mgda_max_iters: usize,
}

impl Default for MtlConfig {
    fn default() -> Self {
        MtlConfig {
            aggregator: None,
            cagrad_c: 0.5,
            mgda_epsilon: 0.001,
            mgda_max_iters: 100,
        }
    }
}

impl MtlConfig {
    /// The aggregator that changes the gradients: None for unset or `sum` (the weighted sum's one backward).
    pub fn gradient_aggregator(&self) -> Option<&str> {
        self.aggregator.as_deref().filter(|a| *a != "sum")
    }

    pub(super) fn validate(&self, step: StepMode) -> Result<()> {
        if let Some(name) = &self.aggregator {
            if !AGGREGATORS.contains(&name.as_str()) {
                let nearest = AGGREGATORS
                    .iter()
                    .max_by(|a, b| strsim::jaro_winkler(name, a).total_cmp(&strsim::jaro_winkler(name, b)))
                    .expect("a non-empty list");
                bail!(
                    "train.mtl.aggregator: unknown method `{name}` (did you mean `{nearest}`? expected one of: {})",
                    AGGREGATORS.join(", ")
                );
            }
            if step == StepMode::PerTask {
                bail!("train.mtl.aggregator: `{name}` needs `train.step: joint` (a per-task step has one task's gradient)");
            }
        }
        // torchjd's ranges: CAGrad needs c >= 0, MGDA a positive tolerance and at least one iteration
        in_range("train.mtl.cagrad_c", self.cagrad_c, 0.0, 1e6)?;
        if !(self.mgda_epsilon > 0.0 && self.mgda_epsilon <= 1.0) {
            bail!(
                "train.mtl.mgda_epsilon: {} is out of range (expected above 0, up to 1)",
                self.mgda_epsilon
            );
        }
        super::count_range("train.mtl.mgda_max_iters", self.mgda_max_iters, 1, 1_000_000)?;
        Ok(())
    }
}
