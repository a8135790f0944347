//! The transformer backbone: builds the rust-bert model (BERT or DistilBERT) that a checked model folder
//! describes and loads its weights strictly: every tensor the forward pass uses must be in the checkpoint
//! with the right shape. The one allowed absence is BERT's pooler (checkpoints saved with
//! `add_pooling_layer=False`): mean/cls/max pooling never uses it, so the model is then built without one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rust_bert::bert::{BertConfig, BertEmbeddings, BertModel};
use rust_bert::distilbert::{DistilBertConfig, DistilBertModel};
use tch::{nn, Device, Tensor};

use crate::encoder::model_folder::{Architecture, ModelFolder};

enum Backbone {
    Bert(BertModel<BertEmbeddings>),
    DistilBert(DistilBertModel),
}

/// A transformer encoder whose variables live in their own VarStore.
pub struct Encoder {
    pub vs: nn::VarStore,
    backbone: Backbone,
    pub arch: Architecture,
    pub hidden_size: i64,
    pub num_layers: i64,
    /// BERT without its pooler, because the checkpoint has none
    pub pooler_absent: bool,
}

impl Encoder {
    /// Builds the architecture from config.json and loads every weight; anything missing, unexpected or
    /// of the wrong shape is an error. Built and loaded on the CPU, then moved to `device`: building initialises
    /// every variable from the torch generator before the weights overwrite them, and on the CPU that draws the
    /// same numbers on every device, so what is drawn next (the task heads) is the same on CUDA as on the CPU.
    pub fn load(folder: &ModelFolder, device: Device) -> Result<Self> {
        let tensors = encoder_tensors(read_tensors(&folder.weight_files)?, &folder.weights, folder.arch);
        // before rust-bert allocates anything from config.json's sizes
        let shapes = tensors.iter().map(|(n, t)| (n.clone(), t.size())).collect();
        crate::encoder::shape_check::check(folder, &shapes)?;
        let pooler_absent = folder.arch == Architecture::Bert && !tensors.keys().any(|n| n.starts_with("pooler."));
        if pooler_absent {
            crate::say!(
                "note: {}: no pooler weights (saved with add_pooling_layer=False); the pooler is unused by \
                 mean/cls/max pooling and is left out",
                folder.weights.display()
            );
        }
        let mut enc = Self::build_with(folder, Device::Cpu, !pooler_absent, false)?;
        copy_strict(&mut enc.vs, tensors, &folder.weights, folder.arch)?;
        enc.vs.set_device(device); // in place: the modules hold the moved tensors
        Ok(enc)
    }

    /// The architecture with freshly initialised weights (tests and shape checks).
    pub fn build(folder: &ModelFolder, device: Device) -> Result<Self> {
        Self::build_with(folder, device, true, false)
    }

    /// This encoder's architecture (from `folder`, the one it was loaded from) built to return every layer's
    /// output (`layer_states`), with its weights copied from `self`; `copy_weights_from` refreshes them. For
    /// reading representations layer by layer without making every forward pass keep them.
    pub fn layered_twin(&self, folder: &ModelFolder) -> Result<Self> {
        let mut twin = Self::build_with(folder, self.vs.device(), !self.pooler_absent, true)?;
        twin.copy_weights_from(self)?;
        Ok(twin)
    }

    /// Copies every variable of `other`, an encoder of the same architecture, into this one.
    pub fn copy_weights_from(&mut self, other: &Encoder) -> Result<()> {
        self.vs
            .copy(&other.vs)
            .map_err(|e| anyhow::anyhow!("cannot copy the encoder's weights: {e}"))
    }

    /// Every layer's output, [batch, seq, hidden] each, first layer first (a twin from `layered_twin` only).
    pub fn layer_states(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        let states = match &self.backbone {
            Backbone::Bert(m) => {
                m.forward_t(Some(ids), Some(mask), None, None, None, None, None, false)?
                    .all_hidden_states
            }
            Backbone::DistilBert(m) => m.forward_t(Some(ids), Some(mask), None, false)?.all_hidden_states,
        };
        states.context("the encoder was not built to return every layer's output")
    }

