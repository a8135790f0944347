//! Freezing scenarios: which parameter groups train, applied with `set_requires_grad`, and the proof
//! afterwards that frozen tensors did not move.
//!
//! With `freeze.train` (globs over tensor names) the encoder's trainable tensors are exactly those a glob
//! matches, whatever the scenario says about the encoder; the heads still follow the scenario. A glob
//! matches a tensor when it matches the whole VarStore name or the part after any `.` in it (so `layer.5.*`
//! matches `encoder.layer.5.output.dense.bias`, `*.bias` every bias); `*` crosses dots. BERT's pooler is
//! never matched (it gets no gradient). A glob that matches no tensor is an error naming valid names.
//! A group then trains when any of its tensors does, and every question below is also asked per tensor.
//! With `freeze.lora` every encoder tensor is frozen and LoRA's A and B (`model::lora`) train instead. With
//! `freeze.gradual` the plan is what trains in some phase (the scenario's); `train::gradual` narrows it per epoch.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use crate::config::{ExperimentConfig, FrozenTaskLoss, Scenario};
use crate::model::group::{Group, ParamGroup};

/// Trainable or not, for every group of one model. Asking about a group the model does not have is an
/// error: a typo must never read as "frozen".
#[derive(Debug, Clone)]
pub struct FreezePlan {
    /// whether any tensor of the group trains
    trainable: BTreeMap<Group, bool>,
    /// with `freeze.train`: the encoder tensors that train, by name (None: whole groups decide)
    tensors: Option<BTreeSet<String>>,
    /// `freeze.lora`: every encoder tensor is frozen, and the adapters (`model::lora`) train
    lora: bool,
    /// tasks whose batches are not trained on (frozen head with frozen_task_loss: ignore)
    ignored_tasks: Vec<String>,
}

/// Whether `group` trains under `scenario`, with the top `top` of `num_layers` layers unfrozen.
fn decide(group: &Group, scenario: &Scenario, top: Option<usize>, num_layers: usize) -> bool {
    match group {
        Group::Head(task) => match scenario {
            Scenario::All => false,
            Scenario::Head(t) => t != task,
            Scenario::None | Scenario::Backbone => true,
        },
        // the sentence vector comes from pooling token states, so BERT's pooler gets no gradient;
        // freezing it keeps weight decay from shrinking it for nothing
        Group::Pooler => false,
        Group::Layer(n) if top.is_some() => *n + top.unwrap_or(0) >= num_layers,
        Group::Embeddings if top.is_some() => false,
        Group::Layer(_) | Group::Embeddings => matches!(scenario, Scenario::None | Scenario::Head(_)),
    }
}

impl FreezePlan {
    pub fn new(cfg: &ExperimentConfig, groups: &[ParamGroup], num_layers: usize) -> Result<Self> {
        let scenario = &cfg.freeze.scenario;
        let top = cfg.freeze.unfreeze_top_layers;
        if let Some(k) = top {
            if k == 0 || k > num_layers {
                bail!("freeze.unfreeze_top_layers is {k} but the encoder has {num_layers} layers");
            }
        }
        if let Some(g) = &cfg.freeze.gradual {
            if g.start_layers > num_layers {
                bail!(
                    "freeze.gradual.start_layers is {} but the encoder has {num_layers} layers",
                    g.start_layers
                );
            }
        }
        let lora = cfg.freeze.lora.is_some();
        let tensors = match cfg.freeze.train.as_slice() {
            _ if lora => Some(BTreeSet::new()),
            [] => None,
            globs => Some(glob_tensors(globs, groups)?),
        };
        let trainable = groups
            .iter()
            .map(|g| {
                let on = match &tensors {
                    Some(names) if !g.group.is_head() => g.vars.iter().any(|(n, _)| names.contains(n)),
                    _ => decide(&g.group, scenario, top, num_layers),
                };
                (g.group.clone(), on)
            })
            .collect();
        let ignored_tasks = match scenario {
            Scenario::Head(t) if cfg.freeze.frozen_task_loss == FrozenTaskLoss::Ignore => vec![t.clone()],
            _ => Vec::new(),
        };
        Ok(FreezePlan {
            trainable,
            tensors,
            lora,
            ignored_tasks,
        })
    }

