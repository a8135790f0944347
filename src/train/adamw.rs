//! AdamW owned by the harness, computed as `torch.optim.AdamW` computes it on its single-tensor path
//! (decoupled weight decay, `lerp` of the first moment, bias corrections), so that its state (moments and
//! step counts) is ordinary tensors a checkpoint can hold and a resumed run can load.
//!
//! A parameter may carry a learning-rate scale (layer-wise decay, `train.layer_lr_decay`): its learning rate is
//! `(base_lr * factor) * scale`, as MAE's `lr_scale` per parameter group; a scale of 1 changes nothing, bit for
//! bit. Scales are derived from the config, not stored: the checkpointed state is the same with or without.

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
    /// this parameter's learning rate is its set's times this (1: the set's)
    pub lr_scale: f64,
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
                        lr_scale: 1.0,
                    })
                    .collect(),
            })
            .collect();
        AdamW { cfg, sets }
    }

    /// Sets each parameter's learning-rate scale to `scale(name)`.
    pub fn set_lr_scales(&mut self, scale: impl Fn(&str) -> f64) {
        for s in self.sets.iter_mut().flat_map(|s| &mut s.slots) {
            s.lr_scale = scale(&s.name);
        }
    }

    pub fn params(&self) -> Vec<Tensor> {
        self.sets
            .iter()
            .flat_map(|s| s.slots.iter().map(|p| p.param.shallow_clone()))
            .collect()
    }

    /// One update with learning rate `base_lr * factor` per set (times each parameter's `lr_scale`). `grads` follow `params()` order; an
    /// undefined gradient (a parameter the loss did not reach) skips its parameter, as torch skips
    /// `p.grad is None` after `zero_grad()`.
    pub fn step(&mut self, grads: &[Tensor], factor: f64) {
        let c = self.cfg;
        let mut grads = grads.iter();
        tch::no_grad(|| {
            for set in &mut self.sets {
                let set_lr = set.base_lr * factor;
                for s in &mut set.slots {
                    let grad = grads.next().expect("one gradient per parameter");
                    if !grad.defined() {
                        continue;
                    }
                    let lr = set_lr * s.lr_scale;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_lr_scale_scales_the_update_as_the_direct_formula_says() {
        let g = Tensor::from_slice(&[0.5f32, -2.0, 1e-3]);
        let p0 = Tensor::from_slice(&[1.0f32, 0.25, -0.5]);
        let cfg = AdamWConfig::default();
        let mut opt = AdamW::new(cfg, vec![(0.1, vec![("a".into(), p0.copy()), ("b".into(), p0.copy())])]);
        opt.set_lr_scales(|n| if n == "b" { 0.25 } else { 1.0 });
        opt.step(&[g.copy(), g.copy()], 0.5);
        for (slot, scale) in opt.sets[0].slots.iter().zip([1.0, 0.25]) {
            // first step: m̂ = g, v̂ = g², so p1 = p0·(1 − lr·wd) − lr·g / (|g| + eps), lr = 0.1·0.5·scale
            let lr = 0.1 * 0.5 * scale;
            let want = &p0 * (1.0 - lr * cfg.weight_decay) - (&g * lr) / (g.abs() + cfg.eps);
            let diff = (&slot.param - want).abs().max().double_value(&[]);
            assert!(diff < 1e-7, "{}: {diff}", slot.name);
        }
        let (a, b) = (&opt.sets[0].slots[0].param, &opt.sets[0].slots[1].param);
        let ratio = ((b - &p0).abs().sum(tch::Kind::Double) / (a - &p0).abs().sum(tch::Kind::Double)).double_value(&[]);
        assert!((ratio - 0.25).abs() < 1e-5, "{ratio}");
    }
}
