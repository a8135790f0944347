//! The joint training loop: task sampling, one task per batch, weighted cross-entropy, the harness's
//! AdamW with warmup and linear decay, global gradient clipping, evaluation of every task at each epoch
//! end, a divergence guard, and checkpoints from which an interrupted run continues exactly.
//!
//! Exactness on resume rests on three things: each epoch's batch plan comes from an RNG seeded by
//! (seed, epoch), dropout's torch generator is reseeded from (seed, step) before every step, and the
//! checkpoint holds everything else that moves (trained tensors, optimizer state, position, statistics).
//!
//! Nothing in a training step reads the device from the host: the batch indices and labels of an epoch are
//! uploaded once, and each step's loss, predictions and gradient norm stay on the device until the next
//! logging point (`train.log_every_steps`, an evaluation, a checkpoint, the epoch end), where they are read
//! in step order and checked by the divergence guard. Forward passes run under autocast at the run's
//! precision (fp32: none); fp16 adds dynamic loss scaling, whose skip decision is the one per-step read.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tch::{Reduction, Tensor};

use crate::adamw::{AdamW, AdamWConfig};
use crate::amp::{self, GradScaler, Precision};
use crate::checkpoint;
use crate::config::TrainConfig;
use crate::device::upload;
use crate::freeze::FreezePlan;
use crate::interrupt;
use crate::metrics::{accuracy, macro_f1};
use crate::model::MultiTaskModel;
use crate::progress::progress_bar;
use crate::record::{MetricRow, MetricsWriter, Split};
use crate::resume::{self, EpochStats, Progress, Saved};
use crate::sampling::{bucketed_batches, schedule};
use crate::tokenizer::length_sorted_batches;

/// One task's tokenised data.
pub struct TaskData {
    pub name: String,
    pub num_labels: usize,
    pub loss_weight: f64,
    pub train_ids: Vec<Vec<i64>>,
    pub train_labels: Vec<i64>,
    pub eval_ids: Vec<Vec<i64>>,
    pub eval_labels: Vec<i64>,
}

/// Pooled sentence vectors computed once, for when no encoder weight trains.
struct CachedFeatures {
    train: Tensor,
    eval: Tensor,
}

/// A step's outputs, still on the device until the next logging point reads them.
struct InFlight {
    step: usize,
    epoch: usize,
    task: usize,
    loss: Tensor,
    norm: Tensor,
    preds: Tensor,
    gold: Vec<i64>,
    /// fp16 steps with a non-finite gradient are skipped by the loss scaler, not divergence
    guarded: bool,
}

/// One epoch's batch indices on the device, so a step slices instead of uploading.
struct EpochIndex {
    flat: Tensor,
    offsets: Vec<i64>,
}

/// What `Trainer::fit` did, for the run summary.
#[derive(Debug, Clone, Copy)]
pub struct FitStats {
    pub steps: usize,
    pub examples_seen: usize,
    /// seconds spent in training steps (and in encoding the train set for cached features)
    pub train_s: f64,
    pub features_cached: bool,
    /// seconds the run had taken before this process resumed it (0 for a run that was not resumed)
    pub resumed_after_s: f64,
}

/// The learning-rate multiplier at optimizer step `step` (0-based) of `total`, exactly as
/// transformers' `get_linear_schedule_with_warmup` gives it: `step / warmup` during warmup (so the first
/// step of a warmed-up run has learning rate 0), then linear decay to 0 at `total`.
pub fn lr_factor(step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        step as f64 / warmup.max(1) as f64
    } else {
        (total.saturating_sub(step) as f64 / total.saturating_sub(warmup).max(1) as f64).max(0.0)
    }
}

/// A 64-bit mix of the run seed and a counter (SplitMix64), so per-epoch and per-step seeds are unrelated.
pub fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where checkpoints go and how often (every N steps; each epoch end always).
pub struct Checkpoints {
    pub dir: PathBuf,
    pub every_steps: Option<usize>,
}

