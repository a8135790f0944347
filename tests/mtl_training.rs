//! Joint steps and gradient aggregation in real (tiny) runs: a joint plan with one trained task is the
//! per-task plan, every aggregator with one task is the weighted sum bit for bit, two-task aggregated runs
//! train with finite metrics and leave frozen tensors alone, and bad `train.step` / `train.mtl` settings are
//! one-line user errors before anything is written.

mod common;

use std::path::Path;

use common::*;
use harness::config::{ExperimentConfig, AGGREGATORS};
use harness::model::MultiTaskModel;
use harness::run::experiment::{self, Outcome, Start};

/// libtorch's RNG (head initialisation, dropout, PCGrad's order) is process-global: in-process runs take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(dir: &Path, freeze: &str, train: &str) -> Outcome {
    let p = dir.join("c.yaml");
    std::fs::write(&p, config_text(dir, freeze, train)).unwrap();
    let cfg = ExperimentConfig::load(&p, &[]).unwrap();
    experiment::run(&cfg, Start::Fresh).unwrap()
}

/// Only topic trains: sentiment's head is frozen and its batches are left out.
const ONE_TASK: &str = "  scenario: head:sentiment\n  frozen_task_loss: ignore";

fn same_tensors(a: &MultiTaskModel, b: &MultiTaskModel) -> bool {
    a.groups()
        .iter()
        .zip(b.groups())
        .all(|(x, y)| x.vars.iter().zip(&y.vars).all(|((_, s), (_, t))| s.equal(t)))
}

#[test]
fn joint_with_one_trained_task_is_per_task() {
    let _serial = serial();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let per_task = run(a.path(), ONE_TASK, "");
    let joint = run(b.path(), ONE_TASK, "  step: joint");
    assert_eq!(per_task.summary.steps, 2);
    assert_eq!(joint.summary.steps, 2);
    assert_eq!(metrics(&per_task.dir), metrics(&joint.dir));
    assert!(same_tensors(&per_task.model, &joint.model));
}

#[test]
fn every_aggregator_with_one_task_is_the_sum_run() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let sum = run(d.path(), ONE_TASK, "  step: joint\n  mtl: {aggregator: sum}");
    let want = metrics(&sum.dir);
    for name in AGGREGATORS.iter().filter(|n| **n != "sum") {
        let e = tempfile::tempdir().unwrap();
        let got = run(
            e.path(),
            ONE_TASK,
            &format!("  step: joint\n  mtl: {{aggregator: {name}}}"),
        );
        assert_eq!(metrics(&got.dir), want, "{name}");
        assert!(
            same_tensors(&got.model, &sum.model),
            "{name}: the trained tensors differ"
        );
    }
}

/// Every loss, accuracy and F1 cell of a metrics.csv parses to a finite number.
fn all_finite(rows: &[Vec<String>]) -> bool {
    rows.iter()
        .all(|r| r[5..8].iter().all(|c| c.parse::<f64>().is_ok_and(f64::is_finite)))
}

#[test]
fn two_task_joint_runs_aggregate_and_keep_frozen_tensors() {
    let _serial = serial();
    // the lower four layers and the embeddings are frozen; the top two layers and both heads train
    let freeze = "  scenario: none\n  unfreeze_top_layers: 2";
    let d = tempfile::tempdir().unwrap();
    let sum = run(d.path(), freeze, "  step: joint");
    // 48 sentiment and 32 topic examples in batches of 16: 3 joint steps, topic starting a second pass
    assert_eq!(sum.summary.steps, 3);
    assert_eq!(sum.summary.examples_seen, 3 * 16 + 3 * 16);
    let sum_rows = metrics(&sum.dir);
    for name in ["pcgrad", "upgrad"] {
        let e = tempfile::tempdir().unwrap();
        let got = run(
            e.path(),
            freeze,
            &format!("  step: joint\n  mtl: {{aggregator: {name}}}"),
        );
        assert!(got.summary.frozen_unchanged, "{name}");
        assert_eq!(got.summary.steps, 3, "{name}");
        let rows = metrics(&got.dir);
        assert!(all_finite(&rows), "{name}: {rows:?}");
        // the epoch-0 evaluation is the same model; after training the aggregated gradients differ
        assert_eq!(rows[..2], sum_rows[..2], "{name}");
        assert!(!same_tensors(&got.model, &sum.model), "{name} trained like the sum");
    }
}

/// `harness run` on the tiny config with `freeze`/`train`: a user error naming `needle`, nothing written.
fn refused(freeze: &str, train: &str, needle: &str) {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    let p = d.path().join("c.yaml");
    std::fs::write(&p, config_text(&out, freeze, train)).unwrap();
    assert_user_error(&harness(&["run", p.to_str().unwrap()]), needle);
    assert!(!out.exists(), "{needle}: the run wrote {}", out.display());
}

#[test]
fn bad_joint_settings_are_user_errors_before_the_lock() {
    refused(
        "  scenario: none",
        "  step: joint\n  mtl: {aggregator: upgrd}",
        "unknown method `upgrd` (did you mean `upgrad`?",
    );
    refused(
        "  scenario: none",
        "  mtl: {aggregator: pcgrad}",
        "`pcgrad` needs `train.step: joint`",
    );
    refused(
        "  scenario: none",
        "  step: joint\n  mtl: {aggregator: cagrad, cagrad_c: -0.5}",
        "train.mtl.cagrad_c: -0.5 is out of range",
    );
    refused(
        "  scenario: none",
        "  step: joint\n  mtl: {aggregator: mgda, mgda_max_iters: 0}",
        "train.mtl.mgda_max_iters",
    );
    refused("  scenario: all", "  step: joint", "freezes every head");
    refused("  scenario: none", "  step: jiont", "train.step");
}
