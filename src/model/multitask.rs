//! The multi-task model: one shared sentence encoder, one head per task that has one (a classification task;
//! sts and pairs tasks train the embeddings themselves), the parameter groups that freezing, reporting and
//! checkpoints work on, and prediction with trained heads.

use anyhow::{bail, Result};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::config::{ExperimentConfig, TaskConfig};
use crate::encoder::sentence::{SentenceEncoder, SentenceOptions};
use crate::model::group::{Group, ParamGroup};
use crate::model::heads::Head;
use crate::model::lora::LoraAdapters;
use crate::runtime::amp::Precision;

pub struct MultiTaskModel {
    pub sentence: SentenceEncoder,
    /// the heads of the tasks that have one, in task order
    pub heads: Vec<Head>,
    /// LoRA adapters on the encoder (`freeze.lora`), attached after the freezing plan is applied
    pub lora: Option<LoraAdapters>,
}

/// One task's answer for one sentence: the most probable label and the whole distribution.
#[derive(Debug, Clone)]
pub struct TaskPrediction {
    pub task: String,
    pub label: String,
    /// (label name, probability) in class order
    pub probabilities: Vec<(String, f64)>,
}

/// Every task's answer for one sentence.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub text: String,
    pub tasks: Vec<TaskPrediction>,
}

impl MultiTaskModel {
    /// Loads the encoder and initialises the heads from the torch seed, which the caller sets.
    pub fn build(cfg: &ExperimentConfig, device: Device) -> Result<Self> {
        let opts = SentenceOptions {
            pooling: cfg.encoder.pooling,
            normalize: cfg.encoder.normalize,
            max_length: Some(cfg.encoder.max_length),
            precision: Precision::Fp32,
        };
        let sentence = SentenceEncoder::load(&cfg.encoder.model, &opts, device)?;
        let heads = cfg
            .tasks
            .iter()
            .filter(|t| t.kind.has_head())
            .map(|t| Ok(Head::new(&t.name, &t.head(), sentence.dim(), t.num_labels()?, device)))
            .collect::<Result<Vec<_>>>()?;
        Ok(MultiTaskModel {
            sentence,
            heads,
            lora: None,
        })
    }

    /// Runs `f` with LoRA's targets holding their pretrained W0 (the frozen weights as loaded), then writes
    /// W0 + s·B·A back; without LoRA just runs `f`. For comparing frozen tensors bit for bit.
    pub fn with_base_weights<T>(&self, f: impl FnOnce() -> T) -> T {
        if let Some(l) = &self.lora {
            l.restore_base();
        }
        let out = f();
        if let Some(l) = &self.lora {
            l.apply();
        }
        out
    }

    /// The `i`th head (of the tasks that have one, in task order).
    pub fn head(&self, i: usize) -> &Head {
        &self.heads[i]
    }

    /// The head of task `task`, if it has one.
    pub fn head_of(&self, task: &str) -> Option<&Head> {
        self.heads.iter().find(|h| h.task == task)
    }

    /// Groups in `Group` order: embeddings, layers, pooler (marked absent, without variables, when the
    /// checkpoint had none), then heads in task order. Variable names
    /// inside a head group are prefixed with `head:<task>/` so that names are unique across VarStores.
    pub fn groups(&self) -> Vec<ParamGroup> {
        let mut enc: Vec<(String, Tensor)> = self.sentence.encoder.vs.variables().into_iter().collect();
        enc.sort_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<ParamGroup> = Vec::new();
        for (name, t) in enc {
            let group = Group::of_encoder_var(&name);
            match groups.iter_mut().find(|g| g.group == group) {
                Some(g) => g.vars.push((name, t)),
                None => groups.push(ParamGroup {
                    group,
                    vars: vec![(name, t)],
                    absent: false,
                }),
            }
        }
        if self.sentence.encoder.pooler_absent {
            groups.push(ParamGroup {
                group: Group::Pooler,
                vars: Vec::new(),
                absent: true,
            });
        }
        groups.sort_by(|a, b| a.group.cmp(&b.group));
        for h in &self.heads {
            let group = Group::Head(h.task.clone());
            let mut vars: Vec<(String, Tensor)> =
                h.vs.variables()
                    .into_iter()
                    .map(|(n, t)| (format!("{group}/{n}"), t))
                    .collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            groups.push(ParamGroup {
                group,
                vars,
                absent: false,
            });
        }
        groups
    }

    /// Every task's label distribution for each sentence. `tasks` are the configs the heads were built
    /// from (for the label names). A non-finite probability (a diverged model) is an error.
    pub fn predict(&self, tasks: &[TaskConfig], texts: &[String]) -> Result<Vec<Prediction>> {
        let feats = self.sentence.encode(texts, 64, false)?.to_device(self.sentence.device);
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let x = feats.get(i as i64).unsqueeze(0);
            let mut preds = Vec::with_capacity(self.heads.len());
            for (h, t) in self.heads.iter().zip(tasks.iter().filter(|t| t.kind.has_head())) {
                let probs: Vec<f64> = tch::no_grad(|| h.forward_t(&x, false).softmax(-1, Kind::Double))
                    .view([-1])
                    .try_into()?;
                if probs.iter().any(|p| !p.is_finite()) {
                    bail!(
                        "task `{}`: the model gives non-finite probabilities (did training diverge?)",
                        t.name
                    );
                }
                let names = t.label_names();
                let best = probs
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                preds.push(TaskPrediction {
                    task: t.name.clone(),
                    label: names[best].clone(),
                    probabilities: names.into_iter().zip(probs).collect(),
                });
            }
            out.push(Prediction {
                text: text.clone(),
                tasks: preds,
            });
        }
        Ok(out)
    }
}

impl Prediction {
    /// `{"text": ..., "tasks": {task: {"label": ..., "probabilities": {label: p}}}}`, probabilities rounded
    /// to 4 decimals, tasks and labels in config order.
    pub fn to_json(&self) -> serde_json::Value {
        let tasks: serde_json::Map<String, serde_json::Value> = self
            .tasks
            .iter()
            .map(|t| {
                let probs: serde_json::Map<String, serde_json::Value> = t
                    .probabilities
                    .iter()
                    .map(|(n, p)| (n.clone(), json!((p * 1e4).round() / 1e4)))
                    .collect();
                (t.task.clone(), json!({ "label": t.label, "probabilities": probs }))
            })
            .collect();
        json!({ "text": self.text, "tasks": tasks })
    }
}
