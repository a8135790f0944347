//! The dual-cone projection (torchjd's `QuadprogProjector`) and the small dense linear algebra the m x m
//! problems share.
//!
//! The projection of `J^T u` onto the dual cone of J's rows has weights v solving
//! `min_v 1/2 v^T A v  s.t.  v >= u`, with `A = regularize(normalize(G, 1e-4), 1e-4)` (positive definite).
//! It is solved exactly by enumerating active sets: for each subset S held at the bound (v_S = u_S) the
//! free part solves `A_FF v_F = -A_FS u_S`; the optimum is the primal-feasible candidate of least
//! objective (every feasible candidate is a feasible point and the optimum is one of them, so no dual
//! tolerance is needed). 2^m Cholesky solves of size <= m: instant for m <= 12, refused above.

use anyhow::{bail, Result};

use super::gramian::Gram;

/// torchjd's `QuadprogProjector` defaults.
pub const NORM_EPS: f64 = 1e-4;
pub const REG_EPS: f64 = 1e-4;
/// The largest m the enumeration accepts.
pub const MAX_TASKS: usize = 12;

/// The projection weights for one `u` (length m) given the raw Gramian (torchjd's defaults applied here).
pub fn project_weights(u: &[f64], gram: &Gram) -> Result<Vec<f64>> {
    let a = gram.normalized(NORM_EPS).regularized(REG_EPS);
    solve_lower_bounded(&a, u)
}

/// `min 1/2 v^T A v s.t. v >= u` for positive definite A, exactly (see the file contract).
pub fn solve_lower_bounded(a: &Gram, u: &[f64]) -> Result<Vec<f64>> {
    let m = a.m;
    if m > MAX_TASKS {
        bail!("the dual-cone projection supports at most {MAX_TASKS} tasks, got {m}");
    }
    // feasibility slack: rounding in the free solve, relative to the bounds' scale
    let scale = u.iter().fold(1e-300f64, |s, x| s.max(x.abs()));
    let tol = 1e-12 * scale;
    let mut best: Option<(f64, Vec<f64>)> = None;
    for mask in 0u32..(1u32 << m) {
        let Some(v) = candidate(a, u, mask) else { continue };
        if (0..m).any(|i| v[i] < u[i] - tol) {
            continue;
        }
        let obj = 0.5 * a.quad(&v, &v);
        if best.as_ref().is_none_or(|(b, _)| obj < *b) {
            best = Some((obj, v));
        }
    }
    match best {
        Some((_, v)) => Ok(v),
        None => bail!("the dual-cone projection found no feasible point (is the Gramian finite?)"),
    }
}

/// The candidate with the bits of `mask` at their bounds and the rest stationary; None if singular.
fn candidate(a: &Gram, u: &[f64], mask: u32) -> Option<Vec<f64>> {
    let m = a.m;
    let fixed = |i: usize| mask & (1 << i) != 0;
    let free: Vec<usize> = (0..m).filter(|&i| !fixed(i)).collect();
    let mut v: Vec<f64> = (0..m).map(|i| if fixed(i) { u[i] } else { 0.0 }).collect();
    if free.is_empty() {
        return Some(v);
    }
    let k = free.len();
    let sub: Vec<f64> = free
        .iter()
        .flat_map(|&i| free.iter().map(move |&j| a.at(i, j)))
        .collect();
    let rhs: Vec<f64> = free
        .iter()
        .map(|&i| -(0..m).filter(|&j| fixed(j)).map(|j| a.at(i, j) * u[j]).sum::<f64>())
        .collect();
    let x = cholesky_solve(&sub, k, &rhs)?;
    for (p, &i) in free.iter().enumerate() {
        v[i] = x[p];
    }
    Some(v)
}

/// Solves `A x = b` for a symmetric positive definite k x k row-major A; None if not positive definite.
pub fn cholesky_solve(a: &[f64], k: usize, b: &[f64]) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let s: f64 = a[i * k + j] - (0..j).map(|p| l[i * k + p] * l[j * k + p]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * k + i] = s.sqrt();
            } else {
                l[i * k + j] = s / l[j * k + j];
            }
        }
    }
    let mut y = vec![0.0; k];
    for i in 0..k {
        y[i] = (b[i] - (0..i).map(|p| l[i * k + p] * y[p]).sum::<f64>()) / l[i * k + i];
    }
    let mut x = vec![0.0; k];
    for i in (0..k).rev() {
        x[i] = (y[i] - (i + 1..k).map(|p| l[p * k + i] * x[p]).sum::<f64>()) / l[i * k + i];
    }
    Some(x)
}

/// Solves `A x = b` for a general k x k row-major A by Gaussian elimination with partial pivoting; None
/// if A is (numerically) singular.
pub fn lu_solve(a: &[f64], k: usize, b: &[f64]) -> Option<Vec<f64>> {
    let mut a = a.to_vec();
    let mut x = b.to_vec();
    let scale = a.iter().fold(0.0f64, |s, v| s.max(v.abs()));
    for col in 0..k {
        let piv = (col..k).max_by(|&i, &j| a[i * k + col].abs().total_cmp(&a[j * k + col].abs()))?;
        if a[piv * k + col].abs() <= 1e-14 * scale || !a[piv * k + col].is_finite() {
            return None;
        }
        if piv != col {
            for j in 0..k {
                a.swap(piv * k + j, col * k + j);
            }
            x.swap(piv, col);
        }
        for i in col + 1..k {
            let f = a[i * k + col] / a[col * k + col];
            for j in col..k {
                a[i * k + j] -= f * a[col * k + j];
            }
            x[i] -= f * x[col];
        }
    }
    for i in (0..k).rev() {
        let s: f64 = (i + 1..k).map(|j| a[i * k + j] * x[j]).sum();
        x[i] = (x[i] - s) / a[i * k + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_metric_projects_by_clamping() {
        // with A = I the projection is v = max(u, 0) coordinate-wise... with v >= u: v = max(u, 0)
        let a = Gram::new(3, vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        let v = solve_lower_bounded(&a, &[0.5, -1.0, 0.0]).unwrap();
        assert_eq!(v, vec![0.5, 0.0, 0.0]);
    }

    #[test]
    fn kkt_holds_on_a_coupled_problem() {
        let a = Gram::new(2, vec![2.0, -1.5, -1.5, 2.0]);
        let u = [1.0, 0.0];
        let v = solve_lower_bounded(&a, &u).unwrap();
        let grad = a.mul_vec(&v);
        // v_1 free (gradient 0), v_0 at its bound with a non-negative multiplier
        assert!((v[0] - 1.0).abs() < 1e-15 && (v[1] - 0.75).abs() < 1e-12, "{v:?}");
        assert!(grad[1].abs() < 1e-12 && grad[0] >= 0.0, "{grad:?}");
    }
}
