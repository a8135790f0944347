//! Freezing scenarios: which parameter groups train, applied with `set_requires_grad`, and the proof
//! afterwards that frozen tensors did not move.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

use crate::config::{ExperimentConfig, FrozenTaskLoss, Scenario};
use crate::model::ParamGroup;

/// Trainable or not, for every group of the model.
#[derive(Debug, Clone)]
pub struct FreezePlan {
    pub trainable: BTreeMap<String, bool>,
    /// tasks whose batches are not trained on (frozen head with frozen_task_loss: ignore)
    pub ignored_tasks: Vec<String>,
}

impl FreezePlan {
    pub fn new(cfg: &ExperimentConfig, groups: &[ParamGroup], num_layers: i64) -> Result<Self> {
        let scenario = cfg.scenario()?;
        let top = cfg.freeze.unfreeze_top_layers;
        if let Some(k) = top {
            if k == 0 || k as i64 > num_layers {
                bail!("freeze.unfreeze_top_layers is {k} but the encoder has {num_layers} layers");
            }
        }
        let mut trainable = BTreeMap::new();
        let mut ignored_tasks = Vec::new();
        for g in groups {
            let on = if let Some(task) = g.name.strip_prefix("head:") {
                match &scenario {
                    Scenario::All => false,
                    Scenario::Head(t) => t != task,
                    Scenario::None | Scenario::Backbone => true,
                }
            } else if g.name == "pooler" {
                // the sentence vector comes from pooling token states, so BERT's pooler gets no gradient;
                // freezing it keeps weight decay from shrinking it for nothing
                false
            } else if let Some(k) = top {
                let first = num_layers - k as i64;
                g.name
                    .strip_prefix("layer.")
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| n >= first)
            } else {
                matches!(scenario, Scenario::None | Scenario::Head(_))
            };
            trainable.insert(g.name.clone(), on);
        }
        if let Scenario::Head(t) = &scenario {
            if cfg.freeze.frozen_task_loss == FrozenTaskLoss::Ignore {
                ignored_tasks.push(t.clone());
            }
        }
        Ok(FreezePlan {
            trainable,
            ignored_tasks,
        })
    }

    pub fn is_trainable(&self, group: &str) -> bool {
        self.trainable.get(group).copied().unwrap_or(false)
    }

    /// Any encoder group trains (then the encoder runs in train mode with a graph).
    pub fn encoder_trains(&self) -> bool {
        self.trainable.iter().any(|(g, on)| *on && !g.starts_with("head:"))
    }

    pub fn anything_trains(&self) -> bool {
        self.trainable.values().any(|on| *on)
    }

    pub fn apply(&self, groups: &[ParamGroup]) {
        for g in groups {
            let on = self.is_trainable(&g.name);
            for (_, t) in &g.vars {
                let _ = t.set_requires_grad(on);
            }
        }
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
pub struct Snapshot(Vec<(String, Tensor)>);

impl Snapshot {
    pub fn take<'a>(groups: impl IntoIterator<Item = &'a ParamGroup>) -> Self {
        Snapshot(
            groups
                .into_iter()
                .flat_map(|g| g.vars.iter().map(|(n, t)| (n.clone(), t.detach().copy())))
                .collect(),
        )
    }

    /// Names of the tensors that differ from the snapshot.
    pub fn changed(&self, groups: &[ParamGroup]) -> Vec<String> {
        let now: BTreeMap<&str, &Tensor> = groups
            .iter()
            .flat_map(|g| g.vars.iter().map(|(n, t)| (n.as_str(), t)))
            .collect();
        self.0
            .iter()
            .filter(|(n, old)| now.get(n.as_str()).map_or(true, |t| !bit_equal(t, old)))
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
