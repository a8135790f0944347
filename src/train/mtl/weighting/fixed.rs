//! Fixed loss weights: `sum_i w_i L_i` with the configured weights (LibMTL's EW is all ones).

use anyhow::{bail, Result};
use tch::Tensor;

use super::{check_losses, check_method, weighted_sum, weights_like, Combined, Weighting, WeightingState};

pub struct Fixed {
    weights: Vec<f64>,
}

impl Fixed {
    pub fn new(weights: Vec<f64>, tasks: usize) -> Result<Fixed> {
        if weights.len() != tasks || weights.iter().any(|w| !w.is_finite()) {
            bail!("fixed weighting: expected {tasks} finite weights, got {weights:?}");
        }
        Ok(Fixed { weights })
    }
}

impl Weighting for Fixed {
    fn combine(&mut self, losses: &Tensor, _jacobian: Option<&Tensor>) -> Result<Combined> {
        check_losses(losses, self.weights.len())?;
        Ok(weighted_sum(losses, weights_like(&self.weights, losses)))
    }

    fn state(&self) -> Result<WeightingState> {
        Ok(WeightingState {
            method: "fixed".into(),
            ..WeightingState::default()
        })
    }

    fn load_state(&mut self, state: &WeightingState) -> Result<()> {
        check_method(state, "fixed")
    }
}
