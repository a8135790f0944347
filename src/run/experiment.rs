//! One experiment end to end: config → datasets → model → freezing → trainer → metrics and summary.
//!
//! A run holds its lock for its whole life, works in `<output_dir>/<name>.partial/` and becomes
//! `<name>/` only once complete (see `run_dir`), so a bad config, bad data, a divergence, an interruption
//! or a second run of the same name never damages an earlier result. An interrupted run checkpoints and
//! continues exactly with `Start::Resume`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::analysis::sts::{StsColumns, StsPairs};
use crate::config::{DriftConfig, ExperimentConfig, PairLoss, TaskConfig, TaskType};
use crate::data::pairs::{PairData, ScoreColumn};
use crate::data::LabelledData;
use crate::model::checkpoint;
use crate::model::freeze::{FreezePlan, Snapshot};
use crate::model::lora::LoraAdapters;
use crate::model::report::{group_infos, groups_table};
use crate::model::task::TaskKind;
use crate::model::MultiTaskModel;
use crate::record::{
    read_metrics, ConflictWriter, DriftWriter, FinalMetrics, GroupInfo, MetricsWriter, PrecisionRecord, ProbeChange,
    Provenance, Split, Summary, CONFIG_FILE, CONFLICT_FILE, DRIFT_FILE, METRICS_FILE, SUMMARY_FILE,
};
use crate::run::provenance;
use crate::run::run_dir::{RunDir, RunLock};
use crate::runtime::amp::{self, Precision};
use crate::runtime::device::{describe, device_name, parse_device};
use crate::train::drift::DriftHook;
use crate::train::hook::EvalHook;
use crate::train::probe::StsProbe;
use crate::train::resume::{self, Saved};
use crate::train::{BestTracker, Checkpoints, ConflictLog, FitStats, Setup, TaskData, Trainer, Unfreezing};
use crate::util::interrupt;

/// What to do with an interrupted run's `.partial` found at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// start a new run; refuse if a resumable `.partial` would be lost
    Fresh,
    /// continue from the last checkpoint (or start afresh when there is none)
    Resume,
    /// discard any `.partial` and start over
    Restart,
}

/// `--resume` of a run that already finished: nothing to do (the CLI says so and exits 0).
#[derive(Debug)]
pub struct AlreadyComplete(pub PathBuf);

impl std::fmt::Display for AlreadyComplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is already complete; nothing to resume", self.0.display())
    }
}

impl std::error::Error for AlreadyComplete {}

/// A finished result is never replaced silently: only `--restart` replaces it, and `--resume` of it is a
/// no-op, unless an interrupted `--restart` of it left a checkpoint to continue.
fn guard_result(rd: &RunDir, name: &str, start: Start) -> Result<()> {
    let fin = rd.path();
    // a result folder whose summary does not say complete (an older interrupted run) is not a finished result
    let finished = crate::record::Summary::read(&fin.join(crate::record::SUMMARY_FILE)).is_ok_and(|s| s.complete);
    if start == Start::Restart || !finished {
        return Ok(());
    }
    if start == Start::Resume {
        if crate::train::resume::has_checkpoint(&rd.partial()) {
            return Ok(());
        }
        return Err(AlreadyComplete(fin).into());
    }
    bail!(
        "{} already holds the finished run `{name}`: pass --restart to replace it, or choose another name",
        fin.display()
    )
}

/// One task's train and eval files as read: labelled sentences, or pairs (sts, pairs).
enum TaskFiles {
    Labelled(LabelledData, LabelledData),
    Pairs(PairData, PairData),
}

/// Reads every task's files (before anything is written, so bad data fails early).
fn read_tasks(cfg: &ExperimentConfig) -> Result<Vec<TaskFiles>> {
    cfg.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let files = match t.kind {
                TaskType::Classification => read_labelled(t)?,
                TaskType::Sts | TaskType::Pairs => read_pairs(t).and_then(|f| {
                    check_pairs(t, &f, cfg.train.batch_size).with_context(|| format!("tasks.{i}"))?;
                    Ok(f)
                })?,
            };
            let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if same(&t.train, &t.eval) {
                crate::say!(
                    "note: task `{}` trains and evaluates on the same file ({}): its eval metrics measure fit, not generalisation",
                    t.name,
                    t.train.display()
                );
            }
            Ok(files)
        })
        .collect()
}

