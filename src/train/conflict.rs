//! Gradient-conflict diagnostics of a joint step (`train.mtl.log_conflict_every`): every N steps, before the
//! step's own backward, each task's gradient of the encoder's trainable tensors (one extra backward pass per
//! task, keeping the graph for the step's own), split by parameter group, and per task pair the cosine and
//! norm ratio (`train::mtl::conflict`, from the float64 Gramian) as conflict.csv rows.
//!
//! The gradients are the tasks' unweighted losses', so the diagnostics show the tasks, not a weighting. The
//! measurement takes gradients without accumulating them and draws no random numbers, so a run logs its
//! conflicts and trains exactly as it would without them; only the logged steps read the device.

use anyhow::Result;
use tch::Tensor;

use crate::model::group::Group;
use crate::record::{ConflictRow, ConflictWriter};
use crate::train::mtl::conflict::pairwise;

pub(crate) struct ConflictLog {
    pub every: usize,
    pub writer: ConflictWriter,
}

impl ConflictLog {
    /// Whether the step numbered `step` (1-based) is logged.
    pub(crate) fn due(&self, step: usize) -> bool {
        step.is_multiple_of(self.every)
    }
}

/// The rows for one step: `losses` the trained tasks' (names `tasks`), `params` the encoder's trainable
/// tensors with their VarStore `names`.
pub(crate) fn measure(
    losses: &[Tensor],
    tasks: &[&str],
    params: &[Tensor],
    names: &[String],
    (step, epoch): (usize, usize),
) -> Result<Vec<ConflictRow>> {
    if losses.len() < 2 || params.is_empty() {
        return Ok(Vec::new());
    }
    let grads: Vec<Vec<Tensor>> = losses
        .iter()
        .map(|l| {
            let g = Tensor::run_backward(&[l], params, true, false);
            g.into_iter()
                .zip(params)
                .map(|(g, p)| match g.defined() {
                    true => g.reshape([-1]),
                    false => p.detach().zeros_like().reshape([-1]),
                })
                .collect()
        })
        .collect();
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let g = Group::of_encoder_var(name).to_string();
        match groups.iter_mut().find(|(n, _)| *n == g) {
            Some((_, ks)) => ks.push(k),
            None => groups.push((g, vec![k])),
        }
    }
    groups.push(("encoder".into(), (0..names.len()).collect()));
    let mut rows = Vec::new();
    for (group, ks) in &groups {
        let jac: Vec<Tensor> = grads
            .iter()
            .map(|g| Tensor::cat(&ks.iter().map(|&k| &g[k]).collect::<Vec<_>>(), 0))
            .collect();
        for p in pairwise(&Tensor::stack(&jac, 0))? {
            rows.push(ConflictRow {
                step,
                epoch,
                group: group.clone(),
                task_a: tasks[p.task_i].to_string(),
                task_b: tasks[p.task_j].to_string(),
                cosine: p.cosine,
                norm_ratio: p.norm_ratio,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn cosines_per_group_and_for_the_whole_encoder() {
        let e = Tensor::from_slice(&[1.0f32, 0.0]).set_requires_grad(true);
        let l0 = Tensor::from_slice(&[2.0f32, 1.0]).set_requires_grad(true);
        let names = ["embeddings.word".to_string(), "encoder.layer.0.w".to_string()];
        let params = [e.shallow_clone(), l0.shallow_clone()];
        // task a: d/de = (1, 1), d/dl0 = (1, 0); task b: d/de = (-1, -1), d/dl0 = (0, 3)
        let a = e.sum(Kind::Float) + l0.narrow(0, 0, 1).sum(Kind::Float);
        let b = -e.sum(Kind::Float) + l0.narrow(0, 1, 1).sum(Kind::Float) * 3.0;
        let rows = measure(&[a, b], &["a", "b"], &params, &names, (4, 1)).unwrap();
        let get = |g: &str| rows.iter().find(|r| r.group == g).unwrap();
        assert_eq!(rows.len(), 3);
        assert!((get("embeddings").cosine.unwrap() + 1.0).abs() < 1e-12);
        assert!(get("layer.0").cosine.unwrap().abs() < 1e-12);
        assert!((get("layer.0").norm_ratio.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // whole encoder: a = (1, 1, 1, 0), b = (-1, -1, 0, 3): cos = -2 / (sqrt 3 sqrt 11)
        let want = -2.0 / (3f64.sqrt() * 11f64.sqrt());
        assert!((get("encoder").cosine.unwrap() - want).abs() < 1e-7);
        assert_eq!((get("encoder").step, get("encoder").epoch), (4, 1));
    }
}
