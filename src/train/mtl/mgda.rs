//! MGDA (torchjd's `MGDA`): the Frank-Wolfe solver of Sener & Koltun's Algorithm 2 on the raw Gramian,
//! step for step as torchjd (start at 1/m, first arg-min on ties, stop when gamma < epsilon).

use anyhow::{bail, Result};

use super::gramian::{Gram, GramianWeighting};

pub fn default_epsilon() -> f64 {
    1e-3
}

pub fn default_max_iters() -> usize {
    100
}

pub struct Mgda {
    epsilon: f64,
    max_iters: usize,
}

impl Mgda {
    pub fn new(epsilon: f64, max_iters: usize) -> Result<Mgda> {
        if epsilon <= 0.0 || !epsilon.is_finite() {
            bail!("mgda: epsilon must be positive, got {epsilon}");
        }
        if max_iters == 0 {
            bail!("mgda: max_iters must be a positive integer");
        }
        Ok(Mgda { epsilon, max_iters })
    }
}

impl GramianWeighting for Mgda {
    fn weights(&self, gram: &Gram) -> Result<Vec<f64>> {
        let m = gram.m;
        let mut alpha = vec![1.0 / m as f64; m];
        for _ in 0..self.max_iters {
            let g_alpha = gram.mul_vec(&alpha);
            let t = first_argmin(&g_alpha);
            // alpha^T (G e_t), column t, as torchjd computes it
            let a: f64 = (0..m).map(|k| alpha[k] * gram.at(k, t)).sum();
            let b = alpha.iter().zip(&g_alpha).map(|(x, y)| x * y).sum::<f64>();
            let c = gram.at(t, t);
            let gamma = if c <= a {
                1.0
            } else if b <= a {
                0.0
            } else {
                (b - a) / (b + c - 2.0 * a)
            };
            for (i, x) in alpha.iter_mut().enumerate() {
                *x = (1.0 - gamma) * *x + if i == t { gamma } else { 0.0 };
            }
            if gamma < self.epsilon {
                break;
            }
        }
        Ok(alpha)
    }
}

/// The index of the first minimum (torch.argmin's tie rule).
fn first_argmin(x: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in x.iter().enumerate() {
        if *v < x[best] {
            best = i;
        }
    }
    best
}
