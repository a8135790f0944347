//! Aligned-MTL (torchjd's `AlignedMTL`, Senushkin et al. 2023, scale_mode `min`): the balance
//! transformation `B = sqrt(lambda_min) V diag(lambda^-1/2) V^T` over the eigenpairs of G above torch's
//! rank tolerance `max(lambda) m eps`, applied to the mean preference 1/m; B = I when the rank is 0.
//! The eigendecomposition is libtorch's `linalg.eigh(UPLO="U")` on the float64 Gramian.

use anyhow::{Context, Result};

use super::gramian::{Gram, GramianWeighting};

pub struct AlignedMtl;

impl GramianWeighting for AlignedMtl {
    fn weights(&self, gram: &Gram) -> Result<Vec<f64>> {
        let m = gram.m;
        let (lambda, vectors) = gram.to_tensor().f_linalg_eigh("U").context("aligned_mtl: eigh")?;
        let lambda = Vec::<f64>::try_from(&lambda).context("aligned_mtl: eigenvalues")?;
        let vectors = Vec::<f64>::try_from(&vectors.contiguous().view([-1])).context("aligned_mtl: eigenvectors")?;
        let max = lambda.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let tol = max * m as f64 * f64::EPSILON;
        let kept: Vec<usize> = (0..m).filter(|&k| lambda[k] > tol).collect();
        if kept.is_empty() {
            return Ok(vec![1.0 / m as f64; m]);
        }
        let scale = kept.iter().map(|&k| lambda[k]).fold(f64::INFINITY, f64::min).sqrt();
        // alpha = scale * sum_k v_k (v_k . w) / sqrt(lambda_k), w = 1/m
        let mut alpha = vec![0.0; m];
        for &k in &kept {
            let v_k: Vec<f64> = (0..m).map(|i| vectors[i * m + k]).collect();
            let dot = v_k.iter().sum::<f64>() / m as f64;
            for (a, v) in alpha.iter_mut().zip(&v_k) {
                *a += scale * v * dot / lambda[k].sqrt();
            }
        }
        Ok(alpha)
    }
}
