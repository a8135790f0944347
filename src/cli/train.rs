//! `run`, `inspect` and `predict`: one experiment trained, its model described, a finished run used.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::config::ExperimentConfig;
use crate::model::checkpoint;
use crate::model::report;
use crate::record::{Summary, CONFIG_FILE, SUMMARY_FILE};
use crate::run::experiment::{self, Start};
use crate::run::provenance;
use crate::run::run_dir::{RunDir, RunState};
use crate::runtime::amp::{self, Precision};
use crate::util::interrupt;

#[derive(Args)]
pub(super) struct RunArgs {
    /// Experiment config (YAML)
    pub(crate) config: PathBuf,
    /// Override a config key, e.g. --set train.epochs=1 --set tasks.0.limit_train=500 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) overrides: Vec<String>,
}

#[derive(Args)]
pub(super) struct RunCmdArgs {
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Continue an interrupted run from its last checkpoint (starts afresh when it has none)
    #[arg(long, conflicts_with = "restart")]
    pub(crate) resume: bool,
    /// Discard an interrupted run's .partial folder and start over; also the only way to replace a finished run
    #[arg(long)]
    pub(crate) restart: bool,
}

#[derive(Args)]
pub(super) struct PredictArgs {
    /// A finished run directory (holds config.yaml and checkpoint.safetensors)
    #[arg(long)]
    pub(crate) run: PathBuf,
    /// auto, cpu, cuda or cuda:N (default: the run's config)
    #[arg(long)]
    pub(crate) device: Option<String>,
    /// Run encoder and heads under autocast at this precision (auto: bf16 where native, else fp32)
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub(crate) precision: Precision,
    /// Print JSON instead of text
    #[arg(long)]
    pub(crate) json: bool,
    /// Sentences to classify
    #[arg(required = true)]
    pub(crate) sentences: Vec<String>,
}

pub(super) fn run(a: RunCmdArgs) -> Result<()> {
    let cfg = ExperimentConfig::load(&a.run.config, &a.run.overrides)?;
    let start = match (a.resume, a.restart) {
        (true, _) => Start::Resume,
        (_, true) => Start::Restart,
        _ => Start::Fresh,
    };
    interrupt::install()?;
    let o = match experiment::run(&cfg, start) {
        Err(e) if e.is::<experiment::AlreadyComplete>() => {
            crate::say!("{e}");
            return Ok(());
        }
        o => o?,
    };
    let s = &o.summary;
    crate::out!(
        "{}: {} ({} trainable of {} parameters), {:.1} s, {:.1} train examples/s",
        o.dir.display(),
        s.scenario,
        s.params_trainable,
        s.params_total,
        s.wall_s,
        s.train_examples_per_s
    );
    for (task, m) in &s.final_metrics {
        if m.other.is_empty() {
            crate::out!(
                "  {task}: accuracy {:.4}  macro-F1 {:.4}  loss {:.4}",
                m.accuracy,
                m.macro_f1,
                m.loss
            );
        } else {
            // a head-less task (sts, pairs): its own metrics
            let own: Vec<String> = m.other.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            crate::out!("  {task}: {}  loss {:.4}", own.join("  "), m.loss);
        }
    }
    Ok(())
}

pub(super) fn inspect(a: RunArgs) -> Result<()> {
    let cfg = ExperimentConfig::load(&a.config, &a.overrides)?;
    let (model, plan) = experiment::build(&cfg)?;
    crate::out!("{} ({}), encoder {}", cfg.name, cfg.scenario_label(), cfg.encoder.model);
    crate::out_raw!("{}", report::groups_table(&model.groups(), &plan, model.lora.as_ref())?);
    Ok(())
}

pub(super) fn predict(a: PredictArgs) -> Result<()> {
    let rd = RunDir::from_path(&a.run)?;
    match rd.state() {
        RunState::Complete => {}
        state => bail!("{} is not a finished run (its state: {state})", a.run.display()),
    }
    let summary = Summary::read(&a.run.join(SUMMARY_FILE))?;
    if !summary.is_finite() {
        bail!(
            "{}: the run's final metrics are not finite (it diverged); its model cannot predict",
            a.run.display()
        );
    }
    let mut cfg = ExperimentConfig::load(&a.run.join(CONFIG_FILE), &[])?;
    provenance::pin_encoder(&a.run, &summary, &mut cfg)?;
    if let Some(d) = a.device {
        cfg.device = d;
    }
    let ckpt = checkpoint::weights_of(&a.run, &summary);
    if !ckpt.is_file() {
        bail!("{}: missing (is {} a finished run?)", ckpt.display(), a.run.display());
    }
    let (model, _) = experiment::build(&cfg)?;
    checkpoint::load(&model, &ckpt)?;
    let device = model.sentence.device;
    let precision = super::encode::resolve_precision(a.precision, device)?;
    let preds: Vec<serde_json::Value> = amp::autocast(device, precision, || model.predict(&cfg.tasks, &a.sentences))??
        .iter()
        .map(|p| p.to_json())
        .collect();
    if a.json {
        crate::out!("{}", serde_json::to_string_pretty(&preds)?);
    } else {
        for item in &preds {
            crate::out!("{}", item["text"].as_str().unwrap_or_default());
            for (task, v) in item["tasks"].as_object().into_iter().flatten() {
                let probs: Vec<String> = v["probabilities"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(n, p)| format!("{n} {p}"))
                    .collect();
                crate::out!(
                    "  {task}: {}  ({})",
                    v["label"].as_str().unwrap_or_default(),
                    probs.join(", ")
                );
            }
        }
    }
    Ok(())
}
