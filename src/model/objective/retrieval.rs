//! Retrieval metrics of an evaluation set of (anchor, positive) pairs: each anchor retrieves among all
//! the set's positives by cosine similarity; its own positive is the one relevant item.
//!
//! Invariants:
//! - computed without gradients in float64 on the embeddings' device, cosine as `util.cos_sim`
//!   (rows normalised with epsilon 1e-12, then dot products), in blocks of anchors to bound memory;
//! - tie rule, pessimistic: the rank of anchor i's positive is 1 + the number of *other* positives j
//!   with cos(a_i, p_j) >= cos(a_i, p_i). A collapsed encoder (all similarities equal) thus scores
//!   accuracy@1 = 0 and MRR = 1/n, never a perfect score. Duplicate positives (the same text twice)
//!   count against each other; deduplicate the set beforehand if that is not wanted;
//! - accuracy@1 is the fraction of anchors with rank 1, MRR the mean of 1/rank, both in 0..1;
//! - fewer than two pairs, or a non-finite similarity (NaN embeddings), is an error.

use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Kind, Tensor};

use super::check_pair;
use crate::encoder::pooling::l2_normalize;

/// Anchors per block of the similarity matrix: 1024 x n float64 scores at a time.
const BLOCK: i64 = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Retrieval {
    pub pairs: usize,
    pub accuracy_at_1: f64,
    pub mrr: f64,
}

/// Ranks (1 = best) of each anchor's own positive among all positives, under the pessimistic tie rule.
pub fn ranks(anchors: &Tensor, positives: &Tensor) -> Result<Vec<i64>> {
    let n = check_pair("retrieval", anchors, positives)?;
    if n < 2 {
        bail!("retrieval: needs at least two pairs, got {n}");
    }
    let _guard = tch::no_grad_guard();
    let a = l2_normalize(&anchors.to_kind(Kind::Double));
    let p = l2_normalize(&positives.to_kind(Kind::Double)).tr();
    let mut out = Vec::with_capacity(n as usize);
    for start in (0..n).step_by(BLOCK as usize) {
        let len = BLOCK.min(n - start);
        let s = a.narrow(0, start, len).mm(&p);
        let own = s.gather(
            1,
            &Tensor::arange_start(start, start + len, (Kind::Int64, s.device())).unsqueeze(1),
            false,
        );
        // counts j = i itself (own >= own), so the count is the rank; NaN compares false and gives 0
        let rank: Vec<i64> = s
            .ge_tensor(&own)
            .sum_dim_intlist([1i64].as_slice(), false, Kind::Int64)
            .try_into()?;
        if rank.contains(&0) {
            bail!("retrieval: a similarity is not finite (NaN in the embeddings)");
        }
        out.extend(rank);
    }
    Ok(out)
}

/// Accuracy@1 and MRR of retrieving each anchor's positive.
pub fn evaluate(anchors: &Tensor, positives: &Tensor) -> Result<Retrieval> {
    let r = ranks(anchors, positives)?;
    let n = r.len() as f64;
    Ok(Retrieval {
        pairs: r.len(),
        accuracy_at_1: r.iter().filter(|&&k| k == 1).count() as f64 / n,
        mrr: r.iter().map(|&k| 1.0 / k as f64).sum::<f64>() / n,
    })
}
