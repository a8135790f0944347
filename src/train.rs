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
use crate::report::{progress_bar, MetricRow, MetricsWriter};
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
    pub step: usize,
    pub examples_seen: usize,
    pub train_s: f64,
    start: Instant,
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

    pub fn features_cached(&self) -> bool {
        self.cache.is_some()
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

    /// Loss, accuracy and macro-F1 of every task on its eval file.
    pub fn evaluate(&self, epoch: usize, writer: &mut MetricsWriter) -> Result<()> {
        let bar = progress_bar(self.tasks.iter().map(|t| t.eval_ids.len() as u64).sum(), "eval");
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
            writer.write(self.row(
                epoch,
                ti,
                "eval",
                loss_sum / lengths.len() as f64,
                &preds,
                &t.eval_labels,
            ))?;
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Tasks whose batches train something: not ignored, and with a trainable head or encoder.
    fn trained_tasks(&self) -> Vec<bool> {
        self.tasks
            .iter()
            .map(|t| {
                !self.plan.ignored_tasks.contains(&t.name)
                    && (self.plan.encoder_trains() || self.plan.is_trainable(&format!("head:{}", t.name)))
            })
            .collect()
    }

    fn optimizers(&self) -> Result<Vec<Opt>> {
        let adamw = nn::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            wd: self.cfg.weight_decay,
            eps: 1e-8,
            amsgrad: false,
        };
        let mut opts = Vec::new();
        if self.plan.encoder_trains() {
            opts.push(Opt {
                opt: adamw.build(&self.model.sentence.encoder.vs, self.cfg.lr_encoder)?,
                base_lr: self.cfg.lr_encoder,
            });
        }
        for h in &self.model.heads {
            if self.plan.is_trainable(&format!("head:{}", h.task)) {
                opts.push(Opt {
                    opt: adamw.build(&h.vs, self.cfg.lr_heads)?,
                    base_lr: self.cfg.lr_heads,
                });
            }
        }
        Ok(opts)
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

    /// Evaluates before training (epoch 0), trains, and evaluates at each epoch end.
    pub fn fit(&mut self, writer: &mut MetricsWriter) -> Result<()> {
        self.evaluate(0, writer)?;
        let trained = self.trained_tasks();
        if !self.plan.anything_trains() || !trained.contains(&true) {
            eprintln!("nothing to train in this scenario: evaluated once, no optimizer built");
            return Ok(());
        }
        let mut opts = self.optimizers()?;
        let params: Vec<Tensor> = self
            .model
            .groups()
            .into_iter()
            .filter(|g| self.plan.is_trainable(&g.name))
            .flat_map(|g| g.vars.into_iter().map(|(_, t)| t))
            .collect();
        let bs = self.cfg.batch_size;
        let steps_per_epoch: usize = self
            .tasks
            .iter()
            .zip(&trained)
            .filter(|(_, on)| **on)
            .map(|(t, _)| t.train_ids.len().div_ceil(bs))
            .sum();
        let total_steps = (steps_per_epoch * self.cfg.epochs).max(1);
        let warmup = (self.cfg.warmup_ratio * total_steps as f64).round() as usize;
        let lr_factor = |step: usize| {
            if step < warmup {
                (step + 1) as f64 / warmup as f64
            } else {
                ((total_steps - step) as f64 / (total_steps - warmup).max(1) as f64).max(0.0)
            }
        };
        let lengths: Vec<Vec<usize>> = self
            .tasks
            .iter()
            .map(|t| t.train_ids.iter().map(Vec::len).collect())
            .collect();
        for epoch in 1..=self.cfg.epochs {
            let per_task: Vec<Vec<Vec<usize>>> = lengths
                .iter()
                .zip(&trained)
                .map(|(l, on)| {
                    if *on {
                        bucketed_batches(l, bs, &mut self.rng)
                    } else {
                        Vec::new()
                    }
                })
                .collect();
            let plan = schedule(per_task, self.cfg.sampling, self.cfg.temperature, &mut self.rng);
            let bar = progress_bar(plan.len() as u64, &format!("epoch {epoch}/{}", self.cfg.epochs));
            let mut stats: Vec<EpochStats> = self.tasks.iter().map(|_| EpochStats::default()).collect();
            let epoch_start = Instant::now();
            let mut epoch_examples = 0usize;
            for (task, idx) in plan {
                let t0 = Instant::now();
                let factor = lr_factor(self.step);
                for o in opts.iter_mut() {
                    o.opt.set_lr(o.base_lr * factor);
                }
                let head = self.model.head(task);
                let head_trains = self.plan.is_trainable(&format!("head:{}", head.task));
                let logits = head.forward_t(&self.features(task, Split::Train, &idx, true)?, head_trains);
                let labels = self.labels(task, Split::Train, &idx);
                let loss = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::Mean, -100, 0.0);
                for o in opts.iter_mut() {
                    o.opt.zero_grad();
                }
                (&loss * self.tasks[task].loss_weight).backward();
                self.clip(&params)?;
                for o in opts.iter_mut() {
                    o.opt.step();
                }
                let lv = loss.double_value(&[]);
                let p: Vec<i64> = logits.argmax(-1, false).to_device(tch::Device::Cpu).try_into()?;
                let st = &mut stats[task];
                st.loss_sum += lv * idx.len() as f64;
                st.preds.extend(p);
                st.gold.extend(idx.iter().map(|&i| self.tasks[task].train_labels[i]));
                self.step += 1;
                self.examples_seen += idx.len();
                epoch_examples += idx.len();
                self.train_s += t0.elapsed().as_secs_f64();
                bar.inc(1);
                bar.set_message(format!(
                    "{} loss {lv:.4}  {:.1} ex/s",
                    self.tasks[task].name,
                    epoch_examples as f64 / epoch_start.elapsed().as_secs_f64()
                ));
                if self.cfg.eval_every_steps.is_some_and(|n| n > 0 && self.step % n == 0) {
                    bar.suspend(|| self.evaluate(epoch, writer))?;
                }
            }
            bar.finish_and_clear();
            for (ti, st) in stats.iter().enumerate() {
                if !st.gold.is_empty() {
                    let loss = st.loss_sum / st.gold.len() as f64;
                    writer.write(self.row(epoch, ti, "train", loss, &st.preds, &st.gold))?;
                }
            }
            self.evaluate(epoch, writer)?;
            let line: Vec<String> = writer
                .rows
                .iter()
                .rev()
                .take(self.tasks.len())
                .map(|r| format!("{} acc {:.4} f1 {:.4}", r.task, r.accuracy, r.macro_f1))
                .collect();
            eprintln!("epoch {epoch}/{}: {}", self.cfg.epochs, line.join(", "));
        }
        Ok(())
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
    fn bucketed_batches_cover_all_examples() {
        let mut rng = StdRng::seed_from_u64(1);
        let lengths: Vec<usize> = (0..100).map(|i| i % 17).collect();
        let mut seen: Vec<usize> = bucketed_batches(&lengths, 8, &mut rng).concat();
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
