//! Sum and Mean (torchjd's `Sum`, `Mean`): constant weights 1 and 1/m, no Gramian needed.

use anyhow::Result;
use tch::Tensor;

use super::{check_jacobian, combine, Aggregator};

pub struct Sum;
pub struct Mean;

impl Aggregator for Sum {
    fn aggregate(&self, jacobian: &Tensor) -> Result<Tensor> {
        let (m, _) = check_jacobian(jacobian)?;
        let _guard = tch::no_grad_guard();
        Ok(combine(jacobian, &vec![1.0; m]))
    }
}

impl Aggregator for Mean {
    fn aggregate(&self, jacobian: &Tensor) -> Result<Tensor> {
        let (m, _) = check_jacobian(jacobian)?;
        let _guard = tch::no_grad_guard();
        Ok(combine(jacobian, &vec![1.0 / m as f64; m]))
    }
}
