//! The training loop: evaluation before training, then epochs of planned steps (see `plan`, `step`), an
//! evaluation at each evaluation point (see `eval`), and checkpoints from which an interrupted run continues
//! exactly. The harness's AdamW runs with warmup and linear decay and global gradient clipping.
//!
//! Exactness on resume rests on three things: each epoch's plan comes from an RNG seeded by (seed, epoch),
//! dropout's torch generator is reseeded from (seed, step) before every step, and the checkpoint holds
//! everything else that moves (trained tensors, optimizer state, the cursor, statistics).
//!
//! Nothing in a training step reads the device from the host: train labels are uploaded once, an epoch's
//! batch indices once per epoch, and each step's outputs wait in `inflight::Pending` until a logging point.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use tch::Tensor;

use crate::config::TrainConfig;
use crate::model::checkpoint;
use crate::model::freeze::FreezePlan;
use crate::model::group::Group;
use crate::model::lora::LoraAdapters;
use crate::model::task::TaskMetrics;
use crate::model::MultiTaskModel;
use crate::record::{BestEvaluation, MetricRow, MetricsWriter, Split, WeightingSummary};
use crate::runtime::amp::{self, GradScaler, Precision};
use crate::runtime::device::upload;
use crate::train::adamw::{AdamW, AdamWConfig};
use crate::train::best::BestTracker;
use crate::train::conflict::ConflictLog;
use crate::train::data::{Part, TaskData};
use crate::train::gradual::Unfreezing;
use crate::train::hook::EvalHook;
use crate::train::inflight::Pending;
use crate::train::joint::build_aggregator;
use crate::train::mtl::Aggregator;
use crate::train::plan::EpochPlan;
use crate::train::resume::{self, EpochStats, Progress, Saved};
use crate::train::schedule::{layer_lr_scale, lr_factor};
use crate::train::weighted::LossWeighting;
use crate::util::interrupt;
use crate::util::progress::progress_bar;

/// Pooled sentence vectors computed once, for when no encoder weight trains: one tensor per sentence column.
struct CachedFeatures {
    train: Vec<Tensor>,
    eval: Vec<Tensor>,
}

/// What `Trainer::fit` did, for the run summary.
#[derive(Debug, Clone)]
pub(crate) struct FitStats {
    pub steps: usize,
    pub examples_seen: usize,
    /// seconds spent in training steps (and in encoding the train set for cached features)
    pub train_s: f64,
    pub features_cached: bool,
    /// seconds the run had taken before this process resumed it (0 for a run that was not resumed)
    pub resumed_after_s: f64,
    /// the loss weighting's final state (`train.mtl.weighting`), when one ran
    pub weighting: Option<WeightingSummary>,
    /// the best evaluation (`train.early_stopping`)
    pub best: Option<BestEvaluation>,
    /// training ended before its last planned step (`train.early_stopping`)
    pub stopped_early: bool,
    /// `freeze.gradual`: tensors that moved while their phase had them frozen, and how many were compared
    pub phase_changed: Vec<String>,
    pub phase_checked: usize,
    /// `freeze.gradual`: encoder groups the schedule would open only after this run's last epoch
    pub never_opened: Vec<String>,
}

/// Where checkpoints go and how often (every N steps; each epoch end always).
pub(crate) struct Checkpoints {
    pub dir: PathBuf,
    pub every_steps: Option<usize>,
}

/// Who trains what, with which settings: everything a `Trainer` borrows.
pub(crate) struct Setup<'a> {
    pub model: &'a MultiTaskModel,
    pub plan: &'a FreezePlan,
    pub tasks: &'a [TaskData],
    pub cfg: &'a TrainConfig,
    pub run: &'a str,
    pub scenario: &'a str,
    pub seed: u64,
}

