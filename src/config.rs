//! Experiment configuration: the YAML file, `--set` overrides, and validation.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::amp::Precision;
use crate::data::LabelMap;
use crate::pooling::Pooling;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderConfig {
    /// a local Hugging Face folder or a known name
    pub model: String,
    /// default: the model folder's sentence-transformers pooling, else mean
    pub pooling: Option<Pooling>,
    /// default: whether the folder lists a Normalize module
    pub normalize: Option<bool>,
    pub max_length: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            model: "all-MiniLM-L6-v2".into(),
            pooling: None,
            normalize: None,
            max_length: 128,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    pub train: PathBuf,
    pub eval: PathBuf,
    #[serde(default = "default_text_column")]
    pub text_column: String,
    #[serde(default = "default_label_column")]
    pub label_column: String,
    /// class names, in class order; with integer labels they are display names only
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    #[serde(default)]
    pub num_labels: Option<usize>,
    /// integer: the label cell is a number (minus label_offset); name: the cell is one of `labels`
    #[serde(default)]
    pub label_format: LabelFormat,
    #[serde(default)]
    pub label_offset: i64,
    #[serde(default)]
    pub head: HeadConfig,
    #[serde(default = "one")]
    pub loss_weight: f64,
    #[serde(default)]
    pub limit_train: Option<usize>,
    #[serde(default)]
    pub limit_eval: Option<usize>,
}

fn default_text_column() -> String {
    "sentence".into()
}
fn default_label_column() -> String {
    "label".into()
}
fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelFormat {
    #[default]
    Integer,
    Name,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum HeadConfig {
    Linear(LinearConfig),
    Mlp(MlpConfig),
}

impl Default for HeadConfig {
    fn default() -> Self {
        HeadConfig::Linear(LinearConfig {})
    }
}

/// A linear head has no settings; the struct exists so that a stray key inside it is an error.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MlpConfig {
    pub hidden: i64,
    pub dropout: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig {
            hidden: 256,
            dropout: 0.1,
        }
    }
}

/// The freezing scenario, parsed once when the config is read; written back as the same string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Scenario {
    /// everything trains
    #[default]
    None,
    /// nothing trains
    All,
    /// the encoder is frozen, heads train
    Backbone,
    /// one task's head is frozen, everything else trains
    Head(String),
}

impl TryFrom<String> for Scenario {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Ok(match s.as_str() {
            "none" => Scenario::None,
            "all" => Scenario::All,
            "backbone" => Scenario::Backbone,
            _ => match s.strip_prefix("head:") {
                Some(task) if !task.is_empty() => Scenario::Head(task.to_string()),
                _ => return Err(format!("scenario `{s}` is not one of none, all, backbone, head:<task>")),
            },
        })
    }
}

impl From<Scenario> for String {
    fn from(s: Scenario) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scenario::None => f.write_str("none"),
            Scenario::All => f.write_str("all"),
            Scenario::Backbone => f.write_str("backbone"),
            Scenario::Head(t) => write!(f, "head:{t}"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FreezeConfig {
    /// none | all | backbone | head:<task>
    pub scenario: Scenario,
    /// train only the top k transformer layers of the encoder (embeddings and lower layers frozen)
    pub unfreeze_top_layers: Option<usize>,
    pub frozen_task_loss: FrozenTaskLoss,
}

/// What a task whose head is frozen contributes to training.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrozenTaskLoss {
    /// its loss still flows into the shared encoder
    #[default]
    Backprop,
    /// its batches are not trained on
    Ignore,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// every batch of every task once per epoch, in random order
    #[default]
    Proportional,
    /// tasks take turns until each has used its batches
    RoundRobin,
    /// task i drawn with probability ∝ n_i^(1/T)
    Temperature,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub lr_encoder: f64,
    pub lr_heads: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    /// max global gradient norm; 0 turns clipping off
    pub grad_clip: f64,
    pub sampling: Sampling,
    pub temperature: f64,
    pub eval_every_steps: Option<usize>,
    /// cache pooled features when the whole encoder is frozen
    pub cache_features: bool,
    /// checkpoint every N optimizer steps (each epoch end always); an interrupted run resumes from the last
    pub checkpoint_every_steps: Option<usize>,
    /// fp32 (default), bf16 or fp16 autocast, or auto (bf16 where the hardware runs it natively)
    pub precision: Precision,
    /// allow TF32 float32 matmuls on CUDA (`torch.set_float32_matmul_precision('high')`); off as in PyTorch
    pub tf32: bool,
    /// read the step losses, predictions and gradient norms kept on the device every N steps (and at each
    /// evaluation, checkpoint and epoch end): the only host reads in the loop, so a GPU never waits per step
    pub log_every_steps: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 3,
            batch_size: 32,
            // larger CPU batches of long sentences run slower (measured: 128 is 1.6x slower than 16-32 on AG News)
            eval_batch_size: 32,
            lr_encoder: 2e-5,
            lr_heads: 1e-3,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            grad_clip: 1.0,
            sampling: Sampling::Proportional,
            temperature: 2.0,
            eval_every_steps: None,
            cache_features: true,
            checkpoint_every_steps: None,
            precision: Precision::Fp32,
            tf32: false,
            log_every_steps: 50,
        }
    }
}

