//! Training checkpoints inside a run's `.partial/`, written so that a crash at any instant leaves either
//! the previous checkpoint or the new one in use, never a half-written one: each checkpoint is a new
//! folder `checkpoints/step-N/` (tensors, optimizer state, progress), synced, and only then does the
//! pointer `checkpoint.json` move to it (written to a temporary file, synced, renamed); older folders
//! are deleted after that.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::analysis::like::differences;
use crate::config::ExperimentConfig;
use crate::model::tensor_file;
use crate::runtime::amp::Precision;
use crate::train::adamw::AdamW;
use crate::train::best::BestState;
use crate::train::weighted::WeightingCheckpoint;
use crate::util::fsx::{read_text, sync_dir, write_atomic, write_synced};

const POINTER: &str = "checkpoint.json";
const DIR: &str = "checkpoints";
const MODEL: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const PROGRESS: &str = "progress.json";

/// Running sums for one task's training rows of an epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct EpochStats {
    pub loss_sum: f64,
    pub preds: Vec<i64>,
    pub gold: Vec<i64>,
}

/// Where training stands: with the tensors, enough to continue exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Progress {
    /// the epoch in progress (1-based)
    pub epoch: usize,
    /// batches of that epoch's plan done
    pub pos: usize,
    /// optimizer steps so far (the scheduler's step)
    pub step: usize,
    pub examples_seen: usize,
    pub train_s: f64,
    pub elapsed_s: f64,
    /// running statistics of the epoch in progress, one per task
    pub stats: Vec<EpochStats>,
    /// metrics.csv rows written at this point
    pub rows: usize,
    /// the evaluation or epoch end due after the last step is still to do
    pub pending: bool,
    /// each optimizer parameter's step count
    pub adam_steps: BTreeMap<String, i64>,
    /// the precision the run trains in (what `auto` resolved to when it started; older checkpoints: fp32)
    #[serde(default)]
    pub precision: Precision,
    /// fp16's loss scale and growth tracker
    #[serde(default)]
    pub loss_scale: Option<(f64, i64)>,
    /// the loss weighting's state (`train.mtl.weighting`)
    #[serde(default)]
    pub weighting: Option<WeightingCheckpoint>,
    /// conflict.csv rows written at this point
    #[serde(default)]
    pub conflict_rows: usize,
    /// early stopping's state (`train.early_stopping`)
    #[serde(default)]
    pub best: Option<BestState>,
    /// rows written at this point to each evaluation hook's own file (drift.csv), by file name
    #[serde(default)]
    pub hook_rows: BTreeMap<String, usize>,
}

#[derive(Serialize, Deserialize)]
struct Pointer {
    dir: String,
}

/// A checkpoint read back.
pub(crate) struct Saved {
    pub progress: Progress,
    /// the model's trained tensors, for `checkpoint::load`
    pub model_file: PathBuf,
    pub optimizer: HashMap<String, Tensor>,
}

pub(crate) fn has_checkpoint(partial: &Path) -> bool {
    partial.join(POINTER).is_file()
}

/// Writes a checkpoint of `model` tensors, `opt` and `progress`, then points `checkpoint.json` at it. A checkpoint
/// that cannot be written completely (a full disk) is removed again, so the space it took is free for the run's
/// error record; the previous checkpoint stays the one pointed at.
pub(crate) fn save(partial: &Path, model: &[(String, Tensor)], opt: &AdamW, progress: &Progress) -> Result<()> {
    let name = format!("step-{:08}", progress.step);
    let root = partial.join(DIR);
    let tmp = root.join(format!("{name}.tmp"));
    let written = write_dir(&tmp, model, opt, progress);
    if written.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    written?;
    let dir = root.join(&name);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
    }
    fs::rename(&tmp, &dir).with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))?;
    sync_dir(&root)?;
    let pointer = Pointer {
        dir: format!("{DIR}/{name}"),
    };
    write_atomic(&partial.join(POINTER), serde_json::to_string(&pointer)?.as_bytes())?;
    for e in fs::read_dir(&root)?.flatten() {
        if e.file_name().to_string_lossy() != name {
            fs::remove_dir_all(e.path()).with_context(|| format!("{}: cannot remove", e.path().display()))?;
        }
    }
    Ok(())
}