    fn build_with(folder: &ModelFolder, device: Device, with_pooler: bool, all_states: bool) -> Result<Self> {
        let cfg_text = crate::util::fsx::read_text(&folder.config_path)?;
        let vs = nn::VarStore::new(device);
        let cfg_err = |e: serde_json::Error| anyhow::anyhow!("{}: {e}", folder.config_path.display());
        let (backbone, hidden_size, num_layers) = match folder.arch {
            Architecture::Bert => {
                let mut cfg: BertConfig = serde_json::from_str(&cfg_text).map_err(cfg_err)?;
                cfg.output_hidden_states = Some(all_states);
                (
                    Backbone::Bert(BertModel::new_with_optional_pooler(vs.root(), &cfg, with_pooler)),
                    cfg.hidden_size,
                    cfg.num_hidden_layers,
                )
            }
            Architecture::DistilBert => {
                // transformers no longer writes rust-bert's `tie_weights_` etc.: fill what is absent from defaults
                let mut merged = serde_json::to_value(DistilBertConfig::default())?;
                let given: serde_json::Value = serde_json::from_str(&cfg_text).map_err(cfg_err)?;
                if let (Some(m), Some(g)) = (merged.as_object_mut(), given.as_object()) {
                    m.extend(g.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                let mut cfg: DistilBertConfig = serde_json::from_value(merged).map_err(cfg_err)?;
                cfg.output_hidden_states = Some(all_states);
                (
                    Backbone::DistilBert(DistilBertModel::new(vs.root(), &cfg)),
                    cfg.dim,
                    cfg.n_layers,
                )
            }
        };
        Ok(Encoder {
            vs,
            backbone,
            arch: folder.arch,
            hidden_size,
            num_layers,
            pooler_absent: folder.arch == Architecture::Bert && !with_pooler,
        })
    }

    /// Last hidden states, [batch, seq, hidden].
    pub fn forward_t(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match &self.backbone {
            Backbone::Bert(m) => {
                m.forward_t(Some(ids), Some(mask), None, None, None, None, None, train)?
                    .hidden_state
            }
            Backbone::DistilBert(m) => m.forward_t(Some(ids), Some(mask), None, train)?.hidden_state,
        })
    }
}

/// Maps a checkpoint's tensor name to this VarStore's name, or None for tensors that are not weights
/// of the encoder (buffers such as position_ids).
fn canonical_name(name: &str, arch: Architecture) -> Option<String> {
    if name.ends_with("position_ids") {
        return None;
    }
    // TF-era checkpoints call LayerNorm's parameters gamma/beta.
    let name = name
        .replace("LayerNorm.gamma", "LayerNorm.weight")
        .replace("LayerNorm.beta", "LayerNorm.bias");
    Some(match arch {
        Architecture::Bert => name.strip_prefix("bert.").unwrap_or(&name).to_string(),
        Architecture::DistilBert => {
            if name.starts_with("distilbert.") {
                name
            } else {
                format!("distilbert.{name}")
            }
        }
    })
}

fn read_file(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let res = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Tensor::read_safetensors(path),
        _ => Tensor::load_multi(path),
    };
    res.with_context(|| format!("{}: cannot read weights", path.display()))
}

/// The tensors of every weight file (one, or the shards of an index); a name in two shards is an error.
fn read_tensors(files: &[PathBuf]) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    let mut seen: HashMap<String, &Path> = HashMap::new();
    for f in files {
        for (name, t) in read_file(f)? {
            if let Some(other) = seen.insert(name.clone(), f) {
                bail!("{}: tensor `{name}` is also in {}", f.display(), other.display());
            }
            out.push((name, t));
        }
    }
    Ok(out)
}

