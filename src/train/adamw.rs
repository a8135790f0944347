//! AdamW owned by the harness, computed as `torch.optim.AdamW` computes it on its single-tensor path
//! (decoupled weight decay, `lerp` of the first moment, bias corrections), so that its state (moments and
//! step counts) is ordinary tensors a checkpoint can hold and a resumed run can load.
//!
//! A parameter may carry a learning-rate scale (layer-wise decay, `train.layer_lr_decay`): its learning rate is
//! `(base_lr * factor) * scale`, as MAE's `lr_scale` per parameter group; a scale of 1 changes nothing, bit for
//! bit. Scales are derived from the config, not stored: the checkpointed state is the same with or without.
//!
//! The update's two intermediate tensors are written into two scratch buffers the optimizer keeps (each the
//! size of its largest parameter; 2 x 45 MB for MiniLM), not allocated per tensor and step: on the CPU every
//! fresh allocation of the 11.7M-float word embeddings is page-faulted anew. Replayed in PyTorch on MiniLM's
//! tensors (a loaded machine), the five-temporary update took 0.64-0.89 s and this one 0.25-0.34 s
//! (docs/benchmarks.md, CoSENT). The values are the same ops in the same order, so the result is the same bit
//! for bit.

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
    /// two flat buffers for the update's intermediates, made at the first step (see the file's contract)
    scratch: Option<Scratch>,
}

/// Two flat buffers of one kind and device, at least as long as the largest parameter of that kind.
struct Scratch {
    a: Tensor,
    b: Tensor,
}

impl Scratch {
    /// Buffers for `slots`' parameters, of the first one's kind and device; None for no parameters.
    fn for_slots<'a>(mut slots: impl Iterator<Item = &'a Slot>) -> Option<Self> {
        let first = slots.next()?;
        let (kind, device) = (first.param.kind(), first.param.device());
        let len = std::iter::once(first)
            .chain(slots)
            .filter(|s| s.param.kind() == kind && s.param.device() == device)
            .map(|s| s.param.numel())
            .max()?;
        let make = || Tensor::empty([len as i64], (kind, device));
        Some(Scratch { a: make(), b: make() })
    }

    /// Views of both buffers shaped as `like`, when its kind and device are the buffers' and it fits.
    fn views(&self, like: &Tensor) -> Option<(Tensor, Tensor)> {
        let n = like.numel() as i64;
        let fits = like.kind() == self.a.kind() && like.device() == self.a.device() && n <= self.a.numel() as i64;
        let view = |t: &Tensor| t.narrow(0, 0, n).view(like.size().as_slice());
        fits.then(|| (view(&self.a), view(&self.b)))
    }
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
        AdamW {
            cfg,
            sets,
            scratch: None,
        }
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
        if self.scratch.is_none() {
            self.scratch = Scratch::for_slots(self.sets.iter().flat_map(|s| &s.slots));
        }
        let scratch = &self.scratch;
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
                    let bias1 = 1.0 - c.beta1.powi(s.step as i32);
                    let bias2_sqrt = (1.0 - c.beta2.powi(s.step as i32)).sqrt();
                    let (mut a, b) = match scratch.as_ref().and_then(|sc| sc.views(grad)) {
                        Some(views) => views,
                        None => (grad.empty_like(), grad.empty_like()),
                    };
                    // exp_avg_sq += (grad * (1 - beta2)) * grad
                    let _ = grad.mul_scalar_out(&a, 1.0 - c.beta2);
                    let _ = s.exp_avg_sq.addcmul_(&a, grad);
                    // denom = sqrt(exp_avg_sq) / bias2_sqrt + eps; param += (exp_avg * (-lr / bias1)) / denom
                    let _ = s.exp_avg_sq.sqrt_out(&a);
                    let _ = a.g_div_scalar_(bias2_sqrt);
                    let _ = a.g_add_scalar_(c.eps);
                    let _ = s.exp_avg.mul_scalar_out(&b, -lr / bias1);
                    let _ = s.param.addcdiv_(&b, &a);
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

    /// The scratch buffers are sized by the largest float parameter; a smaller one uses their front, one of
    /// another kind (here double) takes the allocating path. All three must land where the direct formula says,
    /// and the second step (which reuses the buffers) where the same optimizer without them would.
    #[test]
    fn scratch_views_and_the_fallback_give_the_same_update() {
        let big = Tensor::from_slice(&[0.5f32, -2.0, 1e-3, 4.0, -0.75, 3.0]).view([2, 3]);
        let small = Tensor::from_slice(&[1.0f32, -1.0]);
        let double = Tensor::from_slice(&[0.3f64, -0.2, 0.1]);
        let params = || {
            vec![
                ("big".to_string(), big.copy() * 0.1),
                ("small".to_string(), small.copy() * 0.2),
                ("double".to_string(), double.copy() * 0.3),
            ]
        };
        let grads = [big.copy(), small.copy(), double.copy()];
        let cfg = AdamWConfig::default();
        let mut opt = AdamW::new(cfg, vec![(0.1, params())]);
        opt.step(&grads, 1.0);
        for (slot, (p0, g)) in opt.sets[0]
            .slots
            .iter()
            .zip(params().into_iter().map(|p| p.1).zip(&grads))
        {
            let want = &p0 * (1.0 - 0.1 * cfg.weight_decay) - (g * 0.1) / (g.abs() + cfg.eps);
            let diff = (&slot.param - want).abs().max().double_value(&[]);
            assert!(diff < 1e-7, "{}: {diff}", slot.name);
        }
        assert_eq!(opt.scratch.as_ref().map(|s| s.a.size()), Some(vec![6]));
        // the second step against one with no scratch at all (every tensor allocating), bit for bit
        let mut plain = AdamW::new(cfg, vec![(0.1, params())]);
        plain.scratch = Some(Scratch {
            a: Tensor::empty([0], (tch::Kind::Int, tch::Device::Cpu)),
            b: Tensor::empty([0], (tch::Kind::Int, tch::Device::Cpu)),
        });
        plain.step(&grads, 1.0);
        opt.step(&grads, 0.5);
        plain.step(&grads, 0.5);
        for (a, b) in opt.sets[0].slots.iter().zip(&plain.sets[0].slots) {
            assert!(a.param.equal(&b.param), "{}", a.name);
            assert!(a.exp_avg_sq.equal(&b.exp_avg_sq), "{}", a.name);
        }
    }
}