/// What a run measures besides its tasks, read before the lock (see `config::ProbeConfig`).
struct Measures {
    /// each probe's name and pairs
    probes: Vec<(String, StsPairs)>,
    /// `analysis.drift`'s sentences
    drift: Option<Vec<String>>,
}

fn read_measures(cfg: &ExperimentConfig) -> Result<Measures> {
    let probes = cfg
        .probes
        .iter()
        .map(|p| {
            let cols = StsColumns {
                first: &p.sentence1_column,
                second: &p.sentence2_column,
                score: &p.score_column,
            };
            let pairs =
                StsPairs::read_columns(&p.data, &cols, p.limit).with_context(|| format!("probe `{}`", p.name))?;
            Ok((p.name.clone(), pairs))
        })
        .collect::<Result<_>>()?;
    let drift = cfg.analysis.drift.as_ref().map(drift_sentences).transpose()?;
    Ok(Measures { probes, drift })
}

/// The first `sentences` rows of drift's file; fewer, or an empty one, is an error naming the file.
fn drift_sentences(d: &DriftConfig) -> Result<Vec<String>> {
    let rows = PairData::read(&d.data, &[d.column.as_str()], None, Some(d.sentences)).context("analysis.drift")?;
    if rows.len() < d.sentences {
        bail!(
            "analysis.drift.sentences: {} asked for, but {} has only {} rows",
            d.sentences,
            d.data.display(),
            rows.len()
        );
    }
    Ok(rows.columns.into_iter().next().unwrap_or_default())
}

/// The hooks `measures` call for. Drift takes its reference from `model`, so this runs before a resumed run
/// loads its checkpoint; its file goes into `work`, cut back to what `saved` counted.
fn hooks<'a>(
    cfg: &ExperimentConfig,
    model: &MultiTaskModel,
    measures: Measures,
    work: &Path,
    saved: Option<&Saved>,
    precision: Precision,
) -> Result<Vec<Box<dyn EvalHook + 'a>>> {
    let bs = cfg.train.eval_batch_size;
    let mut hooks: Vec<Box<dyn EvalHook + 'a>> = Vec::new();
    for (name, pairs) in measures.probes {
        hooks.push(Box::new(StsProbe::new(&name, pairs, &model.sentence.tokenizer, bs)));
    }
    if let (Some(sentences), Some(d)) = (measures.drift, &cfg.analysis.drift) {
        let path = work.join(DRIFT_FILE);
        let writer = match saved {
            Some(s) => DriftWriter::truncate_to(&path, s.progress.hook_rows.get(DRIFT_FILE).copied().unwrap_or(0))?,
            None => DriftWriter::create(&path)?,
        };
        hooks.push(Box::new(DriftHook::new(
            &sentences, d.every, model, writer, precision, bs,
        )?));
    }
    Ok(hooks)
}

fn read_labelled(t: &TaskConfig) -> Result<TaskFiles> {
    let labels = t.label_map()?;
    let (text, label) = (t.text_column(), t.label_column());
    let train = LabelledData::read(&t.train, text, label, &labels, t.limit_train)
        .with_context(|| format!("task `{}` train", t.name))?;
    let eval = LabelledData::read(&t.eval, text, label, &labels, t.limit_eval)
        .with_context(|| format!("task `{}` eval", t.name))?;
    Ok(TaskFiles::Labelled(train, eval))
}

fn read_pairs(t: &TaskConfig) -> Result<TaskFiles> {
    let names = t.pair_columns();
    let columns: Vec<&str> = names.iter().map(String::as_str).collect();
    let score = || {
        Some(ScoreColumn {
            name: t.score_column.as_deref()?,
            range: Some(t.score_range?),
        })
    };
    let train = PairData::read(&t.train, &columns, score(), t.limit_train)
        .with_context(|| format!("task `{}` train", t.name))?;
    let eval =
        PairData::read(&t.eval, &columns, score(), t.limit_eval).with_context(|| format!("task `{}` eval", t.name))?;
    Ok(TaskFiles::Pairs(train, eval))
}

