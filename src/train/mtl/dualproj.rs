//! DualProj (torchjd's `DualProj`, GEM's eq. 11): the mean row projected onto the dual cone of the rows.
//! Weights: `project(1/m)` with the default projector.

use anyhow::Result;

use super::gramian::{Gram, GramianWeighting};
use super::qp::project_weights;

pub struct DualProj;

impl GramianWeighting for DualProj {
    fn weights(&self, gram: &Gram) -> Result<Vec<f64>> {
        project_weights(&vec![1.0 / gram.m as f64; gram.m], gram)
    }
}
