//! Steps whose outputs are still on the device. A training step never reads the device from the host: its
//! loss, predictions and gradient norm wait here until the next logging point (`train.log_every_steps`, an
//! evaluation, a checkpoint, the epoch end, an interruption), where they are read in step order into the
//! epoch's statistics, and the divergence guard checks them.

use anyhow::{bail, Result};
use tch::Tensor;

use crate::train::data::TaskData;
use crate::train::resume::EpochStats;

/// One part's outputs (one task's batch) of a step.
pub(crate) struct PartOut {
    pub task: usize,
    pub loss: Tensor,
    pub preds: Tensor,
    pub gold: Vec<i64>,
}

/// A step's outputs, still on the device.
pub(crate) struct InFlight {
    pub step: usize,
    pub epoch: usize,
    pub parts: Vec<PartOut>,
    pub norm: Tensor,
    /// fp16 steps with a non-finite gradient are skipped by the loss scaler, not divergence
    pub guarded: bool,
}

#[derive(Default)]
pub(crate) struct Pending(Vec<InFlight>);

impl Pending {
    pub(crate) fn push(&mut self, s: InFlight) {
        self.0.push(s);
    }

    /// Reads the waiting steps, in order, into `stats`; a non-finite loss or gradient norm fails the run, naming
    /// the step, before anything is evaluated or saved. Returns the last loss, for the progress bar.
    pub(crate) fn read(&mut self, tasks: &[TaskData], stats: &mut [EpochStats]) -> Result<Option<f64>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let steps = std::mem::take(&mut self.0);
        let parts = || steps.iter().flat_map(|s| &s.parts);
        let losses = host(parts().map(|p| p.loss.shallow_clone()).collect())?;
        let norms = host(steps.iter().map(|s| s.norm.shallow_clone()).collect())?;
        let preds: Vec<i64> = Tensor::cat(&parts().map(|p| &p.preds).collect::<Vec<_>>(), 0)
            .to_device(tch::Device::Cpu)
            .try_into()?;
        let (mut preds, mut losses_it) = (preds.into_iter(), losses.iter());
        for (s, norm) in steps.iter().zip(&norms) {
            let (at, epoch) = (s.step + 1, s.epoch);
            for p in &s.parts {
                let lv = *losses_it.next().expect("one loss per part");
                let name = &tasks[p.task].name;
                if s.guarded && !lv.is_finite() {
                    bail!("training diverged at step {at} (epoch {epoch}, task `{name}`): the loss is {lv}; lower train.lr_encoder / train.lr_heads");
                }
                if s.guarded && !norm.is_finite() {
                    bail!("training diverged at step {at} (epoch {epoch}, task `{name}`): the gradient norm is {norm}; lower train.lr_encoder / train.lr_heads");
                }
                let st = &mut stats[p.task];
                st.loss_sum += lv * p.gold.len() as f64;
                st.preds.extend(preds.by_ref().take(p.gold.len()));
                st.gold.extend(&p.gold);
            }
        }
        Ok(losses.last().copied())
    }
}

/// Scalars on the device, read in one transfer.
fn host(ts: Vec<Tensor>) -> Result<Vec<f64>> {
    Ok(Vec::<f64>::try_from(
        Tensor::stack(&ts, 0)
            .to_kind(tch::Kind::Double)
            .to_device(tch::Device::Cpu),
    )?)
}
