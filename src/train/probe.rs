//! The STS probe (`probes[]`, type `sts`): the encoder's sentence embeddings scored on a fixed pair file at
//! every evaluation point, as sentence-transformers' EmbeddingSimilarityEvaluator scores them (Spearman and
//! Pearson of the cosine similarity, x100), one metrics.csv row each (split `probe`; loss, accuracy and
//! macro-F1 empty).
//!
//! Invariants: the probe trains nothing and draws no random number, so it changes no result of the run; it
//! encodes without dropout and without a graph, under the run's precision, so a frozen encoder gives the same
//! value at every point, bit for bit.

use anyhow::Result;

use crate::analysis::sts::StsPairs;
use crate::encoder::tokenizer::TextTokenizer;
use crate::model::MultiTaskModel;
use crate::record::{MetricRow, Split};
use crate::runtime::amp::{self, Precision};
use crate::train::hook::{EvalHook, EvalPoint};

pub(crate) const SPEARMAN: &str = "spearman";
pub(crate) const PEARSON: &str = "pearson";

pub(crate) struct StsProbe {
    name: String,
    pairs: StsPairs,
    /// each distinct sentence once, tokenised, and each pair's two indices into them
    ids: Vec<Vec<i64>>,
    first: Vec<i64>,
    second: Vec<i64>,
    batch_size: usize,
}

impl StsProbe {
    pub(crate) fn new(name: &str, pairs: StsPairs, tok: &TextTokenizer, batch_size: usize) -> Self {
        let (unique, first, second) = pairs.distinct();
        StsProbe {
            name: name.to_string(),
            ids: tok.encode_all(&unique),
            pairs,
            first,
            second,
            batch_size,
        }
    }
}

impl EvalHook for StsProbe {
    fn extra_columns(&self) -> Vec<String> {
        vec![SPEARMAN.into(), PEARSON.into()]
    }

    fn evaluate(&mut self, at: &EvalPoint, model: &MultiTaskModel, precision: Precision) -> Result<Vec<MetricRow>> {
        let s = &model.sentence;
        let emb = amp::autocast(s.device, precision, || s.encode_ids(&self.ids, self.batch_size, false))??;
        let (spearman, pearson) = self.pairs.correlations(&emb, &self.first, &self.second)?;
        Ok(vec![MetricRow {
            run: at.run.clone(),
            scenario: at.scenario.clone(),
            epoch: at.epoch,
            step: at.step,
            task: self.name.clone(),
            split: Split::Probe,
            loss: None,
            accuracy: None,
            macro_f1: None,
            examples_seen: at.examples_seen,
            elapsed_s: at.elapsed_s,
            extra: [(SPEARMAN.to_string(), spearman), (PEARSON.to_string(), pearson)].into(),
        }])
    }
}
