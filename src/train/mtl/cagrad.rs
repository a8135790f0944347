//! CAGrad (torchjd's `CAGrad`, Liu et al. 2021, Algorithm 1) on the normalised Gramian Gn
//! (`normalize(G, 1e-4)`): with a = Gn 1/m and s = c sqrt(1^T Gn 1)/m, solve
//! `min_{w in simplex} a^T w + s sqrt(w^T Gn w)`, then weights `1/m + (s / ||g_w||) w` with
//! `||g_w|| = sqrt(w^T Gn w)`, or zeros when `||g_w|| < 1e-4` (near the Pareto front).
//!
//! torchjd solves the cone program with CLARABEL; here a log-barrier path-following Newton method in
//! float64 (the simplex's equality handled in the Newton system) finds the optimal face, then Newton's
//! method on that face's KKT equations polishes w to rounding (kept only if it stays inside the face
//! and does not raise the objective). CLARABEL's default 1e-8 gap tolerance leaves torchjd's own result
//! up to ~7e-5 off the exact optimum (the test also compares against CLARABEL run to 1e-12). When
//! s = 0 the cone term vanishes: torchjd's `||g_w||` is then 0 (zeros) unless c = 0 (weights 1/m).

use anyhow::{bail, Result};

use super::gramian::{Gram, GramianWeighting};
use super::qp::{cholesky_solve, lu_solve};

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
            // c = 0: the linear program's vertex has ||g_w|| = a row's norm; otherwise the mean is zero
            return Ok(if self.c == 0.0 && g.trace() > 0.0 {
                mean
            } else {
                vec![0.0; m]
            });
        }
        let barrier = Barrier { g: &g, a: &a, s };
        let w = barrier.polish(barrier.solve());
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
        // the Newton steps keep 1^T w = 1 only to rounding: put w back on the simplex
        let total: f64 = w.iter().sum();
        w.iter().map(|x| x / total).collect()
    }

    fn objective(&self, w: &[f64]) -> f64 {
        let linear: f64 = w.iter().zip(self.a).map(|(x, y)| x * y).sum();
        linear + self.s * self.g.quad(w, w).max(0.0).sqrt()
    }

    /// An active-set refinement from the barrier's point: Newton on the KKT equations of the current face
    /// (`a_F + s (G w)_F / sqrt(q) = mu 1`, `1^T w_F = 1`), dropping a coordinate that turns non-positive
    /// and adding one whose multiplier is negative, until the KKT conditions hold. Falls back to `w` if a
    /// face is singular or the result is worse.
    fn polish(&self, w: Vec<f64>) -> Vec<f64> {
        let m = w.len();
        let mut support: Vec<usize> = (0..m).filter(|&i| w[i] > 1e-8).collect();
        for _ in 0..4 * m {
            let Some(x) = self.face_newton(&support, &w) else {
                return w;
            };
            if let Some(drop) = support
                .iter()
                .copied()
                .filter(|&i| x[i] <= 0.0)
                .min_by(|&i, &j| x[i].total_cmp(&x[j]))
            {
                support.retain(|&i| i != drop);
                continue;
            }
            let gw = self.g.mul_vec(&x);
            let rq = self.g.quad(&x, &x).sqrt();
            let grad: Vec<f64> = (0..m).map(|i| self.a[i] + self.s * gw[i] / rq).collect();
            let mu = support.iter().map(|&i| grad[i]).sum::<f64>() / support.len() as f64;
            let add = (0..m)
                .filter(|i| !support.contains(i))
                .min_by(|&i, &j| grad[i].total_cmp(&grad[j]));
            if let Some(j) = add.filter(|&j| grad[j] < mu - 1e-12) {
                support.push(j);
                continue;
            }
            return if self.objective(&x) <= self.objective(&w) + 1e-15 {
                x
            } else {
                w
            };
        }
        w
    }

    /// Newton's method on one face's KKT equations, started from `w` restricted to the face.
    fn face_newton(&self, support: &[usize], w: &[f64]) -> Option<Vec<f64>> {
        let (m, k) = (w.len(), support.len());
        if k == 0 {
            return None;
        }
        let mut x: Vec<f64> = (0..m)
            .map(|i| if support.contains(&i) { w[i].max(1e-3) } else { 0.0 })
            .collect();
        let total: f64 = x.iter().sum();
        x.iter_mut().for_each(|v| *v /= total);
        for _ in 0..50 {
            let gw = self.g.mul_vec(&x);
            let q = self.g.quad(&x, &x);
            if q < Q_FLOOR {
                return None;
            }
            let rq = q.sqrt();
            // unknowns (dw_F, dmu); dw does not depend on the current mu, so mu = 0 is used
            let mut kkt = vec![0.0; (k + 1) * (k + 1)];
            let mut rhs = vec![0.0; k + 1];
            for (p, &i) in support.iter().enumerate() {
                for (r, &j) in support.iter().enumerate() {
                    kkt[p * (k + 1) + r] = self.s * (self.g.at(i, j) / rq - gw[i] * gw[j] / (q * rq));
                }
                kkt[p * (k + 1) + k] = -1.0;
                kkt[k * (k + 1) + p] = 1.0;
                rhs[p] = -(self.a[i] + self.s * gw[i] / rq);
            }
            rhs[k] = 1.0 - support.iter().map(|&i| x[i]).sum::<f64>();
            let d = lu_solve(&kkt, k + 1, &rhs)?;
            let mut step = 0.0f64;
            for (p, &i) in support.iter().enumerate() {
                x[i] += d[p];
                step = step.max(d[p].abs());
            }
            if step < 1e-15 {
                break;
            }
        }
        x.iter().all(|v| v.is_finite()).then_some(x)
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
        let quadratic_region = t == 1.0 && -slope < 0.5;
        for _ in 0..60 {
            if quadratic_region || self.delta(w, q, &dw, t, tau) <= 0.25 * t * slope {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A random PSD Gramian (a k-row random matrix's Gram), normalised, from a small LCG.
    fn random_gram(m: usize, rows: usize, seed: u64) -> Gram {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        };
        let j: Vec<f64> = (0..m * rows).map(|_| next()).collect();
        let mut a = vec![0.0; m * m];
        for i in 0..m {
            for k in 0..m {
                a[i * m + k] = (0..rows).map(|r| j[i * rows + r] * j[k * rows + r]).sum();
            }
        }
        Gram::new(m, a).normalized(NORM_EPS)
    }

    /// The optimality conditions of min a^T w + s sqrt(w^T G w) over the simplex (sufficient: convex).
    fn kkt_residual(g: &Gram, a: &[f64], s: f64, w: &[f64]) -> f64 {
        let gw = g.mul_vec(w);
        let rq = g.quad(w, w).sqrt();
        let grad: Vec<f64> = (0..g.m).map(|i| a[i] + s * gw[i] / rq).collect();
        let on: Vec<usize> = (0..g.m).filter(|&i| w[i] > 1e-9).collect();
        let mu = on.iter().map(|&i| grad[i]).sum::<f64>() / on.len() as f64;
        let stationary = on.iter().map(|&i| (grad[i] - mu).abs()).fold(0.0, f64::max);
        let dual = (0..g.m).map(|i| (mu - grad[i]).max(0.0)).fold(0.0, f64::max);
        let simplex = (w.iter().sum::<f64>() - 1.0).abs() + w.iter().map(|x| (-x).max(0.0)).sum::<f64>();
        stationary.max(dual).max(simplex)
    }

    #[test]
    fn solutions_satisfy_the_optimality_conditions() {
        let mut worst = 0.0f64;
        for seed in 0..40u64 {
            let m = 2 + (seed as usize % 5);
            // some with fewer dimensions than tasks: a singular Gramian
            let rows = if seed % 4 == 0 { m - 1 } else { 3 * m };
            let g = random_gram(m, rows, seed);
            let mean = vec![1.0 / m as f64; m];
            let a = g.mul_vec(&mean);
            let s = 0.5 * g.quad(&mean, &mean).sqrt();
            let barrier = Barrier { g: &g, a: &a, s };
            let w = barrier.polish(barrier.solve());
            if g.quad(&w, &w).sqrt() < NORM_EPS {
                continue; // on the Pareto front: the weights are zeros whatever w is
            }
            worst = worst.max(kkt_residual(&g, &a, s, &w));
        }
        assert!(worst < 1e-9, "worst KKT residual {worst:e}");
    }
}
