//! Geometric Loss Strategy as LibMTL 1.1.5's `GLS`: loss `(prod_i L_i)^(1/m)` (the same `pow(prod)`
//! form, so values match; losses must be positive). The reported weights are the true gradient
//! `loss / (m L_i)`; LibMTL's returned `L_i / (m prod L)` is not what its backward uses.

use anyhow::Result;
use tch::Tensor;

use super::{check_losses, check_method, Combined, Weighting, WeightingState};

pub struct Gls {
    tasks: usize,
}

impl Gls {
    pub fn new(tasks: usize) -> Gls {
        Gls { tasks }
    }
}

impl Weighting for Gls {
    fn combine(&mut self, losses: &Tensor, _jacobian: Option<&Tensor>) -> Result<Combined> {
        check_losses(losses, self.tasks)?;
        let loss = losses.prod(losses.kind()).pow_tensor_scalar(1.0 / self.tasks as f64);
        let weights = (&loss / (losses * self.tasks as f64)).detach();
        Ok(Combined::Loss { loss, weights })
    }

    fn state(&self) -> Result<WeightingState> {
        Ok(WeightingState {
            method: "gls".into(),
            ..WeightingState::default()
        })
    }

    fn load_state(&mut self, state: &WeightingState) -> Result<()> {
        check_method(state, "gls")
    }
}
