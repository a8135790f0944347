//! `freeze:`: the freezing scenario, top-layer unfreezing, tensor-name globs (`train`), LoRA (`lora`), gradual
//! unfreezing (`gradual`), and what a frozen-head task contributes.

use serde::{Deserialize, Serialize};

/// The freezing scenario, parsed once when the config is read; written back as the same string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scenario {
    /// everything trains
    #[default]
    None,
    /// nothing trains
    All,
    /// the encoder is frozen, heads train
    Backbone,
    /// one task's head is frozen, everything else trains
    Head(String),
}

impl TryFrom<String> for Scenario {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Ok(match s.as_str() {
            "none" => Scenario::None,
            "all" => Scenario::All,
            "backbone" => Scenario::Backbone,
            _ => match s.strip_prefix("head:") {
                Some(task) if !task.is_empty() => Scenario::Head(task.to_string()),
                _ => return Err(format!("scenario `{s}` is not one of none, all, backbone, head:<task>")),
            },
        })
    }
}

impl From<Scenario> for String {
    fn from(s: Scenario) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scenario::None => f.write_str("none"),
            Scenario::All => f.write_str("all"),
            Scenario::Backbone => f.write_str("backbone"),
            Scenario::Head(t) => write!(f, "head:{t}"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreezeConfig {
    /// none | all | backbone | head:<task>
    pub scenario: Scenario,
    /// train only the top k transformer layers of the encoder (embeddings and lower layers frozen)
    pub unfreeze_top_layers: Option<usize>,
    pub frozen_task_loss: FrozenTaskLoss,
    /// globs over encoder tensor names (`*.bias`, `layer.5.*`): when given, exactly the encoder tensors
    /// they match train (the heads still follow `scenario`); see `model::freeze` for the matching rule
    pub train: Vec<String>,
    /// LoRA adapters on the encoder (its weights frozen, A and B trained; heads as `scenario` says)
    pub lora: Option<super::LoraConfig>,
    /// gradual unfreezing: the top layers first, one more every few epochs (`train::gradual`)
    pub gradual: Option<GradualConfig>,
}

/// `freeze.gradual:`: in epoch t (1-based) the top `start_layers + (t - 1) / add_every_epochs` encoder layers
/// train (all of them at most), and the embeddings once every layer does; the heads as `scenario` says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GradualConfig {
    pub start_layers: usize,
    pub add_every_epochs: usize,
}

impl Default for GradualConfig {
    /// ULMFiT's: the top layer first, one more every epoch
    fn default() -> Self {
        GradualConfig {
            start_layers: 1,
            add_every_epochs: 1,
        }
    }
}

impl GradualConfig {
    /// Encoder levels open in `epoch` of an encoder of `layers` layers: layers from the top, then the
    /// embeddings as level `layers + 1`.
    pub fn open_at(&self, epoch: usize, layers: usize) -> usize {
        (self.start_layers + epoch.saturating_sub(1) / self.add_every_epochs).min(layers + 1)
    }

    /// Whether the scenario and the other freezing keys leave it something to unfreeze; the layer count is
    /// checked against the model (`model::freeze`).
    fn validate(&self, f: &FreezeConfig) -> anyhow::Result<()> {
        if self.start_layers == 0 {
            anyhow::bail!("freeze.gradual.start_layers: must be at least 1 (the top layers that train first)");
        }
        if self.add_every_epochs == 0 {
            anyhow::bail!("freeze.gradual.add_every_epochs: must be at least 1 (epochs between two unfreezings)");
        }
        if f.lora.is_some() || !f.train.is_empty() || f.unfreeze_top_layers.is_some() {
            anyhow::bail!(
                "freeze.gradual: cannot be combined with freeze.lora, freeze.train or freeze.unfreeze_top_layers \
                 (each chooses the encoder's trainable tensors)"
            );
        }
        if matches!(f.scenario, Scenario::All | Scenario::Backbone) {
            anyhow::bail!(
                "freeze.gradual: scenario `{}` freezes the encoder, which gradual unfreezing trains; use `none` or \
                 `head:<task>`",
                f.scenario
            );
        }
        Ok(())
    }
}

impl FreezeConfig {
    /// Each glob parses; `train` is not combined with `unfreeze_top_layers` (both would choose the
    /// encoder's tensors). Whether a glob matches a tensor is checked against the model (`model::freeze`).
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        for (i, g) in self.train.iter().enumerate() {
            if g.trim().is_empty() {
                anyhow::bail!("freeze.train.{i}: an empty glob; expected a tensor-name pattern such as `*.bias`");
            }
            if let Err(e) = glob::Pattern::new(g) {
                anyhow::bail!("freeze.train.{i}: `{g}` is not a glob ({e}); expected e.g. `*.bias` or `layer.5.*`");
            }
        }
        if let Some(lora) = &self.lora {
            lora.validate()?;
            if !self.train.is_empty() || self.unfreeze_top_layers.is_some() {
                anyhow::bail!(
                    "freeze.lora: cannot be combined with freeze.train or freeze.unfreeze_top_layers (LoRA trains \
                     its adapters only; the encoder's own tensors stay frozen)"
                );
            }
        }
        if let Some(g) = &self.gradual {
            g.validate(self)?;
        }
        if !self.train.is_empty() && self.unfreeze_top_layers.is_some() {
            anyhow::bail!(
                "freeze.train: cannot be combined with freeze.unfreeze_top_layers (both choose the encoder's \
                 trainable tensors); use a glob such as `layer.5.*` instead"
            );
        }
        Ok(())
    }
}

/// What a task whose head is frozen contributes to training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrozenTaskLoss {
    /// its loss still flows into the shared encoder
    #[default]
    Backprop,
    /// its batches are not trained on
    Ignore,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradual_opens_layers_from_the_top_then_the_embeddings() {
        let g = GradualConfig {
            start_layers: 2,
            add_every_epochs: 2,
        };
        let open: Vec<usize> = (1..=9).map(|t| g.open_at(t, 4)).collect();
        // levels: 4 layers, then the embeddings as the fifth
        assert_eq!(open, [2, 2, 3, 3, 4, 4, 5, 5, 5]);
    }
}
