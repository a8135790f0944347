//! Early stopping and the best weights (`train.early_stopping`, `train.keep_best`): every evaluation during
//! training (not the one before it) is scored by the configured metric; one that beats the best so far by more
//! than `min_delta` becomes the best (with `keep_best` its weights are written, atomically, to the run's
//! `best.safetensors`), any other counts towards `patience`. The state is part of a training checkpoint's
//! progress, so a resumed run stops where the uninterrupted one does.

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::config::{EarlyStopping, StopMetric, TrainConfig};
use crate::model::checkpoint;
use crate::model::freeze::FreezePlan;
use crate::model::MultiTaskModel;
use crate::record::{BestEvaluation, FinalMetrics, MetricRow, Split};
use crate::util::fsx::write_atomic_with;

/// What a checkpoint keeps of the tracking: the best evaluation, the evaluations since, the step last judged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct BestState {
    pub best: Option<BestEvaluation>,
    /// evaluations since the best one (all of them while there is none)
    pub since: usize,
    /// the step of the last evaluation judged: a second evaluation at the same step is not judged again
    pub judged_step: Option<usize>,
}

/// The tracker a run with `train.early_stopping` carries.
pub(crate) struct BestTracker {
    cfg: EarlyStopping,
    /// where the best weights go (`train.keep_best`)
    keep: Option<PathBuf>,
    pub state: BestState,
}

impl BestTracker {
    /// None without `train.early_stopping`; `run_dir` is the folder that becomes the run's.
    pub(crate) fn new(cfg: &TrainConfig, run_dir: &std::path::Path) -> Option<Self> {
        let es = cfg.early_stopping.clone()?;
        Some(BestTracker {
            cfg: es,
            keep: cfg.keep_best.then(|| run_dir.join(checkpoint::BEST_FILE)),
            state: BestState::default(),
        })
    }

    /// Whether `patience` evaluations in a row have not improved.
    pub(crate) fn should_stop(&self) -> bool {
        self.state.since >= self.cfg.patience
    }

    /// Judges the evaluation whose task rows are `rows` (`tasks`: the tasks' names, in order); when it is the
    /// new best and the weights are kept, writes them.
    pub(crate) fn judge(
        &mut self,
        rows: &[MetricRow],
        tasks: &[String],
        model: &MultiTaskModel,
        plan: &FreezePlan,
    ) -> Result<()> {
        let Some(first) = rows.first() else {
            return Ok(());
        };
        let (epoch, step) = (first.epoch, first.step);
        if self.state.judged_step == Some(step) {
            return Ok(());
        }
        self.state.judged_step = Some(step);
        let value = self.score(rows, tasks);
        let improved = value.is_finite()
            && self
                .state
                .best
                .as_ref()
                .is_none_or(|b| value > b.value + self.cfg.min_delta);
        if !improved {
            self.state.since += 1;
            return Ok(());
        }
        if let Some(path) = &self.keep {
            let groups = model.groups();
            write_atomic_with(path, |tmp| checkpoint::save(&groups, plan, model.lora.as_ref(), tmp))?;
        }
        self.state.since = 0;
        self.state.best = Some(BestEvaluation {
            epoch,
            step,
            metric: self.cfg.metric.to_string(),
            value,
            metrics: task_metrics(rows, tasks),
            weights: self.keep.as_ref().map(|_| checkpoint::BEST_FILE.to_string()),
        });
        Ok(())
    }

    /// The metric's value over this evaluation's rows (NaN when a task's row is missing).
    fn score(&self, rows: &[MetricRow], tasks: &[String]) -> f64 {
        let row = |t: &str| rows.iter().find(|r| r.task == t && r.split == Split::Eval);
        match &self.cfg.metric {
            StopMetric::MeanAccuracy => {
                // over the tasks that have an accuracy: an sts or pairs task's row has none (config checks that
                // some task has one)
                let accs: Vec<f64> = tasks
                    .iter()
                    .filter_map(|t| match row(t) {
                        Some(r) if r.accuracy.is_none() && !r.extra.is_empty() => None,
                        r => Some(r.and_then(|r| r.accuracy).unwrap_or(f64::NAN)),
                    })
                    .collect();
                accs.iter().sum::<f64>() / accs.len() as f64
            }
            StopMetric::Accuracy(t) => row(t).and_then(|r| r.accuracy).unwrap_or(f64::NAN),
            StopMetric::MacroF1(t) => row(t).and_then(|r| r.macro_f1).unwrap_or(f64::NAN),
        }
    }
}

/// Every task's eval metrics in `rows`, as summary.json's `final` records them.
fn task_metrics(rows: &[MetricRow], tasks: &[String]) -> std::collections::BTreeMap<String, FinalMetrics> {
    rows.iter()
        .filter(|r| r.split == Split::Eval && tasks.contains(&r.task))
        .map(|r| (r.task.clone(), FinalMetrics::of(r)))
        .collect()
}