    /// Whether the tensor `name` of `group` trains.
    pub fn tensor_trains(&self, group: &Group, name: &str) -> Result<bool> {
        let on = self.trains(group)?;
        Ok(match &self.tensors {
            Some(names) if !group.is_head() => names.contains(name),
            _ => on,
        })
    }

    /// The tensors of `g` that train (or, with `false`, that are frozen), in the group's order.
    pub(crate) fn vars(&self, g: &ParamGroup, trainable: bool) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (n, t) in &g.vars {
            if self.tensor_trains(&g.group, n)? == trainable {
                out.push((n.clone(), t.shallow_clone()));
            }
        }
        Ok(out)
    }

    /// The number of trainable parameters of `g`.
    pub fn trainable_numel(&self, g: &ParamGroup) -> Result<i64> {
        Ok(self.vars(g, true)?.iter().map(|(_, t)| t.numel() as i64).sum())
    }

    /// Whether `group` trains; an unknown group is an error.
    pub fn trains(&self, group: &Group) -> Result<bool> {
        self.trainable
            .get(group)
            .copied()
            .with_context(|| format!("parameter group `{group}` is not in the model"))
    }

    pub fn head_trains(&self, task: &str) -> Result<bool> {
        self.trains(&Group::Head(task.to_string()))
    }

    pub fn layer_trains(&self, n: usize) -> Result<bool> {
        self.trains(&Group::Layer(n))
    }

    /// Whether the task's batches are left out of training (its head frozen, `frozen_task_loss: ignore`).
    pub fn task_ignored(&self, task: &str) -> bool {
        self.ignored_tasks.iter().any(|t| t == task)
    }

    /// Any encoder group trains, or LoRA's adapters do (then the encoder runs in train mode with a graph).
    pub fn encoder_trains(&self) -> bool {
        self.lora || self.trainable.iter().any(|(g, on)| *on && !g.is_head())
    }

    /// LoRA's adapters train (`freeze.lora`); the encoder's own tensors are all frozen.
    pub fn lora(&self) -> bool {
        self.lora
    }

    pub fn anything_trains(&self) -> bool {
        self.lora || self.trainable.values().any(|on| *on)
    }

    /// Every tensor of `groups` that trains (or, with `false`, that is frozen), in model order.
    pub(crate) fn select_vars(&self, groups: &[ParamGroup], trainable: bool) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for g in groups {
            out.extend(self.vars(g, trainable)?);
        }
        Ok(out)
    }

    pub fn apply(&self, groups: &[ParamGroup]) -> Result<()> {
        for g in groups {
            for (n, t) in &g.vars {
                let _ = t.set_requires_grad(self.tensor_trains(&g.group, n)?);
            }
        }
        Ok(())
    }
}

/// Whether `glob` matches `name` or the part of it after any `.`.
pub(crate) fn glob_matches(glob: &glob::Pattern, name: &str) -> bool {
    glob.matches(name) || name.match_indices('.').any(|(i, _)| glob.matches(&name[i + 1..]))
}

