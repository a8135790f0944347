//! LoRA (low-rank adaptation) on rust-bert's closed Linear layers, numerically equal to PEFT's `LoraModel`.
//!
//! rust-bert's layers cannot be wrapped, so each adapted Linear's weight variable in the encoder's VarStore
//! holds the effective weight `W = W0 + s·B·A` (`apply()`, no graph), and the variable is a gradient probe:
//! backward computes `dW`, from which `dA = s·Bᵀ·dW` and `dB = s·dW·Aᵀ` follow exactly (the chain rule
//! through `W`; exact because dropout is 0, the only value accepted). `W0` is a frozen copy.
//!
//! Invariants:
//! - after `attach`, `load` and after every optimizer step followed by `apply()`, each target variable equals
//!   `W0 + s·B·A`; `apply()` must not run between a forward pass and its backward (torch's version check
//!   would reject the backward);
//! - the probe variables require grad but are never optimizer parameters: only A and B train (`trainable`);
//!   every other encoder variable, the adapted layers' biases included (PEFT's `bias="none"`), is frozen;
//! - targets are matched as PEFT matches `target_modules` (the module name equals the target or ends with
//!   `.target`) and `layers` as PEFT's `layers_to_transform` (the last `.<name>.<N>.` index in the name);
//! - tensor names (`<module>.lora_A.weight`, `<module>.lora_B.weight`) are PEFT's adapter file names without
//!   its `base_model.model.` prefix.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{bail, Context, Result};
use rand::distributions::{Distribution, Uniform};
use rand::SeedableRng;
use tch::{nn, Device, Kind, Tensor};

use crate::encoder::Architecture;

pub use crate::config::LoraConfig;

/// PEFT's `TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING["bert"]` is `["query", "value"]`; PEFT has no
/// DistilBERT entry, so harness picks its equivalents, the query and value projections `q_lin`, `v_lin`.
pub fn default_targets(arch: Architecture) -> Vec<String> {
    let names: &[&str] = match arch {
        Architecture::Bert => &["query", "value"],
        Architecture::DistilBert => &["q_lin", "v_lin"],
    };
    names.iter().map(|s| s.to_string()).collect()
}

/// One adapted Linear layer.
pub struct LoraTarget {
    /// the module's VarStore name, e.g. `encoder.layer.3.attention.self.query`
    pub module: String,
    /// the VarStore variable `<module>.weight`: holds W0 + s·B·A and collects dW
    pub weight: Tensor,
    /// the frozen pretrained weight W0
    pub base: Tensor,
    /// r x in_features
    pub a: Tensor,
    /// out_features x r
    pub b: Tensor,
}

impl LoraTarget {
    pub fn in_features(&self) -> i64 {
        self.base.size()[1]
    }

    pub fn out_features(&self) -> i64 {
        self.base.size()[0]
    }
}

/// The adapters of one encoder.
pub struct LoraAdapters {
    pub config: LoraConfig,
    scaling: f64,
    targets: Vec<LoraTarget>,
}

/// The bound of `torch.nn.init.kaiming_uniform_(w, a=sqrt(5))` for a weight with `fan_in` inputs:
/// gain = sqrt(2 / (1 + a²)) = sqrt(1/3), bound = sqrt(3)·gain / sqrt(fan_in) = 1 / sqrt(fan_in).
pub fn a_init_bound(fan_in: i64) -> f64 {
    let a2 = 5.0f64;
    let gain = (2.0 / (1.0 + a2)).sqrt();
    3f64.sqrt() * gain / (fan_in as f64).sqrt()
}

/// A Linear module of the VarStore: `<m>.weight` 2-D and `<m>.bias` of its output size (embeddings have no
/// bias, LayerNorm's weight is 1-D).
struct Linear {
    name: String,
    weight: Tensor,
    bias: Tensor,
}

