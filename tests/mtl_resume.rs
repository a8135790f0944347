//! Exact resume of every stateful loss weighting (uncertainty's learned log-variances and their AdamW moments,
//! DWA's and GradNorm's loss history, RLW's generator), the hard way: each run is killed with SIGKILL at a
//! random step, resumed, stopped with SIGTERM at a later step, resumed again, and must end with the
//! uninterrupted run's metrics.csv and final weights.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::*;
use harness::record::Summary;

/// The top layer and both heads train; 3 joint epochs of 10 steps (160 and 64 examples in batches of 16; DWA
/// weighs from epoch 3, GradNorm from 2), a checkpoint after every step.
/// The run uses a random tiny two-layer DistilBERT (`tiny_model`).
fn write_config(dir: &Path, method: &str) -> PathBuf {
    let train = format!("  epochs: 3\n  checkpoint_every_steps: 1\n  step: joint\n  mtl: {{weighting: {method}}}");
    let model = tiny_model(dir, 2);
    let text = config_text_on(&model, dir, "  scenario: none\n  unfreeze_top_layers: 1", &train);
    let p = dir.join("c.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn args(cfg: &Path, name: &str, resume: bool) -> Vec<String> {
    let name = format!("name={name}");
    let mut a: Vec<String> = ["--threads", "1", "run", cfg.to_str().unwrap(), "--set", &name]
        .into_iter()
        .chain(["--set", "tasks.0.limit_train=160", "--set", "tasks.1.limit_train=64"])
        .map(str::to_string)
        .collect();
    if resume {
        a.push("--resume".into());
    }
    a
}

fn spawn(cfg: &Path, name: &str, resume: bool) -> Child {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args(cfg, name, resume))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a checkpoint at step `k` or later in the run's `.partial`.
fn wait_for(partial: &Path, k: usize) {
    wait_until(&format!("checkpoint of step {k}"), 300, || {
        checkpointed_step(partial).is_some_and(|s| s >= k)
    });
}

fn weights(dir: &Path) -> String {
    let s = Summary::read(&dir.join("summary.json")).unwrap();
    serde_json::to_string(&s.weighting.expect("a weighting summary")).unwrap()
}

fn killed_twice_then_resumed_equals_uninterrupted(method: &str) {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), method);
    let reference = spawn(&cfg, "ref", false).wait_with_output().unwrap();
    assert!(
        reference.status.success(),
        "{}",
        String::from_utf8_lossy(&reference.stderr)
    );

    let partial = d.path().join("k.partial");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    // killed somewhere in epoch 1, stopped in epoch 2, so the resumed runs carry the first epoch's history
    let (k1, k2) = (2 + nanos % 7, 12 + nanos % 8);
    let mut child = spawn(&cfg, "k", false);
    wait_for(&partial, k1);
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    let after_kill = checkpointed_step(&partial);
    let child = spawn(&cfg, "k", true);
    wait_for(&partial, k2);
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(75),
        "{method}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after_term = checkpointed_step(&partial);
    let out = spawn(&cfg, "k", true).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{method}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{method}: killed at step {after_kill:?}, stopped at step {after_term:?}");
    assert_eq!(
        metrics(&d.path().join("k")),
        metrics(&d.path().join("ref")),
        "{method}: killed after step {after_kill:?}, stopped after {after_term:?}"
    );
    assert_eq!(weights(&d.path().join("k")), weights(&d.path().join("ref")), "{method}");
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