/// The encoder tensors (the pooler aside) that some glob matches; a glob matching none is an error that
/// names a few valid tensor names.
fn glob_tensors(globs: &[String], groups: &[ParamGroup]) -> Result<BTreeSet<String>> {
    let names: Vec<&str> = groups
        .iter()
        .filter(|g| !g.group.is_head() && g.group != Group::Pooler)
        .flat_map(|g| g.vars.iter().map(|(n, _)| n.as_str()))
        .collect();
    let mut out = BTreeSet::new();
    for (i, g) in globs.iter().enumerate() {
        let pattern = glob::Pattern::new(g).with_context(|| format!("freeze.train.{i}: `{g}` is not a glob"))?;
        let hits: Vec<&str> = names.iter().copied().filter(|n| glob_matches(&pattern, n)).collect();
        if hits.is_empty() {
            bail!(
                "freeze.train.{i}: `{g}` matches no encoder tensor (the pooler never trains); tensor names look \
                 like {}",
                examples(&names)
            );
        }
        out.extend(hits.into_iter().map(str::to_string));
    }
    Ok(out)
}

/// A few tensor names, quoted: the first, a bias and a weight of the first layer, and the last.
fn examples(names: &[&str]) -> String {
    let layer = |suffix: &str| names.iter().find(|n| n.contains(".layer.0.") && n.ends_with(suffix));
    let mut picked: Vec<&str> = Vec::new();
    for n in [names.first(), layer(".bias"), layer(".weight"), names.last()]
        .into_iter()
        .flatten()
    {
        if !picked.contains(n) {
            picked.push(n);
        }
    }
    picked.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// Equal bits, not merely equal values (0.0 and -0.0 differ here).
fn bit_equal(a: &Tensor, b: &Tensor) -> bool {
    match a.kind() {
        Kind::Float => a.view_dtype(Kind::Int).equal(&b.view_dtype(Kind::Int)),
        _ => a.equal(b),
    }
}

/// Copies of tensors, to compare bit for bit later.
pub(crate) struct Snapshot(Vec<(String, Tensor)>);

impl Snapshot {
    pub(crate) fn take(vars: impl IntoIterator<Item = (String, Tensor)>) -> Self {
        Snapshot(vars.into_iter().map(|(n, t)| (n, t.detach().copy())).collect())
    }

    /// Names of the tensors that differ from the snapshot.
    pub(crate) fn changed(&self, groups: &[ParamGroup]) -> Vec<String> {
        let now: BTreeMap<&str, &Tensor> = groups
            .iter()
            .flat_map(|g| g.vars.iter().map(|(n, t)| (n.as_str(), t)))
            .collect();
        self.0
            .iter()
            .filter(|(n, old)| now.get(n.as_str()).is_none_or(|t| !bit_equal(t, old)))
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_layers_and_scenarios_decide_groups() {
        let head = |t: &str| Group::Head(t.into());
        let s = Scenario::Head("a".into());
        assert!(!decide(&head("a"), &s, None, 6) && decide(&head("b"), &s, None, 6));
        assert!(decide(&Group::Layer(0), &s, None, 6) && !decide(&Group::Pooler, &s, None, 6));
        assert!(!decide(&Group::Layer(0), &Scenario::Backbone, None, 6));
        let top2: Vec<bool> = (0..6)
            .map(|n| decide(&Group::Layer(n), &Scenario::None, Some(2), 6))
            .collect();
        assert_eq!(top2, [false, false, false, false, true, true]);
        assert!(!decide(&Group::Embeddings, &Scenario::None, Some(2), 6));
        assert!(!decide(&head("a"), &Scenario::All, None, 6));
    }

    #[test]
    fn globs_match_whole_names_or_dotted_suffixes() {
        let m = |g: &str, n: &str| glob_matches(&glob::Pattern::new(g).unwrap(), n);
        let q = "encoder.layer.5.attention.self.query.bias";
        assert!(m("*.bias", q) && m("layer.5.*", q) && m(q, q) && m("layer.?.attention.*", q));
        assert!(!m("*.weight", q) && !m("layer.1.*", q) && !m("ayer.5.*", q));
        assert!(!m("layer.1.*", "encoder.layer.11.output.dense.bias"));
        assert!(m("embeddings.LayerNorm.*", "embeddings.LayerNorm.weight"));
        assert!(!m("LayerNorm", "embeddings.LayerNorm.weight"));
    }
}
