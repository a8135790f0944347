//! PCGrad (torchjd's `PCGrad`, Yu et al. 2020) on the Gramian: for each task i, its gradient is projected
//! off every conflicting task j (inner product < 0) in the order of a fresh `randperm(m)` from libtorch's
//! global CPU generator (one permutation per i, as torchjd), and the projected gradients are summed.

use anyhow::{Context, Result};
use tch::{Device, Kind, Tensor};

use super::gramian::{Gram, GramianWeighting};

pub struct PcGrad;

impl GramianWeighting for PcGrad {
    fn weights(&self, gram: &Gram) -> Result<Vec<f64>> {
        let m = gram.m;
        let mut total = vec![0.0; m];
        for i in 0..m {
            let perm = Tensor::f_randperm(m as i64, (Kind::Int64, Device::Cpu)).context("pcgrad: randperm")?;
            let perm = Vec::<i64>::try_from(&perm).context("pcgrad: reading the permutation")?;
            let mut current = vec![0.0; m];
            current[i] = 1.0;
            for j in perm.into_iter().map(|j| j as usize).filter(|&j| j != i) {
                // <g_i^PC, g_j> = G[j] . current
                let inner: f64 = (0..m).map(|k| gram.at(j, k) * current[k]).sum();
                if inner < 0.0 {
                    current[j] -= inner / gram.at(j, j);
                }
            }
            for (t, c) in total.iter_mut().zip(current) {
                *t += c;
            }
        }
        Ok(total)
    }
}
