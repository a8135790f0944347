//! ConFIG (torchjd's `ConFIG`, Liu et al. 2024, sum preference): unit rows U (zero rows stay zero),
//! direction `pinv(U) 1` normalised (eps 1e-12), length `sum(J d)`. Computed as torchjd computes it, in
//! J's dtype and device (the pseudo-inverse of the m x n matrix, not a Gramian), so the rank cut-off is
//! torch's.

use anyhow::{Context, Result};
use tch::Tensor;

use super::{check_jacobian, Aggregator};

pub struct ConFig;

impl Aggregator for ConFig {
    fn aggregate(&self, jacobian: &Tensor) -> Result<Tensor> {
        let (m, _) = check_jacobian(jacobian)?;
        let _guard = tch::no_grad_guard();
        if m == 1 {
            return Ok(jacobian.get(0).copy());
        }
        let norms = jacobian.norm_scalaropt_dim(2, [1i64].as_slice(), false).unsqueeze(1);
        let units = (jacobian / norms).nan_to_num(0.0, None::<f64>, None::<f64>);
        let pinv = units
            .f_linalg_pinv_atol_rtol_float(None::<f64>, None::<f64>, false)
            .context("config: pinv of the unit rows")?;
        let ones = Tensor::ones([m as i64], (jacobian.kind(), jacobian.device()));
        let best = pinv.matmul(&ones);
        let unit = &best / best.norm().clamp_min(1e-12);
        let length = jacobian.matmul(&unit).sum(jacobian.kind());
        Ok(length * unit)
    }
}
