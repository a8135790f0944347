//! Evaluation points: every task scored on its eval file (loss, and the metrics its kind defines), then the
//! evaluation hooks (`hook`). Points: before training (epoch 0), every `train.eval_every_steps`, and each
//! epoch end.

use anyhow::{Context, Result};
use tch::{Reduction, Tensor};

use crate::encoder::tokenizer::length_sorted_batches;
use crate::model::task::TaskMetrics;
use crate::record::{MetricRow, MetricsWriter, Split};
use crate::runtime::amp;
use crate::train::data::Part;
use crate::train::hook::EvalPoint;
use crate::train::trainer::Trainer;
use crate::util::interrupt;
use crate::util::progress::progress_bar;

impl Trainer<'_> {
    pub(crate) fn point(&self, epoch: usize, epoch_end: bool) -> EvalPoint {
        EvalPoint {
            run: self.run.clone(),
            scenario: self.scenario.clone(),
            epoch,
            step: self.step,
            examples_seen: self.examples_seen,
            elapsed_s: self.elapsed(),
            epoch_end,
        }
    }

    /// Every task's loss and metrics on its eval file, then the hooks' rows; all go to `sink` and back.
    /// `epoch_end`: before training or at an epoch's end (see `EvalPoint`).
    pub(crate) fn evaluate(
        &mut self,
        epoch: usize,
        epoch_end: bool,
        sink: &mut MetricsWriter,
    ) -> Result<Vec<MetricRow>> {
        let bar = progress_bar(self.tasks.iter().map(|t| t.eval_ids.len() as u64).sum(), "eval");
        let mut rows = Vec::new();
        for (ti, t) in self.tasks.iter().enumerate() {
            bar.set_message(t.name.clone());
            let (loss, metrics) = match t.kind.has_head() {
                true => {
                    let (loss, preds) = self.eval_task(ti, &|n| bar.inc(n))?;
                    (loss, t.kind.metrics(&preds, &t.eval_labels))
                }
                false => self.eval_embedding_task(ti, &|n| bar.inc(n))?,
            };
            let row = self.row(epoch, ti, Split::Eval, loss, metrics);
            sink.write(&row)?;
            rows.push(row);
        }
        bar.finish_and_clear();
        let at = self.point(epoch, epoch_end);
        for hook in &mut self.hooks {
            for row in hook.evaluate(&at, self.model, self.precision)? {
                sink.write(&row)?;
                rows.push(row);
            }
        }
        Ok(rows)
    }

    /// One task's mean eval loss and its predictions in eval-file order.
    fn eval_task(&self, ti: usize, progress: &dyn Fn(u64)) -> Result<(f64, Vec<i64>)> {
        let t = &self.tasks[ti];
        let head = self
            .model
            .head_of(&t.name)
            .context("a classification task has a head")?;
        let lengths: Vec<usize> = t.eval_ids.iter().map(Vec::len).collect();
        let (mut loss_sum, mut preds) = (0.0, vec![0i64; lengths.len()]);
        tch::no_grad(|| -> Result<()> {
            for idx in length_sorted_batches(&lengths, self.cfg.eval_batch_size) {
                interrupt::check()?;
                let logits = amp::autocast(self.model.sentence.device, self.precision, || {
                    Ok::<_, anyhow::Error>(
                        head.forward_t(&self.features(ti, Part::Eval, &idx, None, false)?, false)
                            .to_kind(tch::Kind::Float),
                    )
                })??;
                let labels = self.labels(ti, Part::Eval, &idx);
                loss_sum += t.kind.loss(&logits, &labels, Reduction::Sum).double_value(&[]);
                let p: Vec<i64> = t.kind.predict(&logits).to_device(tch::Device::Cpu).try_into()?;
                for (&i, v) in idx.iter().zip(p) {
                    preds[i] = v;
                }
                progress(idx.len() as u64);
            }
            Ok(())
        })?;
        Ok((loss_sum / lengths.len() as f64, preds))
    }

    /// A head-less task's mean eval loss and metrics: every sentence column of the eval file encoded (in one
    /// length-sorted pass, or from the cache), the loss averaged over batches of `train.eval_batch_size` pairs in
    /// file order (a last batch of one pair joins the one before: MNRL needs two), the metrics on the whole set.
    fn eval_embedding_task(&self, ti: usize, progress: &dyn Fn(u64)) -> Result<(f64, TaskMetrics)> {
        let t = &self.tasks[ti];
        let (n, cols) = (t.eval_ids.len(), t.kind.columns());
        let s = &self.model.sentence;
        let columns: Vec<Tensor> = match self.has_cache() {
            true => self.pair_features(ti, Part::Eval, &(0..n).collect::<Vec<_>>(), None, false)?,
            false => {
                let all: Vec<Vec<i64>> = (0..cols).flat_map(|c| t.column(Part::Eval, c).to_vec()).collect();
                let bs = self.cfg.eval_batch_size;
                let emb = amp::autocast(s.device, self.precision, || s.encode_ids(&all, bs, false))??;
                emb.to_device(s.device).chunk(cols as i64, 0)
            }
        };
        progress(n as u64);
        let gold = Tensor::from_slice(&t.eval_scores)
            .to_kind(tch::Kind::Float)
            .to_device(s.device);
        let mut loss_sum = 0.0;
        tch::no_grad(|| -> Result<()> {
            for (start, len) in eval_chunks(n, self.cfg.eval_batch_size) {
                interrupt::check()?;
                let part: Vec<Tensor> = columns.iter().map(|c| c.narrow(0, start as i64, len as i64)).collect();
                let g = (!t.eval_scores.is_empty()).then(|| gold.narrow(0, start as i64, len as i64));
                loss_sum += t.kind.embedding_loss(&part, g.as_ref())?.double_value(&[]) * len as f64;
            }
            Ok(())
        })?;
        Ok((loss_sum / n as f64, t.kind.embedding_metrics(&columns, &t.eval_scores)?))
    }
}

/// (start, length) of consecutive batches of `size` over `n` examples, a last batch of one merged into the one
/// before it.
fn eval_chunks(n: usize, size: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = (0..n).step_by(size.max(1)).map(|s| (s, size.min(n - s))).collect();
    if out.len() > 1 && out.last().is_some_and(|c| c.1 == 1) {
        out.pop();
        if let Some(last) = out.last_mut() {
            last.1 += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_last_batch_of_one_joins_the_one_before() {
        assert_eq!(super::eval_chunks(5, 2), vec![(0, 2), (2, 3)]);
        assert_eq!(super::eval_chunks(4, 2), vec![(0, 2), (2, 2)]);
        assert_eq!(super::eval_chunks(1, 8), vec![(0, 1)]);
    }
}
