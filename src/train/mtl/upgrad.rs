//! UPGrad (torchjd's `UPGrad`, Jacobian Descent, arXiv 2406.16232): each row projected onto the dual cone
//! of all rows, the projections averaged. Weights: `sum_i project(e_i / m)` with the default projector.

use anyhow::Result;

use super::gramian::{Gram, GramianWeighting};
use super::qp::project_weights;

pub struct UpGrad;

impl GramianWeighting for UpGrad {
    fn weights(&self, gram: &Gram) -> Result<Vec<f64>> {
        let m = gram.m;
        let mut total = vec![0.0; m];
        for i in 0..m {
            let mut u = vec![0.0; m];
            u[i] = 1.0 / m as f64;
            for (t, v) in total.iter_mut().zip(project_weights(&u, gram)?) {
                *t += v;
            }
        }
        Ok(total)
    }
}
