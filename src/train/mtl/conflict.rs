//! Gradient-conflict diagnostics (for conflict.csv): per task pair (i < j) of one parameter group's
//! Jacobian rows, the cosine of their gradients and the norm ratio ||g_i|| / ||g_j||, from the float64
//! Gramian. Undefined values (a zero-norm gradient) are `None`, never NaN.

use anyhow::Result;
use serde::Serialize;
use tch::Tensor;

use super::gramian::Gram;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairStat {
    pub task_i: usize,
    pub task_j: usize,
    /// <g_i, g_j> / (||g_i|| ||g_j||); None when either norm is zero
    pub cosine: Option<f64>,
    /// ||g_i|| / ||g_j||; None when ||g_j|| is zero
    pub norm_ratio: Option<f64>,
}

/// The statistics of every pair of rows of `rows` (m x n_group: one group's slice of the Jacobian).
pub fn pairwise(rows: &Tensor) -> Result<Vec<PairStat>> {
    let gram = Gram::of_jacobian(rows)?;
    Ok(pairwise_from_gram(&gram))
}

/// The same from a Gramian the caller already holds.
pub fn pairwise_from_gram(gram: &Gram) -> Vec<PairStat> {
    let m = gram.m;
    let norm: Vec<f64> = (0..m).map(|i| gram.at(i, i).max(0.0).sqrt()).collect();
    let mut out = Vec::with_capacity(m * (m.saturating_sub(1)) / 2);
    for i in 0..m {
        for j in i + 1..m {
            let both = norm[i] > 0.0 && norm[j] > 0.0;
            out.push(PairStat {
                task_i: i,
                task_j: j,
                // clamp: rounding can push |cos| of (anti)parallel rows a hair past 1
                cosine: both.then(|| (gram.at(i, j) / (norm[i] * norm[j])).clamp(-1.0, 1.0)),
                norm_ratio: (norm[j] > 0.0).then(|| norm[i] / norm[j]),
            });
        }
    }
    out
}