impl TaskConfig {
    pub fn label_map(&self) -> Result<LabelMap> {
        Ok(match self.label_format {
            LabelFormat::Name => LabelMap::Names(
                self.labels
                    .clone()
                    .with_context(|| format!("task `{}`: label_format name needs `labels`", self.name))?,
            ),
            LabelFormat::Integer => LabelMap::Integer {
                offset: self.label_offset,
                num_labels: self.num_labels()?,
            },
        })
    }

    pub fn num_labels(&self) -> Result<usize> {
        match (&self.labels, self.num_labels) {
            (Some(l), Some(n)) if l.len() != n => {
                bail!(
                    "task `{}`: `labels` has {} names but num_labels is {n}",
                    self.name,
                    l.len()
                )
            }
            (Some(l), _) => Ok(l.len()),
            (None, Some(n)) => Ok(n),
            (None, None) => bail!("task `{}`: give `labels` (class names) or `num_labels`", self.name),
        }
    }

    /// Display names for classes: the configured names, else the class index.
    pub fn label_names(&self) -> Vec<String> {
        match &self.labels {
            Some(l) => l.clone(),
            None => (0..self.num_labels.unwrap_or(0))
                .map(|i| (i as i64 + self.label_offset).to_string())
                .collect(),
        }
    }
}

impl ExperimentConfig {
    /// Reads a config file, applies `key.path=value` overrides, and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let cfg: ExperimentConfig = if overrides.is_empty() {
            // straight from text, so that errors carry line numbers
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text)).map_err(|e| explain(path, e))?
        } else {
            let mut value: serde_yaml::Value =
                serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for o in overrides {
                apply_override(&mut value, o)?;
            }
            serde_path_to_error::deserialize(value).map_err(|e| explain(path, e).context("after --set overrides"))?
        };
        cfg.validate().with_context(|| format!("{}", path.display()))?;
        Ok(cfg)
    }

    /// The scenario as reported in metrics and summaries.
    pub fn scenario_label(&self) -> String {
        match self.freeze.unfreeze_top_layers {
            Some(k) => format!("unfreeze_top{k}"),
            None => self.freeze.scenario.to_string(),
        }
    }

    /// Every key within its range (the README's config reference lists them); errors name the key path.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name).context("name")?;
        if let Some(b) = &self.base_name {
            check_name(b).context("base_name")?;
        }
        crate::device::check_device_syntax(&self.device).context("device")?;
        if self.output_dir.as_os_str().is_empty() {
            bail!("output_dir: must not be empty (default: results)");
        }
        self.encoder.validate()?;
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
        self.train.validate()
    }
}

/// A run name is one plain folder name: letters, digits, `.`, `-`, `_`; not `.` or `..`.
pub fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        bail!("`{name}` must be one plain folder name (letters, digits, `.`, `-`, `_`; not `.` or `..`)");
    }
    for suffix in [".partial", ".old", ".lock"] {
        if name.ends_with(suffix) {
            bail!("`{name}` must be a plain folder name not ending in {suffix} (a run's own paths end so)");
        }
    }
    Ok(())
}

/// `x` within `lo..=hi` and a number (NaN never is).
fn in_range(key: &str, x: f64, lo: f64, hi: f64) -> Result<()> {
    if !(x >= lo && x <= hi) {
        bail!("{key}: {x} is out of range (expected {lo} to {hi})");
    }
    Ok(())
}

fn count_range(key: &str, x: usize, lo: usize, hi: usize) -> Result<()> {
    if x < lo || x > hi {
        bail!("{key}: {x} is out of range (expected {lo} to {hi})");
    }
    Ok(())
}

impl EncoderConfig {
    fn validate(&self) -> Result<()> {
        if self.model.trim().is_empty() {
            bail!("encoder.model: must name a model folder or a known model");
        }
        // [CLS] + at least one token + [SEP]; the model's own position limit is checked when it loads
        count_range("encoder.max_length", self.max_length, 3, 65_536)
    }
}

