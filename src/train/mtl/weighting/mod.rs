//! Loss-level weightings, each as LibMTL 1.1.5 computes it (one file per method):
//! `fixed` (given weights), `uncertainty` (UW), `dwa` (T = 2), `gradnorm` (alpha = 1.5), `gls`, `rlw`.
//!
//! The joint step calls [`Weighting::combine`] once per optimizer step with the m task losses (a 1-D
//! tensor still attached to the model's graph) and, when [`Weighting::needs_jacobian`] says so, the
//! m x n Jacobian of the shared parameters. It gets back either a loss to backward ([`Combined::Loss`]:
//! it also carries the weighting's own learnable parameters, so one backward feeds both) or, for
//! GradNorm after its first epoch, weights for the Jacobian plus an auxiliary loss that only reaches the
//! weighting's parameters ([`Combined::Gradient`]). At each epoch end the caller passes the epoch's mean
//! *unweighted* task losses to [`Weighting::end_epoch`] (LibMTL's `train_loss_buffer`).
//!
//! Invariants: the learnable parameters ([`Weighting::parameters`]) are float32 leaf tensors with
//! `requires_grad`, updated by the caller's optimizer like model parameters (LibMTL puts them in the
//! same optimizer); [`Weighting::state`] captures everything else that evolves (parameter values, loss
//! history, generator state) so `load_state(state())` restores the weighting exactly. The optimizer's
//! moments for the learnable parameters belong to the optimizer's own checkpoint. Imports only `train::mtl`.

pub mod dwa;
pub mod fixed;
pub mod gls;
pub mod gradnorm;
pub mod rlw;
pub mod uncertainty;

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The weighting a config names, with LibMTL's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum WeightingKind {
    Fixed {
        weights: Vec<f64>,
    },
    Uncertainty {},
    Dwa {
        #[serde(default = "dwa::default_temperature")]
        temperature: f64,
    },
    Gradnorm {
        #[serde(default = "gradnorm::default_alpha")]
        alpha: f64,
    },
    Gls {},
    Rlw {
        #[serde(default)]
        seed: u64,
    },
}

/// What the joint step does with this step's losses.
pub enum Combined {
    /// Backward `loss` (shared parameters, heads and the weighting's parameters alike). `weights` are
    /// the detached effective loss weights d loss / d L_i, for logging.
    Loss { loss: Tensor, weights: Tensor },
    /// The shared parameters' gradient is `sum_i weights_i J_i`; each head keeps its own task's
    /// unweighted gradient from the per-task backward passes that built J; backward `aux` (it touches
    /// only the weighting's parameters).
    Gradient { weights: Tensor, aux: Tensor },
}

/// Everything of a weighting that evolves during training, for a training checkpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightingState {
    pub method: String,
    /// learnable parameters by name (float32 values, exact in float64)
    #[serde(default)]
    pub params: BTreeMap<String, Vec<f64>>,
    /// per-epoch mean unweighted task losses, oldest first
    #[serde(default)]
    pub loss_history: Vec<Vec<f64>>,
    /// the random generator's state (RLW)
    #[serde(default)]
    pub rng_state: Option<u64>,
}

pub trait Weighting {
    /// Whether the next `combine` needs the Jacobian of the shared parameters.
    fn needs_jacobian(&self) -> bool {
        false
    }
    /// `losses`: the m task losses (1-D, attached to the graph); `jacobian`: m x n when needed.
    fn combine(&mut self, losses: &Tensor, jacobian: Option<&Tensor>) -> Result<Combined>;
    /// The epoch's mean unweighted task losses (one per task).
    fn end_epoch(&mut self, _mean_losses: &[f64]) -> Result<()> {
        Ok(())
    }
    /// The learnable parameters the caller's optimizer updates, by name.
    fn parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    fn state(&self) -> Result<WeightingState>;
    fn load_state(&mut self, state: &WeightingState) -> Result<()>;
}

