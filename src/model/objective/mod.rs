//! Sentence-embedding objectives: the losses that train the encoder on pairs of sentences, and the
//! retrieval metrics that evaluate it.
//!
//! Contract:
//! - A loss takes pooled sentence embeddings (`[batch, dim]`, floating point, one row per sentence, the
//!   output of the encoder's pooling *before* any L2 normalisation) and returns a scalar tensor that is
//!   differentiable through tch autograd: gradients flow back through the embeddings into the encoder.
//! - Each loss reproduces sentence-transformers 3.3.1's class of the same name op for op (same similarity,
//!   epsilons, masking and reduction), so that values and gradients agree to rounding; the tests in
//!   tests/objectives.rs hold them to that.
//! - Arithmetic is in the embeddings' dtype, except that half and bfloat16 embeddings are first upcast
//!   to float32 (sentence-transformers would stay in half precision; a loss in bf16 is not useful).
//! - Shapes, dtypes and devices are checked (an error, never a panic); values are not (reading them
//!   would synchronise the device each step). `cosine_mse` expects gold scores in 0..1: the task
//!   divides STS-B's 0..5 by 5 before calling it. CoSENT uses only the order of the gold scores.
//! - `PairLoss` is the config's name for a loss (serde snake_case); `PairBatch` is what the training
//!   loop hands over: both sentences of each pair, embedded by the same encoder in one step.
//!
//! Imports `encoder` (L2 normalisation) and `config` (the loss's name) only: a loss sees embeddings and gold
//! values, nothing of tasks or runs.

pub mod cosent;
pub mod cosine_mse;
pub mod mnrl;
pub mod retrieval;

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// The inverse temperature sentence-transformers uses for CoSENT and MNRL (its default `scale`).
pub const SCALE: f64 = 20.0;

/// A pair objective, as the config names it (one definition, the config's).
pub use crate::config::PairLoss;

/// One training batch of pairs, embedded.
pub struct PairBatch<'a> {
    /// `[batch, dim]`: the first sentence of each pair (MNRL's anchor)
    pub first: &'a Tensor,
    /// `[batch, dim]`: the second sentence of each pair (MNRL's positive)
    pub second: &'a Tensor,
    /// `[batch]`: the gold similarity of each pair; required by `cosent` and `cosine_mse`, ignored by `mnrl`
    pub gold: Option<&'a Tensor>,
    /// MNRL's hard-negative columns, each `[batch, dim]` (row i is a negative for anchor i, and for every
    /// other anchor too, as sentence-transformers concatenates them); must be empty for the other losses
    pub hard_negatives: &'a [Tensor],
}

impl PairLoss {
    /// Whether the batch must carry gold scores.
    pub fn needs_gold(self) -> bool {
        !matches!(self, PairLoss::Mnrl)
    }

    /// The scalar loss of one batch; differentiable with respect to every embedding tensor in it.
    pub fn loss(self, batch: &PairBatch) -> Result<Tensor> {
        if self != PairLoss::Mnrl && !batch.hard_negatives.is_empty() {
            bail!("the {self} loss takes no hard negatives (only mnrl does)");
        }
        let gold = || {
            batch
                .gold
                .ok_or_else(|| anyhow::anyhow!("the {self} loss needs a gold score per pair"))
        };
        match self {
            PairLoss::Cosent => cosent::loss(batch.first, batch.second, gold()?, SCALE),
            PairLoss::CosineMse => cosine_mse::loss(batch.first, batch.second, gold()?),
            PairLoss::Mnrl => mnrl::loss(batch.first, batch.second, batch.hard_negatives, SCALE),
        }
    }
}

/// Checks that `a` and `b` are `[batch, dim]` floating tensors of one shape, dtype and device, with
/// `batch >= 1`; returns the batch size.
pub(crate) fn check_pair(what: &str, a: &Tensor, b: &Tensor) -> Result<i64> {
    let (sa, sb) = (a.size(), b.size());
    if sa.len() != 2 || sa[0] < 1 || sa[1] < 1 {
        bail!("{what}: embeddings must be [batch, dim] with batch, dim >= 1, got {sa:?}");
    }
    if sa != sb {
        bail!("{what}: the two embedding tensors differ in shape: {sa:?} and {sb:?}");
    }
    if !a.is_floating_point() || a.kind() != b.kind() {
        bail!(
            "{what}: embeddings must share one floating dtype, got {:?} and {:?}",
            a.kind(),
            b.kind()
        );
    }
    if a.device() != b.device() {
        bail!(
            "{what}: embeddings on two devices: {:?} and {:?}",
            a.device(),
            b.device()
        );
    }
    Ok(sa[0])
}

/// Checks that `gold` is a `[batch]` floating tensor on the embeddings' device.
pub(crate) fn check_gold(what: &str, gold: &Tensor, batch: i64, like: &Tensor) -> Result<()> {
    if gold.size() != [batch] {
        bail!("{what}: gold scores must be [{batch}], got {:?}", gold.size());
    }
    if !gold.is_floating_point() {
        bail!("{what}: gold scores must be floating point, got {:?}", gold.kind());
    }
    if gold.device() != like.device() {
        bail!(
            "{what}: gold scores on {:?}, embeddings on {:?}",
            gold.device(),
            like.device()
        );
    }
    Ok(())
}

/// The embeddings in the dtype the loss computes in: half precision is upcast to float32.
pub(crate) fn working(x: &Tensor) -> Tensor {
    match x.kind() {
        Kind::Half | Kind::BFloat16 => x.to_kind(Kind::Float),
        _ => x.shallow_clone(),
    }
}