/// Where training stands: the epoch, the position in its plan, whether the step before it still awaits what
/// follows a step (evaluation, checkpoint), and the epoch's statistics so far.
struct Cursor {
    epoch: usize,
    pos: usize,
    pending: bool,
    stats: Vec<EpochStats>,
    /// the step of the last checkpoint written (with nothing pending), so an interruption right after one
    /// does not write it again
    saved_at: Option<usize>,
}

pub(crate) struct Trainer<'a> {
    pub(crate) model: &'a MultiTaskModel,
    pub(crate) plan: &'a FreezePlan,
    pub(crate) tasks: &'a [TaskData],
    pub(crate) cfg: &'a TrainConfig,
    pub(crate) run: String,
    pub(crate) scenario: String,
    pub(crate) seed: u64,
    cache: Option<Vec<CachedFeatures>>,
    pub(crate) precision: Precision,
    /// every task's train labels on the device
    pub(crate) train_labels: Vec<Tensor>,
    /// every task's train gold scores on the device (float32; empty but for sts tasks)
    pub(crate) train_scores: Vec<Tensor>,
    pub(crate) pending: Pending,
    pub(crate) scaler: Option<GradScaler>,
    pub(crate) hooks: Vec<Box<dyn EvalHook + 'a>>,
    /// a joint step's gradient aggregator (`train.mtl.aggregator`, built in `fit`); None: the weighted sum
    pub(crate) aggregator: Option<Box<dyn Aggregator>>,
    /// a joint step's loss weighting (`train.mtl.weighting`, built in `fit`); None: the tasks' `loss_weight`s
    pub(crate) weighting: Option<LossWeighting>,
    /// conflict.csv, when `train.mtl.log_conflict_every` is set
    pub(crate) conflict: Option<ConflictLog>,
    /// early stopping and the best weights (`train.early_stopping`, `train.keep_best`)
    best: Option<BestTracker>,
    /// gradual unfreezing (`freeze.gradual`)
    pub(crate) gradual: Option<Unfreezing>,
    pub(crate) step: usize,
    pub(crate) examples_seen: usize,
    pub(crate) train_s: f64,
    /// elapsed seconds before this process took over (a resumed run)
    elapsed_before: f64,
    start: Instant,
}

impl<'a> Trainer<'a> {
    pub(crate) fn new(s: Setup<'a>) -> Self {
        let device = s.model.sentence.device;
        Trainer {
            model: s.model,
            plan: s.plan,
            tasks: s.tasks,
            cfg: s.cfg,
            run: s.run.to_string(),
            scenario: s.scenario.to_string(),
            seed: s.seed,
            cache: None,
            precision: Precision::Fp32,
            train_labels: s
                .tasks
                .iter()
                .map(|t| Tensor::from_slice(&t.train_labels).to_device(device))
                .collect(),
            train_scores: s
                .tasks
                .iter()
                .map(|t| {
                    Tensor::from_slice(&t.train_scores)
                        .to_kind(tch::Kind::Float)
                        .to_device(device)
                })
                .collect(),
            pending: Pending::default(),
            scaler: None,
            hooks: Vec::new(),
            aggregator: None,
            weighting: None,
            conflict: None,
            best: None,
            gradual: None,
            step: 0,
            examples_seen: 0,
            train_s: 0.0,
            elapsed_before: 0.0,
            start: Instant::now(),
        }
    }