/// MNRL ranks each anchor's positive against the batch's other candidates: without a negative column every
/// training batch needs two pairs (a batch size of 2 or more, and no last batch of one), and retrieval needs two
/// eval pairs.
fn check_pairs(t: &TaskConfig, files: &TaskFiles, batch_size: usize) -> Result<()> {
    let TaskFiles::Pairs(train, eval) = files else {
        return Ok(());
    };
    if t.kind != TaskType::Pairs {
        return Ok(());
    }
    if eval.len() < 2 {
        bail!(
            "{}: a pairs task's eval file needs at least 2 pairs (each anchor retrieves its positive among the others), found {}",
            t.eval.display(),
            eval.len()
        );
    }
    if t.negative_column.is_some() {
        return Ok(());
    }
    let n = train.len();
    if batch_size < 2 || n % batch_size == 1 {
        bail!(
            "{}: {n} pairs in batches of train.batch_size {batch_size} give a batch of one pair, which MNRL cannot train on (it needs in-batch negatives); use a train.batch_size of 2 or more that leaves no last batch of one, change limit_train, or add a negative_column",
            t.train.display()
        );
    }
    Ok(())
}

/// A head-less task trains the encoder only: where the freezing leaves nothing of it trainable, it is evaluated
/// but trains nothing; say so.
fn note_untrained(cfg: &ExperimentConfig, plan: &FreezePlan) {
    if plan.encoder_trains() {
        return;
    }
    for t in cfg.tasks.iter().filter(|t| !t.kind.has_head()) {
        crate::say!(
            "note: task `{}` ({}) has no head and freeze.scenario `{}` freezes the encoder: it trains nothing and is only evaluated",
            t.name,
            t.kind,
            cfg.freeze.scenario
        );
    }
}

/// Model and freezing as the config says; shared by `run`, `inspect` and `predict`.
pub fn build(cfg: &ExperimentConfig) -> Result<(MultiTaskModel, FreezePlan)> {
    tch::manual_seed(cfg.seed as i64);
    let mut model = MultiTaskModel::build(cfg, parse_device(&cfg.device)?)?;
    let groups = model.groups();
    let plan = FreezePlan::new(cfg, &groups, model.sentence.encoder.num_layers as usize)?;
    plan.apply(&groups)?;
    if let Some(lora) = &cfg.freeze.lora {
        // after the plan, which froze every encoder tensor: attach makes the target weights gradient probes
        let enc = &model.sentence.encoder;
        model.lora = Some(LoraAdapters::attach(&enc.vs, enc.arch, lora, cfg.seed)?);
    }
    Ok((model, plan))
}

/// A finished run: what it wrote, and the trained model itself.
pub struct Outcome {
    pub summary: Summary,
    pub model: MultiTaskModel,
    pub plan: FreezePlan,
    pub dir: PathBuf,
}

/// Decides what happens to an earlier `.partial`, and returns the checkpoint to continue from, if any.
fn prepare(lock: &RunLock, cfg: &ExperimentConfig, start: Start) -> Result<Option<Saved>> {
    let (name, partial) = (cfg.name.as_str(), lock.dir().partial());
    // again under the lock: another process may have finished the run since the first look
    guard_result(lock.dir(), name, start)?;
    let saved = if partial.is_dir() && start != Start::Restart {
        resume::load(&partial)?
    } else {
        None
    };
    match (start, saved) {
        (Start::Fresh, Some(s)) => bail!(
            "{} holds run `{name}` interrupted at step {}: pass --resume to continue it or --restart to discard it",
            partial.display(),
            s.progress.step
        ),
        (Start::Resume, Some(s)) => {
            let before = ExperimentConfig::load(&partial.join(CONFIG_FILE), &[])?;
            resume::check_same_config(&before, cfg)?;
            provenance::check_data(&partial, cfg)?;
            lock.clear_failed()?;
            crate::say!("resuming {name} from step {}", s.progress.step);
            Ok(Some(s))
        }
        (start, _) => {
            if partial.is_dir() && start != Start::Restart {
                let why = if start == Start::Resume {
                    "it has no checkpoint, so"
                } else {
                    "without a checkpoint it"
                };
                crate::say!(
                    "note: {} is left from an unfinished run; {why} starts afresh",
                    partial.display()
                );
            }
            lock.fresh_partial()?;
            Ok(None)
        }
    }
}

