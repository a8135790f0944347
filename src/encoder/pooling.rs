//! Token states to one sentence vector, as sentence-transformers' Pooling and Normalize modules do.

use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// average of the non-padding tokens
    Mean,
    /// the first ([CLS]) token
    Cls,
    /// element-wise maximum over the non-padding tokens
    Max,
}

impl std::fmt::Display for Pooling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        })
    }
}

/// hidden: [batch, seq, dim], mask: [batch, seq] with 1 for real tokens. Returns [batch, dim].
pub fn pool(hidden: &Tensor, mask: &Tensor, pooling: Pooling) -> Tensor {
    let m = mask.unsqueeze(-1).to_kind(hidden.kind());
    match pooling {
        Pooling::Mean => {
            // the same clamp as sentence-transformers, so an all-padding row gives zeros, not NaN
            let summed = (hidden * &m).sum_dim_intlist([1i64].as_slice(), false, hidden.kind());
            let counts = m
                .sum_dim_intlist([1i64].as_slice(), false, hidden.kind())
                .clamp_min(1e-9);
            summed / counts
        }
        Pooling::Cls => hidden.select(1, 0),
        Pooling::Max => {
            let masked = hidden.masked_fill(&m.eq(0.0), -1e9);
            masked.amax([1i64].as_slice(), false)
        }
    }
}

/// L2 normalisation with torch.nn.functional.normalize's epsilon.
pub(crate) fn l2_normalize(x: &Tensor) -> Tensor {
    let norm = x.norm_scalaropt_dim(2.0, [-1i64].as_slice(), true).clamp_min(1e-12);
    x / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Tensor, Tensor) {
        let h = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 100.0, -100.0]).view([1, 3, 2]);
        let m = Tensor::from_slice(&[1i64, 1, 0]).view([1, 3]);
        (h, m)
    }

    #[test]
    fn mean_ignores_padding() {
        let (h, m) = sample();
        let v: Vec<f32> = pool(&h, &m, Pooling::Mean).view([-1]).try_into().unwrap();
        assert_eq!(v, vec![2.0, 3.0]);
    }

    #[test]
    fn max_ignores_padding_and_cls_takes_first() {
        let (h, m) = sample();
        let v: Vec<f32> = pool(&h, &m, Pooling::Max).view([-1]).try_into().unwrap();
        assert_eq!(v, vec![3.0, 4.0]);
        let c: Vec<f32> = pool(&h, &m, Pooling::Cls).view([-1]).try_into().unwrap();
        assert_eq!(c, vec![1.0, 2.0]);
    }

    #[test]
    fn normalised_rows_have_unit_norm() {
        let x = Tensor::from_slice(&[3.0f32, 4.0, 0.0, 0.0]).view([2, 2]);
        let v: Vec<f32> = l2_normalize(&x).view([-1]).try_into().unwrap();
        assert_eq!(v, vec![0.6, 0.8, 0.0, 0.0]);
    }
}