    /// Trains under autocast at `precision` (resolved: not auto); fp16 brings its loss scaler.
    pub(crate) fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self.scaler = (precision == Precision::Fp16).then(|| GradScaler::new(self.model.sentence.device));
        self
    }

    /// Logs gradient conflicts into `log` (see `conflict`).
    pub(crate) fn with_conflict_log(mut self, log: Option<ConflictLog>) -> Self {
        self.conflict = log;
        self
    }

    /// Tracks the best evaluation and stops training early (see `best`).
    pub(crate) fn with_best(mut self, best: Option<BestTracker>) -> Self {
        self.best = best;
        self
    }

    /// Unfreezes the encoder gradually (see `gradual`).
    pub(crate) fn with_gradual(mut self, gradual: Option<Unfreezing>) -> Self {
        self.gradual = gradual;
        self
    }

    /// Whether early stopping has ended training.
    fn stopping(&self) -> bool {
        self.best.as_ref().is_some_and(BestTracker::should_stop)
    }

    /// Judges an evaluation during training (see `best`).
    fn judge(&mut self, rows: &[MetricRow]) -> Result<()> {
        let Some(best) = &mut self.best else {
            return Ok(());
        };
        let names: Vec<String> = self.tasks.iter().map(|t| t.name.clone()).collect();
        best.judge(rows, &names, self.model, self.plan)
    }

    /// Adds something measured at every evaluation point (see `hook::EvalHook`).
    pub(crate) fn with_hook(mut self, hook: Box<dyn EvalHook + 'a>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// With every encoder group frozen the sentence vectors never change: compute them once.
    /// Train-set encoding counts as training time, so examples/s stays honest.
    pub(crate) fn cache_features(&mut self) -> Result<()> {
        let s = &self.model.sentence;
        let bs = self.cfg.eval_batch_size;
        let mut cache = Vec::new();
        for t in self.tasks {
            let (mut train, mut eval) = (Vec::new(), Vec::new());
            for col in 0..t.kind.columns() {
                let t0 = Instant::now();
                let seqs = t.column(Part::Train, col);
                let tr = amp::autocast(s.device, self.precision, || s.encode_ids(seqs, bs, true))??;
                self.train_s += t0.elapsed().as_secs_f64();
                let seqs = t.column(Part::Eval, col);
                let ev = amp::autocast(s.device, self.precision, || s.encode_ids(seqs, bs, true))??;
                train.push(tr.to_device(s.device));
                eval.push(ev.to_device(s.device));
            }
            cache.push(CachedFeatures { train, eval });
        }
        self.cache = Some(cache);
        Ok(())
    }

    pub(crate) fn has_cache(&self) -> bool {
        self.cache.is_some()
    }

    /// Sentence vectors for examples `idx` of one split of one task (`index`: the same on the device, when the
    /// caller has it there already).
    pub(crate) fn features(
        &self,
        task: usize,
        split: Part,
        idx: &[usize],
        index: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        if let Some(cached) = self.cached(task, split, 0, idx, index) {
            return Ok(cached);
        }
        let seqs = match split {
            Part::Train => &self.tasks[task].train_ids,
            Part::Eval => &self.tasks[task].eval_ids,
        };
        let batch = self
            .model
            .sentence
            .tokenizer
            .batch_of(seqs, idx, self.model.sentence.device);
        self.forward(&batch, train)
    }

    /// Column `col`'s cached sentence vectors of examples `idx`, when the features are cached.
    fn cached(&self, task: usize, split: Part, col: usize, idx: &[usize], index: Option<&Tensor>) -> Option<Tensor> {
        let cache = self.cache.as_ref()?;
        let all = match split {
            Part::Train => &cache[task].train[col],
            Part::Eval => &cache[task].eval[col],
        };
        Some(match index {
            Some(index) => all.index_select(0, index),
            None => all.index_select(0, &upload(index_tensor(idx), self.model.sentence.device)),
        })
    }

    /// The encoder on one padded batch: in train mode with a graph when it trains and `train` asks for it.
    fn forward(&self, batch: &crate::encoder::tokenizer::Batch, train: bool) -> Result<Tensor> {
        let s = &self.model.sentence;
        if train && self.plan.encoder_trains() {
            s.forward_t(batch, true)
        } else {
            // a frozen encoder runs without dropout and without building a graph
            tch::no_grad(|| s.forward_t(batch, false))
        }
    }

    /// Every sentence column's vectors (`[idx.len(), dim]` each) for examples `idx` of a pair task's split: the
    /// columns' sentences are encoded together, in one forward pass (or read from the cache).
    pub(crate) fn pair_features(
        &self,
        task: usize,
        split: Part,
        idx: &[usize],
        index: Option<&Tensor>,
        train: bool,
    ) -> Result<Vec<Tensor>> {
        let t = &self.tasks[task];
        let cols = t.kind.columns();
        if self.cache.is_some() {
            return Ok((0..cols)
                .filter_map(|c| self.cached(task, split, c, idx, index))
                .collect());
        }
        let refs: Vec<&[i64]> = (0..cols)
            .flat_map(|c| idx.iter().map(move |&i| t.column(split, c)[i].as_slice()))
            .collect();
        let batch = self.model.sentence.tokenizer.batch(&refs, self.model.sentence.device);
        let all = self.forward(&batch, train)?;
        Ok(all.chunk(cols as i64, 0))
    }

    pub(crate) fn labels(&self, task: usize, split: Part, idx: &[usize]) -> Tensor {
        let all = match split {
            Part::Train => &self.tasks[task].train_labels,
            Part::Eval => &self.tasks[task].eval_labels,
        };
        Tensor::from_slice(&idx.iter().map(|&i| all[i]).collect::<Vec<_>>()).to_device(self.model.sentence.device)
    }

    /// A metrics.csv row of task `task` on `split`, with its mean `loss` and `metrics`.
    pub(crate) fn row(&self, epoch: usize, task: usize, split: Split, loss: f64, metrics: TaskMetrics) -> MetricRow {
        let t = &self.tasks[task];
        let TaskMetrics {
            accuracy,
            macro_f1,
            extra,
        } = metrics;
        MetricRow {
            run: self.run.clone(),
            scenario: self.scenario.clone(),
            epoch,
            step: self.step,
            task: t.name.clone(),
            split,
            loss: Some(loss),
            accuracy,
            macro_f1,
            examples_seen: self.examples_seen,
            elapsed_s: self.elapsed(),
            extra,
        }
    }

    pub(crate) fn elapsed(&self) -> f64 {
        self.elapsed_before + self.start.elapsed().as_secs_f64()
    }

    /// Tasks whose batches train something: not ignored, and with a trainable head or encoder.
    fn trained_tasks(&self) -> Result<Vec<bool>> {
        self.tasks
            .iter()
            .map(|t| {
                // a head-less task trains only the encoder
                let head = t.kind.has_head() && self.plan.head_trains(&t.name)?;
                Ok(!self.plan.task_ignored(&t.name) && (self.plan.encoder_trains() || head))
            })
            .collect()
    }

    /// AdamW over the trainable tensors: the encoder's at `lr_encoder` (scaled per layer by
    /// `train.layer_lr_decay`, see `layer_lr_scale`), the heads' at `lr_heads`.
    fn optimizer(&self) -> Result<AdamW> {
        // LoRA's A and B open the encoder's set (its own tensors are all frozen then): see `grads`
        let mut enc = self.model.lora.as_ref().map_or_else(Vec::new, |l| l.trainable());
        let mut heads = Vec::new();
        for g in &self.model.groups() {
            let vars = self.plan.vars(g, true)?;
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
        let mut opt = AdamW::new(cfg, vec![(self.cfg.lr_encoder, enc), (self.cfg.lr_heads, heads)]);
        let (d, layers) = (self.cfg.layer_lr_decay, self.model.sentence.encoder.num_layers as usize);
        // d = 1 gives every scale 1, and lr · 1 is lr bit for bit
        opt.set_lr_scales(|name| match name.starts_with("head:") {
            true => 1.0,
            false => layer_lr_scale(&Group::of_encoder_var(name), d, layers),
        });
        Ok(opt)
    }

    /// After an optimizer step: LoRA's targets get W0 + s·B·A from the updated A and B.
    pub(crate) fn after_update(&self) {
        if let Some(lora) = &self.model.lora {
            lora.apply();
        }
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

    /// What follows the step that ended at position `pos` of an epoch's plan of `len` steps: the
    /// periodic evaluation, and at the epoch's end its training rows, evaluation and log line.
    fn after_step(
        &mut self,
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
            let rows = self.evaluate(epoch, false, sink)?;
            self.judge(&rows)?;
        }
        if pos < len {
            return Ok(());
        }
        for (ti, st) in stats.iter().enumerate() {
            if !st.gold.is_empty() {
                let loss = st.loss_sum / st.gold.len() as f64;
                let metrics = self.tasks[ti].kind.metrics(&st.preds, &st.gold);
                sink.write(&self.row(epoch, ti, Split::Train, loss, metrics))?;
            }
        }
        let rows = self.evaluate(epoch, true, sink)?;
        self.judge(&rows)?;
        let line: Vec<String> = rows.iter().map(|r| r.brief()).collect();
        crate::say!("epoch {epoch}/{}: {}", self.cfg.epochs, line.join(", "));
        Ok(())
    }

    /// Takes over a checkpoint's counters and optimizer state; returns where training stands.
    fn restore(&mut self, saved: Saved, opt: &mut AdamW) -> Result<Cursor> {
        let p = saved.progress;
        if let Some(b) = &mut self.best {
            b.state = p.best.clone().unwrap_or_default();
        }
        opt.load_state(&saved.optimizer, &p.adam_steps)?;
        if let (Some(scaler), Some((scale, tracker))) = (&mut self.scaler, p.loss_scale) {
            scaler.load_state(scale, tracker);
        }
        if let Some(w) = &mut self.weighting {
            let saved = p
                .weighting
                .as_ref()
                .context("the checkpoint has no loss weighting state")?;
            w.restore(saved)?;
        }
        (self.step, self.examples_seen, self.train_s, self.elapsed_before) =
            (p.step, p.examples_seen, p.train_s, p.elapsed_s);
        Ok(Cursor {
            epoch: p.epoch,
            pos: p.pos,
            pending: p.pending,
            stats: p.stats,
            saved_at: None,
        })
    }

    /// A checkpoint of the state at `at`, with `rows` metrics rows written.
    fn save(&self, ckpt: &Checkpoints, opt: &AdamW, at: &Cursor, rows: usize, pending: bool) -> Result<()> {
        let p = Progress {
            epoch: at.epoch,
            pos: at.pos,
            step: self.step,
            examples_seen: self.examples_seen,
            train_s: self.train_s,
            elapsed_s: self.elapsed(),
            stats: at.stats.to_vec(),
            rows,
            pending,
            adam_steps: Default::default(),
            precision: self.precision,
            loss_scale: self.scaler.as_ref().map(GradScaler::state),
            weighting: self.weighting.as_ref().map(LossWeighting::checkpoint).transpose()?,
            conflict_rows: self.conflict.as_ref().map_or(0, |c| c.writer.written()),
            best: self.best.as_ref().map(|b| b.state.clone()),
            hook_rows: self.hooks.iter().filter_map(|h| h.own_file()).collect(),
        };
        resume::save(
            &ckpt.dir,
            &checkpoint::tensors(&self.model.groups(), self.plan, self.model.lora.as_ref())?,
            opt,
            &p,
        )
    }

    fn stats(&self) -> Result<FitStats> {
        let names: Vec<String> = self.tasks.iter().map(|t| t.name.clone()).collect();
        Ok(FitStats {
            steps: self.step,
            examples_seen: self.examples_seen,
            train_s: self.train_s,
            features_cached: self.cache.is_some(),
            resumed_after_s: self.elapsed_before,
            weighting: self.weighting.as_ref().map(|w| w.summary(&names)).transpose()?,
            best: self.best.as_ref().and_then(|b| b.state.best.clone()),
            stopped_early: false,
            phase_changed: self.gradual.as_ref().map_or_else(Vec::new, |u| u.changed.clone()),
            phase_checked: self.gradual.as_ref().map_or(0, |u| u.checked),
            never_opened: self
                .gradual
                .as_ref()
                .map_or_else(Vec::new, |u| u.never_opened(&self.model.groups())),
        })
    }

    fn fresh_stats(&self) -> Vec<EpochStats> {
        self.tasks.iter().map(|_| EpochStats::default()).collect()
    }

    /// Evaluates before training (epoch 0), trains, and evaluates at each epoch end. Metric rows go to
    /// `sink` as they are made, so an interrupted run keeps what it measured; checkpoints go to `ckpt`.
    /// With `resumed`, training continues from that checkpoint (its model tensors already loaded, `sink`
    /// already cut back to its rows). An interruption checkpoints, then returns `interrupt::Interrupted`.
    pub(crate) fn fit(
        mut self,
        sink: &mut MetricsWriter,
        ckpt: &Checkpoints,
        resumed: Option<Saved>,
    ) -> Result<FitStats> {
        if resumed.is_none() {
            self.evaluate(0, true, sink)?;
        }
        let trained = self.trained_tasks()?;
        if !self.plan.anything_trains() || !trained.contains(&true) {
            crate::say!("nothing to train in this scenario: evaluated once, no optimizer built");
            return self.stats();
        }
        self.aggregator = build_aggregator(&self.cfg.mtl)?;
        let weighted = (0..self.tasks.len()).filter(|&i| trained[i]).collect();
        self.weighting = LossWeighting::build(self.cfg, weighted, self.seed, self.model.sentence.device)?;
        if (self.aggregator.is_some() || self.weighting.is_some()) && self.scaler.is_some() {
            anyhow::bail!(
                "train.mtl: an aggregator or a loss weighting is not supported with fp16 (its loss scaling) yet; use precision fp32 or bf16"
            );
        }
        let mut opt = self.optimizer()?;
        let steps_per_epoch = EpochPlan::steps_per_epoch(self.tasks, &trained, self.cfg);
        let total = (steps_per_epoch * self.cfg.epochs).max(1);
        let warmup = (self.cfg.warmup_ratio * total as f64).round() as usize;
        let mut at = match resumed {
            Some(saved) => self.restore(saved, &mut opt)?,
            None => Cursor {
                epoch: 1,
                pos: 0,
                pending: false,
                stats: self.fresh_stats(),
                saved_at: None,
            },
        };
        let first = at.epoch;
        for epoch in first..=self.cfg.epochs {
            if self.stopping() {
                break;
            }
            if epoch != first {
                (at.epoch, at.pos, at.pending, at.stats) = (epoch, 0, false, self.fresh_stats());
            }
            if let Some(u) = &mut self.gradual {
                u.enter(epoch, &self.model.groups(), self.plan, &opt)?;
            }
            let plan = EpochPlan::new(
                self.tasks,
                &trained,
                self.cfg,
                self.seed,
                epoch,
                self.model.sentence.device,
            );
            self.run_epoch(&mut opt, &plan, &mut at, sink, ckpt, (warmup, total))?;
        }
        if let Some(u) = &mut self.gradual {
            u.finish(&self.model.groups());
        }
        let stopped_early = self.stopping() && self.step < steps_per_epoch * self.cfg.epochs;
        if stopped_early {
            crate::say!(
                "early stopping: no improvement in {} evaluations, stopped at step {}",
                self.cfg.early_stopping.as_ref().map_or(0, |e| e.patience),
                self.step
            );
        }
        Ok(FitStats {
            stopped_early,
            ..self.stats()?
        })
    }

    /// The steps of one epoch from `at` on, each followed by what is due after it.
    fn run_epoch(
        &mut self,
        opt: &mut AdamW,
        plan: &EpochPlan,
        at: &mut Cursor,
        sink: &mut MetricsWriter,
        ckpt: &Checkpoints,
        (warmup, total): (usize, usize),
    ) -> Result<()> {
        let epoch = at.epoch;
        let bar = progress_bar(plan.len() as u64, &format!("epoch {epoch}/{}", self.cfg.epochs));
        bar.set_position(at.pos as u64);
        let (epoch_start, mut epoch_examples) = (Instant::now(), 0usize);
        loop {
            if at.pending {
                if self.read_due(at.pos == plan.len(), ckpt) {
                    if let Some(lv) = self.pending.read(self.tasks, &mut at.stats)? {
                        let rate = epoch_examples as f64 / epoch_start.elapsed().as_secs_f64();
                        bar.set_message(format!("loss {lv:.4}  {rate:.1} ex/s"));
                    }
                }
                self.after_pending(opt, at, plan.len(), sink, ckpt, &bar)?;
            }
            if at.pos == plan.len() || self.stopping() {
                break;
            }
            if interrupt::requested() {
                self.pending.read(self.tasks, &mut at.stats)?;
                if at.saved_at != Some(self.step) {
                    self.save(ckpt, opt, at, sink.written(), false)?;
                }
                return Err(interrupt::Interrupted.into());
            }
            self.step(opt, epoch, plan, at.pos, lr_factor(self.step, warmup, total))?;
            (at.pos, at.pending) = (at.pos + 1, true);
            epoch_examples += plan.steps[at.pos - 1].examples();
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// What follows a step: evaluation and the epoch's rows (an interruption there checkpoints the state with
    /// the step still pending, so a resumed run redoes them), then the checkpoint that is due.
    fn after_pending(
        &mut self,
        opt: &AdamW,
        at: &mut Cursor,
        len: usize,
        sink: &mut MetricsWriter,
        ckpt: &Checkpoints,
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        let rows = sink.written();
        let best_before = self.best.as_ref().map(|b| b.state.clone());
        if let Err(e) = bar.suspend(|| self.after_step(at.epoch, at.pos, len, &at.stats, sink)) {
            if interrupt::is_interrupted(&e) {
                // the evaluations are redone on resume: judge them then, not twice
                if let (Some(b), Some(before)) = (&mut self.best, best_before) {
                    b.state = before;
                }
                self.save(ckpt, opt, at, rows, true)?;
            }
            return Err(e);
        }
        at.pending = false;
        if at.pos == len {
            self.end_weighting_epoch(&at.stats)?;
        }
        let due = ckpt.every_steps.is_some_and(|n| n > 0 && self.step.is_multiple_of(n));
        if due || at.pos == len {
            self.save(ckpt, opt, at, sink.written(), false)?;
            at.saved_at = Some(self.step);
        }
        Ok(())
    }
}

/// The gradients of `roots` for `params` (`opt.params()`, in order), as `Tensor::run_backward` gives them;
/// with LoRA the first parameters are its A and B (`Trainer::optimizer`), whose gradients come from their
/// target weights' (`LoraAdapters::grads_from`).
pub(crate) fn grads(lora: Option<&LoraAdapters>, roots: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
    let Some(lora) = lora else {
        return Ok(Tensor::run_backward(roots, params, false, false));
    };
    let (probes, n) = (lora.probes(), lora.trainable().len());
    let inputs: Vec<Tensor> = probes.iter().chain(&params[n..]).map(Tensor::shallow_clone).collect();
    let mut grads = Tensor::run_backward(roots, &inputs, false, false);
    let rest = grads.split_off(probes.len());
    let mut out = lora.grads_from(&grads)?;
    out.extend(rest);
    Ok(out)
}

impl Trainer<'_> {
    /// The epoch's mean unweighted loss of each weighted task, to the loss weighting (its history). Runs once per
    /// epoch, after the epoch's rows and before its checkpoint, so a resumed run neither misses nor repeats it.
    fn end_weighting_epoch(&mut self, stats: &[EpochStats]) -> Result<()> {
        let Some(w) = &mut self.weighting else {
            return Ok(());
        };
        let means: Vec<f64> = w
            .tasks
            .iter()
            .map(|&t| stats[t].loss_sum / stats[t].gold.len().max(1) as f64)
            .collect();
        w.end_epoch(&means)
    }
}

/// Example indices as a tensor (on the CPU).
fn index_tensor(idx: &[usize]) -> Tensor {
    Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>())
}
