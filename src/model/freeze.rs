//! Freezing scenarios: which parameter groups train, applied with `set_requires_grad`, and the proof
//! afterwards that frozen tensors did not move.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use crate::config::{ExperimentConfig, FrozenTaskLoss, Scenario};
use crate::model::group::{Group, ParamGroup};

/// Trainable or not, for every group of one model. Asking about a group the model does not have is an
/// error: a typo must never read as "frozen".
#[derive(Debug, Clone)]
pub struct FreezePlan {
    trainable: BTreeMap<Group, bool>,
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
        let trainable = groups
            .iter()
            .map(|g| (g.group.clone(), decide(&g.group, scenario, top, num_layers)))
            .collect();
        let ignored_tasks = match scenario {
            Scenario::Head(t) if cfg.freeze.frozen_task_loss == FrozenTaskLoss::Ignore => vec![t.clone()],
            _ => Vec::new(),
        };
        Ok(FreezePlan {
            trainable,
            ignored_tasks,
        })
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

    /// Any encoder group trains (then the encoder runs in train mode with a graph).
    pub fn encoder_trains(&self) -> bool {
        self.trainable.iter().any(|(g, on)| *on && !g.is_head())
    }

    pub fn anything_trains(&self) -> bool {
        self.trainable.values().any(|on| *on)
    }

    /// The groups of `groups` that train (or, with `false`, that are frozen).
    pub fn select<'a>(&self, groups: &'a [ParamGroup], trainable: bool) -> Result<Vec<&'a ParamGroup>> {
        let mut out = Vec::new();
        for g in groups {
            if self.trains(&g.group)? == trainable {
                out.push(g);
            }
        }
        Ok(out)
    }

    pub fn apply(&self, groups: &[ParamGroup]) -> Result<()> {
        for g in groups {
            let on = self.trains(&g.group)?;
            for (_, t) in &g.vars {
                let _ = t.set_requires_grad(on);
            }
        }
        Ok(())
    }
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
    pub(crate) fn take<'a>(groups: impl IntoIterator<Item = &'a ParamGroup>) -> Self {
        Snapshot(
            groups
                .into_iter()
                .flat_map(|g| g.vars.iter().map(|(n, t)| (n.clone(), t.detach().copy())))
                .collect(),
        )
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
}