/// Runs an experiment (see `Start`). On failure the `.partial` stays, marked failed; on interruption it
/// stays with a checkpoint, and the error is `interrupt::Interrupted`.
pub fn run(cfg: &ExperimentConfig, start: Start) -> Result<Outcome> {
    let wall = Instant::now();
    let rd = RunDir::new(&cfg.output_dir, &cfg.name)?;
    guard_result(&rd, &cfg.name, start)?;
    // everything that can be checked without writing is checked before the lock: data, model, freezing
    let data = read_tasks(cfg)?;
    let measures = read_measures(cfg)?;
    let (model, plan) = build(cfg)?;
    if cfg.train.early_stopping.is_some() && !plan.anything_trains() {
        bail!(
            "train.early_stopping: this freezing trains nothing, so there is no evaluation during training to stop on"
        );
    }
    note_untrained(cfg, &plan);
    let device = model.sentence.device;
    let hw = amp::Hardware::probe(device);
    let fresh = amp::choose(cfg.train.precision, device, &hw)?;
    let lock = rd.lock()?;
    let saved = prepare(&lock, cfg, start)?;
    let precision = precision(cfg, device, &hw, fresh, saved.as_ref())?;
    let partial = rd.partial();
    train_and_commit(cfg, &lock, (model, plan), (data, measures), saved, precision, wall).map_err(|e| {
        if interrupt::is_interrupted(&e) {
            crate::say!(
                "run {} interrupted; `harness run CONFIG --resume` (or the same sweep) continues it",
                cfg.name
            );
            e
        } else {
            let _ = lock.mark_failed(&format!("{e:#}"));
            e.context(format!(
                "run `{}` failed (what it wrote is kept in {})",
                cfg.name,
                partial.display()
            ))
        }
    })
}

/// The precision this run trains in: a resumed run keeps the one it started with (`auto` is not resolved again
/// on another machine); a fresh one uses `fresh`, the config's resolved. Sets the TF32 switch on CUDA.
fn precision(
    cfg: &ExperimentConfig,
    device: tch::Device,
    hw: &amp::Hardware,
    fresh: amp::Choice,
    saved: Option<&Saved>,
) -> Result<PrecisionRecord> {
    let requested = cfg.train.precision;
    let choice = match saved {
        Some(s) => amp::Choice {
            used: s.progress.precision,
            why: format!("kept from the run's start ({})", s.progress.precision),
        },
        None => fresh,
    };
    // a resumed fp16 run on a CPU would fail later, inside autocast: say why now
    amp::choose(choice.used, device, hw)?;
    let tf32 = cfg.train.tf32 && device.is_cuda();
    if device.is_cuda() {
        amp::set_tf32(tf32)?;
    } else if cfg.train.tf32 {
        crate::say!("note: train.tf32 applies to CUDA only; this run is on the CPU");
    }
    crate::say!("precision: {} ({})", choice.used, choice.why);
    Ok(PrecisionRecord {
        requested,
        used: choice.used,
        why: choice.why,
        tf32,
    })
}

