//! `encoder:`: which model, how its token states are pooled, how long an input may be.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::count_range;
use crate::encoder::pooling::Pooling;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderConfig {
    /// a local Hugging Face folder or a known name
    pub model: String,
    /// default: the model folder's sentence-transformers pooling, else mean
    pub pooling: Option<Pooling>,
    /// default: whether the folder lists a Normalize module
    pub normalize: Option<bool>,
    pub max_length: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            model: "all-MiniLM-L6-v2".into(),
            pooling: None,
            normalize: None,
            max_length: 128,
        }
    }
}

impl EncoderConfig {
    pub(super) fn validate(&self) -> Result<()> {
        if self.model.trim().is_empty() {
            bail!("encoder.model: must name a model folder or a known model");
        }
        // [CLS] + at least one token + [SEP]; the model's own position limit is checked when it loads
        count_range("encoder.max_length", self.max_length, 3, 65_536)
    }
}
