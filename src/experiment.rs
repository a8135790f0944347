//! One experiment end to end: config → datasets → model → freezing → trainer → metrics and summary.
//!
//! A run works in `<output_dir>/<name>.partial/` and is renamed to `<name>/` only once complete, so a bad
//! config, bad data or an interrupted run never damages an earlier result of the same name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::checkpoint;
use crate::config::ExperimentConfig;
use crate::data::LabelledData;
use crate::device::{describe, parse_device};
use crate::freeze::{FreezePlan, Snapshot};
use crate::model::MultiTaskModel;
use crate::report::{group_infos, groups_table, FinalMetrics, MetricsWriter, Summary};
use crate::train::{FitStats, TaskData, Trainer};

pub fn run_dir(cfg: &ExperimentConfig) -> PathBuf {
    cfg.output_dir.join(&cfg.name)
}

/// Reads every task's files (before anything is written, so bad data fails early).
fn read_tasks(cfg: &ExperimentConfig) -> Result<Vec<(LabelledData, LabelledData)>> {
    cfg.tasks
        .iter()
        .map(|t| {
            let labels = t.label_map()?;
            let train = LabelledData::read(&t.train, &t.text_column, &t.label_column, &labels, t.limit_train)
                .with_context(|| format!("task `{}` train", t.name))?;
            let eval = LabelledData::read(&t.eval, &t.text_column, &t.label_column, &labels, t.limit_eval)
                .with_context(|| format!("task `{}` eval", t.name))?;
            Ok((train, eval))
        })
        .collect()
}

/// Model and freezing as the config says; shared by `run`, `inspect` and `predict`.
pub fn build(cfg: &ExperimentConfig) -> Result<(MultiTaskModel, FreezePlan)> {
    tch::manual_seed(cfg.seed as i64);
    let model = MultiTaskModel::build(cfg, parse_device(&cfg.device)?)?;
    let groups = model.groups();
    let plan = FreezePlan::new(cfg, &groups, model.sentence.encoder.num_layers as usize)?;
    plan.apply(&groups)?;
    Ok((model, plan))
}

/// A finished run: what it wrote, and the trained model itself.
pub struct Outcome {
    pub summary: Summary,
    pub model: MultiTaskModel,
    pub plan: FreezePlan,
    pub dir: PathBuf,
}

pub fn run(cfg: &ExperimentConfig) -> Result<Outcome> {
    let wall = Instant::now();
    let data = read_tasks(cfg)?;
    let (model, plan) = build(cfg)?;
    let groups = model.groups();
    let scenario = cfg.scenario_label();
    eprintln!(
        "run {} ({scenario}) on {}\n{}",
        cfg.name,
        describe(model.sentence.device),
        groups_table(&groups, &plan)?
    );

    let tok = &model.sentence.tokenizer;
    let tasks: Vec<TaskData> = cfg
        .tasks
        .iter()
        .zip(&data)
        .map(|(t, (train, eval))| {
            Ok(TaskData {
                name: t.name.clone(),
                num_labels: t.num_labels()?,
                loss_weight: t.loss_weight,
                train_ids: tok.encode_all(&train.texts),
                train_labels: train.labels.clone(),
                eval_ids: tok.encode_all(&eval.texts),
                eval_labels: eval.labels.clone(),
            })
        })
        .collect::<Result<_>>()?;

    let final_dir = run_dir(cfg);
    let work = cfg.output_dir.join(format!("{}.partial", cfg.name));
    if work.exists() {
        eprintln!(
            "note: {} is left from an interrupted run; starting it again",
            work.display()
        );
        std::fs::remove_dir_all(&work).with_context(|| format!("{}: cannot remove", work.display()))?;
    }
    std::fs::create_dir_all(&work).with_context(|| format!("{}: cannot create", work.display()))?;
    std::fs::write(work.join("config.yaml"), serde_yaml::to_string(cfg)?)?;

    let frozen = Snapshot::take(plan.select(&groups, false)?);
    let mut writer = MetricsWriter::create(&work.join("metrics.csv"))?;
    let mut trainer = Trainer::new(&model, &plan, &tasks, &cfg.train, &cfg.name, &scenario, cfg.seed);
    if cfg.train.cache_features && !plan.encoder_trains() && plan.anything_trains() {
        trainer.cache_features()?;
    }
    let FitStats {
        steps,
        examples_seen,
        train_s,
        features_cached,
    } = trainer.fit(&mut writer)?;

    let changed = frozen.changed(&groups);
    let mut final_metrics = BTreeMap::new();
    for r in writer.rows.iter().filter(|r| r.split == "eval") {
        final_metrics.insert(
            r.task.clone(),
            FinalMetrics {
                accuracy: r.accuracy,
                macro_f1: r.macro_f1,
                loss: r.loss,
            },
        );
    }
    let infos = group_infos(&groups, &plan)?;
    let summary = Summary {
        run: cfg.name.clone(),
        scenario,
        device: describe(model.sentence.device),
        seed: cfg.seed,
        model: cfg.encoder.model.clone(),
        params_total: infos.values().map(|g| g.params).sum(),
        params_trainable: infos.values().filter(|g| g.trainable).map(|g| g.params).sum(),
        groups: infos,
        frozen_unchanged: changed.is_empty(),
        frozen_tensors_checked: frozen.len(),
        final_metrics,
        train_examples: tasks.iter().map(|t| (t.name.clone(), t.train_ids.len())).collect(),
        eval_examples: tasks.iter().map(|t| (t.name.clone(), t.eval_ids.len())).collect(),
        epochs: cfg.train.epochs,
        steps,
        examples_seen,
        features_cached,
        wall_s: wall.elapsed().as_secs_f64(),
        train_s,
        train_examples_per_s: if train_s > 0.0 {
            examples_seen as f64 / train_s
        } else {
            0.0
        },
        complete: changed.is_empty(),
    };
    checkpoint::save(&groups, &plan, &work.join(checkpoint::FILE))?;
    std::fs::write(work.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    if !changed.is_empty() {
        bail!(
            "{} frozen tensors changed during training, e.g. `{}` (results kept in {})",
            changed.len(),
            changed[0],
            work.display()
        );
    }
    replace_dir(&work, &final_dir)?;
    Ok(Outcome {
        summary,
        model,
        plan,
        dir: final_dir,
    })
}

fn replace_dir(from: &Path, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).with_context(|| format!("{}: cannot replace", to.display()))?;
    }
    std::fs::rename(from, to).with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}