pub struct Trainer<'a> {
    model: &'a MultiTaskModel,
    plan: &'a FreezePlan,
    tasks: &'a [TaskData],
    cfg: &'a TrainConfig,
    run: String,
    scenario: String,
    seed: u64,
    cache: Option<Vec<CachedFeatures>>,
    precision: Precision,
    /// every task's train labels on the device
    train_labels: Vec<Tensor>,
    in_flight: Vec<InFlight>,
    index: Option<EpochIndex>,
    scaler: Option<GradScaler>,
    step: usize,
    examples_seen: usize,
    train_s: f64,
    /// elapsed seconds before this process took over (a resumed run)
    elapsed_before: f64,
    start: Instant,
}

impl<'a> Trainer<'a> {
    pub fn new(
        model: &'a MultiTaskModel,
        plan: &'a FreezePlan,
        tasks: &'a [TaskData],
        cfg: &'a TrainConfig,
        run: &str,
        scenario: &str,
        seed: u64,
    ) -> Self {
        let device = model.sentence.device;
        Trainer {
            model,
            plan,
            tasks,
            cfg,
            run: run.to_string(),
            scenario: scenario.to_string(),
            seed,
            cache: None,
            precision: Precision::Fp32,
            train_labels: tasks
                .iter()
                .map(|t| Tensor::from_slice(&t.train_labels).to_device(device))
                .collect(),
            in_flight: Vec::new(),
            index: None,
            scaler: None,
            step: 0,
            examples_seen: 0,
            train_s: 0.0,
            elapsed_before: 0.0,
            start: Instant::now(),
        }
    }

