//! Experiment configuration: the YAML file, `--set` overrides, and validation. One struct per section
//! (`encoder`, `tasks[]`, `freeze`, `train`), each with its defaults (`impl Default`, also what
//! docs/configuration.md lists) and its own `validate`; errors name the file and the key path, with line
//! numbers where serde_yaml gives them and the nearest valid key for an unknown one.
//!
//! Imports `util`, `runtime` (the precision type), `encoder` (the pooling type) and `data` (label maps).

mod encoder;
mod freeze;
mod lora;
mod mtl;
mod overrides;
mod plain;
mod probe;
mod stopping;
mod task;
mod train;

pub use encoder::EncoderConfig;
pub use freeze::{FreezeConfig, FrozenTaskLoss, GradualConfig, Scenario};
pub use lora::LoraConfig;
pub use mtl::{MtlConfig, StepMode, AGGREGATORS, WEIGHTINGS};
pub use probe::{AnalysisConfig, DriftConfig, DriftEvery, ProbeConfig, ProbeType};
pub use stopping::{EarlyStopping, StopMetric};
pub use task::{HeadConfig, LabelFormat, LinearConfig, MlpConfig, TaskConfig};
pub use train::{Sampling, TrainConfig};

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use overrides::{apply_override, explain};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// run name: results go to <output_dir>/<name>/
    pub name: String,
    /// the name runs of one configuration share (a sweep sets it; `compare` merges seeds by it); default: name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_name: Option<String>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// auto | cpu | cuda | cuda:N
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    #[serde(default)]
    pub encoder: EncoderConfig,
    pub tasks: Vec<TaskConfig>,
    #[serde(default)]
    pub freeze: FreezeConfig,
    #[serde(default)]
    pub train: TrainConfig,
    /// measured before training and at every evaluation point, never trained on
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<ProbeConfig>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub analysis: AnalysisConfig,
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

fn default_seed() -> u64 {
    42
}
fn default_device() -> String {
    "auto".into()
}
fn default_output_dir() -> PathBuf {
    "results".into()
}

/// A path starting with `~` means the home folder only to a shell (unquoted); here it would be a folder
/// literally named `~`, so it is refused, naming the key.
fn no_tilde(p: &Path, key: &str) -> Result<()> {
    if p.to_str().is_some_and(|s| s == "~" || s.starts_with("~/")) {
        bail!(
            "{key}: `{}` starts with `~`, which harness does not expand (only a shell does): write the full path, \
             e.g. $HOME/{}",
            p.display(),
            p.to_str()
                .unwrap_or_default()
                .trim_start_matches('~')
                .trim_start_matches('/')
        );
    }
    Ok(())
}

/// An error after overrides, blamed on what is at fault: the override that set the key, else the file (read
/// again alone, for its line number) when the fault is there, else the two together.
fn blame(
    path: &Path,
    text: &str,
    overrides: &[String],
    e: serde_path_to_error::Error<serde_yaml::Error>,
) -> anyhow::Error {
    let key = e.path().to_string();
    if let Some(o) = overrides.iter().rev().find(|o| overrides::same_key(&key, o)) {
        let msg = format!("{:#}", explain(path, e));
        let msg = msg
            .strip_prefix(&format!("{}: ", path.display()))
            .unwrap_or(&msg)
            .to_string();
        return anyhow::anyhow!("`{o}` (given on the command line): {msg}");
    }
    match serde_path_to_error::deserialize::<_, ExperimentConfig>(serde_yaml::Deserializer::from_str(text)) {
        Err(alone) if alone.path().to_string() == key => explain(path, alone),
        _ => explain(path, e).context("after the command line's overrides"),
    }
}

