//! `export`: a finished run's encoder as a Hugging Face / sentence-transformers folder, with its heads.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::model::export;
use crate::run::finished;

#[derive(Args)]
pub(super) struct ExportArgs {
    /// A finished run directory (holds config.yaml and checkpoint.safetensors)
    #[arg(long)]
    pub(crate) run: PathBuf,
    /// The folder to create (absent or empty): loadable by SentenceTransformer(DIR), AutoModel.from_pretrained(DIR)
    /// and harness embed --model DIR
    #[arg(long)]
    pub(crate) out: PathBuf,
}

pub(super) fn export(a: ExportArgs) -> Result<()> {
    // both checks before anything is built or written
    export::check_target(&a.out)?;
    finished::check(&a.run)?;
    let (cfg, model) = finished::load(&a.run)?;
    export::export(&model, &cfg.tasks, &a.out)?;
    crate::out!(
        "{}: encoder ({}, pooling {}, normalize {}) and {} task heads",
        a.out.display(),
        cfg.encoder.model,
        model.sentence.pooling,
        model.sentence.normalize,
        model.heads.len()
    );
    Ok(())
}
