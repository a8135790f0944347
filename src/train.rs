//! The joint training loop: task sampling, one task per batch, weighted cross-entropy, AdamW with
//! warmup and linear decay, global gradient clipping, and evaluation of every task at each epoch end.

use std::time::Instant;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tch::nn::{self, OptimizerConfig};
use tch::{Reduction, Tensor};

use crate::config::{Sampling, TrainConfig};
use crate::freeze::FreezePlan;
use crate::metrics::{accuracy, macro_f1};
use crate::model::MultiTaskModel;
use crate::progress::progress_bar;
use crate::report::{MetricRow, MetricsWriter};
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

#[derive(Clone, Copy)]
enum Split {
    Train,
    Eval,
}

/// Pooled sentence vectors computed once, for when no encoder weight trains.
struct CachedFeatures {
    train: Tensor,
    eval: Tensor,
}

struct Opt {
    opt: nn::Optimizer,
    base_lr: f64,
}

/// Running sums for one task's training rows of an epoch.
#[derive(Default)]
struct EpochStats {
    loss_sum: f64,
    preds: Vec<i64>,
    gold: Vec<i64>,
}

pub struct Trainer<'a> {
    model: &'a MultiTaskModel,
    plan: &'a FreezePlan,
    tasks: &'a [TaskData],
    cfg: &'a TrainConfig,
    run: String,
    scenario: String,
    rng: StdRng,
    cache: Option<Vec<CachedFeatures>>,
    step: usize,
    examples_seen: usize,
    train_s: f64,
    start: Instant,
}

/// What `Trainer::fit` did, for the run summary.
#[derive(Debug, Clone, Copy)]
pub struct FitStats {
    pub steps: usize,
    pub examples_seen: usize,
    /// seconds spent in training steps (and in encoding the train set for cached features)
    pub train_s: f64,
    pub features_cached: bool,
}

/// The optimizers of the trainable VarStores and the tensors whose gradients are clipped together.
struct Optimizers {
    opts: Vec<Opt>,
    params: Vec<Tensor>,
}

/// The learning-rate multiplier at `step` (0-based) of `total`: linear warmup over `warmup` steps, then
/// linear decay to 0 at `total`.
pub fn lr_factor(step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        (step + 1) as f64 / warmup as f64
    } else {
        ((total - step) as f64 / (total - warmup).max(1) as f64).max(0.0)
    }
}

/// Training batches of one task for one epoch: shuffled, then bucketed by length within pools of
/// 32 batches so that padding stays small while batch order stays random.
fn bucketed_batches(lengths: &[usize], batch_size: usize, rng: &mut StdRng) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches: Vec<Vec<usize>> = order
        .chunks(batch_size * 32)
        .flat_map(|pool| {
            let mut pool = pool.to_vec();
            pool.sort_by_key(|&i| lengths[i]);
            pool.chunks(batch_size).map(|c| c.to_vec()).collect::<Vec<_>>()
        })
        .collect();
    batches.shuffle(rng);
    batches
}

