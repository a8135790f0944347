//! A joint step's losses under `train.mtl.weighting`: the loop's side of LibMTL's loss weightings
//! (`train::mtl::weighting` computes them). Each step hands the trained tasks' unweighted losses (task order)
//! to the weighting and gets back the model's gradients: one backward of the weighted loss (uncertainty, DWA,
//! GLS, RLW, GradNorm's first epoch), or for GradNorm after its first epoch one backward per task, the
//! encoder's gradient `sum_i w_i g_i` and each head its own task's unweighted gradient, as LibMTL's
//! `_backward_new_grads` leaves them.
//!
//! The weighting's own parameters (uncertainty's and GradNorm's `loss_scale`) are trained by their own AdamW
//! at `train.mtl.weighting_lr` (default `lr_heads`) under the run's schedule, without weight decay (LibMTL's
//! default optimizer has none, and decaying a log-variance pulls it to 0), and are not clipped with the
//! model. Everything that evolves (parameter values, their AdamW moments, loss history, generator) is a
//! [`WeightingCheckpoint`], so a resumed run continues exactly.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::config::TrainConfig;
use crate::record::WeightingSummary;
use crate::train::adamw::{AdamW, AdamWConfig};
use crate::train::joint::TaskJacobian;
use crate::train::mtl::weighting::{self, param_values, Combined, Weighting, WeightingKind, WeightingState};

/// A weighting's state in a training checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WeightingCheckpoint {
    pub state: WeightingState,
    /// AdamW's moments of each learnable parameter (float32 values, exact in float64) and its step count
    #[serde(default)]
    pub adam: BTreeMap<String, AdamSlot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdamSlot {
    pub exp_avg: Vec<f64>,
    pub exp_avg_sq: Vec<f64>,
    pub step: i64,
}

pub(crate) struct LossWeighting {
    method: Box<dyn Weighting>,
    name: String,
    /// the weighted tasks' indices among the run's tasks, in step-part order
    pub tasks: Vec<usize>,
    opt: AdamW,
    /// the gradients of `opt`'s parameters from the last step
    grads: Vec<Tensor>,
    /// the last step's effective loss weights (detached, on the device)
    last: Option<Tensor>,
}

