//! CosineSimilarityLoss with its defaults (MSE, identity transformation), as sentence-transformers 3.3.1
//! computes it: mean over the batch of (cos(first_i, second_i) - gold_i)^2.
//!
//! Invariants: the cosine is `torch.cosine_similarity` (dim 1, eps 1e-8), not the normalise-then-dot of
//! CoSENT, so the two agree only away from zero vectors; the gold is cast to the cosine's dtype (the
//! reference casts it to float32, the same values whenever the gold is representable in float32, as
//! STS-B's scores / 5 are to within 3e-8). Gold scores belong in 0..1 (the task rescales them); a batch
//! of one is a valid batch.

use anyhow::Result;
use tch::{Reduction, Tensor};

use super::{check_gold, check_pair, working};

/// The cosine-MSE loss of a batch of pairs; `gold` is `[batch]` in 0..1.
pub fn loss(first: &Tensor, second: &Tensor, gold: &Tensor) -> Result<Tensor> {
    let batch = check_pair("cosine_mse", first, second)?;
    check_gold("cosine_mse", gold, batch, first)?;
    let cos = Tensor::cosine_similarity(&working(first), &working(second), 1, 1e-8);
    Ok(cos.mse_loss(&gold.to_kind(cos.kind()), Reduction::Mean))
}
