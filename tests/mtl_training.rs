//! Joint steps, gradient aggregation and loss weighting in real (tiny) runs: a joint plan with one trained
//! task is the per-task plan, every aggregator with one task is the weighted sum bit for bit, two-task
//! aggregated runs train with finite metrics and leave frozen tensors alone, every loss weighting trains and
//! reports its state (DWA's first two epochs and GradNorm's first are the fixed-weight run bit for bit, as in
//! LibMTL), and bad `train.step` / `train.mtl` settings are one-line user errors before anything is written.

mod common;

use std::path::Path;

use common::*;
use harness::config::{ExperimentConfig, WEIGHTINGS};
use harness::model::MultiTaskModel;
use harness::record::{read_conflicts, CONFLICT_FILE};
use harness::run::experiment::{self, Outcome, Start};

/// libtorch's RNG (head initialisation, dropout, PCGrad's order) is process-global: in-process runs take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random tiny DistilBERT of two layers, made once per test process: the loop's bookkeeping needs no
/// pretrained weights.
fn model() -> &'static Path {
    static MODEL: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> = std::sync::OnceLock::new();
    &MODEL
        .get_or_init(|| {
            let d = tempfile::tempdir().unwrap();
            let m = tiny_model(d.path(), 2);
            (d, m)
        })
        .1
}

