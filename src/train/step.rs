//! One optimisation step: the forward pass and loss of every part of the step (under autocast at the run's
//! precision), one backward pass over their weighted sum (or, for a joint step under `train.mtl.aggregator`,
//! one per part with the encoder's gradients aggregated: see `joint`; under `train.mtl.weighting`, as the
//! weighting says: see `weighted`), clipping, the AdamW update (skipped when fp16's loss
//! scaler found an overflow), and the outputs left on the device for the next logging point.
//!
//! Dropout's generator is reseeded from (seed, step) first, so a resumed run draws the same masks.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use tch::{Reduction, Tensor};

use crate::runtime::amp;
use crate::train::adamw::AdamW;
use crate::train::conflict::measure;
use crate::train::data::Part;
use crate::train::inflight::{InFlight, PartOut};
use crate::train::joint::aggregated_grads;
use crate::train::plan::EpochPlan;
use crate::train::schedule::mix;
use crate::train::trainer::{grads, Trainer};

impl Trainer<'_> {
    /// Step `pos` of the epoch's `plan` at learning-rate multiplier `factor`. Only fp16's skip decision reads
    /// the host.
    pub(crate) fn step(
        &mut self,
        opt: &mut AdamW,
        epoch: usize,
        plan: &EpochPlan,
        pos: usize,
        factor: f64,
    ) -> Result<()> {
        let t0 = Instant::now();
        if plan.steps[pos].parts.len() == 1 {
            // before the step's own reseeding, so that the measurement changes nothing the step draws
            self.log_per_task_conflict(opt, plan, pos, epoch)?;
        }
        tch::manual_seed(mix(self.seed, (1 << 40) + self.step as u64) as i64);
        let (mut parts, mut losses, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for (k, part) in plan.steps[pos].parts.iter().enumerate() {
            let (out, loss) = self.part_loss(plan, pos, k)?;
            raw.push(loss.shallow_clone());
            losses.push(match self.weighting {
                // a loss weighting takes the unweighted losses (their loss_weight is 1: config checks it)
                Some(_) => loss,
                None => &loss * self.tasks[part.task].loss_weight,
            });
            parts.push(out);
        }
        if raw.len() > 1 {
            self.log_conflict(opt, plan, pos, &raw, epoch)?;
        }
        let norm = self.gradients_and_update(opt, &losses, factor)?;
        if let Some(scaler) = &mut self.scaler {
            scaler.update();
            if scaler.collapsed() {
                let task = &self.tasks[parts[0].task].name;
                bail!("training diverged at step {} (epoch {epoch}, task `{task}`): the fp16 loss scale fell to {}, so even unscaled gradients overflow; lower train.lr_encoder / train.lr_heads or use bf16", self.step + 1, scaler.scale());
            }
        }
        let examples = plan.steps[pos].examples();
        self.pending.push(InFlight {
            step: self.step,
            epoch,
            parts,
            norm,
            guarded: self.scaler.is_none(),
        });
        self.step += 1;
        self.examples_seen += examples;
        self.train_s += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// conflict.csv's rows for this step, when it is a logged one (`conflict`), from the parts' unweighted
    /// `losses`.
    fn log_conflict(
        &mut self,
        opt: &AdamW,
        plan: &EpochPlan,
        pos: usize,
        losses: &[Tensor],
        epoch: usize,
    ) -> Result<()> {
        if !self.conflict.as_ref().is_some_and(|log| log.due(self.step + 1)) {
            return Ok(());
        }
        let tasks: Vec<usize> = plan.steps[pos].parts.iter().map(|p| p.task).collect();
        self.log_conflict_of(opt, &tasks, losses, epoch)
    }

    /// Writes the rows of `losses`, the unweighted losses of `tasks` (indices), at this step.
    fn log_conflict_of(&mut self, opt: &AdamW, tasks: &[usize], losses: &[Tensor], epoch: usize) -> Result<()> {
        let Some(log) = &mut self.conflict else {
            return Ok(());
        };
        let tasks: Vec<&str> = tasks.iter().map(|&t| self.tasks[t].name.as_str()).collect();
        let (params, names): (Vec<Tensor>, Vec<String>) = opt.sets[0]
            .slots
            .iter()
            .map(|s| (s.param.shallow_clone(), s.name.clone()))
            .unzip();
        for row in measure(losses, &tasks, &params, &names, (self.step + 1, epoch))? {
            log.writer.write(&row)?;
        }
        Ok(())
    }

    /// conflict.csv's rows for a logged per-task step: each trained task's unweighted loss on its next batch
    /// of the epoch (from this step on; its last one before when it has none left), under dropout drawn from
    /// its own seed of (seed, step), so that a resumed run measures the same.
    fn log_per_task_conflict(&mut self, opt: &AdamW, plan: &EpochPlan, pos: usize, epoch: usize) -> Result<()> {
        if !self.conflict.as_ref().is_some_and(|log| log.due(self.step + 1)) {
            return Ok(());
        }
        tch::manual_seed(mix(self.seed, (2 << 40) + self.step as u64) as i64);
        let task_at = |p: usize| plan.steps[p].parts[0].task;
        let mut tasks: Vec<usize> = (0..plan.len()).map(task_at).collect();
        tasks.sort_unstable();
        tasks.dedup();
        let mut losses = Vec::new();
        for &t in &tasks {
            let next = (pos..plan.len()).chain((0..pos).rev()).find(|&p| task_at(p) == t);
            let at = next.context("a trained task has a batch in the epoch")?;
            losses.push(self.part_loss(plan, at, 0)?.1);
        }
        self.log_conflict_of(opt, &tasks, &losses, epoch)
    }

    /// The step's gradients from its parts' `losses` (weighted by `loss_weight` unless a loss weighting
    /// weighs them), as `train.mtl` says, then clipping and the update; returns the gradient norm.
    fn gradients_and_update(&mut self, opt: &mut AdamW, losses: &[Tensor], factor: f64) -> Result<Tensor> {
        // the optimizer's first set is the encoder's trainable tensors (`Trainer::optimizer`)
        let shared = opt.sets[0].slots.len();
        if let Some(w) = &mut self.weighting {
            let grads = w.grads(losses, &opt.params(), shared)?;
            let norm = self.clip_and_update(opt, grads, false, factor)?;
            if let Some(w) = &mut self.weighting {
                w.update(factor);
            }
            return Ok(norm);
        }
        match self.aggregator.as_deref() {
            Some(agg) if shared > 0 => {
                let grads = aggregated_grads(agg, losses, &opt.params(), shared)?;
                self.clip_and_update(opt, grads, false, factor)
            }
            _ => {
                let first = losses.first().context("a planned step has at least one part")?;
                // a new tensor per sum (never in place: the first loss is the part's own)
                let total = losses[1..].iter().fold(first.shallow_clone(), |t, l| t + l);
                self.backward_and_update(opt, &total, factor)
            }
        }
    }

    /// Part `k` of step `pos`: its outputs for the in-flight record, and its unweighted mean loss.
    fn part_loss(&self, plan: &EpochPlan, pos: usize, k: usize) -> Result<(PartOut, Tensor)> {
        let part = &plan.steps[pos].parts[k];
        let (task, index) = (part.task, plan.index(pos, k));
        let t = &self.tasks[task];
        if !t.kind.has_head() {
            return self.embedding_part_loss(task, &part.idx, &index);
        }
        let head = self
            .model
            .head_of(&t.name)
            .context("a classification task has a head")?;
        let head_trains = self.plan.head_trains(&head.task)?;
        let kind = t.kind;
        let (logits, loss) = amp::autocast(self.model.sentence.device, self.precision, || -> Result<_> {
            let features = self.features(task, Part::Train, &part.idx, Some(&index), true)?;
            let logits = head.forward_t(&features, head_trains);
            let labels = self.train_labels[task].index_select(0, &index);
            let loss = kind.loss(&logits, &labels, Reduction::Mean);
            Ok((logits, loss))
        })??;
        let out = PartOut {
            task,
            loss: loss.detach(),
            preds: kind.predict(&logits),
            gold: part.idx.iter().map(|&i| t.train_labels[i]).collect(),
        };
        Ok((out, loss))
    }

    /// A head-less task's part: the kind's loss on the pooled embeddings of every sentence column of the batch
    /// (encoded in one forward pass). Its predictions are placeholders (zeros): its train rows carry the loss
    /// only, and the epoch statistics count examples by them.
    fn embedding_part_loss(&self, task: usize, idx: &[usize], index: &Tensor) -> Result<(PartOut, Tensor)> {
        let kind = self.tasks[task].kind;
        let device = self.model.sentence.device;
        let loss = amp::autocast(device, self.precision, || -> Result<_> {
            let columns = self.pair_features(task, Part::Train, idx, Some(index), true)?;
            let scores = &self.train_scores[task];
            let gold = (scores.numel() > 0).then(|| scores.index_select(0, index));
            kind.embedding_loss(&columns, gold.as_ref())
        })??;
        let out = PartOut {
            task,
            loss: loss.detach(),
            preds: Tensor::zeros([idx.len() as i64], (tch::Kind::Int64, device)),
            gold: vec![0; idx.len()],
        };
        Ok((out, loss))
    }

    /// Backward over `loss`, clipping, and the update unless the loss scaler skips it; returns the gradient
    /// norm, on the device.
    fn backward_and_update(&mut self, opt: &mut AdamW, loss: &Tensor, factor: f64) -> Result<Tensor> {
        let params = opt.params();
        let root = match &self.scaler {
            Some(scaler) => scaler.scale_loss(loss),
            None => loss.shallow_clone(),
        };
        let lora = self.model.lora.as_ref();
        let grads = match &self.gradual {
            // gradual unfreezing: only this phase's tensors get a gradient (`gradual`)
            Some(u) => u.masked(&params, |live| grads(lora, &[root], live))?,
            None => grads(lora, &[root], &params)?,
        };
        let skipped = match &mut self.scaler {
            Some(scaler) => scaler.unscale(&grads)?,
            None => false,
        };
        self.clip_and_update(opt, grads, skipped, factor)
    }

    /// Clipping of `grads` (in `opt.params()` order) and the update unless `skipped`; returns the norm.
    fn clip_and_update(&self, opt: &mut AdamW, grads: Vec<Tensor>, skipped: bool, factor: f64) -> Result<Tensor> {
        // no defined gradient at all counts as a norm of 0, as the host-side clipping had it
        let norm = amp::clip_grad_norm(&grads, self.cfg.grad_clip)?
            .unwrap_or_else(|| Tensor::zeros([], (tch::Kind::Float, self.model.sentence.device)));
        if !skipped {
            opt.step(&grads, factor);
            self.after_update();
        }
        Ok(norm)
    }
}
