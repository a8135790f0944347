//! The multi-task model: one shared sentence encoder, one head per task, and the named parameter
//! groups that freezing, reporting and checkpoints work on.

use anyhow::Result;
use tch::{Device, Tensor};

use crate::config::ExperimentConfig;
use crate::encoder::Encoder;
use crate::heads::Head;
use crate::sentence::{SentenceEncoder, SentenceOptions};

pub struct MultiTaskModel {
    pub sentence: SentenceEncoder,
    pub heads: Vec<Head>,
}

/// A named set of variables: `embeddings`, `layer.N`, `pooler`, or `head:<task>`.
pub struct ParamGroup {
    pub name: String,
    pub vars: Vec<(String, Tensor)>,
}

impl ParamGroup {
    pub fn numel(&self) -> i64 {
        self.vars.iter().map(|(_, t)| t.numel() as i64).sum()
    }
}

impl MultiTaskModel {
    /// Loads the encoder and initialises the heads from the torch seed, which the caller sets.
    pub fn build(cfg: &ExperimentConfig, device: Device) -> Result<Self> {
        let opts = SentenceOptions {
            pooling: cfg.encoder.pooling,
            normalize: cfg.encoder.normalize,
            max_length: Some(cfg.encoder.max_length),
            bf16: false,
        };
        let sentence = SentenceEncoder::load(&cfg.encoder.model, &opts, device)?;
        let heads = cfg
            .tasks
            .iter()
            .map(|t| Ok(Head::new(&t.name, &t.head, sentence.dim(), t.num_labels()?, device)))
            .collect::<Result<Vec<_>>>()?;
        Ok(MultiTaskModel { sentence, heads })
    }

    pub fn head(&self, task: usize) -> &Head {
        &self.heads[task]
    }

    /// Groups in a stable order: embeddings, layer.0.., pooler, then heads in task order. Variable names
    /// inside a head group are prefixed with `head:<task>/` so that names are unique across VarStores.
    pub fn groups(&self) -> Vec<ParamGroup> {
        let mut enc: Vec<(String, Tensor)> = self.sentence.encoder.vs.variables().into_iter().collect();
        enc.sort_by(|a, b| a.0.cmp(&b.0));
        let mut names: Vec<String> = vec!["embeddings".into()];
        names.extend((0..self.sentence.encoder.num_layers).map(|i| format!("layer.{i}")));
        names.push("pooler".into());
        let mut groups: Vec<ParamGroup> = names
            .into_iter()
            .map(|name| {
                let vars = enc
                    .iter()
                    .filter(|(n, _)| Encoder::group_of(n) == name)
                    .map(|(n, t)| (n.clone(), t.shallow_clone()))
                    .collect();
                ParamGroup { name, vars }
            })
            .filter(|g| !g.vars.is_empty())
            .collect();
        for h in &self.heads {
            let mut vars: Vec<(String, Tensor)> =
                h.vs.variables()
                    .into_iter()
                    .map(|(n, t)| (format!("head:{}/{n}", h.task), t))
                    .collect();
            vars.sort_by(|a, b| a.0.cmp(&b.0));
            groups.push(ParamGroup {
                name: format!("head:{}", h.task),
                vars,
            });
        }
        groups
    }
}
