//! The shared Gramian base (torchjd's `GramianWeightedAggregator`): G = J J^T in float64 on the CPU, a
//! [`GramianWeighting`] that turns G into m weights, and the combination `w^T J` in J's dtype and device.
//!
//! Invariants: a [`Gram`] is square, symmetric as computed, and finite (checked when built); weightings
//! never see m = 1 (the aggregator returns the row itself, the contract of `mtl`).

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::{check_jacobian, combine, Aggregator};

/// Columns per float64 chunk when accumulating G (bounds the float64 temporary to m x CHUNK).
const CHUNK: i64 = 1 << 20;

/// A dense m x m float64 matrix, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Gram {
    pub m: usize,
    pub a: Vec<f64>,
}

impl Gram {
    pub fn new(m: usize, a: Vec<f64>) -> Gram {
        assert_eq!(a.len(), m * m, "a Gram matrix of size {m} needs {} entries", m * m);
        Gram { m, a }
    }

    /// G = J J^T accumulated in float64 over column chunks, brought to the CPU.
    pub fn of_jacobian(jacobian: &Tensor) -> Result<Gram> {
        let (m, n) = check_jacobian(jacobian)?;
        let _guard = tch::no_grad_guard();
        let mut g = Tensor::zeros([m as i64, m as i64], (Kind::Double, jacobian.device()));
        let mut start = 0i64;
        while start < n as i64 {
            let len = CHUNK.min(n as i64 - start);
            let part = jacobian.narrow(1, start, len).to_kind(Kind::Double);
            g += part.matmul(&part.tr());
            start += len;
        }
        let gram = Gram::from_tensor(&g)?;
        if gram.a.iter().any(|x| !x.is_finite()) {
            bail!("the Jacobian has non-finite entries (its Gramian is not finite)");
        }
        Ok(gram)
    }

    /// Reads a square tensor (any dtype/device) into a float64 Gram.
    pub fn from_tensor(t: &Tensor) -> Result<Gram> {
        let size = t.size();
        if size.len() != 2 || size[0] != size[1] {
            bail!("a Gramian must be square, got shape {size:?}");
        }
        let flat = t.to_device(Device::Cpu).to_kind(Kind::Double).contiguous().view([-1]);
        let a = Vec::<f64>::try_from(&flat).context("reading the Gramian")?;
        Ok(Gram::new(size[0] as usize, a))
    }

    /// The matrix as a CPU float64 tensor (for libtorch's pinv / eigh, to match torch bit for bit).
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.a).view([self.m as i64, self.m as i64])
    }

    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.m + j]
    }

    pub fn trace(&self) -> f64 {
        (0..self.m).map(|i| self.at(i, i)).sum()
    }

    /// G x.
    pub fn mul_vec(&self, x: &[f64]) -> Vec<f64> {
        (0..self.m)
            .map(|i| (0..self.m).map(|j| self.at(i, j) * x[j]).sum())
            .collect()
    }

    /// x^T G y.
    pub fn quad(&self, x: &[f64], y: &[f64]) -> f64 {
        self.mul_vec(y).iter().zip(x).map(|(a, b)| a * b).sum()
    }

    /// torchjd's `normalize`: G / trace(G), or the zero matrix when the trace is below `eps`.
    pub fn normalized(&self, eps: f64) -> Gram {
        let tr = self.trace();
        let a = if tr < eps {
            vec![0.0; self.a.len()]
        } else {
            self.a.iter().map(|x| x / tr).collect()
        };
        Gram::new(self.m, a)
    }

    /// torchjd's `regularize`: G + eps I.
    pub fn regularized(&self, eps: f64) -> Gram {
        let mut out = self.clone();
        for i in 0..self.m {
            out.a[i * self.m + i] += eps;
        }
        out
    }
}

/// Weights from the Gramian (torchjd's `Weighting[PSDMatrix]`); called with m >= 2.
pub trait GramianWeighting {
    fn weights(&self, gram: &Gram) -> Result<Vec<f64>>;
}

/// An aggregator `w(G)^T J` over a Gramian weighting.
pub struct GramianAggregator<W: GramianWeighting>(pub W);

impl<W: GramianWeighting> Aggregator for GramianAggregator<W> {
    fn aggregate(&self, jacobian: &Tensor) -> Result<Tensor> {
        let (m, _) = check_jacobian(jacobian)?;
        let _guard = tch::no_grad_guard();
        if m == 1 {
            return Ok(jacobian.get(0).copy());
        }
        let gram = Gram::of_jacobian(jacobian)?;
        let w = self.0.weights(&gram)?;
        if w.iter().any(|x| !x.is_finite()) {
            bail!("the aggregator produced non-finite weights {w:?}");
        }
        Ok(combine(jacobian, &w))
    }
}

/// The weights alone, for callers that hold the Gramian (autogram-style) or log them.
pub fn weights_of<W: GramianWeighting>(weighting: &W, jacobian: &Tensor) -> Result<Vec<f64>> {
    let (m, _) = check_jacobian(jacobian)?;
    if m == 1 {
        return Ok(vec![1.0]);
    }
    weighting.weights(&Gram::of_jacobian(jacobian)?)
}
