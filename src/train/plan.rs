//! An epoch's plan: its optimisation steps in visiting order, each with the batches it trains on, and the
//! batch indices uploaded to the device in one piece so that a step slices instead of uploading.
//!
//! A step holds one part per task it trains. With `train.step: per_task` every step has exactly one part (the
//! tasks' batches are mixed by `train.sampling`, sentence-transformers' multi-dataset design). With `joint`
//! every step has one part per trained task, in task order: an epoch is as many steps as the largest task has
//! batches, and a task that runs out of batches starts a fresh shuffled pass (drawn after every task's first
//! pass, from the same RNG), so each step sees every task. Each task's first pass is shuffled once more, as
//! proportional sampling shuffles the batches, so that a joint plan with one trained task is the per-task plan.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tch::{Device, Tensor};

use rand::seq::SliceRandom;

use crate::config::{StepMode, TrainConfig};
use crate::runtime::device::upload;
use crate::train::data::TaskData;
use crate::train::sampling::{bucketed_batches, schedule};
use crate::train::schedule::mix;

/// One task's batch within a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub task: usize,
    pub idx: Vec<usize>,
}

/// The batches one optimisation step trains on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepPlan {
    pub parts: Vec<Part>,
}

impl StepPlan {
    pub(crate) fn examples(&self) -> usize {
        self.parts.iter().map(|p| p.idx.len()).sum()
    }
}

/// An epoch's steps, with every part's indices on the device.
pub(crate) struct EpochPlan {
    pub steps: Vec<StepPlan>,
    flat: Tensor,
    /// each step's parts' start offsets into `flat`
    starts: Vec<Vec<i64>>,
}

impl EpochPlan {
    /// The plan of epoch `epoch` (1-based) from an RNG seeded by (seed, epoch): each trained task's examples
    /// shuffled and bucketed by length, the batches mixed as `train.sampling` says, one task per step.
    pub(crate) fn new(
        tasks: &[TaskData],
        trained: &[bool],
        cfg: &TrainConfig,
        seed: u64,
        epoch: usize,
        device: Device,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(mix(seed, epoch as u64));
        let per_task: Vec<Vec<Vec<usize>>> = tasks
            .iter()
            .zip(trained)
            .map(|(t, on)| match on {
                true => bucketed_batches(&t.train_lengths(), cfg.batch_size, &mut rng),
                false => Vec::new(),
            })
            .collect();
        let steps = match cfg.step {
            StepMode::PerTask => schedule(per_task, cfg.sampling, cfg.temperature, &mut rng)
                .into_iter()
                .map(|(task, idx)| StepPlan {
                    parts: vec![Part { task, idx }],
                })
                .collect(),
            StepMode::Joint => joint_steps(tasks, per_task, cfg.batch_size, &mut rng),
        };
        Self::upload(steps, device)
    }

    /// Steps in an epoch of `cfg` over the trained tasks: the sum of their batch counts for a per-task step,
    /// the largest for a joint step.
    pub(crate) fn steps_per_epoch(tasks: &[TaskData], trained: &[bool], cfg: &TrainConfig) -> usize {
        let batches = tasks
            .iter()
            .zip(trained)
            .filter(|(_, on)| **on)
            .map(|(t, _)| t.train_ids.len().div_ceil(cfg.batch_size));
        match cfg.step {
            StepMode::PerTask => batches.sum(),
            StepMode::Joint => batches.max().unwrap_or(0),
        }
    }

    /// Uploads the steps' indices in one piece.
    fn upload(steps: Vec<StepPlan>, device: Device) -> Self {
        let (mut flat, mut starts) = (Vec::new(), Vec::with_capacity(steps.len()));
        for s in &steps {
            let mut at = Vec::with_capacity(s.parts.len());
            for p in &s.parts {
                at.push(flat.len() as i64);
                flat.extend(p.idx.iter().map(|&i| i as i64));
            }
            starts.push(at);
        }
        EpochPlan {
            flat: upload(Tensor::from_slice(&flat), device),
            steps,
            starts,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Part `part` of step `step`'s example indices, on the device.
    pub(crate) fn index(&self, step: usize, part: usize) -> Tensor {
        let len = self.steps[step].parts[part].idx.len() as i64;
        self.flat.narrow(0, self.starts[step][part], len)
    }
}

/// Joint steps: step s takes batch s of every task with batches, a task's list extended by fresh passes.
fn joint_steps(
    tasks: &[TaskData],
    mut per_task: Vec<Vec<Vec<usize>>>,
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<StepPlan> {
    for batches in per_task.iter_mut() {
        batches.shuffle(rng);
    }
    let len = per_task.iter().map(Vec::len).max().unwrap_or(0);
    for (t, batches) in per_task.iter_mut().enumerate() {
        while !batches.is_empty() && batches.len() < len {
            batches.extend(bucketed_batches(&tasks[t].train_lengths(), batch_size, rng));
        }
    }
    (0..len)
        .map(|s| StepPlan {
            parts: per_task
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.is_empty())
                .map(|(task, b)| Part {
                    task,
                    idx: b[s].clone(),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_slice_back_to_each_part() {
        let steps = vec![
            StepPlan {
                parts: vec![Part {
                    task: 0,
                    idx: vec![3, 1],
                }],
            },
            StepPlan {
                parts: vec![
                    Part { task: 1, idx: vec![0] },
                    Part {
                        task: 0,
                        idx: vec![2, 4, 5],
                    },
                ],
            },
        ];
        let plan = EpochPlan::upload(steps.clone(), Device::Cpu);
        for (s, step) in steps.iter().enumerate() {
            for (p, part) in step.parts.iter().enumerate() {
                let got: Vec<i64> = plan.index(s, p).try_into().unwrap();
                assert_eq!(got, part.idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
            }
        }
        assert_eq!(steps[1].examples(), 4);
    }
}
