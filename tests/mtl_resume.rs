//! Exact resume of every stateful loss weighting (uncertainty's learned log-variances and their AdamW moments,
//! DWA's and GradNorm's loss history, RLW's generator), the hard way: each run is killed with SIGKILL at a
//! random step, resumed, stopped with SIGTERM at a later step, resumed again, and must end with the
//! uninterrupted run's metrics.csv, final weights and conflict.csv (gradient conflicts logged every 3 steps).

mod common;

use std::path::{Path, PathBuf};

use common::*;
use harness::record::{read_conflicts, Summary, CONFLICT_FILE};

/// The top layer and both heads train; 3 joint epochs of 10 steps (160 and 64 examples in batches of 16; DWA
/// weighs from epoch 3, GradNorm from 2), a checkpoint after every step.
/// The run uses a random tiny two-layer DistilBERT (`tiny_model`).
fn write_config(dir: &Path, method: &str) -> PathBuf {
    let train = format!(
        "  epochs: 3\n  checkpoint_every_steps: 1\n  step: joint\n  mtl: {{weighting: {method}, log_conflict_every: 3}}"
    );
    let model = tiny_model(dir, 2);
    let text = config_text_on(&model, dir, "  scenario: none\n  unfreeze_top_layers: 1", &train);
    let p = dir.join("c.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The training sets' sizes, on every command line.
fn limits() -> Vec<String> {
    ["--set", "tasks.0.limit_train=160", "--set", "tasks.1.limit_train=64"]
        .map(str::to_string)
        .to_vec()
}

fn weights(dir: &Path) -> String {
    let s = Summary::read(&dir.join("summary.json")).unwrap();
    serde_json::to_string(&s.weighting.expect("a weighting summary")).unwrap()
}

fn killed_twice_then_resumed_equals_uninterrupted(method: &str) {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), method);
    let extra = limits();
    let reference = spawn_run(&cfg, &named("ref", &extra), false)
        .wait_with_output()
        .unwrap();
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    // killed somewhere in epoch 1, stopped in epoch 2, so the resumed runs carry the first epoch's history
    let (k1, k2) = (2 + nanos % 7, 12 + nanos % 8);
    let k = ("k", extra.as_slice());
    let after_kill = interrupted_at(&cfg, d.path(), k, k1, false, Stop::Kill);
    let after_term = interrupted_at(&cfg, d.path(), k, k2, true, Stop::Term);
    resumed(&cfg, "k", &extra);
    eprintln!("{method}: killed at step {after_kill:?}, stopped at step {after_term:?}");
    assert_eq!(
        metrics(&d.path().join("k")),
        metrics(&d.path().join("ref")),
        "{method}: killed after step {after_kill:?}, stopped after {after_term:?}"
    );
    assert_eq!(weights(&d.path().join("k")), weights(&d.path().join("ref")), "{method}");
    let conflicts = |run: &str| read_conflicts(&d.path().join(run).join(CONFLICT_FILE)).unwrap();
    assert_eq!(conflicts("k"), conflicts("ref"), "{method}: conflict.csv");
    // steps 3, 6, ..., 30; groups layer.1 (the one that trains) and encoder; one task pair
    assert_eq!(conflicts("ref").len(), 10 * 2, "{method}");
}

#[test]
fn uncertainty_resumes_exactly() {
    killed_twice_then_resumed_equals_uninterrupted("uncertainty");
}

#[test]
fn dwa_resumes_exactly() {
    killed_twice_then_resumed_equals_uninterrupted("dwa");
}

#[test]
fn gradnorm_resumes_exactly() {
    killed_twice_then_resumed_equals_uninterrupted("gradnorm");
}

#[test]
fn rlw_resumes_exactly() {
    killed_twice_then_resumed_equals_uninterrupted("rlw");
}
