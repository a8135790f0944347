//! GradNorm (Chen et al. 2018) as LibMTL 1.1.5's `GradNorm`, alpha = 1.5. Learnable `loss_scale` s
//! (float32, initialised to ones), weights `w = m softmax(s)`. During the first epoch (no loss history
//! yet) the loss is the plain sum. Afterwards, given the Jacobian J of the shared parameters:
//! `G_i = ||w_i J_i||` (computed as `w_i ||J_i||`, equal since w > 0), `G = mean_i G_i`,
//! `r = L~ / mean(L~)` with `L~_i = L_i / L_i(epoch 0 mean)`, and the auxiliary loss
//! `sum_i |G_i - detach(G r_i^alpha)|`, whose backward reaches only s. The shared gradient is
//! `sum_i detach(w_i) J_i`; heads keep their unweighted task gradients (LibMTL's behaviour).

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::{
    check_history, check_losses, check_method, load_param, new_param, param_values, push_history, weighted_sum,
    weights_like, Combined, Weighting, WeightingState,
};

pub fn default_alpha() -> f64 {
    1.5
}

pub struct GradNorm {
    alpha: f64,
    loss_scale: Tensor,
    history: Vec<Vec<f64>>,
}

impl GradNorm {
    pub fn new(alpha: f64, tasks: usize, device: Device) -> Result<GradNorm> {
        if !alpha.is_finite() {
            bail!("gradnorm: alpha must be a finite number, got {alpha}");
        }
        Ok(GradNorm {
            alpha,
            loss_scale: new_param(tasks, 1.0, device),
            history: Vec::new(),
        })
    }

    fn tasks(&self) -> usize {
        self.loss_scale.size()[0] as usize
    }

    fn balance(&self, losses: &Tensor, jacobian: &Tensor) -> Result<Combined> {
        let m = self.tasks();
        let (rows, _) = crate::train::mtl::check_jacobian(jacobian)?;
        if rows != m {
            bail!("gradnorm: the Jacobian has {rows} rows for {m} tasks");
        }
        let s = &self.loss_scale;
        let w = s.softmax(0, Kind::Float) * m as f64;
        let norms = {
            let _guard = tch::no_grad_guard();
            jacobian
                .norm_scalaropt_dim(2, [1i64].as_slice(), false)
                .to_kind(Kind::Float)
                .to_device(s.device())
        };
        let g_per = &w * norms;
        let g_mean = g_per.mean(Kind::Float);
        let values = Vec::<f64>::try_from(&losses.detach().to_device(Device::Cpu).to_kind(Kind::Double))
            .context("gradnorm: reading the losses")?;
        let initial = &self.history[0];
        let ratio: Vec<f64> = (0..m).map(|i| values[i] / initial[i]).collect();
        let ratio = Tensor::from_slice(&ratio).to_kind(Kind::Float).to_device(s.device());
        let r = &ratio / ratio.mean(Kind::Float);
        let target = (&g_mean * r.pow_tensor_scalar(self.alpha)).detach();
        let aux = (&g_per - target).abs().sum(Kind::Float);
        Ok(Combined::Gradient {
            weights: w.detach(),
            aux,
        })
    }
}

impl Weighting for GradNorm {
    fn needs_jacobian(&self) -> bool {
        !self.history.is_empty()
    }

    fn combine(&mut self, losses: &Tensor, jacobian: Option<&Tensor>) -> Result<Combined> {
        let m = self.tasks();
        check_losses(losses, m)?;
        if self.history.is_empty() {
            return Ok(weighted_sum(losses, weights_like(&vec![1.0; m], losses)));
        }
        let jacobian = jacobian.context("gradnorm needs the Jacobian of the shared parameters after epoch 0")?;
        self.balance(losses, jacobian)
    }

    fn end_epoch(&mut self, mean_losses: &[f64]) -> Result<()> {
        let m = self.tasks();
        push_history(&mut self.history, mean_losses, m)
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        vec![("loss_scale".into(), self.loss_scale.shallow_clone())]
    }

    fn state(&self) -> Result<WeightingState> {
        let mut state = WeightingState {
            method: "gradnorm".into(),
            loss_history: self.history.clone(),
            ..WeightingState::default()
        };
        state
            .params
            .insert("loss_scale".into(), param_values(&self.loss_scale)?);
        Ok(state)
    }

    fn load_state(&mut self, state: &WeightingState) -> Result<()> {
        check_method(state, "gradnorm")?;
        check_history(&state.loss_history, self.tasks())?;
        load_param(&mut self.loss_scale, state, "loss_scale")?;
        self.history = state.loss_history.clone();
        Ok(())
    }
}