impl TaskConfig {
    fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            bail!("name: `{}` must be non-empty letters, digits, `.`, `-`, `_`", self.name);
        }
        if self.text_column.is_empty() || self.label_column.is_empty() {
            bail!("text_column, label_column: must not be empty");
        }
        if let Some(l) = &self.labels {
            let unique: std::collections::HashSet<&String> = l.iter().collect();
            if l.len() < 2 || unique.len() != l.len() || l.iter().any(|n| n.trim().is_empty()) {
                bail!("labels: give at least 2 distinct, non-empty class names");
            }
        }
        if let Some(n) = self.num_labels {
            count_range("num_labels", n, 2, 1_000_000)?;
        }
        self.num_labels()?;
        self.label_map()?;
        if let HeadConfig::Mlp(m) = &self.head {
            count_range("head.hidden", m.hidden.max(0) as usize, 1, 1 << 20)?;
            if !(0.0..1.0).contains(&m.dropout) {
                bail!("head.dropout: {} is out of range (expected 0 to below 1)", m.dropout);
            }
        }
        in_range("loss_weight", self.loss_weight, 0.0, 1e6)?;
        for (key, limit) in [("limit_train", self.limit_train), ("limit_eval", self.limit_eval)] {
            if limit == Some(0) {
                bail!("{key}: must be at least 1 (or null for all rows)");
            }
        }
        Ok(())
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        count_range("train.epochs", self.epochs, 1, 100_000)?;
        count_range("train.batch_size", self.batch_size, 1, 65_536)?;
        count_range("train.eval_batch_size", self.eval_batch_size, 1, 65_536)?;
        in_range("train.lr_encoder", self.lr_encoder, 0.0, 1e6)?;
        in_range("train.lr_heads", self.lr_heads, 0.0, 1e6)?;
        in_range("train.weight_decay", self.weight_decay, 0.0, 1.0)?;
        in_range("train.warmup_ratio", self.warmup_ratio, 0.0, 1.0)?;
        in_range("train.grad_clip", self.grad_clip, 0.0, 1e6)?;
        in_range("train.temperature", self.temperature, 1e-3, 1e6)?;
        count_range("train.log_every_steps", self.log_every_steps, 1, 1 << 30)?;
        for (key, n) in [
            ("train.eval_every_steps", self.eval_every_steps),
            ("train.checkpoint_every_steps", self.checkpoint_every_steps),
        ] {
            if n == Some(0) {
                bail!("{key}: must be at least 1 (or null)");
            }
        }
        Ok(())
    }
}

/// `a.b.0.c=value`: the value is parsed as YAML, so numbers, booleans and lists keep their type.
fn apply_override(root: &mut serde_yaml::Value, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .with_context(|| format!("--set `{spec}`: expected key.path=value"))?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(raw).with_context(|| format!("--set `{spec}`: value is not valid YAML"))?;
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        node = match node {
            serde_yaml::Value::Sequence(seq) => {
                let idx: usize = part
                    .parse()
                    .with_context(|| format!("--set `{spec}`: `{part}` should be a list index"))?;
                let len = seq.len();
                seq.get_mut(idx)
                    .with_context(|| format!("--set `{spec}`: index {idx} out of range (list has {len})"))?
            }
            serde_yaml::Value::Mapping(map) => {
                let k = serde_yaml::Value::String(part.to_string());
                if !map.contains_key(&k) {
                    map.insert(
                        k.clone(),
                        if last {
                            serde_yaml::Value::Null
                        } else {
                            serde_yaml::Mapping::new().into()
                        },
                    );
                }
                map.get_mut(&k).expect("inserted above")
            }
            serde_yaml::Value::Null => {
                *node = serde_yaml::Mapping::new().into();
                let serde_yaml::Value::Mapping(map) = node else {
                    unreachable!()
                };
                map.entry(serde_yaml::Value::String(part.to_string()))
                    .or_insert(serde_yaml::Value::Null)
            }
            _ => bail!("--set `{spec}`: `{part}` is inside a value that is not a mapping or list"),
        };
    }
    *node = value;
    Ok(())
}

/// serde_yaml's message, with the file name and the key path, and for an unknown key the nearest valid one.
fn explain(path: &Path, e: serde_path_to_error::Error<serde_yaml::Error>) -> anyhow::Error {
    let key = e.path().to_string();
    let msg = e.inner().to_string();
    let mut out = if key == "." {
        format!("{}: {msg}", path.display())
    } else {
        format!("{}: {key}: {msg}", path.display())
    };
    if let Some(rest) = msg.split("unknown field `").nth(1) {
        let unknown = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .unwrap_or("")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        if let Some(best) = expected
            .iter()
            .map(|k| (strsim::jaro_winkler(unknown, k), k))
            .filter(|(s, _)| *s > 0.7)
            .max_by(|a, b| a.0.total_cmp(&b.0))
        {
            out.push_str(&format!(" (did you mean `{}`?)", best.1));
        }
    }
    anyhow::anyhow!(out)
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