/// A checkpoint's encoder tensors under this VarStore's names. A checkpoint saved from a task model
/// (`bert.` / `distilbert.` prefix) may carry pretraining or task heads beside the encoder: those are
/// reported and skipped.
fn encoder_tensors(tensors: Vec<(String, Tensor)>, path: &Path, arch: Architecture) -> BTreeMap<String, Tensor> {
    let prefix = match arch {
        Architecture::Bert => "bert.",
        Architecture::DistilBert => "distilbert.",
    };
    let prefixed = tensors.iter().any(|(n, _)| n.starts_with(prefix));
    let mut by_name: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut skipped = Vec::new();
    for (name, t) in tensors {
        if prefixed && !name.starts_with(prefix) {
            skipped.push(name);
            continue;
        }
        if let Some(c) = canonical_name(&name, arch) {
            by_name.insert(c, t);
        }
    }
    if !skipped.is_empty() {
        crate::say!(
            "note: {}: skipped {} tensors outside the encoder ({}, ...)",
            path.display(),
            skipped.len(),
            skipped[0]
        );
    }
    by_name
}

/// A weight must be stored as a float (float16, bfloat16 or float32: an integer tensor would be cast silently)
/// and hold only finite values (a NaN would give NaN embeddings for every sentence).
fn check_values(t: &Tensor, name: &str, path: &Path) -> Result<()> {
    let kind = t.kind();
    if !matches!(kind, tch::Kind::Half | tch::Kind::BFloat16 | tch::Kind::Float) {
        bail!(
            "{}: weight `{name}` is stored as {kind:?} (expected float16, bfloat16 or float32)",
            path.display()
        );
    }
    if t.isfinite().all().f_int64_value(&[])? == 0 {
        bail!("{}: weight `{name}` holds NaN or infinite values", path.display());
    }
    Ok(())
}

/// Strict copy: every variable gets a tensor of its shape, and every tensor a variable.
fn copy_strict(
    vs: &mut nn::VarStore,
    mut by_name: BTreeMap<String, Tensor>,
    path: &Path,
    arch: Architecture,
) -> Result<()> {
    let vars: HashMap<String, Tensor> = vs.variables();
    let mut missing = Vec::new();
    let mut names: Vec<_> = vars.keys().cloned().collect();
    names.sort();
    tch::no_grad(|| -> Result<()> {
        for name in &names {
            let mut var = vars[name].shallow_clone();
            match by_name.remove(name) {
                None => missing.push(name.clone()),
                Some(t) => {
                    if t.size() != var.size() {
                        bail!(
                            "{}: weight `{name}` has shape {:?} but config.json gives {:?}",
                            path.display(),
                            t.size(),
                            var.size()
                        );
                    }
                    check_values(&t, name, path)?;
                    var.f_copy_(&t)
                        .with_context(|| format!("{}: weight `{name}` cannot be copied", path.display()))?;
                }
            }
        }
        Ok(())
    })?;
    if !missing.is_empty() {
        bail!(
            "{}: {} weights missing, e.g. `{}` (is this a {:?} checkpoint matching config.json?)",
            path.display(),
            missing.len(),
            missing[0],
            arch
        );
    }
    if let Some((name, _)) = by_name.iter().next() {
        bail!(
            "{}: {} unexpected weights, e.g. `{name}` (not part of a {:?} encoder built from config.json)",
            path.display(),
            by_name.len(),
            arch
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_are_normalised() {
        assert_eq!(
            canonical_name("bert.encoder.layer.0.output.LayerNorm.gamma", Architecture::Bert).unwrap(),
            "encoder.layer.0.output.LayerNorm.weight"
        );
        assert_eq!(
            canonical_name("embeddings.word_embeddings.weight", Architecture::DistilBert).unwrap(),
            "distilbert.embeddings.word_embeddings.weight"
        );
        assert!(canonical_name("embeddings.position_ids", Architecture::Bert).is_none());
    }
}
