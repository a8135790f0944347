//! MultipleNegativesRankingLoss, as sentence-transformers 3.3.1 computes it: the candidates are the batch's
//! positives followed by each hard-negative column (`torch.cat(reps[1:])`), the scores are
//! scale * cos_sim(anchors, candidates) (`[batch, batch * (1 + columns)]`), and the loss is the mean
//! cross-entropy with anchor i's target at column i.
//!
//! Invariants: cosine is `util.cos_sim` (rows normalised with epsilon 1e-12, then a matrix product);
//! every positive of another pair, and every hard negative of any pair, is a negative for each anchor.
//! A batch with a single candidate (one pair, no hard negatives) is an error: its loss is identically
//! zero, so a training step on it would silently learn nothing. One pair with a hard negative is valid.

use anyhow::{bail, Result};
use tch::{Kind, Reduction, Tensor};

use super::{check_pair, working};
use crate::encoder::pooling::l2_normalize;

/// The MNRL loss of anchors and positives (`[batch, dim]` each) with optional hard-negative columns.
pub fn loss(anchors: &Tensor, positives: &Tensor, hard_negatives: &[Tensor], scale: f64) -> Result<Tensor> {
    let batch = check_pair("mnrl", anchors, positives)?;
    for (k, n) in hard_negatives.iter().enumerate() {
        check_pair(&format!("mnrl hard negatives column {k}"), anchors, n)?;
    }
    let candidates = batch * (1 + hard_negatives.len() as i64);
    if candidates < 2 {
        bail!("mnrl: a batch of one pair without hard negatives has no negative to rank against (batch_size >= 2)");
    }
    let columns: Vec<Tensor> = std::iter::once(positives).chain(hard_negatives).map(working).collect();
    let b = Tensor::cat(&columns, 0);
    let scores = l2_normalize(&working(anchors)).mm(&l2_normalize(&b).tr()) * scale;
    let target = Tensor::arange(batch, (Kind::Int64, scores.device()));
    Ok(scores.cross_entropy_loss::<Tensor>(&target, None, Reduction::Mean, -100, 0.0))
}
