//! Semantic textual similarity evaluation (STS-B): cosine similarity of the two sentence vectors
//! against the gold score, as sentence-transformers' EmbeddingSimilarityEvaluator reports it.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::data::Table;
use crate::encoder::pooling::l2_normalize;
use crate::encoder::sentence::SentenceEncoder;
use crate::model::metrics::{pearson, spearman};

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

    /// The first `limit` pairs (all: None); a score that is not a finite number or an empty sentence fails
    /// naming the file, line and column.
    pub fn read_columns(path: &Path, cols: &StsColumns, limit: Option<usize>) -> Result<Self> {
        let t = Table::read(path)?;
        let (a, b, s) = (t.column(cols.first)?, t.column(cols.second)?, t.column(cols.score)?);
        let mut out = StsPairs {
            first: vec![],
            second: vec![],
            gold: vec![],
        };
        for (line, row) in t.rows.iter().take(limit.unwrap_or(usize::MAX)) {
            let at = |col: &str| format!("{}:{line}: column `{col}`", path.display());
            let score: f64 = row[s]
                .trim()
                .parse()
                .with_context(|| format!("{}: `{}` is not a number", at(cols.score), row[s]))?;
            if !score.is_finite() {
                bail!("{}: `{}` is not a finite number", at(cols.score), row[s].trim());
            }
            for (i, col) in [(a, cols.first), (b, cols.second)] {
                if row[i].trim().is_empty() {
                    bail!("{}: the sentence is empty", at(col));
                }
            }
            out.first.push(row[a].clone());
            out.second.push(row[b].clone());
            out.gold.push(score);
        }
        if out.gold.is_empty() {
            bail!("{}: no pairs (the file is empty)", path.display());
        }
        Ok(out)
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
        let emb = l2_normalize(&emb.to_kind(tch::Kind::Float));
        let pick = |v: &[i64]| emb.index_select(0, &tch::Tensor::from_slice(v).to_device(emb.device()));
        let cos: Vec<f64> = (pick(first) * pick(second))
            .sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Double)
            .to_device(tch::Device::Cpu)
            .try_into()?;
        Ok((100.0 * spearman(&cos, &self.gold), 100.0 * pearson(&cos, &self.gold)))
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
