//! `freeze.lora:`: LoRA's settings (PEFT 0.13's `LoraConfig` and its defaults); the adapters themselves are
//! `model::lora`.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The `lora:` settings; defaults are PEFT 0.13's `LoraConfig` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraConfig {
    /// rank of A (r x in) and B (out x r)
    pub r: i64,
    /// the update is scaled by alpha / r (alpha / sqrt(r) with `use_rslora`)
    pub alpha: f64,
    /// PEFT's lora_dropout; only 0.0: the merged-weight design is exact only without dropout
    pub dropout: f64,
    /// module names or dotted suffixes; `None` is the architecture's default (`default_targets`)
    pub target: Option<Vec<String>>,
    /// layer indices to adapt; `None` is every layer (PEFT's `layers_to_transform`)
    pub layers: Option<Vec<usize>>,
    pub use_rslora: bool,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            r: 8,
            alpha: 8.0,
            dropout: 0.0,
            target: None,
            layers: None,
            use_rslora: false,
        }
    }
}

impl LoraConfig {
    /// s = alpha / r, or alpha / sqrt(r) with rsLoRA (as PEFT's `update_layer`).
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// The checks that need no model: r, alpha, dropout, empty lists.
    pub fn validate(&self) -> Result<()> {
        if self.r < 1 {
            bail!(
                "freeze.lora.r is {} but must be a positive integer (PEFT's default is 8)",
                self.r
            );
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            bail!(
                "freeze.lora.alpha is {} but must be a positive number (PEFT's default is 8)",
                self.alpha
            );
        }
        if self.dropout != 0.0 {
            bail!(
                "freeze.lora.dropout is {} but only 0.0 is supported (harness merges B·A into the weight, which equals \
                 PEFT's LoRA exactly only without dropout)",
                self.dropout
            );
        }
        if self.target.as_ref().is_some_and(Vec::is_empty) {
            bail!("freeze.lora.target is empty: name at least one module, or leave it out for the default");
        }
        if self.layers.as_ref().is_some_and(Vec::is_empty) {
            bail!("freeze.lora.layers is empty: list layer indices, or leave it out for every layer");
        }
        Ok(())
    }
}
