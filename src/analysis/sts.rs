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

impl StsPairs {
    pub fn read(path: &Path) -> Result<Self> {
        let t = Table::read(path)?;
        let (a, b, s) = (t.column("sentence1")?, t.column("sentence2")?, t.column("score")?);
        let mut out = StsPairs {
            first: vec![],
            second: vec![],
            gold: vec![],
        };
        for (line, row) in &t.rows {
            let score: f64 = row[s].trim().parse().with_context(|| {
                format!(
                    "{}:{line}: column `score`: `{}` is not a number",
                    path.display(),
                    row[s]
                )
            })?;
            if !score.is_finite() {
                bail!(
                    "{}:{line}: column `score`: `{}` is not a finite number",
                    path.display(),
                    row[s].trim()
                );
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
    // each distinct sentence is encoded once
    let mut unique: Vec<String> = Vec::new();
    let mut index: HashMap<&str, i64> = HashMap::new();
    for s in pairs.first.iter().chain(&pairs.second) {
        if !index.contains_key(s.as_str()) {
            index.insert(s, unique.len() as i64);
            unique.push(s.clone());
        }
    }
    // warm-up outside the timing, as the reference does (on CUDA the first batches load kernels and libraries)
    let _ = model.encode(&unique[..unique.len().min(64)], batch_size, false)?;
    let t0 = std::time::Instant::now();
    let emb = l2_normalize(&model.encode(&unique, batch_size, progress)?);
    let encode_s = t0.elapsed().as_secs_f64();
    let pick = |v: &[String]| tch::Tensor::from_slice(&v.iter().map(|s| index[s.as_str()]).collect::<Vec<_>>());
    let (ea, eb) = (
        emb.index_select(0, &pick(&pairs.first)),
        emb.index_select(0, &pick(&pairs.second)),
    );
    let cos: Vec<f64> = (ea * eb)
        .sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Double)
        .try_into()?;
    Ok(StsScore {
        pairs: pairs.gold.len(),
        spearman: 100.0 * spearman(&cos, &pairs.gold),
        pearson: 100.0 * pearson(&cos, &pairs.gold),
        sentences: unique.len(),
        encode_s,
        sentences_per_s: unique.len() as f64 / encode_s,
    })
}