fn train_and_commit(
    cfg: &ExperimentConfig,
    lock: &RunLock,
    (model, plan): (MultiTaskModel, FreezePlan),
    (data, measures): (Vec<TaskFiles>, Measures),
    saved: Option<Saved>,
    precision: PrecisionRecord,
    wall: Instant,
) -> Result<Outcome> {
    let work = lock.dir().partial();
    let groups = model.groups();
    let scenario = cfg.scenario_label();
    crate::say!(
        "run {} ({scenario}) on {}\n{}",
        cfg.name,
        describe(model.sentence.device),
        groups_table(&groups, &plan, model.lora.as_ref())?
    );
    let tasks = tokenize(cfg, &model, data)?;
    let hooks = hooks(cfg, &model, measures, &work, saved.as_ref(), precision.used)?;
    let extras = extra_columns(&tasks, &hooks);
    let metrics_path = work.join(METRICS_FILE);
    let mut writer = match &saved {
        Some(s) => {
            checkpoint::load(&model, &s.model_file)?;
            MetricsWriter::truncate_to(&metrics_path, s.progress.rows, &extras)?
        }
        None => {
            std::fs::write(work.join(CONFIG_FILE), serde_yaml::to_string(cfg)?)?;
            provenance::record_data(&work, cfg)?;
            MetricsWriter::create(&metrics_path, &extras)?
        }
    };
    let conflict = match cfg.train.mtl.log_conflict_every {
        Some(every) => {
            let path = work.join(CONFLICT_FILE);
            let writer = match &saved {
                Some(s) => ConflictWriter::truncate_to(&path, s.progress.conflict_rows)?,
                None => ConflictWriter::create(&path)?,
            };
            Some(ConflictLog { every, writer })
        }
        None => None,
    };
    // from here a signal checkpoints at the next safe point; before, it ends the run at once (nothing to save)
    let _defer = interrupt::defer();
    let frozen = model.with_base_weights(|| plan.select_vars(&groups, false).map(Snapshot::take))?;
    let mut trainer = Trainer::new(Setup {
        model: &model,
        plan: &plan,
        tasks: &tasks,
        cfg: &cfg.train,
        run: &cfg.name,
        scenario: &scenario,
        seed: cfg.seed,
    })
    .with_precision(precision.used)
    .with_conflict_log(conflict)
    .with_best(BestTracker::new(&cfg.train, &work))
    .with_gradual(
        cfg.freeze
            .gradual
            .as_ref()
            .map(|g| Unfreezing::new(g, model.sentence.encoder.num_layers as usize)),
    );
    for h in hooks {
        trainer = trainer.with_hook(h);
    }
    if cfg.train.cache_features && !plan.encoder_trains() && plan.anything_trains() {
        trainer.cache_features()?;
    }
    let ckpts = Checkpoints {
        dir: work.clone(),
        every_steps: cfg.train.checkpoint_every_steps,
    };
    let stats = trainer.fit(&mut writer, &ckpts, saved)?;
    drop(writer);

    let mut changed = model.with_base_weights(|| frozen.changed(&groups));
    // gradual unfreezing checked each phase's frozen tensors as the phase ended
    changed.extend(stats.phase_changed.iter().cloned());
    let trained = Trained {
        frozen_checked: frozen.len() + stats.phase_checked,
        stats,
        changed: changed.clone(),
        precision,
        wall_s: wall.elapsed().as_secs_f64(),
    };
    let summary = summarize(cfg, &model, &plan, &tasks, &work.join(METRICS_FILE), trained)?;
    checkpoint::save(&groups, &plan, model.lora.as_ref(), &work.join(checkpoint::FILE))?;
    summary.write(&work.join(SUMMARY_FILE))?;
    if !changed.is_empty() {
        bail!(
            "{} frozen tensors changed during training, e.g. `{}`",
            changed.len(),
            changed[0]
        );
    }
    resume::discard(&work)?;
    let dir = lock.commit()?;
    Ok(Outcome {
        summary,
        model,
        plan,
        dir,
    })
}

fn tokenize(cfg: &ExperimentConfig, model: &MultiTaskModel, data: Vec<TaskFiles>) -> Result<Vec<TaskData>> {
    let tok = &model.sentence.tokenizer;
    cfg.tasks
        .iter()
        .zip(data)
        .map(|(t, files)| {
            let kind = task_kind(t)?;
            let mut d = TaskData {
                name: t.name.clone(),
                kind,
                loss_weight: t.loss_weight,
                train_ids: Vec::new(),
                train_labels: Vec::new(),
                eval_ids: Vec::new(),
                eval_labels: Vec::new(),
                train_more: Vec::new(),
                eval_more: Vec::new(),
                train_scores: Vec::new(),
                eval_scores: Vec::new(),
            };
            match files {
                TaskFiles::Labelled(train, eval) => {
                    (d.train_ids, d.train_labels) = (tok.encode_all(&train.texts), train.labels);
                    (d.eval_ids, d.eval_labels) = (tok.encode_all(&eval.texts), eval.labels);
                }
                TaskFiles::Pairs(train, eval) => {
                    let mut cols = train.columns.iter().map(|c| tok.encode_all(c));
                    d.train_ids = cols.next().context("a pair task has sentence columns")?;
                    d.train_more = cols.collect();
                    let mut cols = eval.columns.iter().map(|c| tok.encode_all(c));
                    d.eval_ids = cols.next().context("a pair task has sentence columns")?;
                    d.eval_more = cols.collect();
                    (d.train_scores, d.eval_scores) = (train.scores, eval.scores);
                }
            }
            Ok(d)
        })
        .collect()
}

/// The task's kind as the config gives it (`resolve` filled in its loss).
fn task_kind(t: &TaskConfig) -> Result<TaskKind> {
    Ok(match t.kind {
        TaskType::Classification => TaskKind::Classification {
            num_labels: t.num_labels()?,
        },
        TaskType::Sts => TaskKind::Sts {
            loss: match t.loss {
                Some(PairLoss::CosineMse) => PairLoss::CosineMse,
                _ => PairLoss::Cosent,
            },
        },
        TaskType::Pairs => TaskKind::Pairs {
            negatives: t.negative_column.is_some(),
        },
    })
}