impl LossWeighting {
    /// The weighting `cfg` names for the trained `tasks` (None: unset or `fixed`, the tasks' `loss_weight`s).
    /// RLW draws from the run's `seed`.
    pub(crate) fn build(cfg: &TrainConfig, tasks: Vec<usize>, seed: u64, device: Device) -> Result<Option<Self>> {
        let Some(name) = cfg.mtl.loss_weighting() else {
            return Ok(None);
        };
        let kind = match name {
            "uncertainty" => WeightingKind::Uncertainty {},
            "dwa" => WeightingKind::Dwa {
                temperature: cfg.mtl.dwa_temperature,
            },
            "gradnorm" => WeightingKind::Gradnorm {
                alpha: cfg.mtl.gradnorm_alpha,
            },
            "gls" => WeightingKind::Gls {},
            "rlw" => WeightingKind::Rlw { seed },
            other => bail!("train.mtl.weighting: unknown method `{other}`"),
        };
        let method = weighting::build(&kind, tasks.len(), device).context("train.mtl.weighting")?;
        let params = method
            .parameters()
            .into_iter()
            .map(|(n, t)| (format!("weighting.{n}"), t))
            .collect();
        let adam = AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        };
        let opt = AdamW::new(adam, vec![(cfg.mtl.weighting_lr.unwrap_or(cfg.lr_heads), params)]);
        Ok(Some(LossWeighting {
            method,
            name: name.to_string(),
            tasks,
            opt,
            grads: Vec::new(),
            last: None,
        }))
    }

    /// The gradients of the model's `params` (the first `shared` the encoder's) for this step's task `losses`
    /// (unweighted, one per weighted task); the weighting's own gradients are kept for [`Self::update`].
    pub(crate) fn grads(&mut self, losses: &[Tensor], params: &[Tensor], shared: usize) -> Result<Vec<Tensor>> {
        if losses.len() != self.tasks.len() {
            bail!(
                "train.mtl.weighting: {} task losses for {} tasks",
                losses.len(),
                self.tasks.len()
            );
        }
        let stacked = Tensor::stack(losses, 0);
        let own = self.opt.params();
        let (model, own_grads, weights) = if self.method.needs_jacobian() {
            let jac = TaskJacobian::new(losses, params, shared)?;
            let Combined::Gradient { weights, aux } = self.method.combine(&stacked, Some(&jac.rows))? else {
                bail!("train.mtl.weighting `{}`: expected a gradient combination", self.name);
            };
            let row = weights
                .to_kind(jac.rows.kind())
                .unsqueeze(0)
                .matmul(&jac.rows)
                .squeeze_dim(0);
            let own_grads = Tensor::run_backward(&[aux], &own, false, false);
            (jac.assemble(&row, params), own_grads, weights)
        } else {
            let Combined::Loss { loss, weights } = self.method.combine(&stacked, None)? else {
                bail!("train.mtl.weighting `{}`: expected a loss", self.name);
            };
            let all: Vec<Tensor> = params.iter().chain(&own).map(Tensor::shallow_clone).collect();
            let mut grads = Tensor::run_backward(&[loss], &all, false, false);
            let own_grads = grads.split_off(params.len());
            (grads, own_grads, weights)
        };
        self.grads = own_grads;
        self.last = Some(weights);
        Ok(model)
    }

    /// The weighting's AdamW step at the schedule's multiplier `factor` (a parameter no gradient reached,
    /// as GradNorm's in its first epoch, does not move).
    pub(crate) fn update(&mut self, factor: f64) {
        if !self.grads.is_empty() {
            self.opt.step(&std::mem::take(&mut self.grads), factor);
        }
    }

    /// The epoch's mean unweighted losses of the weighted tasks (DWA's and GradNorm's history).
    pub(crate) fn end_epoch(&mut self, mean_losses: &[f64]) -> Result<()> {
        self.method.end_epoch(mean_losses).context("train.mtl.weighting")
    }

    pub(crate) fn checkpoint(&self) -> Result<WeightingCheckpoint> {
        let mut adam = BTreeMap::new();
        for slot in self.opt.sets.iter().flat_map(|s| &s.slots) {
            let entry = AdamSlot {
                exp_avg: param_values(&slot.exp_avg)?,
                exp_avg_sq: param_values(&slot.exp_avg_sq)?,
                step: slot.step,
            };
            adam.insert(slot.name.clone(), entry);
        }
        Ok(WeightingCheckpoint {
            state: self.method.state()?,
            adam,
        })
    }

    /// Takes over a checkpoint's state (the run's config, hence the method and its tasks, are the same).
    pub(crate) fn restore(&mut self, saved: &WeightingCheckpoint) -> Result<()> {
        self.method
            .load_state(&saved.state)
            .context("the checkpoint's weighting state")?;
        let (mut tensors, mut steps) = (HashMap::new(), BTreeMap::new());
        for (name, slot) in &saved.adam {
            for (suffix, values) in [("exp_avg", &slot.exp_avg), ("exp_avg_sq", &slot.exp_avg_sq)] {
                tensors.insert(
                    format!("{name}.{suffix}"),
                    Tensor::from_slice(values).to_kind(Kind::Float),
                );
            }
            steps.insert(name.clone(), slot.step);
        }
        self.opt
            .load_state(&tensors, &steps)
            .context("the checkpoint's weighting optimizer state")
    }

    /// The method, its last effective weights by task name and its learnable parameters, for the summary.
    pub(crate) fn summary(&self, names: &[String]) -> Result<WeightingSummary> {
        let mut weights = BTreeMap::new();
        if let Some(w) = &self.last {
            for (t, v) in self.tasks.iter().zip(param_values(w)?) {
                weights.insert(names[*t].clone(), v);
            }
        }
        Ok(WeightingSummary {
            method: self.name.clone(),
            final_weights: weights,
            params: self.method.state()?.params,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two tasks sharing `w`, each with its own head `h_i`; the loss of task i is (h_i * (w . x_i))^2.
    fn setup() -> (Vec<Tensor>, Vec<Tensor>) {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 0.5]).set_requires_grad(true);
        let h0 = Tensor::from_slice(&[2.0f32]).set_requires_grad(true);
        let h1 = Tensor::from_slice(&[-1.0f32]).set_requires_grad(true);
        let x0 = Tensor::from_slice(&[1.0f32, 0.0, 1.0]);
        let x1 = Tensor::from_slice(&[0.0f32, 1.0, 3.0]);
        let l0 = (&h0 * (&w * &x0).sum(Kind::Float)).square().sum(Kind::Float);
        let l1 = (&h1 * (&w * &x1).sum(Kind::Float)).square().sum(Kind::Float);
        (vec![l0, l1], vec![w, h0, h1])
    }

    fn weighting(name: &str) -> LossWeighting {
        let mut cfg = TrainConfig::default();
        cfg.mtl.weighting = Some(name.into());
        LossWeighting::build(&cfg, vec![0, 1], 3, Device::Cpu).unwrap().unwrap()
    }

    fn close(a: &Tensor, b: &Tensor) -> bool {
        a.allclose(b, 1e-6, 1e-7, false)
    }

    #[test]
    fn uncertainty_backwards_kendalls_loss_into_the_model_and_its_log_variances() {
        let mut w = weighting("uncertainty");
        let (losses, params) = setup();
        let got = w.grads(&losses, &params, 1).unwrap();
        // LibMTL's UW: sum_i L_i / (2 exp(s_i)) + s_i / 2, s initialised to -0.5
        let (losses, params) = setup();
        let s = Tensor::full([2], -0.5, (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let total = (Tensor::stack(&losses, 0) / (s.exp() * 2.0) + &s / 2.0).sum(Kind::Float);
        let all: Vec<Tensor> = params.iter().chain([&s]).map(Tensor::shallow_clone).collect();
        let want = Tensor::run_backward(&[total], &all, false, false);
        for (g, e) in got.iter().zip(&want) {
            assert!(close(g, e), "{g:?} vs {e:?}");
        }
        assert!(close(&w.grads[0], &want[3]));
        let before = w.checkpoint().unwrap();
        w.update(1.0);
        let after = w.checkpoint().unwrap();
        assert_ne!(before.state.params, after.state.params, "the log-variances move");
        assert_eq!(after.adam["weighting.loss_scale"].step, 1);
    }

    #[test]
    fn gradnorm_after_its_first_epoch_weighs_the_encoder_gradient_and_keeps_the_heads_own() {
        let mut w = weighting("gradnorm");
        w.end_epoch(&[4.0, 2.0]).unwrap();
        let (losses, params) = setup();
        let got = w.grads(&losses, &params, 1).unwrap();
        let weights = w.last.as_ref().unwrap().shallow_clone();
        let (losses, params) = setup();
        let g0 = Tensor::run_backward(&[&losses[0]], &params, true, false);
        let g1 = Tensor::run_backward(&[&losses[1]], &params, false, false);
        let shared = &g0[0] * weights.double_value(&[0]) + &g1[0] * weights.double_value(&[1]);
        assert!(close(&got[0], &shared));
        assert!(close(&got[1], &g0[1]), "head 0 keeps its task's unweighted gradient");
        assert!(close(&got[2], &g1[2]), "head 1 keeps its task's unweighted gradient");
        assert!(w.grads[0].defined(), "the auxiliary loss reaches loss_scale");
    }

    #[test]
    fn a_checkpoint_restores_every_moving_part() {
        for name in ["uncertainty", "dwa", "gradnorm", "gls", "rlw"] {
            let mut a = weighting(name);
            for epoch in 0..3 {
                let (losses, params) = setup();
                a.grads(&losses, &params, 1).unwrap();
                a.update(1.0);
                a.end_epoch(&[3.0 - epoch as f64, 2.0]).unwrap();
            }
            let saved = a.checkpoint().unwrap();
            let mut b = weighting(name);
            b.restore(&saved).unwrap();
            assert_eq!(b.checkpoint().unwrap(), saved, "{name}");
            let (la, pa) = setup();
            let (lb, pb) = setup();
            let (ga, gb) = (a.grads(&la, &pa, 1).unwrap(), b.grads(&lb, &pb, 1).unwrap());
            assert!(
                ga.iter().zip(&gb).all(|(x, y)| x.equal(y)),
                "{name}: the next step differs"
            );
        }
    }
}
