//! A finished run's trained model, rebuilt from its `config.yaml` and `checkpoint.safetensors` (or, when the
//! run kept them, its best evaluation's `best.safetensors`): what
//! `export` (and tests) start from, on the encoder it was trained on (`provenance::pin_encoder`). Only a
//! complete run with finite final metrics is loaded; a failed, interrupted, running or diverged one is
//! refused in one line, before anything is built.

use std::path::Path;

use anyhow::{bail, Result};

use crate::config::ExperimentConfig;
use crate::model::checkpoint;
use crate::model::MultiTaskModel;
use crate::record::{Summary, CONFIG_FILE, SUMMARY_FILE};
use crate::run::experiment;
use crate::run::provenance;
use crate::run::run_dir::{RunDir, RunState};

/// Checks that `run` is complete and finite and that its checkpoint is there, without building anything.
pub fn check(run: &Path) -> Result<()> {
    let rd = RunDir::from_path(run)?;
    match rd.state() {
        RunState::Complete => {}
        state => bail!("{} is not a finished run (its state: {state})", run.display()),
    }
    if !Summary::read(&run.join(SUMMARY_FILE))?.is_finite() {
        bail!(
            "{}: the run's final metrics are not finite (it diverged); its model is not exported",
            run.display()
        );
    }
    let ckpt = checkpoint::weights_of(run, &Summary::read(&run.join(SUMMARY_FILE))?);
    if !ckpt.is_file() {
        bail!("{}: missing (is {} a finished run?)", ckpt.display(), run.display());
    }
    Ok(())
}

/// The run's config and its trained model, on the CPU.
pub fn load(run: &Path) -> Result<(ExperimentConfig, MultiTaskModel)> {
    check(run)?;
    let mut cfg = ExperimentConfig::load(&run.join(CONFIG_FILE), &[])?;
    let summary = Summary::read(&run.join(SUMMARY_FILE))?;
    provenance::pin_encoder(run, &summary, &mut cfg)?;
    cfg.device = "cpu".into();
    let (model, _) = experiment::build(&cfg)?;
    checkpoint::load(&model, &checkpoint::weights_of(run, &summary))?;
    Ok((cfg, model))
}