/// The metrics.csv columns the tasks' kinds and the hooks add beyond the base ones (none for classification
/// tasks alone), each once, in order of first use.
fn extra_columns(tasks: &[TaskData], hooks: &[Box<dyn EvalHook + '_>]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    let named = tasks
        .iter()
        .flat_map(|t| t.kind.extra_columns().iter().map(|c| c.to_string()));
    for c in named.chain(hooks.iter().flat_map(|h| h.extra_columns())) {
        if !cols.contains(&c) {
            cols.push(c);
        }
    }
    cols
}

/// What training left for the summary besides the model.
struct Trained {
    stats: FitStats,
    frozen_checked: usize,
    /// frozen tensors that moved (none in a sound run)
    changed: Vec<String>,
    precision: PrecisionRecord,
    /// this process's wall time
    wall_s: f64,
}

/// The last eval row of each task is its final result, and each probe's first and last rows its change, as
/// metrics.csv (re-read: one source) says.
fn final_metrics(metrics: &Path) -> Result<(BTreeMap<String, FinalMetrics>, BTreeMap<String, ProbeChange>)> {
    let rows = read_metrics(metrics)?;
    let probes = ProbeChange::of_rows(&rows);
    let finals = rows
        .into_iter()
        .filter(|r| r.split == Split::Eval)
        .map(|r| (r.task.clone(), FinalMetrics::of(&r)))
        .collect();
    Ok((finals, probes))
}

fn summarize(
    cfg: &ExperimentConfig,
    model: &MultiTaskModel,
    plan: &FreezePlan,
    tasks: &[TaskData],
    metrics: &Path,
    t: Trained,
) -> Result<Summary> {
    let mut infos = group_infos(&model.groups(), plan, model.lora.as_ref())?;
    // gradual unfreezing: what this run trained, not every group the schedule could reach in more epochs
    for g in &t.stats.never_opened {
        if let Some(info) = infos.get_mut(g) {
            (info.trainable, info.trainable_params) = (false, None);
        }
    }
    let (final_metrics, probes) = final_metrics(metrics)?;
    let s = t.stats;
    Ok(Summary {
        format: crate::record::FORMAT,
        run: cfg.name.clone(),
        base_name: cfg.base_name.clone().unwrap_or_else(|| cfg.name.clone()),
        scenario: cfg.scenario_label(),
        device: describe(model.sentence.device),
        seed: cfg.seed,
        model: cfg.encoder.model.clone(),
        params_total: infos.values().map(|g| g.params).sum(),
        params_trainable: infos.values().map(GroupInfo::trainable_count).sum(),
        groups: infos,
        frozen_unchanged: t.changed.is_empty(),
        frozen_tensors_checked: t.frozen_checked,
        final_metrics,
        train_examples: tasks.iter().map(|t| (t.name.clone(), t.train_ids.len())).collect(),
        eval_examples: tasks.iter().map(|t| (t.name.clone(), t.eval_ids.len())).collect(),
        epochs: cfg.train.epochs,
        steps: s.steps,
        examples_seen: s.examples_seen,
        features_cached: s.features_cached,
        // a resumed run's wall time includes the time before the interruption
        wall_s: s.resumed_after_s + t.wall_s,
        train_s: s.train_s,
        train_examples_per_s: if s.train_s > 0.0 {
            s.examples_seen as f64 / s.train_s
        } else {
            0.0
        },
        complete: t.changed.is_empty(),
        provenance: provenance(model, &t.precision)?,
        precision: t.precision,
        weighting: s.weighting,
        best: s.best,
        stopped_early: s.stopped_early,
        probes,
    })
}

fn provenance(model: &MultiTaskModel, precision: &PrecisionRecord) -> Result<Provenance> {
    let folder = &model.sentence.folder;
    Ok(Provenance {
        // absolute, so that `predict` from another folder finds the very encoder the heads were trained on
        model_path: provenance::absolute(&folder.dir).display().to_string(),
        model_fingerprint: crate::util::fingerprint::of_files(&folder.weight_files)?,
        precision: precision.used.to_string(),
        threads: tch::get_num_threads() as i64,
        device_name: device_name(model.sentence.device),
        tch_version: crate::util::versions::TCH.into(),
        libtorch_version: crate::util::versions::libtorch().into(),
        git_commit: crate::util::versions::git_commit().map(str::to_string),
    })
}