/// The order in which tasks' batches are visited in one epoch.
fn schedule(
    per_task: Vec<Vec<Vec<usize>>>,
    sampling: Sampling,
    temperature: f64,
    rng: &mut StdRng,
) -> Vec<(usize, Vec<usize>)> {
    let total: usize = per_task.iter().map(Vec::len).sum();
    match sampling {
        Sampling::Proportional => {
            let mut all: Vec<(usize, Vec<usize>)> = per_task
                .into_iter()
                .enumerate()
                .flat_map(|(t, bs)| bs.into_iter().map(move |b| (t, b)))
                .collect();
            all.shuffle(rng);
            all
        }
        Sampling::RoundRobin => {
            let mut queues: Vec<std::vec::IntoIter<Vec<usize>>> = per_task.into_iter().map(Vec::into_iter).collect();
            let mut out = Vec::with_capacity(total);
            while out.len() < total {
                for (t, q) in queues.iter_mut().enumerate() {
                    if let Some(b) = q.next() {
                        out.push((t, b));
                    }
                }
            }
            out
        }
        Sampling::Temperature => {
            // as many steps as proportional sampling; a task that runs out starts over on its batches
            let sizes: Vec<f64> = per_task.iter().map(|b| b.len() as f64).collect();
            let weights: Vec<f64> = sizes
                .iter()
                .map(|n| if *n > 0.0 { n.powf(1.0 / temperature) } else { 0.0 })
                .collect();
            let sum: f64 = weights.iter().sum();
            let mut cursor = vec![0usize; per_task.len()];
            let mut out = Vec::with_capacity(total);
            for _ in 0..total {
                let mut x = rng.gen::<f64>() * sum;
                let mut t = 0;
                while t + 1 < weights.len() && (x >= weights[t] || weights[t] == 0.0) {
                    x -= weights[t];
                    t += 1;
                }
                let b = &per_task[t];
                out.push((t, b[cursor[t] % b.len()].clone()));
                cursor[t] += 1;
            }
            out
        }
    }
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
        Trainer {
            model,
            plan,
            tasks,
            cfg,
            run: run.to_string(),
            scenario: scenario.to_string(),
            rng: StdRng::seed_from_u64(seed),
            cache: None,
            step: 0,
            examples_seen: 0,
            train_s: 0.0,
            start: Instant::now(),
        }
    }

    /// With every encoder group frozen the sentence vectors never change: compute them once.
    /// Train-set encoding counts as training time, so examples/s stays honest.
    pub fn cache_features(&mut self) -> Result<()> {
        let s = &self.model.sentence;
        let bs = self.cfg.eval_batch_size;
        let mut cache = Vec::new();
        for t in self.tasks {
            let t0 = Instant::now();
            let train = s.encode_ids(&t.train_ids, bs, true)?.to_device(s.device);
            self.train_s += t0.elapsed().as_secs_f64();
            let eval = s.encode_ids(&t.eval_ids, bs, true)?.to_device(s.device);
            cache.push(CachedFeatures { train, eval });
        }
        self.cache = Some(cache);
        Ok(())
    }

    /// Sentence vectors for examples `idx` of one split of one task.
    fn features(&self, task: usize, split: Split, idx: &[usize], train: bool) -> Result<Tensor> {
        let s = &self.model.sentence;
        if let Some(cache) = &self.cache {
            let all = match split {
                Split::Train => &cache[task].train,
                Split::Eval => &cache[task].eval,
            };
            let index = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>()).to_device(s.device);
            return Ok(all.index_select(0, &index));
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

    fn row(&self, epoch: usize, task: usize, split: &'static str, loss: f64, preds: &[i64], gold: &[i64]) -> MetricRow {
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
            elapsed_s: self.start.elapsed().as_secs_f64(),
        }
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
                    let logits = self
                        .model
                        .head(ti)
                        .forward_t(&self.features(ti, Split::Eval, &idx, false)?, false);
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
                "eval",
                loss_sum / lengths.len() as f64,
                &preds,
                &t.eval_labels,
            );
            sink.write(row.clone())?;
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

    fn optimizers(&self) -> Result<Optimizers> {
        let adamw = nn::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            wd: self.cfg.weight_decay,
            eps: 1e-8,
            amsgrad: false,
        };
        let mut opts = Vec::new();
        if self.plan.encoder_trains() {
            let opt = adamw.build(&self.model.sentence.encoder.vs, self.cfg.lr_encoder)?;
            opts.push(Opt {
                opt,
                base_lr: self.cfg.lr_encoder,
            });
        }
        for h in &self.model.heads {
            if self.plan.head_trains(&h.task)? {
                opts.push(Opt {
                    opt: adamw.build(&h.vs, self.cfg.lr_heads)?,
                    base_lr: self.cfg.lr_heads,
                });
            }
        }
        let groups = self.model.groups();
        let params = self
            .plan
            .select(&groups, true)?
            .into_iter()
            .flat_map(|g| g.vars.iter().map(|(_, t)| t.shallow_clone()))
            .collect();
        Ok(Optimizers { opts, params })
    }

    /// Clips the gradient norm over every trainable tensor together, as torch's clip_grad_norm_ does
    /// over model.parameters().
    fn clip(&self, params: &[Tensor]) -> Result<()> {
        if self.cfg.grad_clip <= 0.0 {
            return Ok(());
        }
        let grads: Vec<Tensor> = params.iter().map(Tensor::grad).filter(Tensor::defined).collect();
        if grads.is_empty() {
            return Ok(());
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        let coef = self.cfg.grad_clip / (total + 1e-6);
        if coef < 1.0 {
            for mut g in grads {
                let _ = g.f_mul_scalar_(coef)?;
            }
        }
        Ok(())
    }

    /// The batches of one epoch, in visiting order: each trained task's batches, mixed by the sampling.
    fn epoch_plan(&mut self, trained: &[bool]) -> Vec<(usize, Vec<usize>)> {
        let bs = self.cfg.batch_size;
        let per_task: Vec<Vec<Vec<usize>>> = self
            .tasks
            .iter()
            .zip(trained)
            .map(|(t, on)| {
                let lengths: Vec<usize> = t.train_ids.iter().map(Vec::len).collect();
                if *on {
                    bucketed_batches(&lengths, bs, &mut self.rng)
                } else {
                    Vec::new()
                }
            })
            .collect();
        schedule(per_task, self.cfg.sampling, self.cfg.temperature, &mut self.rng)
    }

    /// One optimisation step on batch `idx` of `task` at learning-rate multiplier `factor`; returns the
    /// batch's mean loss.
    fn step(
        &mut self,
        opt: &mut Optimizers,
        task: usize,
        idx: &[usize],
        factor: f64,
        st: &mut EpochStats,
    ) -> Result<f64> {
        let t0 = Instant::now();
        for o in opt.opts.iter_mut() {
            o.opt.set_lr(o.base_lr * factor);
        }
        let head = self.model.head(task);
        let head_trains = self.plan.head_trains(&head.task)?;
        let logits = head.forward_t(&self.features(task, Split::Train, idx, true)?, head_trains);
        let labels = self.labels(task, Split::Train, idx);
        let loss = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0);
        for o in opt.opts.iter_mut() {
            o.opt.zero_grad();
        }
        (&loss * self.tasks[task].loss_weight).backward();
        self.clip(&opt.params)?;
        for o in opt.opts.iter_mut() {
            o.opt.step();
        }
        let lv = loss.double_value(&[]);
        let p: Vec<i64> = logits.argmax(-1, false).to_device(tch::Device::Cpu).try_into()?;
        st.loss_sum += lv * idx.len() as f64;
        st.preds.extend(p);
        st.gold.extend(idx.iter().map(|&i| self.tasks[task].train_labels[i]));
        self.step += 1;
        self.examples_seen += idx.len();
        self.train_s += t0.elapsed().as_secs_f64();
        Ok(lv)
    }

    /// Training rows of the epoch, then evaluation, then one line on stderr.
    fn end_epoch(&self, epoch: usize, stats: &[EpochStats], sink: &mut MetricsWriter) -> Result<()> {
        for (ti, st) in stats.iter().enumerate() {
            if !st.gold.is_empty() {
                sink.write(self.row(
                    epoch,
                    ti,
                    "train",
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

    fn stats(&self) -> FitStats {
        FitStats {
            steps: self.step,
            examples_seen: self.examples_seen,
            train_s: self.train_s,
            features_cached: self.cache.is_some(),
        }
    }

    /// Evaluates before training (epoch 0), trains, and evaluates at each epoch end. Metric rows go to
    /// `sink` as they are made, so an interrupted run keeps what it measured.
    pub fn fit(mut self, sink: &mut MetricsWriter) -> Result<FitStats> {
        self.evaluate(0, sink)?;
        let trained = self.trained_tasks()?;
        if !self.plan.anything_trains() || !trained.contains(&true) {
            eprintln!("nothing to train in this scenario: evaluated once, no optimizer built");
            return Ok(self.stats());
        }
        let mut opt = self.optimizers()?;
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
        for epoch in 1..=self.cfg.epochs {
            let plan = self.epoch_plan(&trained);
            let bar = progress_bar(plan.len() as u64, &format!("epoch {epoch}/{}", self.cfg.epochs));
            let mut stats: Vec<EpochStats> = self.tasks.iter().map(|_| EpochStats::default()).collect();
            let (epoch_start, mut epoch_examples) = (Instant::now(), 0usize);
            for (task, idx) in plan {
                let lv = self.step(
                    &mut opt,
                    task,
                    &idx,
                    lr_factor(self.step, warmup, total),
                    &mut stats[task],
                )?;
                epoch_examples += idx.len();
                bar.inc(1);
                let rate = epoch_examples as f64 / epoch_start.elapsed().as_secs_f64();
                bar.set_message(format!("{} loss {lv:.4}  {rate:.1} ex/s", self.tasks[task].name));
                if self.cfg.eval_every_steps.is_some_and(|n| n > 0 && self.step.is_multiple_of(n)) {
                    bar.suspend(|| self.evaluate(epoch, sink))?;
                }
            }
            bar.finish_and_clear();
            self.end_epoch(epoch, &stats, sink)?;
        }
        Ok(self.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(n: usize) -> Vec<Vec<usize>> {
        (0..n).map(|i| vec![i]).collect()
    }

    #[test]
    fn round_robin_alternates_until_all_used() {
        let mut rng = StdRng::seed_from_u64(0);
        let order: Vec<usize> = schedule(vec![batches(3), batches(1)], Sampling::RoundRobin, 1.0, &mut rng)
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        assert_eq!(order, vec![0, 1, 0, 0]);
    }

    #[test]
    fn proportional_visits_each_batch_once() {
        let mut rng = StdRng::seed_from_u64(0);
        let s = schedule(vec![batches(5), batches(2)], Sampling::Proportional, 1.0, &mut rng);
        assert_eq!(s.iter().filter(|(t, _)| *t == 0).count(), 5);
        assert_eq!(s.iter().filter(|(t, _)| *t == 1).count(), 2);
    }

    #[test]
    fn high_temperature_flattens_task_mix() {
        let mut rng = StdRng::seed_from_u64(0);
        let s = schedule(
            vec![batches(900), batches(100)],
            Sampling::Temperature,
            1000.0,
            &mut rng,
        );
        let small = s.iter().filter(|(t, _)| *t == 1).count();
        assert_eq!(s.len(), 1000);
        assert!((400..600).contains(&small), "{small}");
    }

    #[test]
    fn lr_warms_up_then_decays_to_zero() {
        let f: Vec<f64> = (0..10).map(|s| lr_factor(s, 2, 10)).collect();
        assert_eq!(f[..3], [0.5, 1.0, 1.0]);
        assert!((f[9] - 0.125).abs() < 1e-12 && lr_factor(10, 2, 10) == 0.0);
        assert_eq!(lr_factor(0, 0, 4), 1.0);
    }

    #[test]
    fn bucketed_batches_cover_all_examples() {
        let mut rng = StdRng::seed_from_u64(1);
        let lengths: Vec<usize> = (0..100).map(|i| i % 17).collect();
        let mut seen: Vec<usize> = bucketed_batches(&lengths, 8, &mut rng).concat();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