fn run(dir: &Path, freeze: &str, train: &str) -> Outcome {
    let p = dir.join("c.yaml");
    std::fs::write(&p, config_text_on(model(), dir, freeze, train)).unwrap();
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
    // every aggregator returns a single task's gradient unchanged (`train::joint`'s unit test checks all ten
    // on one gradient); here three, through whole runs
    for name in ["mgda", "cagrad", "upgrad"] {
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
    // (not pcgrad: where the tiny model's two gradients do not conflict it is the sum, exactly)
    for name in ["mgda", "upgrad"] {
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

#[test]
fn every_loss_weighting_trains_two_tasks_and_reports_its_state() {
    let _serial = serial();
    let freeze = "  scenario: none\n  unfreeze_top_layers: 2";
    let d = tempfile::tempdir().unwrap();
    let fixed = run(d.path(), freeze, "  epochs: 2\n  step: joint");
    let want = metrics(&fixed.dir);
    assert_eq!(
        want.len(),
        2 + 2 * 4,
        "epoch 0 eval, then 2 train + 2 eval rows per epoch"
    );
    assert!(fixed.summary.weighting.is_none());
    for name in WEIGHTINGS.iter().filter(|n| **n != "fixed") {
        let e = tempfile::tempdir().unwrap();
        let got = run(
            e.path(),
            freeze,
            &format!("  epochs: 2\n  step: joint\n  mtl: {{weighting: {name}}}"),
        );
        let rows = metrics(&got.dir);
        assert!(all_finite(&rows), "{name}: {rows:?}");
        assert!(got.summary.frozen_unchanged, "{name}");
        assert_eq!(got.summary.steps, 6, "{name}");
        let w = got.summary.weighting.as_ref().expect("the summary has the weighting");
        assert_eq!(w.method, *name);
        assert_eq!(w.final_weights.len(), 2, "{name}: {w:?}");
        assert!(
            w.final_weights.values().all(|v| v.is_finite() && *v > 0.0),
            "{name}: {w:?}"
        );
        // how many rows equal the fixed-weight run's: DWA weighs 1 until two epochs' losses exist, GradNorm
        // until one has; the others differ from the first step on
        let same = match *name {
            "dwa" => want.len(),
            "gradnorm" => 6,
            _ => 2,
        };
        assert_eq!(rows[..same], want[..same], "{name}");
        if same < want.len() {
            assert_ne!(rows[same..], want[same..], "{name} trained like fixed weights");
        }
        if matches!(*name, "uncertainty" | "gradnorm") {
            assert_eq!(w.params["loss_scale"].len(), 2, "{name}: {w:?}");
        }
    }
}

#[test]
fn conflict_logging_writes_every_group_and_pair_and_changes_nothing() {
    let _serial = serial();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = run(a.path(), "  scenario: none", "  step: joint");
    let logged = run(
        b.path(),
        "  scenario: none",
        "  step: joint\n  mtl: {log_conflict_every: 1}",
    );
    assert_eq!(
        metrics(&plain.dir),
        metrics(&logged.dir),
        "logging conflicts changed training"
    );
    assert!(same_tensors(&plain.model, &logged.model));
    assert!(!plain.dir.join(CONFLICT_FILE).exists());
    let rows = read_conflicts(&logged.dir.join(CONFLICT_FILE)).unwrap();
    // 3 steps x (embeddings, layer.0, layer.1, encoder) x one pair
    let groups: Vec<&str> = rows.iter().take(4).map(|r| r.group.as_str()).collect();
    assert_eq!(groups, ["embeddings", "layer.0", "layer.1", "encoder"]);
    assert_eq!(rows.len(), 3 * 4);
    assert_eq!(
        rows.iter()
            .map(|r| r.step)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
    for r in &rows {
        assert_eq!((r.task_a.as_str(), r.task_b.as_str()), ("sentiment", "topic"));
        assert!(r.cosine.is_some_and(|c| (-1.0..=1.0).contains(&c)), "{r:?}");
        assert!(r.norm_ratio.is_some_and(|x| x > 0.0), "{r:?}");
    }
    let out = tempfile::tempdir().unwrap();
    let cmp = harness(&[
        "compare",
        logged.dir.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(cmp.status.success(), "{}", String::from_utf8_lossy(&cmp.stderr));
    let svg = std::fs::read_to_string(out.path().join("conflict.svg")).unwrap();
    assert!(svg.contains("mean gradient cosine") && svg.contains("sentiment – topic"));
    assert!(std::fs::read(out.path().join("conflict.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
}

/// Per-task steps: every logged step measures each task on its next batch (one extra forward and backward
/// each, under their own dropout seed), and training is exactly as without logging.
#[test]
fn per_task_conflict_logging_measures_every_task_and_changes_nothing() {
    let _serial = serial();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let plain = run(a.path(), "  scenario: none", "");
    let logged = run(b.path(), "  scenario: none", "  mtl: {log_conflict_every: 2}");
    assert_eq!(
        metrics(&plain.dir),
        metrics(&logged.dir),
        "logging conflicts changed training"
    );
    assert!(same_tensors(&plain.model, &logged.model));
    let rows = read_conflicts(&logged.dir.join(CONFLICT_FILE)).unwrap();
    // 5 per-task steps (3 sentiment batches, 2 topic): steps 2 and 4, 4 groups each, one pair
    let steps: Vec<usize> = rows.iter().map(|r| r.step).collect();
    assert_eq!(steps, [[2; 4], [4; 4]].concat());
    for r in &rows {
        assert_eq!((r.task_a.as_str(), r.task_b.as_str()), ("sentiment", "topic"));
        assert!(
            r.cosine
                .is_some_and(|c| (-1.0..=1.0).contains(&c) && c.abs() < 1.0 - 1e-9),
            "{r:?}"
        );
    }
    // the measurement is a function of (seed, step): a second run logs the same values
    let c = tempfile::tempdir().unwrap();
    let again = run(c.path(), "  scenario: none", "  mtl: {log_conflict_every: 2}");
    assert_eq!(read_conflicts(&again.dir.join(CONFLICT_FILE)).unwrap(), rows);
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
    refused(
        "  scenario: none",
        "  step: joint\n  mtl: {weighting: uncertainity}",
        "unknown method `uncertainity` (did you mean `uncertainty`?",
    );
    refused(
        "  scenario: backbone\n  lora: {r: 2}",
        "  mtl: {log_conflict_every: 5}",
        "freeze.lora: not supported with train.mtl.aggregator, train.mtl.weighting or train.mtl.log_conflict_every",
    );
    refused(
        "  scenario: none",
        "  step: joint\n  mtl: {log_conflict_every: 0}",
        "train.mtl.log_conflict_every: 0 is out of range",
    );
    refused(
        "  scenario: none",
        "  mtl: {weighting: dwa}",
        "`dwa` needs `train.step: joint`",
    );
    refused(
        "  scenario: none",
        "  step: joint\n  mtl: {weighting: uncertainty, aggregator: pcgrad}",
        "choose a loss weighting or a gradient aggregator",
    );
    refused(
        "  scenario: backbone",
        "  step: joint\n  mtl: {weighting: gradnorm}",
        "`gradnorm` balances the gradient norms of the shared encoder",
    );
    refused(
        "  scenario: none",
        "  step: joint\n  mtl: {weighting: dwa, dwa_temperature: 0}",
        "train.mtl.dwa_temperature",
    );
    refused(
        "  scenario: none",
        "  step: joint\n  precision: fp16\n  mtl: {weighting: gradnorm}",
        "not supported with fp16",
    );
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.yaml");
    let text = config_text(
        &d.path().join("out"),
        "  scenario: none",
        "  step: joint\n  mtl: {weighting: gls}",
    );
    std::fs::write(&p, text).unwrap();
    let out = harness(&["run", p.to_str().unwrap(), "--set", "tasks.1.loss_weight=2"]);
    assert_user_error(
        &out,
        "tasks.1.loss_weight: 2 is set, but train.mtl.weighting `gls` sets the weights itself",
    );
    assert!(!d.path().join("out").exists());
    refused("  scenario: none", "  step: jiont", "train.step");
}
