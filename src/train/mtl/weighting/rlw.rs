//! Random Loss Weighting as LibMTL 1.1.5's `RLW` (dist `Normal`): each step `w = softmax(z)`,
//! z ~ N(0, I_m), loss `sum_i w_i L_i` (the weights sum to 1, as LibMTL's). z comes from the weighting's
//! own SplitMix64 generator (Box-Muller, two uniforms per draw), seeded by the config, so the global
//! torch generator is untouched and the one-word state restores the sequence exactly. The values differ
//! from torch's `Normal.sample()`; the distribution and the weighting are LibMTL's.

use anyhow::{Context, Result};
use tch::Tensor;

use super::{check_losses, check_method, weighted_sum, weights_like, Combined, Weighting, WeightingState};

pub struct Rlw {
    tasks: usize,
    rng: SplitMix64,
}

impl Rlw {
    pub fn new(seed: u64, tasks: usize) -> Rlw {
        Rlw {
            tasks,
            rng: SplitMix64(seed),
        }
    }

    /// The next step's standard-normal draws (advances the generator).
    pub fn draw(&mut self) -> Vec<f64> {
        (0..self.tasks).map(|_| self.rng.normal()).collect()
    }
}

/// softmax over a small vector, max-shifted.
pub fn softmax(z: &[f64]) -> Vec<f64> {
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|x| x / sum).collect()
}

impl Weighting for Rlw {
    fn combine(&mut self, losses: &Tensor, _jacobian: Option<&Tensor>) -> Result<Combined> {
        check_losses(losses, self.tasks)?;
        let z = self.draw();
        Ok(weighted_sum(losses, weights_like(&softmax(&z), losses)))
    }

    fn state(&self) -> Result<WeightingState> {
        Ok(WeightingState {
            method: "rlw".into(),
            rng_state: Some(self.rng.0),
            ..WeightingState::default()
        })
    }

    fn load_state(&mut self, state: &WeightingState) -> Result<()> {
        check_method(state, "rlw")?;
        self.rng.0 = state
            .rng_state
            .context("the rlw weighting state has no generator state")?;
        Ok(())
    }
}

/// SplitMix64 (Steele et al. 2014): the whole state is one counter.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1]: 53 random bits, never 0 (Box-Muller takes its log).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}