impl ExperimentConfig {
    /// Reads a config file, applies `key.path=value` overrides, and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = crate::util::fsx::read_text(path)?;
        let cfg: ExperimentConfig = if overrides.is_empty() {
            // straight from text, so that errors carry line numbers
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text)).map_err(|e| explain(path, e))?
        } else {
            let mut value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
                // what YAML cannot hold (an integer past 2^64) is explained as the typed reading explains it
                match serde_path_to_error::deserialize::<_, ExperimentConfig>(serde_yaml::Deserializer::from_str(&text))
                {
                    Err(typed) => explain(path, typed),
                    Ok(_) => anyhow::anyhow!("{}: {e}", path.display()),
                }
            })?;
            for o in overrides {
                apply_override(&mut value, o)?;
            }
            serde_path_to_error::deserialize(value).map_err(|e| blame(path, &text, overrides, e))?
        };
        cfg.validate().with_context(|| format!("{}", path.display()))?;
        Ok(cfg)
    }

    /// The scenario as reported in metrics and summaries.
    pub fn scenario_label(&self) -> String {
        let base = match self.freeze.unfreeze_top_layers {
            Some(k) => format!("unfreeze_top{k}"),
            None => self.freeze.scenario.to_string(),
        };
        if let Some(g) = &self.freeze.gradual {
            return format!("{base}+gradual:{}/{}", g.start_layers, g.add_every_epochs);
        }
        match &self.freeze.lora {
            Some(l) => format!("{base}+lora:r{}", l.r),
            None if self.freeze.train.is_empty() => base,
            None => format!("{base}+train:{}", self.freeze.train.join(";")),
        }
    }

    /// Every key within its range (docs/configuration.md lists them); errors name the key path.
    pub fn validate(&self) -> Result<()> {
        crate::util::names::check_run_name(&self.name).context("name")?;
        if let Some(b) = &self.base_name {
            crate::util::names::check_run_name(b).context("base_name")?;
        }
        crate::runtime::device::check_device_syntax(&self.device).context("device")?;
        if self.output_dir.as_os_str().is_empty() {
            bail!("output_dir: must not be empty (default: results)");
        }
        self.encoder.validate()?;
        no_tilde(&self.output_dir, "output_dir")?;
        no_tilde(Path::new(&self.encoder.model), "encoder.model")?;
        for (i, t) in self.tasks.iter().enumerate() {
            no_tilde(&t.train, &format!("tasks.{i}.train"))?;
            no_tilde(&t.eval, &format!("tasks.{i}.eval"))?;
        }
        if self.tasks.is_empty() {
            bail!("tasks: is empty: give at least one task");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.tasks.iter().enumerate() {
            if !seen.insert(&t.name) {
                bail!("tasks.{i}.name: `{}` is used twice", t.name);
            }
            t.validate().with_context(|| format!("tasks.{i}"))?;
        }
        self.check_probes()?;
        if let Scenario::Head(task) = &self.freeze.scenario {
            if !self.tasks.iter().any(|t| &t.name == task) {
                let names: Vec<_> = self.tasks.iter().map(|t| t.name.as_str()).collect();
                bail!(
                    "freeze.scenario: `head:{task}` names unknown task `{task}` (tasks: {})",
                    names.join(", ")
                );
            }
        }
        if self.freeze.unfreeze_top_layers == Some(0) {
            bail!("freeze.unfreeze_top_layers: must be at least 1 (or null)");
        }
        if self.freeze.unfreeze_top_layers.is_some() && self.freeze.scenario == Scenario::All {
            bail!("freeze.unfreeze_top_layers: cannot be combined with scenario `all`");
        }
        self.freeze.validate()?;
        self.train.validate()?;
        let mtl = &self.train.mtl;
        let own_backward = mtl.gradient_aggregator().is_some() || mtl.loss_weighting().is_some();
        if self.freeze.gradual.is_some() && (own_backward || mtl.log_conflict_every.is_some()) {
            bail!(
                "freeze.gradual: not supported with train.mtl.aggregator, train.mtl.weighting or \
                 train.mtl.log_conflict_every yet (their own backward passes take every encoder tensor)"
            );
        }
        if self.freeze.lora.is_some() && (own_backward || mtl.log_conflict_every.is_some()) {
            bail!(
                "freeze.lora: not supported with train.mtl.aggregator, train.mtl.weighting or \
                 train.mtl.log_conflict_every yet (their own backward passes do not reach LoRA's A and B)"
            );
        }
        self.check_stopping()?;
        self.check_joint()
    }

    /// Probe names are unique and no task's; their files (and drift's) have no `~`.
    fn check_probes(&self) -> Result<()> {
        for (i, p) in self.probes.iter().enumerate() {
            no_tilde(&p.data, &format!("probes.{i}.data"))?;
            if self.tasks.iter().any(|t| t.name == p.name) || self.probes[..i].iter().any(|q| q.name == p.name) {
                bail!(
                    "probes.{i}.name: `{}` is already a task's or another probe's name (their rows share metrics.csv's task column)",
                    p.name
                );
            }
            p.validate().with_context(|| format!("probes.{i}"))?;
        }
        if let Some(d) = &self.analysis.drift {
            no_tilde(&d.data, "analysis.drift.data")?;
            d.validate()?;
        }
        Ok(())
    }

    /// Early stopping names a metric of a task that exists; `keep_best` needs its metric, and both need
    /// evaluations during training (scenario `all` with nothing else trainable has none).
    fn check_stopping(&self) -> Result<()> {
        let tasks: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
        if let Some(es) = &self.train.early_stopping {
            es.validate(&tasks)?;
        }
        if self.train.keep_best && self.train.early_stopping.is_none() {
            bail!(
                "train.keep_best: needs train.early_stopping, whose metric decides the best evaluation \
                 (e.g. {{metric: mean_accuracy, patience: 1000}} to keep the best without stopping)"
            );
        }
        let f = &self.freeze;
        let nothing_trains = f.scenario == Scenario::All && f.train.is_empty() && f.lora.is_none();
        if self.train.early_stopping.is_some() && nothing_trains {
            bail!("train.early_stopping: freeze.scenario `all` trains nothing, so there is no evaluation during training to stop on");
        }
        Ok(())
    }

    /// A joint step needs a task whose head trains (with every head frozen there is nothing to balance).
    fn check_joint(&self) -> Result<()> {
        let every_head_frozen = match &self.freeze.scenario {
            Scenario::All => true,
            Scenario::Head(_) => self.tasks.len() == 1,
            _ => false,
        };
        if self.train.step == StepMode::Joint && every_head_frozen {
            bail!(
                "train.step: `joint` needs a task whose head trains, but freeze.scenario `{}` freezes every head",
                self.freeze.scenario
            );
        }
        self.check_weighting()
    }

    /// A learned or running loss weighting replaces the tasks' fixed `loss_weight`s, and GradNorm balances the
    /// encoder's gradient norms, so it needs an encoder that trains.
    fn check_weighting(&self) -> Result<()> {
        let Some(name) = self.train.mtl.loss_weighting() else {
            return Ok(());
        };
        if let Some((i, t)) = self.tasks.iter().enumerate().find(|(_, t)| t.loss_weight != 1.0) {
            bail!(
                "tasks.{i}.loss_weight: {} is set, but train.mtl.weighting `{name}` sets the weights itself (leave loss_weight at 1, or use weighting `fixed`)",
                t.loss_weight
            );
        }
        let encoder_frozen = matches!(self.freeze.scenario, Scenario::Backbone | Scenario::All)
            && self.freeze.unfreeze_top_layers.is_none();
        if name == "gradnorm" && encoder_frozen {
            bail!(
                "train.mtl.weighting: `gradnorm` balances the gradient norms of the shared encoder, but freeze.scenario `{}` freezes it",
                self.freeze.scenario
            );
        }
        if name == "gradnorm" && self.train.precision == crate::runtime::amp::Precision::Fp16 {
            bail!("train.mtl.weighting: `gradnorm` is not supported with fp16 (its loss scaling) yet; use precision fp32 or bf16");
        }
        Ok(())
    }
}

