//! The head-less task kinds (`task::TaskKind::{Sts, Pairs}`): their loss on a batch's pooled embeddings and
//! their metrics on an evaluation set's, through the objectives verified against sentence-transformers 3.3.1
//! (`objective`).
//!
//! Invariants:
//! - sts: the loss is CoSENT (scale 20) or cosine MSE on (sentence1, sentence2) with the gold scaled to 0..1;
//!   the metrics are Spearman and Pearson (x100) of the cosine similarity against the gold, as
//!   sentence-transformers' EmbeddingSimilarityEvaluator computes them (`sts_correlations`, float64);
//! - pairs: the loss is MNRL (scale 20) on (anchor, positive[, negative]); the metrics are accuracy@1 and MRR
//!   (in 0..1, like accuracy) of retrieving each anchor's positive among the set's positives
//!   (`objective::retrieval`, pessimistic ties); hard negatives take part in the loss, not in the metrics.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use tch::{Kind, Tensor};

use crate::encoder::pooling::l2_normalize;
use crate::model::metrics::{pearson, spearman};
use crate::model::objective::{retrieval, PairBatch, PairLoss};

/// metrics.csv's extra columns of an sts task.
pub(crate) const STS_COLUMNS: &[&str] = &["spearman", "pearson"];
/// metrics.csv's extra columns of a pairs task.
pub(crate) const PAIRS_COLUMNS: &[&str] = &["acc_at_1", "mrr"];

fn two(columns: &[Tensor]) -> Result<(&Tensor, &Tensor)> {
    match columns {
        [a, b, ..] => Ok((a, b)),
        _ => bail!("a pair task needs two sentence columns, got {}", columns.len()),
    }
}

pub(crate) fn sts_loss(loss: PairLoss, columns: &[Tensor], gold: Option<&Tensor>) -> Result<Tensor> {
    let (first, second) = two(columns)?;
    let gold = gold.context("an sts batch carries its gold scores")?;
    loss.loss(&PairBatch {
        first,
        second,
        gold: Some(gold),
        hard_negatives: &[],
    })
}

pub(crate) fn pairs_loss(columns: &[Tensor]) -> Result<Tensor> {
    let (first, second) = two(columns)?;
    PairLoss::Mnrl.loss(&PairBatch {
        first,
        second,
        gold: None,
        hard_negatives: &columns[2..],
    })
}

/// Spearman and Pearson (x100) of cos(first_i, second_i) against `gold`, in float64, as
/// EmbeddingSimilarityEvaluator reports them (NaN when either side is constant, as scipy gives).
pub(crate) fn sts_correlations(first: &Tensor, second: &Tensor, gold: &[f64]) -> Result<(f64, f64)> {
    let _guard = tch::no_grad_guard();
    let (a, b) = (
        l2_normalize(&first.to_kind(Kind::Double)),
        l2_normalize(&second.to_kind(Kind::Double)),
    );
    let cos: Vec<f64> = (a * b)
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
        .to_device(tch::Device::Cpu)
        .try_into()?;
    if cos.len() != gold.len() {
        bail!("{} similarities for {} gold scores", cos.len(), gold.len());
    }
    Ok((100.0 * spearman(&cos, gold), 100.0 * pearson(&cos, gold)))
}

pub(crate) fn sts_metrics(columns: &[Tensor], gold: &[f64]) -> Result<BTreeMap<String, f64>> {
    let (first, second) = two(columns)?;
    let (s, p) = sts_correlations(first, second, gold)?;
    Ok(BTreeMap::from([("spearman".into(), s), ("pearson".into(), p)]))
}

pub(crate) fn pairs_metrics(columns: &[Tensor]) -> Result<BTreeMap<String, f64>> {
    let (anchors, positives) = two(columns)?;
    let r = retrieval::evaluate(anchors, positives)?;
    Ok(BTreeMap::from([
        ("acc_at_1".into(), r.accuracy_at_1),
        ("mrr".into(), r.mrr),
    ]))
}