fn linears(vars: &HashMap<String, Tensor>) -> Vec<Linear> {
    let mut out: Vec<Linear> = vars
        .iter()
        .filter_map(|(n, w)| {
            let m = n.strip_suffix(".weight")?;
            let bias = vars.get(&format!("{m}.bias"))?;
            let ok = w.dim() == 2 && bias.dim() == 1 && bias.size()[0] == w.size()[0];
            ok.then(|| Linear {
                name: m.to_string(),
                weight: w.shallow_clone(),
                bias: bias.shallow_clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// PEFT's `check_target_module_exists` for a list: equal, or a `.target` suffix.
pub fn matches_target(module: &str, target: &str) -> bool {
    module == target || module.ends_with(&format!(".{target}"))
}

/// PEFT's layer index: the digits of the last `.<name>.<N>.` in the module name (regex `.*\.[^.]*\.(\d+)\.`).
pub fn layer_index(module: &str) -> Option<usize> {
    let parts: Vec<&str> = module.split('.').collect();
    (2..parts.len().saturating_sub(1))
        .rev()
        .find(|&i| !parts[i].is_empty() && parts[i].bytes().all(|c| c.is_ascii_digit()))
        .and_then(|i| parts[i].parse().ok())
}

/// The short names a target can use (last component of each Linear), for error messages.
fn valid_names(lin: &[Linear]) -> String {
    let names: BTreeSet<&str> = lin
        .iter()
        .map(|l| l.name.rsplit('.').next().unwrap_or(&l.name))
        .collect();
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// The Linear layers the config selects, in name order; every target must match one and every layer exist.
fn select<'a>(lin: &'a [Linear], cfg: &LoraConfig, arch: Architecture) -> Result<Vec<&'a Linear>> {
    let targets = cfg.target.clone().unwrap_or_else(|| default_targets(arch));
    for t in &targets {
        if !lin.iter().any(|l| matches_target(&l.name, t)) {
            bail!(
                "freeze.lora.target `{t}` matches no Linear layer of this {arch:?} model; valid module names: {} \
                 (or a dotted suffix of a full name such as `{}`)",
                valid_names(lin),
                lin.first().map_or("", |l| l.name.as_str())
            );
        }
    }
    let present: BTreeSet<usize> = lin.iter().filter_map(|l| layer_index(&l.name)).collect();
    for n in cfg.layers.iter().flatten() {
        if !present.contains(n) {
            let range = match (present.first(), present.last()) {
                (Some(lo), Some(hi)) => format!("{lo}..={hi}"),
                _ => "none".into(),
            };
            bail!("freeze.lora.layers: layer {n} is out of range: this model has layers {range}");
        }
    }
    let chosen: Vec<&Linear> = lin
        .iter()
        .filter(|l| targets.iter().any(|t| matches_target(&l.name, t)))
        .filter(|l| match &cfg.layers {
            None => true,
            Some(ls) => layer_index(&l.name).is_some_and(|n| ls.contains(&n)),
        })
        .collect();
    if chosen.is_empty() {
        bail!(
            "freeze.lora.target {targets:?} with lora.layers {:?} selects no layer",
            cfg.layers
        );
    }
    Ok(chosen)
}

/// A (r x in) from U(-1/sqrt(in), 1/sqrt(in)) as PEFT's kaiming_uniform_(a=sqrt(5)), drawn from a
/// seeded generator of its own so the torch generator (and so what is drawn after) is left alone.
fn init_a(rng: &mut rand::rngs::StdRng, r: i64, fan_in: i64, like: &Tensor) -> Tensor {
    let bound = a_init_bound(fan_in) as f32;
    let dist = Uniform::new(-bound, bound);
    let values: Vec<f32> = (0..r * fan_in).map(|_| dist.sample(rng)).collect();
    Tensor::from_slice(&values)
        .reshape([r, fan_in])
        .to_device(like.device())
        .to_kind(like.kind())
}

impl LoraAdapters {
    /// Finds the target Linear weights of `vs`, keeps W0, creates A (kaiming-uniform) and B (zeros), freezes
    /// every variable of `vs` and makes the target weights gradient probes.
    pub fn attach(vs: &nn::VarStore, arch: Architecture, config: &LoraConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let vars = vs.variables();
        let lin = linears(&vars);
        let chosen = select(&lin, config, arch)?;
        for l in &chosen {
            let (out, inp) = (l.weight.size()[0], l.weight.size()[1]);
            if config.r > out.min(inp) {
                bail!(
                    "freeze.lora.r is {} but `{}` is {out} x {inp}: r must be at most min(in, out) = {}",
                    config.r,
                    l.name,
                    out.min(inp)
                );
            }
        }
        for v in vars.values() {
            let _ = v.set_requires_grad(false);
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let targets = chosen
            .into_iter()
            .map(|l| {
                let _ = l.bias.set_requires_grad(false);
                let base = l.weight.detach().copy();
                let a = init_a(&mut rng, config.r, base.size()[1], &base).set_requires_grad(true);
                let b = base.new_zeros([base.size()[0], config.r], (base.kind(), base.device()));
                LoraTarget {
                    module: l.name.clone(),
                    weight: l.weight.shallow_clone().set_requires_grad(true),
                    base,
                    a,
                    b: b.set_requires_grad(true),
                }
            })
            .collect();
        let lora = LoraAdapters {
            config: config.clone(),
            scaling: config.scaling(),
            targets,
        };
        lora.apply();
        Ok(lora)
    }

    pub fn targets(&self) -> &[LoraTarget] {
        &self.targets
    }

    pub fn scaling(&self) -> f64 {
        self.scaling
    }

    fn delta(&self, t: &LoraTarget) -> Tensor {
        t.b.detach().matmul(&t.a.detach()) * self.scaling
    }

    /// Writes W0 + s·B·A into every target variable. Call after each optimizer step (and after `load`).
    pub fn apply(&self) {
        tch::no_grad(|| {
            for t in &self.targets {
                let mut w = t.weight.shallow_clone();
                w.copy_(&(&t.base + self.delta(t)));
            }
        });
    }

    /// Writes W0 back (the model without its adapters).
    pub fn restore_base(&self) {
        tch::no_grad(|| {
            for t in &self.targets {
                let mut w = t.weight.shallow_clone();
                w.copy_(&t.base);
            }
        });
    }

    /// The target weight variables, in `targets()` order: the inputs to pass to `Tensor::run_backward`.
    pub fn probes(&self) -> Vec<Tensor> {
        self.targets.iter().map(|t| t.weight.shallow_clone()).collect()
    }

    /// A and B's gradients from the probes' (`probes()` order), in `trainable()` order: dA = s·Bᵀ·dW,
    /// dB = s·dW·Aᵀ. An undefined dW (a layer the loss did not reach) gives undefined dA and dB.
    pub fn grads_from(&self, weight_grads: &[Tensor]) -> Result<Vec<Tensor>> {
        if weight_grads.len() != self.targets.len() {
            bail!(
                "{} weight gradients for {} LoRA targets",
                weight_grads.len(),
                self.targets.len()
            );
        }
        Ok(tch::no_grad(|| {
            self.targets
                .iter()
                .zip(weight_grads)
                .flat_map(|(t, dw)| {
                    if !dw.defined() {
                        return [Tensor::new(), Tensor::new()];
                    }
                    let da = t.b.detach().transpose(0, 1).matmul(dw) * self.scaling;
                    let db = dw.matmul(&t.a.detach().transpose(0, 1)) * self.scaling;
                    [da, db]
                })
                .collect()
        }))
    }

    /// For a loop that calls `.backward()`: turns each probe's `.grad()` into A and B's `.grad()`
    /// (accumulating, as autograd does) and zeroes the probe's gradient.
    pub fn accumulate_grads(&self) -> Result<()> {
        let dws: Vec<Tensor> = self.targets.iter().map(|t| t.weight.grad()).collect();
        let grads = self.grads_from(&dws)?;
        let params = self.trainable();
        // d/dP sum(P * G) = G exactly: one backward adds each G into its parameter's .grad
        let mut surrogate: Option<Tensor> = None;
        for ((_, p), g) in params.iter().zip(&grads) {
            if g.defined() {
                let term = (p * g).sum(Kind::Float);
                surrogate = Some(match surrogate {
                    None => term,
                    Some(s) => s + term,
                });
            }
        }
        if let Some(s) = surrogate {
            s.f_backward().context("LoRA gradients")?;
        }
        for t in &self.targets {
            let mut w = t.weight.shallow_clone();
            w.zero_grad();
        }
        Ok(())
    }

    /// A and B of every target, named `<module>.lora_A.weight` / `<module>.lora_B.weight`: the optimizer's
    /// parameters.
    pub fn trainable(&self) -> Vec<(String, Tensor)> {
        self.targets
            .iter()
            .flat_map(|t| {
                [
                    (format!("{}.lora_A.weight", t.module), t.a.shallow_clone()),
                    (format!("{}.lora_B.weight", t.module), t.b.shallow_clone()),
                ]
            })
            .collect()
    }

    /// The number of trained values, r·(in + out) per target (PEFT's trainable count without heads).
    pub fn trainable_parameters(&self) -> i64 {
        self.targets
            .iter()
            .map(|t| self.config.r * (t.in_features() + t.out_features()))
            .sum()
    }

    /// CPU copies of A and B for a checkpoint, under `trainable()`'s names.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.trainable()
            .into_iter()
            .map(|(n, t)| (n, t.detach().to_device(Device::Cpu).copy()))
            .collect()
    }

    /// Restores A and B exactly from `named_tensors()`'s names, then applies them. Every adapter tensor must
    /// be present with its shape; a `lora_A`/`lora_B` tensor of a module not adapted here is an error; other
    /// names are ignored (a checkpoint may hold more).
    pub fn load(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let ours: BTreeMap<String, Tensor> = self.trainable().into_iter().collect();
        for name in tensors.keys() {
            let is_lora = name.ends_with(".lora_A.weight") || name.ends_with(".lora_B.weight");
            if is_lora && !ours.contains_key(name) {
                bail!("LoRA tensor `{name}` is for a module this configuration does not adapt");
            }
        }
        tch::no_grad(|| -> Result<()> {
            for (name, dst) in &ours {
                let src = tensors
                    .get(name)
                    .with_context(|| format!("LoRA tensor `{name}` is missing"))?;
                if src.size() != dst.size() {
                    bail!(
                        "LoRA tensor `{name}` has shape {:?}, expected {:?}",
                        src.size(),
                        dst.size()
                    );
                }
                dst.shallow_clone().copy_(src);
            }
            Ok(())
        })?;
        self.apply();
        Ok(())
    }

    /// The final weights for export, `<module>.weight` = W0 + s·B·A on the CPU (what the variables hold
    /// after `apply()`); every other variable of the model is unchanged by LoRA.
    pub fn merged(&self) -> Vec<(String, Tensor)> {
        tch::no_grad(|| {
            self.targets
                .iter()
                .map(|t| {
                    let w = (&t.base + self.delta(t)).to_device(Device::Cpu);
                    (format!("{}.weight", t.module), w)
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VarStore named like rust-bert's BERT: embeddings, `layers` layers of q/k/v/dense, a pooler.
    fn bert_like(layers: usize, h: i64) -> nn::VarStore {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let _ = nn::embedding(&root / "embeddings" / "word_embeddings", 50, h, Default::default());
        let _ = nn::layer_norm(&root / "embeddings" / "LayerNorm", vec![h], Default::default());
        for i in 0..layers {
            let l = &root / "encoder" / "layer" / i;
            for m in ["query", "key", "value"] {
                let _ = nn::linear(&l / "attention" / "self" / m, h, h, Default::default());
            }
            let _ = nn::linear(&l / "attention" / "output" / "dense", h, h, Default::default());
            let _ = nn::linear(&l / "intermediate" / "dense", h, 2 * h, Default::default());
            let _ = nn::linear(&l / "output" / "dense", 2 * h, h, Default::default());
        }
        let _ = nn::linear(&root / "pooler" / "dense", h, h, Default::default());
        vs
    }

    fn cfg(f: impl FnOnce(&mut LoraConfig)) -> LoraConfig {
        let mut c = LoraConfig::default();
        f(&mut c);
        c
    }

    fn err(vs: &nn::VarStore, c: &LoraConfig) -> String {
        match LoraAdapters::attach(vs, Architecture::Bert, c, 0) {
            Ok(_) => panic!("{c:?} was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn peft_name_matching() {
        assert!(matches_target("encoder.layer.3.attention.self.query", "query"));
        assert!(matches_target("encoder.layer.3.attention.self.query", "self.query"));
        assert!(!matches_target("encoder.layer.3.attention.self.query", "uery"));
        assert_eq!(layer_index("encoder.layer.3.attention.self.query"), Some(3));
        assert_eq!(layer_index("distilbert.transformer.layer.12.ffn.lin1"), Some(12));
        assert_eq!(layer_index("pooler.dense"), None);
        // the regex needs `.<name>.<N>.`: a leading index does not count
        assert_eq!(layer_index("3.query.x"), None);
    }

    #[test]
    fn default_config_is_peft_default() {
        let c = LoraConfig::default();
        assert_eq!((c.r, c.alpha, c.dropout, c.use_rslora), (8, 8.0, 0.0, false));
        let parsed: LoraConfig = serde_yaml::from_str("r: 4\nalpha: 16\ntarget: [query]\n").unwrap();
        assert_eq!((parsed.r, parsed.alpha, parsed.scaling()), (4, 16.0, 4.0));
        assert!(serde_yaml::from_str::<LoraConfig>("rank: 4\n").is_err());
        assert_eq!(cfg(|c| c.use_rslora = true).scaling(), 8.0 / 8f64.sqrt());
        assert_eq!(default_targets(Architecture::DistilBert), ["q_lin", "v_lin"]);
    }

    #[test]
    fn bad_input_names_key_and_valid_values() {
        let vs = bert_like(2, 16);
        let e = err(&vs, &cfg(|c| c.r = 0));
        assert!(e.contains("lora.r is 0") && e.contains("positive"), "{e}");
        let e = err(&vs, &cfg(|c| c.r = 17));
        assert!(e.contains("lora.r is 17") && e.contains("min(in, out) = 16"), "{e}");
        let e = err(&vs, &cfg(|c| c.alpha = 0.0));
        assert!(e.contains("lora.alpha is 0"), "{e}");
        let e = err(&vs, &cfg(|c| c.alpha = -1.0));
        assert!(e.contains("lora.alpha is -1"), "{e}");
        let e = err(&vs, &cfg(|c| c.dropout = 0.1));
        assert!(e.contains("lora.dropout is 0.1"), "{e}");
        let e = err(&vs, &cfg(|c| c.target = Some(vec!["q_lin".into()])));
        assert!(
            e.contains("freeze.lora.target `q_lin`") && e.contains("dense, key, query, value"),
            "{e}"
        );
        // an embedding is not a Linear layer
        let e = err(&vs, &cfg(|c| c.target = Some(vec!["word_embeddings".into()])));
        assert!(e.contains("`word_embeddings` matches no Linear"), "{e}");
        let e = err(&vs, &cfg(|c| c.layers = Some(vec![0, 2])));
        assert!(e.contains("freeze.lora.layers: layer 2") && e.contains("0..=1"), "{e}");
        let e = err(&vs, &cfg(|c| c.target = Some(vec![])));
        assert!(e.contains("lora.target is empty"), "{e}");
    }

    #[test]
    fn attach_selects_freezes_and_starts_at_w0() {
        let vs = bert_like(3, 16);
        let before: HashMap<String, Tensor> = vs.variables().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let c = cfg(|c| {
            c.target = Some(vec!["query".into(), "dense".into()]);
            c.layers = Some(vec![1]);
        });
        let lora = LoraAdapters::attach(&vs, Architecture::Bert, &c, 3).unwrap();
        let names: Vec<&str> = lora.targets().iter().map(|t| t.module.as_str()).collect();
        // with layers given, the pooler (no layer index) is left out, as PEFT leaves it
        assert_eq!(
            names,
            [
                "encoder.layer.1.attention.output.dense",
                "encoder.layer.1.attention.self.query",
                "encoder.layer.1.intermediate.dense",
                "encoder.layer.1.output.dense"
            ]
        );
        for (n, v) in vs.variables() {
            let probe = names.iter().any(|m| n == format!("{m}.weight"));
            assert_eq!(v.requires_grad(), probe, "{n}");
            assert!(v.equal(&before[&n]), "{n} changed by attach (B = 0)");
        }
        assert_eq!(lora.trainable_parameters(), 8 * (16 + 16) * 2 + 8 * (16 + 32) * 2);
        for t in lora.targets() {
            assert_eq!(t.b.abs().max().double_value(&[]), 0.0);
            let bound = a_init_bound(t.in_features());
            let m = t.a.abs().max().double_value(&[]);
            assert!(
                m <= bound && m > 0.8 * bound,
                "{}: max |A| {m}, bound {bound}",
                t.module
            );
        }
        // the same seed draws the same A; the torch generator is not used
        let again = LoraAdapters::attach(&bert_like(3, 16), Architecture::Bert, &c, 3).unwrap();
        assert!(again.targets()[0].a.equal(&lora.targets()[0].a));
    }

    #[test]
    fn load_apply_merge_and_both_gradient_paths() {
        let vs = bert_like(1, 8);
        let lora = LoraAdapters::attach(&vs, Architecture::Bert, &cfg(|c| c.r = 2), 0).unwrap();
        let mut saved: HashMap<String, Tensor> = lora.named_tensors().into_iter().collect();
        for (n, t) in saved.iter_mut() {
            if n.ends_with("lora_B.weight") {
                *t = Tensor::randn(t.size(), (Kind::Float, Device::Cpu));
            }
        }
        lora.load(&saved).unwrap();
        let t = &lora.targets()[0];
        let want = &t.base + t.b.detach().matmul(&t.a.detach()) * lora.scaling();
        assert!(t.weight.allclose(&want, 0.0, 0.0, false));
        assert!(lora.merged()[0].1.equal(&t.weight.detach()));
        // a loss through the probes: grads_from and accumulate_grads agree, probes end with zero grad
        let x = Tensor::randn([3, 8], (Kind::Float, Device::Cpu));
        let loss = || {
            lora.probes()
                .iter()
                .map(|w| x.matmul(&w.tr()).pow_tensor_scalar(2).sum(Kind::Float))
                .sum::<Tensor>()
        };
        let dw = Tensor::run_backward(&[loss()], &lora.probes(), false, false);
        let direct = lora.grads_from(&dw).unwrap();
        loss().backward();
        lora.accumulate_grads().unwrap();
        for ((n, p), g) in lora.trainable().iter().zip(&direct) {
            assert!(p.grad().allclose(g, 1e-6, 1e-6, false), "{n}");
        }
        assert_eq!(lora.targets()[0].weight.grad().abs().max().double_value(&[]), 0.0);
        let mut wrong: HashMap<String, Tensor> = saved.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        wrong.insert(
            "encoder.layer.0.attention.self.key.lora_A.weight".into(),
            Tensor::zeros([2, 8], (Kind::Float, Device::Cpu)),
        );
        assert!(format!("{:#}", lora.load(&wrong).unwrap_err()).contains("does not adapt"));
        saved.remove("encoder.layer.0.attention.self.query.lora_B.weight");
        assert!(format!("{:#}", lora.load(&saved).unwrap_err()).contains("is missing"));
    }
}
