//! A trained model as a Hugging Face / sentence-transformers folder: `config.json` and the tokenizer files
//! copied from the base model folder, `model.safetensors` (the encoder under transformers' names, with the
//! `{"format": "pt"}` metadata `from_pretrained` requires), `modules.json`, `sentence_bert_config.json`,
//! `1_Pooling/config.json` (and `2_Normalize/` when the run normalised), plus the task heads in
//! `heads.safetensors` with `heads.json` (task names, labels, head type, tensor names).
//!
//! Invariants:
//! - the folder describes the run's own sentence pipeline (its pooling, normalisation and max_length), so
//!   `SentenceTransformer(DIR).encode` and `harness embed --model DIR` give the run's encoder output;
//! - nothing is written unless the target is absent or an empty folder; the files are written into a
//!   temporary sibling folder that is renamed onto the target only once complete.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;
use tch::Tensor;

use crate::config::{HeadConfig, TaskConfig};
use crate::encoder::pooling::Pooling;
use crate::encoder::Architecture;
use crate::model::tensor_file;
use crate::model::MultiTaskModel;

/// Tokenizer files copied from the base folder when present (vocab.txt always is).
const TOKENIZER_FILES: [&str; 4] = [
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Refuses an existing file or a non-empty folder; a missing path or an empty folder is fine.
pub fn check_target(out: &Path) -> Result<()> {
    if out.is_dir() {
        let mut entries = fs::read_dir(out).with_context(|| format!("{}: cannot read", out.display()))?;
        if entries.next().is_some() {
            bail!("{} is not empty: export into a new or empty folder", out.display());
        }
    } else if out.exists() {
        bail!(
            "{} exists and is not a folder: export into a new or empty folder",
            out.display()
        );
    }
    Ok(())
}

/// transformers' name for an encoder VarStore variable: BERT's names are already the base model's; rust-bert
/// puts DistilBERT under `distilbert.`, which `DistilBertModel` does not have (the inverse of
/// `backbone::canonical_name`).
pub(crate) fn hf_name(var: &str, arch: Architecture) -> String {
    match arch {
        Architecture::Bert => var.to_string(),
        Architecture::DistilBert => var.strip_prefix("distilbert.").unwrap_or(var).to_string(),
    }
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    crate::util::fsx::write_atomic(path, text.as_bytes())
}

/// The sentence-transformers module files for the model's pooling, normalisation and max_length.
fn write_sentence_files(dir: &Path, model: &MultiTaskModel) -> Result<()> {
    let s = &model.sentence;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if s.normalize {
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.models.Normalize"}));
        fs::create_dir_all(dir.join("2_Normalize"))?;
    }
    write_json(&dir.join("modules.json"), &serde_json::Value::Array(modules))?;
    let max_seq_length = s.tokenizer.max_length;
    write_json(
        &dir.join("sentence_bert_config.json"),
        &json!({"max_seq_length": max_seq_length, "do_lower_case": false}),
    )?;
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": s.dim(),
            "pooling_mode_cls_token": s.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": s.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": s.pooling == Pooling::Max,
            "pooling_mode_mean_sqrt_len_tokens": false
        }),
    )
}

/// The heads' tensors (`<task>.<variable>`) and their description.
fn write_heads(dir: &Path, model: &MultiTaskModel, tasks: &[TaskConfig]) -> Result<()> {
    let mut tensors = Vec::new();
    let mut described = Vec::new();
    for (head, task) in model.heads.iter().zip(tasks.iter().filter(|t| t.kind.has_head())) {
        let vars: BTreeMap<String, Tensor> = head.vs.variables().into_iter().collect();
        let names: Vec<String> = vars.keys().map(|n| format!("{}.{n}", task.name)).collect();
        tensors.extend(vars.into_iter().map(|(n, t)| (format!("{}.{n}", task.name), t)));
        let kind = match &task.head() {
            HeadConfig::Linear(_) => json!({"type": "linear"}),
            HeadConfig::Mlp(m) => json!({"type": "mlp", "hidden": m.hidden, "activation": "gelu"}),
        };
        described.push(json!({"name": task.name, "labels": task.label_names(), "head": kind, "tensors": names}));
    }
    tensor_file::write(&tensors, &dir.join("heads.safetensors"))?;
    write_json(&dir.join("heads.json"), &json!({"format": 1, "tasks": described}))
}

/// Writes every file into `dir`, which exists and is empty.
fn write_all(dir: &Path, model: &MultiTaskModel, tasks: &[TaskConfig]) -> Result<()> {
    let folder = &model.sentence.folder;
    fs::copy(&folder.config_path, dir.join("config.json"))
        .with_context(|| format!("{}: cannot copy", folder.config_path.display()))?;
    for name in TOKENIZER_FILES {
        let src = folder.dir.join(name);
        if src.is_file() {
            fs::copy(&src, dir.join(name)).with_context(|| format!("{}: cannot copy", src.display()))?;
        }
    }
    let arch = model.sentence.encoder.arch;
    let encoder: Vec<(String, Tensor)> = model
        .sentence
        .encoder
        .vs
        .variables()
        .into_iter()
        .map(|(n, t)| (hf_name(&n, arch), t))
        .collect();
    tensor_file::write(&encoder, &dir.join("model.safetensors"))?;
    write_sentence_files(dir, model)?;
    write_heads(dir, model, tasks)
}

/// Exports `model` (trained with `tasks`) to `out`: checked first, written into a temporary sibling, renamed.
pub fn export(model: &MultiTaskModel, tasks: &[TaskConfig], out: &Path) -> Result<()> {
    check_target(out)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    let tmp = parent.join(format!(".{name}.export-{}", std::process::id()));
    fs::create_dir(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let written = write_all(&tmp, model, tasks).and_then(|()| {
        fs::rename(&tmp, out).with_context(|| format!("cannot rename {} to {}", tmp.display(), out.display()))
    });
    if written.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_targets() {
        assert_eq!(
            hf_name(
                "distilbert.transformer.layer.0.ffn.lin1.weight",
                Architecture::DistilBert
            ),
            "transformer.layer.0.ffn.lin1.weight"
        );
        assert_eq!(
            hf_name("encoder.layer.0.output.dense.bias", Architecture::Bert),
            "encoder.layer.0.output.dense.bias"
        );
        let dir = tempfile::tempdir().unwrap();
        assert!(check_target(&dir.path().join("new")).is_ok());
        assert!(check_target(dir.path()).is_ok());
        fs::write(dir.path().join("f"), "x").unwrap();
        assert!(format!("{:#}", check_target(dir.path()).unwrap_err()).contains("is not empty"));
        assert!(format!("{:#}", check_target(&dir.path().join("f")).unwrap_err()).contains("not a folder"));
    }
}