/// Builds the weighting of `kind` for `tasks` tasks, its parameters on `device`.
pub fn build(kind: &WeightingKind, tasks: usize, device: Device) -> Result<Box<dyn Weighting>> {
    if tasks == 0 {
        bail!("a weighting needs at least one task");
    }
    Ok(match kind {
        WeightingKind::Fixed { weights } => Box::new(fixed::Fixed::new(weights.clone(), tasks)?),
        WeightingKind::Uncertainty {} => Box::new(uncertainty::Uncertainty::new(tasks, device)),
        WeightingKind::Dwa { temperature } => Box::new(dwa::Dwa::new(*temperature, tasks)?),
        WeightingKind::Gradnorm { alpha } => Box::new(gradnorm::GradNorm::new(*alpha, tasks, device)?),
        WeightingKind::Gls {} => Box::new(gls::Gls::new(tasks)),
        WeightingKind::Rlw { seed } => Box::new(rlw::Rlw::new(*seed, tasks)),
    })
}

/// Checks the losses are a 1-D floating tensor of `tasks` entries.
pub fn check_losses(losses: &Tensor, tasks: usize) -> Result<()> {
    if losses.size() != [tasks as i64] || !crate::train::mtl::is_float(losses.kind()) {
        bail!(
            "expected {tasks} task losses as a 1-D floating tensor, got shape {:?} ({:?})",
            losses.size(),
            losses.kind()
        );
    }
    Ok(())
}

/// A constant weight vector on the losses' device and dtype.
pub fn weights_like(weights: &[f64], losses: &Tensor) -> Tensor {
    Tensor::from_slice(weights)
        .to_kind(losses.kind())
        .to_device(losses.device())
}

/// `sum_i w_i L_i` with the detached weights, the shape LibMTL's `torch.mul(losses, w).sum()` has.
pub fn weighted_sum(losses: &Tensor, weights: Tensor) -> Combined {
    Combined::Loss {
        loss: (losses * &weights).sum(losses.kind()),
        weights,
    }
}

/// A float32 learnable leaf of `tasks` entries, all `init`.
pub fn new_param(tasks: usize, init: f64, device: Device) -> Tensor {
    Tensor::full([tasks as i64], init, (Kind::Float, device)).set_requires_grad(true)
}

/// A parameter's values, for a state.
pub fn param_values(p: &Tensor) -> Result<Vec<f64>> {
    Vec::<f64>::try_from(&p.detach().to_device(Device::Cpu).to_kind(Kind::Double)).context("reading a parameter")
}

/// Writes saved values into a parameter in place (the optimizer keeps holding the same tensor).
pub fn load_param(p: &mut Tensor, state: &WeightingState, name: &str) -> Result<()> {
    let values = state
        .params
        .get(name)
        .with_context(|| format!("the {} weighting state has no `{name}`", state.method))?;
    if values.len() as i64 != p.size()[0] {
        bail!(
            "the saved `{name}` has {} entries, this run has {} tasks",
            values.len(),
            p.size()[0]
        );
    }
    let _guard = tch::no_grad_guard();
    let src = Tensor::from_slice(values).to_kind(p.kind()).to_device(p.device());
    p.copy_(&src);
    Ok(())
}

/// Checks a state is for `method`.
pub fn check_method(state: &WeightingState, method: &str) -> Result<()> {
    if state.method != method {
        bail!("cannot load a `{}` weighting state into `{method}`", state.method);
    }
    Ok(())
}

/// Checks and stores one epoch's mean losses.
pub fn push_history(history: &mut Vec<Vec<f64>>, mean_losses: &[f64], tasks: usize) -> Result<()> {
    if mean_losses.len() != tasks || mean_losses.iter().any(|x| !x.is_finite()) {
        bail!("expected {tasks} finite mean task losses, got {mean_losses:?}");
    }
    history.push(mean_losses.to_vec());
    Ok(())
}

/// Checks a saved loss history has one entry per task per epoch.
pub fn check_history(history: &[Vec<f64>], tasks: usize) -> Result<()> {
    if history.iter().any(|h| h.len() != tasks) {
        bail!("the saved loss history does not have {tasks} losses per epoch");
    }
    Ok(())
}
