//! Semantic textual similarity evaluation (STS-B): cosine similarity of the two sentence vectors
//! against the gold score, as sentence-transformers' EmbeddingSimilarityEvaluator reports it.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;

use crate::data::pairs::{PairData, ScoreColumn};
use crate::encoder::sentence::SentenceEncoder;
use crate::model::embedding_task::sts_correlations;

pub struct StsPairs {
    pub first: Vec<String>,
    pub second: Vec<String>,
    pub gold: Vec<f64>,
}

/// The columns an STS file is read by (STS-B's names by default).
pub struct StsColumns<'a> {
    pub first: &'a str,
    pub second: &'a str,
    pub score: &'a str,
}

impl Default for StsColumns<'_> {
    fn default() -> Self {
        StsColumns {
            first: "sentence1",
            second: "sentence2",
            score: "score",
        }
    }
}

impl StsPairs {
    /// STS-B's columns, every row.
    pub fn read(path: &Path) -> Result<Self> {
        Self::read_columns(path, &StsColumns::default(), None)
    }

    /// The first `limit` pairs (all: None), through the one reader of sentence rows (`data::pairs`): the gold
    /// scores as the file has them, a score that is not a finite number or an empty sentence failing with the
    /// file, line and column named.
    pub fn read_columns(path: &Path, cols: &StsColumns, limit: Option<usize>) -> Result<Self> {
        let score = ScoreColumn {
            name: cols.score,
            range: None,
        };
        let d = PairData::read(path, &[cols.first, cols.second], Some(score), limit)?;
        let mut columns = d.columns.into_iter();
        let (first, second) = (columns.next().unwrap_or_default(), columns.next().unwrap_or_default());
        Ok(StsPairs {
            first,
            second,
            gold: d.scores,
        })
    }

    /// Each distinct sentence once, in order of first appearance, and each pair's two indices into them.
    pub(crate) fn distinct(&self) -> (Vec<String>, Vec<i64>, Vec<i64>) {
        let mut unique: Vec<String> = Vec::new();
        let mut index: HashMap<String, i64> = HashMap::new();
        let mut at = |s: &str| match index.get(s) {
            Some(&i) => i,
            None => {
                let i = unique.len() as i64;
                index.insert(s.to_string(), i);
                unique.push(s.to_string());
                i
            }
        };
        let first: Vec<i64> = self.first.iter().map(|s| at(s)).collect();
        let second: Vec<i64> = self.second.iter().map(|s| at(s)).collect();
        (unique, first, second)
    }

    /// Spearman and Pearson (x100) of each pair's cosine similarity, given `emb` `[distinct, dim]` in
    /// `distinct`'s order, against the gold scores.
    pub(crate) fn correlations(&self, emb: &tch::Tensor, first: &[i64], second: &[i64]) -> Result<(f64, f64)> {
        let pick = |v: &[i64]| emb.index_select(0, &tch::Tensor::from_slice(v).to_device(emb.device()));
        sts_correlations(&pick(first), &pick(second), &self.gold)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct StsScore {
    pub pairs: usize,
    /// ×100, as usually reported
    pub spearman: f64,
    pub pearson: f64,
    /// distinct sentences encoded, and how fast
    pub sentences: usize,
    pub encode_s: f64,
    pub sentences_per_s: f64,
}

pub(crate) fn evaluate(
    model: &SentenceEncoder,
    pairs: &StsPairs,
    batch_size: usize,
    progress: bool,
) -> Result<StsScore> {
    let (unique, first, second) = pairs.distinct();
    // warm-up outside the timing, as the reference does (on CUDA the first batches load kernels and libraries)
    let _ = model.encode(&unique[..unique.len().min(64)], batch_size, false)?;
    let t0 = std::time::Instant::now();
    let emb = model.encode(&unique, batch_size, progress)?;
    let encode_s = t0.elapsed().as_secs_f64();
    let (spearman, pearson) = pairs.correlations(&emb, &first, &second)?;
    Ok(StsScore {
        pairs: pairs.gold.len(),
        spearman,
        pearson,
        sentences: unique.len(),
        encode_s,
        sentences_per_s: unique.len() as f64 / encode_s,
    })
}