    /// Trains under autocast at `precision` (resolved: not auto); fp16 brings its loss scaler.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self.scaler = (precision == Precision::Fp16).then(|| GradScaler::new(self.model.sentence.device));
        self
    }

    /// With every encoder group frozen the sentence vectors never change: compute them once.
    /// Train-set encoding counts as training time, so examples/s stays honest.
    pub fn cache_features(&mut self) -> Result<()> {
        let s = &self.model.sentence;
        let bs = self.cfg.eval_batch_size;
        let mut cache = Vec::new();
        for t in self.tasks {
            let t0 = Instant::now();
            let train = amp::autocast(s.device, self.precision, || s.encode_ids(&t.train_ids, bs, true))??;
            self.train_s += t0.elapsed().as_secs_f64();
            let eval = amp::autocast(s.device, self.precision, || s.encode_ids(&t.eval_ids, bs, true))??;
            let (train, eval) = (train.to_device(s.device), eval.to_device(s.device));
            cache.push(CachedFeatures { train, eval });
        }
        self.cache = Some(cache);
        Ok(())
    }

    /// Sentence vectors for examples `idx` of one split of one task (`index`: the same on the device, when the
    /// caller has it there already).
    fn features(
        &self,
        task: usize,
        split: Split,
        idx: &[usize],
        index: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        let s = &self.model.sentence;
        if let Some(cache) = &self.cache {
            let all = match split {
                Split::Train => &cache[task].train,
                Split::Eval => &cache[task].eval,
            };
            return Ok(match index {
                Some(index) => all.index_select(0, index),
                None => all.index_select(0, &upload(index_tensor(idx), s.device)),
            });
        }
        let seqs = match split {
            Split::Train => &self.tasks[task].train_ids,
            Split::Eval => &self.tasks[task].eval_ids,
        };
        let batch = s.tokenizer.batch_of(seqs, idx, s.device);
        if train && self.plan.encoder_trains() {
            s.forward_t(&batch, true)
        } else {
            // a frozen encoder runs without dropout and without building a graph
            tch::no_grad(|| s.forward_t(&batch, false))
        }
    }

    fn labels(&self, task: usize, split: Split, idx: &[usize]) -> Tensor {
        let all = match split {
            Split::Train => &self.tasks[task].train_labels,
            Split::Eval => &self.tasks[task].eval_labels,
        };
        Tensor::from_slice(&idx.iter().map(|&i| all[i]).collect::<Vec<_>>()).to_device(self.model.sentence.device)
    }

    fn row(&self, epoch: usize, task: usize, split: Split, loss: f64, preds: &[i64], gold: &[i64]) -> MetricRow {
        let t = &self.tasks[task];
        MetricRow {
            run: self.run.clone(),
            scenario: self.scenario.clone(),
            epoch,
            step: self.step,
            task: t.name.clone(),
            split,
            loss,
            accuracy: accuracy(preds, gold),
            macro_f1: macro_f1(preds, gold, t.num_labels),
            examples_seen: self.examples_seen,
            elapsed_s: self.elapsed(),
        }
    }

    fn elapsed(&self) -> f64 {
        self.elapsed_before + self.start.elapsed().as_secs_f64()
    }

    /// Loss, accuracy and macro-F1 of every task on its eval file; the rows go to `sink` and back.
    pub fn evaluate(&self, epoch: usize, sink: &mut MetricsWriter) -> Result<Vec<MetricRow>> {
        let bar = progress_bar(self.tasks.iter().map(|t| t.eval_ids.len() as u64).sum(), "eval");
        let mut rows = Vec::new();
        for (ti, t) in self.tasks.iter().enumerate() {
            bar.set_message(t.name.clone());
            let lengths: Vec<usize> = t.eval_ids.iter().map(Vec::len).collect();
            let (mut loss_sum, mut preds) = (0.0, vec![0i64; lengths.len()]);
            tch::no_grad(|| -> Result<()> {
                for idx in length_sorted_batches(&lengths, self.cfg.eval_batch_size) {
                    interrupt::check()?;
                    let logits = amp::autocast(self.model.sentence.device, self.precision, || {
                        Ok::<_, anyhow::Error>(
                            self.model
                                .head(ti)
                                .forward_t(&self.features(ti, Split::Eval, &idx, None, false)?, false)
                                .to_kind(tch::Kind::Float),
                        )
                    })??;
                    let labels = self.labels(ti, Split::Eval, &idx);
                    loss_sum += logits
                        .cross_entropy_loss::<Tensor>(&labels, None, Reduction::Sum, -100, 0.0)
                        .double_value(&[]);
                    let p: Vec<i64> = logits.argmax(-1, false).to_device(tch::Device::Cpu).try_into()?;
                    for (&i, v) in idx.iter().zip(p) {
                        preds[i] = v;
                    }
                    bar.inc(idx.len() as u64);
                }
                Ok(())
            })?;
            let row = self.row(
                epoch,
                ti,
                Split::Eval,
                loss_sum / lengths.len() as f64,
                &preds,
                &t.eval_labels,
            );
            sink.write(&row)?;
            rows.push(row);
        }
        bar.finish_and_clear();
        Ok(rows)
    }

    /// Tasks whose batches train something: not ignored, and with a trainable head or encoder.
    fn trained_tasks(&self) -> Result<Vec<bool>> {
        self.tasks
            .iter()
            .map(|t| {
                Ok(!self.plan.task_ignored(&t.name)
                    && (self.plan.encoder_trains() || self.plan.head_trains(&t.name)?))
            })
            .collect()
    }

    /// AdamW over the trainable tensors: the encoder's at `lr_encoder`, the heads' at `lr_heads`.
    fn optimizer(&self) -> Result<AdamW> {
        let (mut enc, mut heads) = (Vec::new(), Vec::new());
        for g in self.plan.select(&self.model.groups(), true)? {
            let vars = g.vars.iter().map(|(n, t)| (n.clone(), t.shallow_clone()));
            if g.group.is_head() {
                heads.extend(vars);
            } else {
                enc.extend(vars);
            }
        }
        let cfg = AdamWConfig {
            weight_decay: self.cfg.weight_decay,
            ..AdamWConfig::default()
        };
        Ok(AdamW::new(
            cfg,
            vec![(self.cfg.lr_encoder, enc), (self.cfg.lr_heads, heads)],
        ))
    }

    /// The batches of one epoch, in visiting order, from an RNG seeded by (seed, epoch).
    fn epoch_plan(&self, epoch: usize, trained: &[bool]) -> Vec<(usize, Vec<usize>)> {
        let mut rng = StdRng::seed_from_u64(mix(self.seed, epoch as u64));
        let per_task: Vec<Vec<Vec<usize>>> = self
            .tasks
            .iter()
            .zip(trained)
            .map(|(t, on)| {
                let lengths: Vec<usize> = t.train_ids.iter().map(Vec::len).collect();
                if *on {
                    bucketed_batches(&lengths, self.cfg.batch_size, &mut rng)
                } else {
                    Vec::new()
                }
            })
            .collect();
        schedule(per_task, self.cfg.sampling, self.cfg.temperature, &mut rng)
    }

    /// One optimisation step on batch `pos` of the epoch's plan (`task`, examples `idx`). Its loss, predictions
    /// and gradient norm stay on the device (see `read_in_flight`); only fp16's skip decision reads the host.
    fn step(
        &mut self,
        opt: &mut AdamW,
        epoch: usize,
        pos: usize,
        (task, idx): (usize, &[usize]),
        factor: f64,
    ) -> Result<()> {
        let t0 = Instant::now();
        // dropout masks depend on (seed, step) only, so a resumed run draws the same ones
        tch::manual_seed(mix(self.seed, (1 << 40) + self.step as u64) as i64);
        let index = self.epoch_slice(pos, idx.len());
        let head = self.model.head(task);
        let head_trains = self.plan.head_trains(&head.task)?;
        let (logits, loss) = amp::autocast(self.model.sentence.device, self.precision, || -> Result<_> {
            let logits = head.forward_t(
                &self.features(task, Split::Train, idx, Some(&index), true)?,
                head_trains,
            );
            let labels = self.train_labels[task].index_select(0, &index);
            let loss = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0);
            Ok((logits, loss))
        })??;
        let weighted = &loss * self.tasks[task].loss_weight;
        let params = opt.params();
        let (grads, skipped) = match &mut self.scaler {
            Some(scaler) => {
                let grads = Tensor::run_backward(&[scaler.scale_loss(&weighted)], &params, false, false);
                let skipped = scaler.unscale(&grads)?;
                (grads, skipped)
            }
            None => (Tensor::run_backward(&[weighted], &params, false, false), false),
        };
        // no defined gradient at all counts as a norm of 0, as the host-side clipping had it
        let norm = amp::clip_grad_norm(&grads, self.cfg.grad_clip)?
            .unwrap_or_else(|| Tensor::zeros([], (tch::Kind::Float, self.model.sentence.device)));
        if !skipped {
            opt.step(&grads, factor);
        }
        if let Some(scaler) = &mut self.scaler {
            scaler.update();
            if scaler.collapsed() {
                bail!("training diverged at step {} (epoch {epoch}, task `{}`): the fp16 loss scale fell to {}, so even unscaled gradients overflow; lower train.lr_encoder / train.lr_heads or use bf16", self.step + 1, self.tasks[task].name, scaler.scale());
            }
        }
        self.in_flight.push(InFlight {
            step: self.step,
            epoch,
            task,
            loss: loss.detach(),
            norm,
            preds: logits.argmax(-1, false),
            gold: idx.iter().map(|&i| self.tasks[task].train_labels[i]).collect(),
            guarded: self.scaler.is_none(),
        });
        self.step += 1;
        self.examples_seen += idx.len();
        self.train_s += t0.elapsed().as_secs_f64();
        Ok(())
    }

    /// Whether the step just taken ends a logging interval or precedes an evaluation, a checkpoint or the
    /// epoch end: the points where the steps kept on the device are read.
    fn read_due(&self, epoch_end: bool, ckpt: &Checkpoints) -> bool {
        let every = |n: Option<usize>| n.is_some_and(|n| n > 0 && self.step.is_multiple_of(n));
        epoch_end
            || every(Some(self.cfg.log_every_steps))
            || every(self.cfg.eval_every_steps)
            || every(ckpt.every_steps)
    }

    /// Uploads the epoch's batch indices in one piece.
    fn upload_index(&mut self, plan: &[(usize, Vec<usize>)]) {
        let mut offsets = vec![0i64];
        let mut flat = Vec::new();
        for (_, idx) in plan {
            flat.extend(idx.iter().map(|&i| i as i64));
            offsets.push(flat.len() as i64);
        }
        self.index = Some(EpochIndex {
            flat: upload(Tensor::from_slice(&flat), self.model.sentence.device),
            offsets,
        });
    }

    fn epoch_slice(&self, pos: usize, len: usize) -> Tensor {
        let ix = self
            .index
            .as_ref()
            .expect("the epoch's index is uploaded before its steps");
        ix.flat.narrow(0, ix.offsets[pos], len as i64)
    }

    /// Reads the steps kept on the device, in order, into the epoch statistics; the divergence guard: a
    /// non-finite loss or gradient norm fails the run, naming the step, before anything is evaluated or saved.
    /// Returns the last step's loss, for the progress bar.
    fn read_in_flight(&mut self, stats: &mut [EpochStats]) -> Result<Option<f64>> {
        if self.in_flight.is_empty() {
            return Ok(None);
        }
        let steps = std::mem::take(&mut self.in_flight);
        let host = |ts: Vec<Tensor>| -> Result<Vec<f64>> {
            Ok(Vec::<f64>::try_from(
                Tensor::stack(&ts, 0)
                    .to_kind(tch::Kind::Double)
                    .to_device(tch::Device::Cpu),
            )?)
        };
        let losses = host(steps.iter().map(|s| s.loss.shallow_clone()).collect())?;
        let norms = host(steps.iter().map(|s| s.norm.shallow_clone()).collect())?;
        let preds: Vec<i64> = Tensor::cat(&steps.iter().map(|s| &s.preds).collect::<Vec<_>>(), 0)
            .to_device(tch::Device::Cpu)
            .try_into()?;
        let mut preds = preds.into_iter();
        for ((s, lv), norm) in steps.iter().zip(&losses).zip(&norms) {
            let name = &self.tasks[s.task].name;
            let (at, epoch) = (s.step + 1, s.epoch);
            if s.guarded && !lv.is_finite() {
                bail!("training diverged at step {at} (epoch {epoch}, task `{name}`): the loss is {lv}; lower train.lr_encoder / train.lr_heads");
            }
            if s.guarded && !norm.is_finite() {
                bail!("training diverged at step {at} (epoch {epoch}, task `{name}`): the gradient norm is {norm}; lower train.lr_encoder / train.lr_heads");
            }
            let st = &mut stats[s.task];
            st.loss_sum += lv * s.gold.len() as f64;
            st.preds.extend(preds.by_ref().take(s.gold.len()));
            st.gold.extend(&s.gold);
        }
        Ok(losses.last().copied())
    }

    /// What follows the step that ended at position `pos` of an epoch's plan of `len` batches: the
    /// periodic evaluation, and at the epoch's end its training rows, evaluation and log line.
    fn after_step(
        &self,
        epoch: usize,
        pos: usize,
        len: usize,
        stats: &[EpochStats],
        sink: &mut MetricsWriter,
    ) -> Result<()> {
        if self
            .cfg
            .eval_every_steps
            .is_some_and(|n| n > 0 && self.step.is_multiple_of(n))
        {
            self.evaluate(epoch, sink)?;
        }
        if pos < len {
            return Ok(());
        }
        for (ti, st) in stats.iter().enumerate() {
            if !st.gold.is_empty() {
                sink.write(&self.row(
                    epoch,
                    ti,
                    Split::Train,
                    st.loss_sum / st.gold.len() as f64,
                    &st.preds,
                    &st.gold,
                ))?;
            }
        }
        let rows = self.evaluate(epoch, sink)?;
        let line: Vec<String> = rows
            .iter()
            .map(|r| format!("{} acc {:.4} f1 {:.4}", r.task, r.accuracy, r.macro_f1))
            .collect();
        eprintln!("epoch {epoch}/{}: {}", self.cfg.epochs, line.join(", "));
        Ok(())
    }

    /// Takes over a checkpoint's counters and optimizer state; returns (epoch, position, pending, stats).
    fn restore(&mut self, saved: Saved, opt: &mut AdamW) -> Result<(usize, usize, bool, Vec<EpochStats>)> {
        let p = saved.progress;
        opt.load_state(&saved.optimizer, &p.adam_steps)?;
        if let (Some(scaler), Some((scale, tracker))) = (&mut self.scaler, p.loss_scale) {
            scaler.load_state(scale, tracker);
        }
        (self.step, self.examples_seen, self.train_s, self.elapsed_before) =
            (p.step, p.examples_seen, p.train_s, p.elapsed_s);
        Ok((p.epoch, p.pos, p.pending, p.stats))
    }

    /// A checkpoint of the state at position `at` = (epoch, pos), with `rows` metrics rows written.
    fn save(
        &self,
        ckpt: &Checkpoints,
        opt: &AdamW,
        at: (usize, usize),
        stats: &[EpochStats],
        rows: usize,
        pending: bool,
    ) -> Result<()> {
        let p = self.progress(at.0, at.1, stats, rows, pending);
        resume::save(
            &ckpt.dir,
            &checkpoint::tensors(&self.model.groups(), self.plan)?,
            opt,
            &p,
        )
    }

    fn progress(&self, epoch: usize, pos: usize, stats: &[EpochStats], rows: usize, pending: bool) -> Progress {
        Progress {
            epoch,
            pos,
            step: self.step,
            examples_seen: self.examples_seen,
            train_s: self.train_s,
            elapsed_s: self.elapsed(),
            stats: stats.to_vec(),
            rows,
            pending,
            adam_steps: Default::default(),
            precision: self.precision,
            loss_scale: self.scaler.as_ref().map(GradScaler::state),
        }
    }

    fn stats(&self) -> FitStats {
        FitStats {
            steps: self.step,
            examples_seen: self.examples_seen,
            train_s: self.train_s,
            features_cached: self.cache.is_some(),
            resumed_after_s: self.elapsed_before,
        }
    }

    /// Evaluates before training (epoch 0), trains, and evaluates at each epoch end. Metric rows go to
    /// `sink` as they are made, so an interrupted run keeps what it measured; checkpoints go to `ckpt`.
    /// With `resumed`, training continues from that checkpoint (its model tensors already loaded, `sink`
    /// already cut back to its rows). An interruption checkpoints, then returns `interrupt::Interrupted`.
    pub fn fit(mut self, sink: &mut MetricsWriter, ckpt: &Checkpoints, resumed: Option<Saved>) -> Result<FitStats> {
        if resumed.is_none() {
            self.evaluate(0, sink)?;
        }
        let trained = self.trained_tasks()?;
        if !self.plan.anything_trains() || !trained.contains(&true) {
            eprintln!("nothing to train in this scenario: evaluated once, no optimizer built");
            return Ok(self.stats());
        }
        let mut opt = self.optimizer()?;
        let bs = self.cfg.batch_size;
        let steps_per_epoch: usize = self
            .tasks
            .iter()
            .zip(&trained)
            .filter(|(_, on)| **on)
            .map(|(t, _)| t.train_ids.len().div_ceil(bs))
            .sum();
        let total = (steps_per_epoch * self.cfg.epochs).max(1);
        let warmup = (self.cfg.warmup_ratio * total as f64).round() as usize;
        let fresh = || -> Vec<EpochStats> { self.tasks.iter().map(|_| EpochStats::default()).collect() };
        let (first, mut pos, mut pending, mut stats) = match resumed {
            Some(saved) => self.restore(saved, &mut opt)?,
            None => (1, 0, false, fresh()),
        };
        // the step of the last checkpoint written (with nothing pending), so an interruption right after
        // one does not write it again
        let mut saved_at: Option<usize> = None;
        for epoch in first..=self.cfg.epochs {
            let plan = self.epoch_plan(epoch, &trained);
            self.upload_index(&plan);
            if epoch != first {
                (pos, pending, stats) = (0, false, fresh());
            }
            let bar = progress_bar(plan.len() as u64, &format!("epoch {epoch}/{}", self.cfg.epochs));
            bar.set_position(pos as u64);
            let (epoch_start, mut epoch_examples) = (Instant::now(), 0usize);
            loop {
                if pending {
                    if self.read_due(pos == plan.len(), ckpt) {
                        if let Some(lv) = self.read_in_flight(&mut stats)? {
                            let rate = epoch_examples as f64 / epoch_start.elapsed().as_secs_f64();
                            bar.set_message(format!("loss {lv:.4}  {rate:.1} ex/s"));
                        }
                    }
                    let rows = sink.written();
                    if let Err(e) = bar.suspend(|| self.after_step(epoch, pos, plan.len(), &stats, sink)) {
                        if interrupt::is_interrupted(&e) {
                            self.save(ckpt, &opt, (epoch, pos), &stats, rows, true)?;
                        }
                        return Err(e);
                    }
                    pending = false;
                    let due = ckpt.every_steps.is_some_and(|n| n > 0 && self.step.is_multiple_of(n));
                    if due || pos == plan.len() {
                        self.save(ckpt, &opt, (epoch, pos), &stats, sink.written(), false)?;
                        saved_at = Some(self.step);
                    }
                }
                if pos == plan.len() {
                    break;
                }
                if interrupt::requested() {
                    self.read_in_flight(&mut stats)?;
                    if saved_at != Some(self.step) {
                        self.save(ckpt, &opt, (epoch, pos), &stats, sink.written(), false)?;
                    }
                    return Err(interrupt::Interrupted.into());
                }
                let (task, idx) = &plan[pos];
                let factor = lr_factor(self.step, warmup, total);
                self.step(&mut opt, epoch, pos, (*task, idx), factor)?;
                (pos, pending) = (pos + 1, true);
                epoch_examples += idx.len();
                bar.inc(1);
            }
            bar.finish_and_clear();
        }
        Ok(self.stats())
    }
}

/// Example indices as a tensor (on the CPU).
fn index_tensor(idx: &[usize]) -> Tensor {
    Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_schedule_is_transformers_linear_with_warmup() {
        // transformers 4.46.3: get_linear_schedule_with_warmup(opt, 3, 10), lr before each of 11 steps
        let want = [
            0.0,
            1.0 / 3.0,
            2.0 / 3.0,
            1.0,
            6.0 / 7.0,
            5.0 / 7.0,
            4.0 / 7.0,
            3.0 / 7.0,
            2.0 / 7.0,
            1.0 / 7.0,
            0.0,
        ];
        for (s, w) in want.iter().enumerate() {
            assert!((lr_factor(s, 3, 10) - w).abs() < 1e-15, "step {s}");
        }
        assert_eq!(lr_factor(0, 0, 4), 1.0);
        assert_eq!(lr_factor(12, 3, 10), 0.0);
    }

    #[test]
    fn seeds_mix_apart() {
        assert_ne!(mix(1, 1), mix(1, 2));
        assert_ne!(mix(1, 2), mix(2, 1));
        assert_eq!(mix(7, 3), mix(7, 3));
    }
}
