//! Evaluation points: every task scored on its eval file (loss, and the metrics its kind defines), then the
//! evaluation hooks (`hook`). Points: before training (epoch 0), every `train.eval_every_steps`, and each
//! epoch end.

use anyhow::Result;
use tch::Reduction;

use crate::encoder::tokenizer::length_sorted_batches;
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
            let (loss, preds) = self.eval_task(ti, &|n| bar.inc(n))?;
            let row = self.row(epoch, ti, Split::Eval, loss, &preds, &t.eval_labels);
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
        let lengths: Vec<usize> = t.eval_ids.iter().map(Vec::len).collect();
        let (mut loss_sum, mut preds) = (0.0, vec![0i64; lengths.len()]);
        tch::no_grad(|| -> Result<()> {
            for idx in length_sorted_batches(&lengths, self.cfg.eval_batch_size) {
                interrupt::check()?;
                let logits = amp::autocast(self.model.sentence.device, self.precision, || {
                    Ok::<_, anyhow::Error>(
                        self.model
                            .head(ti)
                            .forward_t(&self.features(ti, Part::Eval, &idx, None, false)?, false)
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
}
