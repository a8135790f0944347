//! Uncertainty weighting (Kendall et al. 2018) as LibMTL 1.1.5's `UW`: learnable log-variances s
//! (`loss_scale`, float32, initialised to -0.5), loss `sum_i L_i / (2 exp(s_i)) + s_i / 2`, reported
//! weights `1 / (2 exp(s_i))`. s is trained by the caller's optimizer through the returned loss.

use anyhow::Result;
use tch::{Device, Tensor};

use super::{check_losses, check_method, load_param, new_param, param_values, Combined, Weighting, WeightingState};

pub struct Uncertainty {
    loss_scale: Tensor,
}

impl Uncertainty {
    pub fn new(tasks: usize, device: Device) -> Uncertainty {
        Uncertainty {
            loss_scale: new_param(tasks, -0.5, device),
        }
    }
}

impl Weighting for Uncertainty {
    fn combine(&mut self, losses: &Tensor, _jacobian: Option<&Tensor>) -> Result<Combined> {
        check_losses(losses, self.loss_scale.size()[0] as usize)?;
        let s = &self.loss_scale;
        let loss = (losses / (s.exp() * 2.0) + s / 2.0).sum(losses.kind());
        let weights = (s.exp() * 2.0).reciprocal().detach();
        Ok(Combined::Loss { loss, weights })
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("loss_scale".into(), self.loss_scale.shallow_clone())]
    }

    fn state(&self) -> Result<WeightingState> {
        let mut state = WeightingState {
            method: "uncertainty".into(),
            ..WeightingState::default()
        };
        state
            .params
            .insert("loss_scale".into(), param_values(&self.loss_scale)?);
        Ok(state)
    }

    fn load_state(&mut self, state: &WeightingState) -> Result<()> {
        check_method(state, "uncertainty")?;
        load_param(&mut self.loss_scale, state, "loss_scale")
    }
}
