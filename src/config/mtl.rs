//! `train.step` and `train.mtl:`: whether a step trains one task's batch or one batch of every task, and how
//! a joint step weighs the tasks' losses (`weighting`) or combines their gradients of the shared encoder
//! (`aggregator`): one or the other, as in LibMTL, where both are "weighting" methods.
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

/// The loss weightings `train.mtl.weighting` accepts (`train::mtl::weighting::WeightingKind`'s methods).
pub const WEIGHTINGS: [&str; 6] = ["fixed", "uncertainty", "dwa", "gradnorm", "gls", "rlw"];

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
    /// how the task losses of a joint step are weighted; None or `fixed`: the tasks' `loss_weight`s
    pub weighting: Option<String>,
    /// DWA's temperature T
    pub dwa_temperature: f64,
    /// GradNorm's asymmetry alpha
    pub gradnorm_alpha: f64,
    /// the learning rate of a weighting's own parameters (uncertainty, gradnorm); None: `train.lr_heads`
    pub weighting_lr: Option<f64>,
    /// every N steps, the tasks' gradient cosines and norm ratios per encoder group into conflict.csv
    pub log_conflict_every: Option<usize>,
}

impl Default for MtlConfig {
    fn default() -> Self {
        MtlConfig {
            aggregator: None,
            cagrad_c: 0.5,
            mgda_epsilon: 0.001,
            mgda_max_iters: 100,
            weighting: None,
            dwa_temperature: 2.0,
            gradnorm_alpha: 1.5,
            weighting_lr: None,
            log_conflict_every: None,
        }
    }
}

impl MtlConfig {
    /// The aggregator that changes the gradients: None for unset or `sum` (the weighted sum's one backward).
    pub fn gradient_aggregator(&self) -> Option<&str> {
        self.aggregator.as_deref().filter(|a| *a != "sum")
    }

    /// The weighting that changes the losses: None for unset or `fixed` (the tasks' `loss_weight`s).
    pub fn loss_weighting(&self) -> Option<&str> {
        self.weighting.as_deref().filter(|w| *w != "fixed")
    }

    pub(super) fn validate(&self, step: StepMode) -> Result<()> {
        if let Some(name) = &self.weighting {
            known("train.mtl.weighting", name, &WEIGHTINGS)?;
        }
        if let Some(name) = self.loss_weighting() {
            if step == StepMode::PerTask {
                bail!("train.mtl.weighting: `{name}` needs `train.step: joint` (it weighs every task's loss of a step, and a per-task step has one)");
            }
            if let Some(agg) = self.gradient_aggregator() {
                bail!("train.mtl.weighting: `{name}` cannot be combined with train.mtl.aggregator `{agg}`: choose a loss weighting or a gradient aggregator (as LibMTL does)");
            }
        }
        if !(self.dwa_temperature > 0.0 && self.dwa_temperature <= 1e6) {
            bail!(
                "train.mtl.dwa_temperature: {} is out of range (expected above 0, up to 1e6)",
                self.dwa_temperature
            );
        }
        in_range("train.mtl.gradnorm_alpha", self.gradnorm_alpha, 0.0, 1e3)?;
        if let Some(n) = self.log_conflict_every {
            super::count_range("train.mtl.log_conflict_every", n, 1, 1 << 30)?;
        }
        if let Some(lr) = self.weighting_lr {
            in_range("train.mtl.weighting_lr", lr, 0.0, 1e6)?;
        }
        if let Some(name) = &self.aggregator {
            known("train.mtl.aggregator", name, &AGGREGATORS)?;
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

/// `name` is one of `names`, or an error suggesting the nearest.
fn known(key: &str, name: &str, names: &[&str]) -> Result<()> {
    if names.contains(&name) {
        return Ok(());
    }
    let nearest = names
        .iter()
        .max_by(|a, b| strsim::jaro_winkler(name, a).total_cmp(&strsim::jaro_winkler(name, b)))
        .copied()
        .unwrap_or_default();
    bail!(
        "{key}: unknown method `{name}` (did you mean `{nearest}`? expected one of: {})",
        names.join(", ")
    )
}
