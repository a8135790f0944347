//! AdamW owned by the harness, computed as `torch.optim.AdamW` computes it on its single-tensor path
//! (decoupled weight decay, `lerp` of the first moment, bias corrections), so that its state (moments and
//! step counts) is ordinary tensors a checkpoint can hold and a resumed run can load.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use tch::Tensor;

/// Hyper-parameters shared by every group; the learning rate is per group.
#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One parameter and its optimizer state.
pub struct Slot {
    pub name: String,
    pub param: Tensor,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
    /// optimizer steps this parameter has taken (torch keeps one per parameter: a step without a
    /// gradient does not count)
    pub step: i64,
}

/// Parameters that share a base learning rate (the encoder's, or the heads').
pub struct ParamSet {
    pub base_lr: f64,
    pub slots: Vec<Slot>,
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    pub sets: Vec<ParamSet>,
}

impl AdamW {
    /// `sets`: (base learning rate, named parameters). Moments start at zero, as in torch.
    pub fn new(cfg: AdamWConfig, sets: Vec<(f64, Vec<(String, Tensor)>)>) -> Self {
        let sets = sets
            .into_iter()
            .map(|(base_lr, params)| ParamSet {
                base_lr,
                slots: params
                    .into_iter()
                    .map(|(name, param)| Slot {
                        name,
                        exp_avg: param.zeros_like().detach(),
                        exp_avg_sq: param.zeros_like().detach(),
                        param,
                        step: 0,
                    })
                    .collect(),
            })
            .collect();
        AdamW { cfg, sets }
    }

    pub fn params(&self) -> Vec<Tensor> {
        self.sets
            .iter()
            .flat_map(|s| s.slots.iter().map(|p| p.param.shallow_clone()))
            .collect()
    }

    /// One update with learning rate `base_lr * factor` per set. `grads` follow `params()` order; an
    /// undefined gradient (a parameter the loss did not reach) skips its parameter, as torch skips
    /// `p.grad is None` after `zero_grad()`.
    pub fn step(&mut self, grads: &[Tensor], factor: f64) {
        let c = self.cfg;
        let mut grads = grads.iter();
        tch::no_grad(|| {
            for set in &mut self.sets {
                let lr = set.base_lr * factor;
                for s in &mut set.slots {
                    let grad = grads.next().expect("one gradient per parameter");
                    if !grad.defined() {
                        continue;
                    }
                    s.step += 1;
                    let _ = s.param.g_mul_scalar_(1.0 - lr * c.weight_decay);
                    let _ = s.exp_avg.lerp_(grad, 1.0 - c.beta1);
                    let _ = s.exp_avg_sq.g_mul_scalar_(c.beta2);
                    let _ = s.exp_avg_sq.addcmul_(&(grad * (1.0 - c.beta2)), grad);
                    let bias1 = 1.0 - c.beta1.powi(s.step as i32);
                    let bias2_sqrt = (1.0 - c.beta2.powi(s.step as i32)).sqrt();
                    let denom = (s.exp_avg_sq.sqrt() / bias2_sqrt) + c.eps;
                    let _ = s.param.addcdiv_(&(&s.exp_avg * (-lr / bias1)), &denom);
                }
            }
        });
    }

    /// The state as named tensors (`<name>.exp_avg`, `<name>.exp_avg_sq`) plus one step count per name.
    pub fn state(&self) -> (Vec<(String, Tensor)>, BTreeMap<String, i64>) {
        let mut tensors = Vec::new();
        let mut steps = BTreeMap::new();
        for s in self.sets.iter().flat_map(|s| &s.slots) {
            tensors.push((format!("{}.exp_avg", s.name), s.exp_avg.to_device(tch::Device::Cpu)));
            tensors.push((
                format!("{}.exp_avg_sq", s.name),
                s.exp_avg_sq.to_device(tch::Device::Cpu),
            ));
            steps.insert(s.name.clone(), s.step);
        }
        (tensors, steps)
    }

    /// Loads what `state` returned; every parameter must be present with its shape.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: &BTreeMap<String, i64>) -> Result<()> {
        for s in self.sets.iter_mut().flat_map(|s| &mut s.slots) {
            for (suffix, dst) in [("exp_avg", &mut s.exp_avg), ("exp_avg_sq", &mut s.exp_avg_sq)] {
                let key = format!("{}.{suffix}", s.name);
                let Some(t) = tensors.get(&key) else {
                    bail!("optimizer state `{key}` is missing")
                };
                if t.size() != dst.size() {
                    bail!(
                        "optimizer state `{key}` has shape {:?}, expected {:?}",
                        t.size(),
                        dst.size()
                    );
                }
                tch::no_grad(|| dst.copy_(t));
            }
            s.step = *steps
                .get(&s.name)
                .ok_or_else(|| anyhow::anyhow!("optimizer step count of `{}` is missing", s.name))?;
        }
        Ok(())
    }
}
