//! IMTL-G (torchjd's `IMTLG`, generalised to dependent rows): `v = pinv(G) sqrt(diag G)`, weights
//! `v / sum v`, or zeros when |sum v| < 1e-12. The pseudo-inverse is libtorch's `linalg.pinv` with its
//! default cut-off on the float64 Gramian, so the rank decision is torch's.

use anyhow::{Context, Result};
use tch::Tensor;

use super::gramian::{Gram, GramianWeighting};

pub struct ImtlG;

impl GramianWeighting for ImtlG {
    fn weights(&self, gram: &Gram) -> Result<Vec<f64>> {
        let m = gram.m;
        let d: Vec<f64> = (0..m).map(|i| gram.at(i, i).sqrt()).collect();
        let pinv = gram
            .to_tensor()
            .f_linalg_pinv_atol_rtol_float(None::<f64>, None::<f64>, false)
            .context("imtl_g: pinv of the Gramian")?;
        let v = pinv.matmul(&Tensor::from_slice(&d));
        let v = Vec::<f64>::try_from(&v).context("imtl_g: reading the weights")?;
        let sum: f64 = v.iter().sum();
        Ok(if sum.abs() < 1e-12 {
            vec![0.0; m]
        } else {
            v.iter().map(|x| x / sum).collect()
        })
    }
}
