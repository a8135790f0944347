//! A joint step's gradients under `train.mtl.aggregator`: one backward pass per task (retaining the graph for
//! the next), each task's gradient of the shared encoder's trainable tensors flattened into a row of the
//! m x n Jacobian, the rows aggregated by `train::mtl` into the encoder's gradient; each head keeps its own
//! task's gradient (no other task's loss reaches it).
//!
//! Invariants: a tensor no task's loss reaches keeps an undefined gradient (AdamW skips it, as after torch's
//! `zero_grad()`), and with one task every aggregator returns its row, so the gradients are bit for bit those
//! of the weighted sum's single backward. The Gramian-based aggregators solve their m x m problem on the host
//! (`train::mtl`'s contract), the one host read of such a step.

use anyhow::{bail, Context, Result};
use tch::Tensor;

use crate::config::MtlConfig;
use crate::train::mtl::{self, Aggregator, AggregatorKind};

/// The aggregator `cfg` names, or None when a joint step backwards the weighted sum (unset or `sum`).
pub(crate) fn build_aggregator(cfg: &MtlConfig) -> Result<Option<Box<dyn Aggregator>>> {
    let Some(name) = cfg.gradient_aggregator() else {
        return Ok(None);
    };
    let kind = match AggregatorKind::from_name(name)? {
        AggregatorKind::Mgda { .. } => AggregatorKind::Mgda {
            epsilon: cfg.mgda_epsilon,
            max_iters: cfg.mgda_max_iters,
        },
        AggregatorKind::Cagrad { .. } => AggregatorKind::Cagrad { c: cfg.cagrad_c },
        other => other,
    };
    Ok(Some(mtl::build(&kind).context("train.mtl")?))
}

/// The gradients of `params` (the first `shared` of them the encoder's) for the task `losses` (already
/// weighted), the encoder's aggregated by `agg`.
pub(crate) fn aggregated_grads(
    agg: &dyn Aggregator,
    losses: &[Tensor],
    params: &[Tensor],
    shared: usize,
) -> Result<Vec<Tensor>> {
    let jac = TaskJacobian::new(losses, params, shared)?;
    let combined = agg.aggregate(&jac.rows)?;
    Ok(jac.assemble(&combined, params))
}

/// The per-task gradients of one joint step: the encoder's as the rows of an m x n Jacobian, the heads'
/// summed (each head is reached by its own task's loss only, so the sum is that task's gradient).
pub(crate) struct TaskJacobian {
    /// m x n: task i's gradient of the `shared` encoder tensors, flattened and concatenated
    pub rows: Tensor,
    /// whether any task's loss reached each encoder tensor
    reached: Vec<bool>,
    /// each head tensor's gradient (None: no task reached it)
    heads: Vec<Option<Tensor>>,
}

impl TaskJacobian {
    /// One backward pass per task loss (retaining the graph for the next) over `params`, the first `shared`
    /// of them the encoder's.
    pub(crate) fn new(losses: &[Tensor], params: &[Tensor], shared: usize) -> Result<Self> {
        if losses.is_empty() || shared == 0 {
            bail!("a per-task gradient step needs at least one task loss and one trainable encoder tensor");
        }
        let m = losses.len();
        let mut rows = Vec::with_capacity(m);
        let mut heads: Vec<Option<Tensor>> = (shared..params.len()).map(|_| None).collect();
        let mut reached = vec![false; shared];
        for (i, loss) in losses.iter().enumerate() {
            let grads = Tensor::run_backward(&[loss], params, i + 1 < m, false);
            let mut flat = Vec::with_capacity(shared);
            for (k, (g, p)) in grads.iter().zip(params).take(shared).enumerate() {
                reached[k] |= g.defined();
                flat.push(match g.defined() {
                    true => g.reshape([-1]),
                    false => p.detach().zeros_like().reshape([-1]),
                });
            }
            rows.push(Tensor::cat(&flat, 0));
            for (h, g) in heads.iter_mut().zip(grads.into_iter().skip(shared)) {
                if g.defined() {
                    *h = Some(match h.take() {
                        None => g,
                        Some(a) => a + g,
                    });
                }
            }
        }
        Ok(TaskJacobian {
            rows: Tensor::stack(&rows, 0),
            reached,
            heads,
        })
    }

    /// The gradients of `params` (the order `new` had): the encoder's from `combined` (one flat row of n),
    /// undefined where no task reached a tensor; the heads' their own tasks'.
    pub(crate) fn assemble(self, combined: &Tensor, params: &[Tensor]) -> Vec<Tensor> {
        let shared = self.reached.len();
        let (mut out, mut at) = (Vec::with_capacity(params.len()), 0i64);
        for (k, p) in params.iter().take(shared).enumerate() {
            let n = p.numel() as i64;
            out.push(match self.reached[k] {
                true => combined.narrow(0, at, n).reshape(p.size()),
                false => Tensor::new(),
            });
            at += n;
        }
        out.extend(self.heads.into_iter().map(|h| h.unwrap_or_else(Tensor::new)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// Two tasks sharing `w`, each with its own head `h_i`; the loss of task i is h_i * (w . x_i).
    fn setup() -> (Vec<Tensor>, Vec<Tensor>) {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 0.5]).set_requires_grad(true);
        let h0 = Tensor::from_slice(&[2.0f32]).set_requires_grad(true);
        let h1 = Tensor::from_slice(&[-1.0f32]).set_requires_grad(true);
        let x0 = Tensor::from_slice(&[1.0f32, 0.0, 1.0]);
        let x1 = Tensor::from_slice(&[0.0f32, 1.0, 3.0]);
        let l0 = (&h0 * (&w * &x0).sum(Kind::Float)).sum(Kind::Float);
        let l1 = (&h1 * (&w * &x1).sum(Kind::Float)).sum(Kind::Float);
        (vec![l0, l1], vec![w, h0, h1])
    }

    #[test]
    fn sum_aggregation_equals_one_backward_and_heads_keep_their_task() {
        let (losses, params) = setup();
        let agg = mtl::build(&AggregatorKind::Sum {}).unwrap();
        let got = aggregated_grads(agg.as_ref(), &losses, &params, 1).unwrap();
        let (losses, params) = setup();
        let total = &losses[0] + &losses[1];
        let want = Tensor::run_backward(&[total], &params, false, false);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w);
        }
    }

    #[test]
    fn one_task_gives_its_own_gradient_for_every_aggregator() {
        for name in crate::config::AGGREGATORS {
            let (losses, params) = setup();
            let agg = mtl::build(&AggregatorKind::from_name(name).unwrap()).unwrap();
            let got = aggregated_grads(agg.as_ref(), &losses[..1], &params, 1).unwrap();
            let (losses, params) = setup();
            let want = Tensor::run_backward(&[&losses[0]], &params[..2], false, false);
            assert_eq!(got[0], want[0], "{name}");
            assert_eq!(got[1], want[1], "{name}");
            assert!(!got[2].defined(), "{name}: the other task's head gets no gradient");
        }
    }
}