/// The checkpoint's files in `tmp` (made afresh), synced.
fn write_dir(tmp: &Path, model: &[(String, Tensor)], opt: &AdamW, progress: &Progress) -> Result<()> {
    if tmp.exists() {
        fs::remove_dir_all(tmp).with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    fs::create_dir_all(tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    tensor_file::write(model, &tmp.join(MODEL))?;
    let (opt_tensors, adam_steps) = opt.state();
    tensor_file::write(&opt_tensors, &tmp.join(OPTIMIZER))?;
    let progress = Progress {
        adam_steps,
        ..progress.clone()
    };
    write_synced(&tmp.join(PROGRESS), serde_json::to_string(&progress)?.as_bytes())?;
    sync_dir(tmp)
}

/// The checkpoint `checkpoint.json` points at, or None when there is none.
pub(crate) fn load(partial: &Path) -> Result<Option<Saved>> {
    let pointer_path = partial.join(POINTER);
    if !pointer_path.is_file() {
        return Ok(None);
    }
    let pointer: Pointer = serde_json::from_str(&read_text(&pointer_path)?)
        .with_context(|| format!("{}: not a checkpoint pointer", pointer_path.display()))?;
    let dir = confined(partial, &pointer.dir, &pointer_path)?;
    let progress_path = dir.join(PROGRESS);
    let progress: Progress = serde_json::from_str(&read_text(&progress_path)?)
        .with_context(|| format!("{}: invalid checkpoint progress", progress_path.display()))?;
    let optimizer = Tensor::read_safetensors(dir.join(OPTIMIZER))
        .with_context(|| format!("{}: cannot read optimizer state", dir.display()))?
        .into_iter()
        .collect();
    Ok(Some(Saved {
        progress,
        model_file: dir.join(MODEL),
        optimizer,
    }))
}

/// The checkpoint folder a pointer names, which must be one of this run's own: `checkpoints/<name>`, no
/// absolute path, no `..`, and (symlinks resolved) inside `partial`; a pointer naming anything else is refused.
fn confined(partial: &Path, dir: &str, pointer_path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let rel = Path::new(dir);
    let parts: Vec<Component> = rel.components().collect();
    let plain = parts.len() == 2 && parts.iter().all(|c| matches!(c, Component::Normal(_)));
    if !plain || parts[0].as_os_str() != DIR {
        bail!(
            "{}: points at `{dir}`, not at a checkpoint inside the run's folder (expected {DIR}/<step>)",
            pointer_path.display()
        );
    }
    let path = partial.join(rel);
    let inside = match (fs::canonicalize(partial), fs::canonicalize(&path)) {
        (Ok(root), Ok(real)) => real.starts_with(root.join(DIR)),
        // a missing folder is reported by the read that follows
        _ => true,
    };
    if !inside {
        bail!(
            "{}: `{dir}` is a symlink leading outside the run's folder; refused",
            pointer_path.display()
        );
    }
    Ok(path)
}

/// Keys that may differ between a run and its resumption: they do not change the numbers.
pub(crate) const KEYS_FREE_ON_RESUME: [&str; 2] = ["output_dir", "train.checkpoint_every_steps"];

/// A resumed run must be the run that was checkpointed: the same resolved config, `KEYS_FREE_ON_RESUME`
/// aside. The first key that differs is named.
pub(crate) fn check_same_config(saved: &ExperimentConfig, now: &ExperimentConfig) -> Result<()> {
    let strip = |c: &ExperimentConfig| -> Result<serde_yaml::Value> {
        let mut v = serde_yaml::to_value(c)?;
        for key in KEYS_FREE_ON_RESUME {
            remove_key(&mut v, key);
        }
        Ok(v)
    };
    if let Some(key) = differences(&strip(saved)?, &strip(now)?).into_iter().next() {
        bail!(
            "cannot resume: `{key}` differs from the checkpointed run's config (only {} may change; \
             use --restart to start over)",
            KEYS_FREE_ON_RESUME.join(", ")
        );
    }
    Ok(())
}

/// Removes `a.b.c` from a YAML tree, if there.
fn remove_key(v: &mut serde_yaml::Value, key: &str) {
    match key.split_once('.') {
        Some((head, rest)) => {
            if let Some(child) = v.get_mut(head) {
                remove_key(child, rest);
            }
        }
        None => {
            if let Some(m) = v.as_mapping_mut() {
                m.remove(key);
            }
        }
    }
}

/// Removes the training checkpoints from a finished run's folder (its final weights are kept apart).
pub(crate) fn discard(partial: &Path) -> Result<()> {
    // the pointer first: a crash in between leaves no pointer to a missing folder
    let pointer = partial.join(POINTER);
    if pointer.exists() {
        fs::remove_file(&pointer)?;
    }
    let dir = partial.join(DIR);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot remove", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_names_the_first_key_that_differs_and_ignores_the_free_ones() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/full_finetune.yaml");
        let load = |sets: &[&str]| {
            ExperimentConfig::load(&path, &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        let base = load(&[]);
        check_same_config(
            &base,
            &load(&["output_dir=elsewhere", "train.checkpoint_every_steps=3"]),
        )
        .unwrap();
        let err = check_same_config(&base, &load(&["train.lr_heads=0.5", "train.weight_decay=0.2"])).unwrap_err();
        assert!(err.to_string().contains("`train.lr_heads` differs"), "{err}");
        let err = check_same_config(&base, &load(&["tasks.1.limit_train=10"])).unwrap_err();
        assert!(err.to_string().contains("`tasks.1.limit_train` differs"), "{err}");
    }
}
