//! CoSENT (Su Jianlin 2022), as sentence-transformers 3.3.1's `CoSENTLoss` computes it:
//! with s_i = scale * cos(first_i, second_i),
//! loss = log(1 + sum over (i, j) with gold_i < gold_j of exp(s_i - s_j)).
//!
//! Invariants (matching the reference exactly):
//! - cosine is `pairwise_cos_sim`: rows L2-normalised with `F.normalize`'s epsilon 1e-12, then a dot product;
//! - the ordering mask is strict (`gold_i < gold_j`), so tied gold scores contribute nothing; the mask is
//!   float32 and subtracts 1e12 from the excluded differences (exp underflows to 0), as the reference does;
//! - the "1 +" is a zero appended before `logsumexp`, so a batch of one, or a batch whose gold scores are
//!   all equal, gives loss 0 with zero gradient (a no-op step, as in sentence-transformers).

use anyhow::Result;
use tch::{Kind, Tensor};

use super::{check_gold, check_pair, working};
use crate::encoder::pooling::l2_normalize;

/// The CoSENT loss of a batch of pairs; `gold` is `[batch]`, only its order matters.
pub fn loss(first: &Tensor, second: &Tensor, gold: &Tensor, scale: f64) -> Result<Tensor> {
    let batch = check_pair("cosent", first, second)?;
    check_gold("cosent", gold, batch, first)?;
    let (a, b) = (working(first), working(second));
    let cos = (l2_normalize(&a) * l2_normalize(&b)).sum_dim_intlist([-1i64].as_slice(), false, None::<Kind>);
    let s = cos * scale;
    // diff[i][j] = s_i - s_j, kept where gold_i < gold_j
    let diff = s.unsqueeze(1) - s.unsqueeze(0);
    let keep = gold.unsqueeze(1).lt_tensor(&gold.unsqueeze(0)).to_kind(Kind::Float);
    let masked = diff - (keep.ones_like() - keep) * 1e12;
    let zero = Tensor::zeros([1], (Kind::Float, masked.device()));
    Ok(Tensor::cat(&[zero, masked.view([-1])], 0).logsumexp([0i64].as_slice(), false))
}