/// `x` within `lo..=hi` and a number (NaN never is).
pub(crate) fn in_range(key: &str, x: f64, lo: f64, hi: f64) -> Result<()> {
    if !(x >= lo && x <= hi) {
        bail!("{key}: {x} is out of range (expected {lo} to {hi})");
    }
    Ok(())
}

pub(crate) fn count_range(key: &str, x: usize, lo: usize, hi: usize) -> Result<()> {
    if x < lo || x > hi {
        bail!("{key}: {x} is out of range (expected {lo} to {hi})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "name: t\ntasks:\n  - name: a\n    train: x.tsv\n    eval: y.tsv\n    num_labels: 2\n";

    fn load(text: &str, sets: &[&str]) -> Result<ExperimentConfig> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.yaml");
        std::fs::write(&p, text).unwrap();
        ExperimentConfig::load(&p, &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn defaults_fill_in() {
        let c = load(MIN, &[]).unwrap();
        assert_eq!(c.train.epochs, 3);
        assert_eq!(c.tasks[0].head, HeadConfig::default());
        assert_eq!(c.freeze.scenario, Scenario::None);
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let e = format!("{:#}", load(&format!("{MIN}train:\n  epoch: 2\n"), &[]).unwrap_err());
        assert!(
            e.contains("unknown field `epoch`") && e.contains("did you mean `epochs`?"),
            "{e}"
        );
        assert!(e.contains("line 8"), "{e}");
    }

    #[test]
    fn overrides_reach_nested_keys_and_lists() {
        let c = load(
            MIN,
            &["train.epochs=1", "tasks.0.limit_train=500", "freeze.scenario=head:a"],
        )
        .unwrap();
        assert_eq!(c.train.epochs, 1);
        assert_eq!(c.tasks[0].limit_train, Some(500));
        assert_eq!(c.freeze.scenario, Scenario::Head("a".into()));
        assert!(load(MIN, &["tasks.3.limit_train=1"]).is_err());
    }

    #[test]
    fn every_out_of_range_value_names_its_key() {
        let cases: &[(&str, &str)] = &[
            ("name=..", "name"),
            ("name=a/b", "name"),
            ("device=gpu", "device"),
            ("output_dir=''", "output_dir"),
            ("encoder.model=''", "encoder.model"),
            ("encoder.max_length=1", "encoder.max_length"),
            ("encoder.max_length=0", "encoder.max_length"),
            ("encoder.max_length=-3", "encoder.max_length"),
            ("encoder.pooling=sum", "encoder.pooling"),
            ("tasks.0.name=''", "tasks.0"),
            ("tasks.0.num_labels=1", "num_labels"),
            ("tasks.0.num_labels=0", "num_labels"),
            ("tasks.0.loss_weight=-1", "loss_weight"),
            ("tasks.0.loss_weight=.nan", "loss_weight"),
            ("tasks.0.limit_train=0", "limit_train"),
            ("tasks.0.limit_eval=0", "limit_eval"),
            ("tasks.0.labels=[a]", "labels"),
            ("tasks.0.labels=[a, a]", "labels"),
            ("tasks.0.head={type: linear, hidden: 5}", "tasks[0].head"),
            ("tasks.0.head={type: mlp, hidden: 0}", "head.hidden"),
            ("tasks.0.head={type: mlp, dropout: 1.0}", "head.dropout"),
            ("tasks.0.head={type: mlp, dropot: 0.1}", "did you mean `dropout`"),
            ("tasks.0.head={type: conv}", "tasks[0].head"),
            ("freeze.scenario=head:zzz", "unknown task `zzz`"),
            ("freeze.scenario=frozen", "freeze.scenario"),
            ("freeze.unfreeze_top_layers=0", "freeze.unfreeze_top_layers"),
            ("train.epochs=0", "train.epochs"),
            ("train.epochs=abc", "train.epochs"),
            ("train.epochs=-1", "train.epochs"),
            ("train.batch_size=0", "train.batch_size"),
            ("train.eval_batch_size=0", "train.eval_batch_size"),
            ("train.lr_encoder=-1e-5", "train.lr_encoder"),
            ("train.lr_heads=.nan", "train.lr_heads"),
            ("train.lr_heads=.inf", "train.lr_heads"),
            ("train.weight_decay=-0.1", "train.weight_decay"),
            ("train.layer_lr_decay=0", "train.layer_lr_decay"),
            ("train.layer_lr_decay=1.01", "train.layer_lr_decay"),
            ("freeze.train=['[a']", "freeze.train.0"),
            ("train.warmup_ratio=1.5", "train.warmup_ratio"),
            ("train.grad_clip=-1", "train.grad_clip"),
            ("train.temperature=.nan", "train.temperature"),
            ("train.temperature=0", "train.temperature"),
            ("train.eval_every_steps=0", "train.eval_every_steps"),
            ("train.checkpoint_every_steps=0", "train.checkpoint_every_steps"),
            ("train.log_every_steps=0", "train.log_every_steps"),
            ("train.precision=fp64", "train.precision"),
            ("train.tf32=maybe", "train.tf32"),
            ("train.sampling=random", "train.sampling"),
            ("train.cache_features=maybe", "train.cache_features"),
            ("seed=-1", "seed"),
            ("tasks=[]", "tasks"),
        ];
        for (set, key) in cases {
            let e = format!("{:#}", load(MIN, &[set]).expect_err(set));
            assert!(e.contains(key), "--set {set}: `{key}` not in: {e}");
        }
        assert!(load(
            MIN,
            &["train.lr_heads=0", "train.warmup_ratio=1", "encoder.max_length=3"]
        )
        .is_ok());
    }

    #[test]
    fn a_type_error_in_the_file_names_key_path_and_line() {
        let e = format!(
            "{:#}",
            load(&format!("{MIN}train:\n  epochs: many\n"), &[]).unwrap_err()
        );
        assert!(e.contains("train.epochs") && e.contains("line 8"), "{e}");
    }

    #[test]
    fn scenario_naming_unknown_task_fails() {
        let e = format!(
            "{:#}",
            load(&format!("{MIN}freeze:\n  scenario: head:b\n"), &[]).unwrap_err()
        );
        assert!(e.contains("unknown task `b`"), "{e}");
    }
}
