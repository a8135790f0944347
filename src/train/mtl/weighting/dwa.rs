//! Dynamic Weight Average as LibMTL 1.1.5's `DWA`: from the third epoch on (two epochs of history),
//! `w = m softmax((L_{e-1} / L_{e-2}) / T)` over the per-epoch mean losses; all ones before. T = 2.

use anyhow::{bail, Result};
use tch::Tensor;

use super::{
    check_history, check_losses, check_method, push_history, weighted_sum, weights_like, Combined, Weighting,
    WeightingState,
};

pub fn default_temperature() -> f64 {
    2.0
}

pub struct Dwa {
    temperature: f64,
    tasks: usize,
    history: Vec<Vec<f64>>,
}

impl Dwa {
    pub fn new(temperature: f64, tasks: usize) -> Result<Dwa> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            bail!("dwa: the temperature must be positive, got {temperature}");
        }
        Ok(Dwa {
            temperature,
            tasks,
            history: Vec::new(),
        })
    }

    /// This epoch's weights (float64).
    pub fn weights(&self) -> Vec<f64> {
        let k = self.history.len();
        if k < 2 {
            return vec![1.0; self.tasks];
        }
        let (last, before) = (&self.history[k - 1], &self.history[k - 2]);
        let z: Vec<f64> = (0..self.tasks)
            .map(|i| last[i] / before[i] / self.temperature)
            .collect();
        let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|x| (x - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|x| self.tasks as f64 * x / sum).collect()
    }
}

impl Weighting for Dwa {
    fn combine(&mut self, losses: &Tensor, _jacobian: Option<&Tensor>) -> Result<Combined> {
        check_losses(losses, self.tasks)?;
        Ok(weighted_sum(losses, weights_like(&self.weights(), losses)))
    }

    fn end_epoch(&mut self, mean_losses: &[f64]) -> Result<()> {
        push_history(&mut self.history, mean_losses, self.tasks)
    }

    fn state(&self) -> Result<WeightingState> {
        Ok(WeightingState {
            method: "dwa".into(),
            loss_history: self.history.clone(),
            ..WeightingState::default()
        })
    }

    fn load_state(&mut self, state: &WeightingState) -> Result<()> {
        check_method(state, "dwa")?;
        check_history(&state.loss_history, self.tasks)?;
        self.history = state.loss_history.clone();
        Ok(())
    }
}
