//! CAGrad (torchjd's `CAGrad`, Liu et al. 2021, Algorithm 1) on the normalised Gramian Gn
//! (`normalize(G, 1e-4)`): with a = Gn 1/m and s = c sqrt(1^T Gn 1)/m, solve
//! `min_{w in simplex} a^T w + s sqrt(w^T Gn w)`, then weights `1/m + (s / ||g_w||) w` with
//! `||g_w|| = sqrt(w^T Gn w)`, or zeros when `||g_w|| < 1e-4` (near the Pareto front).
//!
//! torchjd solves the cone program with CLARABEL; here a log-barrier path-following Newton method in
//! float64 (the simplex's equality handled in the Newton system, a stable line search on F's
//! difference) reaches a duality gap below 1e-11, tighter than CLARABEL's 1e-8 defaults. When s = 0
//! (c = 0, or the mean gradient is zero) the cone term vanishes and the weights are 1/m.

use anyhow::{bail, Result};

use super::gramian::{Gram, GramianWeighting};
use super::qp::cholesky_solve;

pub const NORM_EPS: f64 = 1e-4;

pub fn default_c() -> f64 {
    0.5
}

pub struct CaGrad {
    c: f64,
}

impl CaGrad {
    pub fn new(c: f64) -> Result<CaGrad> {
        if !(c >= 0.0 && c.is_finite()) {
            bail!("cagrad: c must be a non-negative number, got {c}");
        }
        Ok(CaGrad { c })
    }
}

impl GramianWeighting for CaGrad {
    fn weights(&self, gram: &Gram) -> Result<Vec<f64>> {
        let g = gram.normalized(NORM_EPS);
        let m = g.m;
        let mean = vec![1.0 / m as f64; m];
        let a = g.mul_vec(&mean);
        let s = self.c * g.quad(&mean, &mean).max(0.0).sqrt();
        if s == 0.0 {
            return Ok(mean);
        }
        let w = Barrier { g: &g, a: &a, s }.solve();
        let norm = g.quad(&w, &w).max(0.0).sqrt();
        Ok(if norm >= NORM_EPS {
            (0..m).map(|i| mean[i] + s / norm * w[i]).collect()
        } else {
            vec![0.0; m]
        })
    }
}

/// `min tau (a^T w + s sqrt(q(w))) - sum log w_i` over `1^T w = 1`, for growing tau.
struct Barrier<'a> {
    g: &'a Gram,
    a: &'a [f64],
    s: f64,
}

/// q(w) below this: the optimum is g_w = 0 (the caller returns zeros), stop before sqrt(q) degenerates.
const Q_FLOOR: f64 = 1e-30;

impl Barrier<'_> {
    fn solve(&self) -> Vec<f64> {
        let m = self.g.m;
        let mut w = vec![1.0 / m as f64; m];
        let mut tau = 1.0;
        while m as f64 / tau > 1e-12 {
            for _ in 0..200 {
                if self.g.quad(&w, &w) < Q_FLOOR {
                    return w;
                }
                match self.newton_step(&w, tau) {
                    Some((next, decrement)) => {
                        w = next;
                        if decrement < 1e-14 {
                            break;
                        }
                    }
                    None => break,
                }
            }
            tau *= 10.0;
        }
        w
    }

    /// One damped Newton step; returns the new point and the Newton decrement lambda^2 / 2.
    fn newton_step(&self, w: &[f64], tau: f64) -> Option<(Vec<f64>, f64)> {
        let m = w.len();
        let gw = self.g.mul_vec(w);
        let q = w.iter().zip(&gw).map(|(x, y)| x * y).sum::<f64>();
        let rq = q.sqrt();
        let grad: Vec<f64> = (0..m)
            .map(|i| tau * (self.a[i] + self.s * gw[i] / rq) - 1.0 / w[i])
            .collect();
        let mut h = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..m {
                h[i * m + j] = tau * self.s * (self.g.at(i, j) / rq - gw[i] * gw[j] / (q * rq));
            }
            h[i * m + i] += 1.0 / (w[i] * w[i]);
        }
        let p = cholesky_solve(&h, m, &grad)?;
        let r = cholesky_solve(&h, m, &vec![1.0; m])?;
        let nu = -p.iter().sum::<f64>() / r.iter().sum::<f64>();
        let dw: Vec<f64> = (0..m).map(|i| -p[i] - nu * r[i]).collect();
        let slope: f64 = grad.iter().zip(&dw).map(|(g, d)| g * d).sum();
        if slope >= 0.0 {
            return None;
        }
        let mut t = 1.0;
        while (0..m).any(|i| w[i] + t * dw[i] <= 0.0) {
            t *= 0.5;
        }
        for _ in 0..60 {
            if self.delta(w, q, &dw, t, tau) <= 0.25 * t * slope {
                let next = (0..m).map(|i| w[i] + t * dw[i]).collect();
                return Some((next, -slope / 2.0));
            }
            t *= 0.5;
        }
        None
    }

    /// F(w + t dw) - F(w), computed without cancelling the large tau-scaled values.
    fn delta(&self, w: &[f64], q: f64, dw: &[f64], t: f64, tau: f64) -> f64 {
        let m = w.len();
        let gdw = self.g.mul_vec(dw);
        let w_g_dw: f64 = (0..m).map(|i| w[i] * gdw[i]).sum::<f64>();
        let dw_g_dw: f64 = (0..m).map(|i| dw[i] * gdw[i]).sum::<f64>();
        let dq = 2.0 * t * w_g_dw + t * t * dw_g_dw;
        let q_new = (q + dq).max(0.0);
        let d_root = dq / (q_new.sqrt() + q.sqrt());
        let linear: f64 = (0..m).map(|i| self.a[i] * t * dw[i]).sum();
        let logs: f64 = (0..m).map(|i| (t * dw[i] / w[i]).ln_1p()).sum();
        tau * (linear + self.s * d_root) - logs
    }
}
