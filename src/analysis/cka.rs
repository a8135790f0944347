//! Linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited") between
//! two representations of the same n examples, and the per-sentence representation of a layer's output.
//!
//! Invariants:
//! - CKA is the biased estimator of google-research's `representation_similarity` notebook
//!   (`feature_space_linear_cka(x, y, debiased=False)`, equal to `cka(gram_linear(x), gram_linear(y))`):
//!   centre X and Y column-wise, CKA = ||Yᵀ X||_F² / (||Xᵀ X||_F ||Yᵀ Y||_F), in float64 throughout;
//!   when n is small against the widths it is computed from the n x n Gram matrices instead (the same
//!   value: <X Xᵀ, Y Yᵀ>_F = ||Yᵀ X||_F², ||X Xᵀ||_F = ||Xᵀ X||_F), whichever costs fewer products;
//! - it lies in 0..1, is 1 for CKA(X, X) (to rounding), and is invariant to isotropic scaling and to
//!   orthogonal transforms of either side; the widths d1 and d2 may differ and may exceed n;
//! - a representation with no variance (all rows equal after centring) or fewer than two examples is an
//!   error: CKA is 0/0 there;
//! - a layer's representation of a sentence is the mean of its token states over the attention mask
//!   (`mean_pool_tokens`). Why: CKA needs one row per example, and sentences have different lengths;
//!   a token-level matrix would weight long sentences more and let padding (which changes with the
//!   batch) leak in. Mean pooling is also what all-MiniLM-L6-v2 itself uses to make its sentence
//!   embedding, so the last layer's representation is exactly the (unnormalised) sentence embedding,
//!   and intermediate layers are read the same way; a [CLS] state is not trained to summarise there.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Linear CKA between `x` `[n, d1]` and `y` `[n, d2]`, in float64.
pub fn linear_cka(x: &Tensor, y: &Tensor) -> Result<f64> {
    let (sx, sy) = (x.size(), y.size());
    if sx.len() != 2 || sy.len() != 2 || sx[1] < 1 || sy[1] < 1 {
        bail!("cka: representations must be [n, dim] matrices, got {sx:?} and {sy:?}");
    }
    if sx[0] != sy[0] {
        bail!(
            "cka: the two representations have {} and {} examples; they must describe the same ones",
            sx[0],
            sy[0]
        );
    }
    if sx[0] < 2 {
        bail!("cka: needs at least two examples, got {}", sx[0]);
    }
    if x.device() != y.device() {
        bail!(
            "cka: representations on two devices: {:?} and {:?}",
            x.device(),
            y.device()
        );
    }
    let _guard = tch::no_grad_guard();
    let (xc, yc) = (centre(x), centre(y));
    let (n, d1, d2) = (sx[0], sx[1], sy[1]);
    let (cross, norm_x, norm_y) = if n * (d1 + d2 + 1) < d1 * d2 + d1 * d1 + d2 * d2 {
        gram_terms(&xc, &yc)
    } else {
        feature_terms(&xc, &yc)
    };
    if norm_x == 0.0 || norm_y == 0.0 {
        bail!("cka: a representation has no variance across the examples (all rows equal)");
    }
    let cka = cross / (norm_x * norm_y);
    if !cka.is_finite() {
        bail!("cka: the result is not finite (NaN or infinite values in a representation)");
    }
    Ok(cka)
}

/// Column-centred float64 copy.
fn centre(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Double);
    let mean = x.mean_dim([0i64].as_slice(), true, Kind::Double);
    x - mean
}

fn fro(m: &Tensor) -> f64 {
    m.square().sum(Kind::Double).double_value(&[]).sqrt()
}

/// ||Yᵀ X||², ||Xᵀ X||, ||Yᵀ Y|| from the feature-space products (d1 x d2, d1 x d1, d2 x d2).
fn feature_terms(xc: &Tensor, yc: &Tensor) -> (f64, f64, f64) {
    let cross = yc.tr().mm(xc).square().sum(Kind::Double).double_value(&[]);
    (cross, fro(&xc.tr().mm(xc)), fro(&yc.tr().mm(yc)))
}

/// The same three terms from the n x n Gram matrices of the centred representations.
fn gram_terms(xc: &Tensor, yc: &Tensor) -> (f64, f64, f64) {
    let (k, l) = (xc.mm(&xc.tr()), yc.mm(&yc.tr()));
    let cross = (&k * &l).sum(Kind::Double).double_value(&[]);
    (cross, fro(&k), fro(&l))
}

/// A layer's per-sentence representation: the mean of `hidden` `[batch, seq, dim]` over the tokens where
/// `mask` `[batch, seq]` is nonzero, in float64. A sentence with no token is an error.
pub fn mean_pool_tokens(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (sh, sm) = (hidden.size(), mask.size());
    if sh.len() != 3 || sm.len() != 2 || sh[..2] != sm[..] {
        bail!("mean pooling: hidden states must be [batch, seq, dim] and the mask [batch, seq], got {sh:?} and {sm:?}");
    }
    if hidden.device() != mask.device() {
        bail!(
            "mean pooling: hidden states on {:?}, mask on {:?}",
            hidden.device(),
            mask.device()
        );
    }
    let m = mask.ne(0).to_kind(Kind::Double);
    let counts = m.sum_dim_intlist([1i64].as_slice(), true, Kind::Double);
    if counts.eq(0.0).any().int64_value(&[]) != 0 {
        bail!("mean pooling: a sentence has no unmasked token");
    }
    let summed =
        (hidden.to_kind(Kind::Double) * m.unsqueeze(-1)).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    Ok(summed / counts)
}
