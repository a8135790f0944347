//! Runs that never lose data, tried the hard way with real processes: kill -9 at a random step and
//! SIGTERM, each followed by `--resume` and compared row for row with an uninterrupted run; two runs of
//! one name at once; a diverging run; a run name that could delete data.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;

/// Top layer and heads of the random tiny encoder train (dropout runs in the whole encoder), 2 epochs x 5
/// steps, a checkpoint after every step. The encoder is `shared_tiny_model`, outside `dir`: these tests check
/// the bookkeeping (checkpoints, locks, signals, names), which does not depend on the model.
fn write_config(dir: &Path) -> PathBuf {
    let text = config_text_on(
        shared_tiny_model(),
        dir,
        "  scenario: none\n  unfreeze_top_layers: 1",
        "  epochs: 2\n  checkpoint_every_steps: 1",
    );
    let p = dir.join("c.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn run_args<'a>(cfg: &'a Path, name: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = ["--threads", "2", "run", cfg.to_str().unwrap(), "--set"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(if name.is_empty() {
        "name=''".to_string()
    } else {
        format!("name={name}")
    });
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn spawn(cfg: &Path, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(run_args(cfg, name, &[]))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn run(cfg: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let args = run_args(cfg, name, extra);
    harness(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The uninterrupted run every interrupted one is compared with (made once per test process).
fn reference() -> &'static (tempfile::TempDir, Vec<Vec<String>>) {
    static REF: OnceLock<(tempfile::TempDir, Vec<Vec<String>>)> = OnceLock::new();
    REF.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let cfg = write_config(d.path());
        let out = run(&cfg, "ref", &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let m = metrics(&d.path().join("ref"));
        assert_eq!(m.len(), 2 + 2 * 4, "epoch 0 eval, then 2 train + 2 eval rows per epoch");
        (d, m)
    })
}

/// A step in 1..=9 that differs from run to run (the point is to land anywhere).
fn random_step() -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    1 + (nanos as usize % 9)
}

#[test]
fn kill_9_at_a_random_step_then_resume_equals_an_uninterrupted_run() {
    let want = &reference().1;
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    let partial = d.path().join("k.partial");
    let k = random_step();
    let mut child = spawn(&cfg, "k");
    wait_until(&format!("checkpoint of step {k}"), 300, || {
        checkpointed_step(&partial).is_some_and(|s| s >= k)
    });
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    eprintln!(
        "killed after the checkpoint of step {k} (on disk: {:?})",
        checkpointed_step(&partial)
    );
    assert!(!d.path().join("k").exists(), "a killed run has no result");

    let plain = run(&cfg, "k", &[]);
    assert_user_error(&plain, "--resume");
    let out = run(&cfg, "k", &["--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("resuming k from step"), "{err}");
    assert_eq!(&metrics(&d.path().join("k")), want, "resumed after kill -9 at step {k}");
    assert!(!partial.exists());
}

#[test]
fn sigterm_checkpoints_exits_75_and_resume_equals_an_uninterrupted_run() {
    let want = &reference().1;
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    let partial = d.path().join("t.partial");
    let child = spawn(&cfg, "t");
    let k = random_step().min(8);
    wait_until("a checkpoint", 300, || {
        checkpointed_step(&partial).is_some_and(|s| s >= k)
    });
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "SIGTERM after step {k}: {err}");
    assert!(err.contains("--resume"), "{err}");
    let out = run(&cfg, "t", &["--resume"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(&metrics(&d.path().join("t")), want, "resumed after SIGTERM at step {k}");
}

#[test]
fn a_second_run_of_the_same_name_fails_at_once_and_the_first_is_untouched() {
    let want = &reference().1;
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    let first = spawn(&cfg, "same");
    let lock = d.path().join("same.lock");
    wait_until("the first run's lock", 120, || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("pid"))
    });
    // the tiny run could end before the second one starts: stopped (SIGSTOP), it holds its lock until CONT
    assert_eq!(lock_holder(&lock), Some(first.id()));
    let stopped = Stopped::new(first.id());
    let t0 = Instant::now();
    let second = run(&cfg, "same", &[]);
    assert_user_error(&second, &format!("already running (pid {}", first.id()));
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the second run must fail at once"
    );
    let restart = run(&cfg, "same", &["--restart"]);
    assert_user_error(&restart, "already running");
    drop(stopped);
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        &metrics(&d.path().join("same")),
        want,
        "the first run's result is its own"
    );
    assert!(lock.exists(), "the lock file stays (it may be held)");
    // the lock of a finished run is free again
    let again = run(&cfg, "same", &["--restart", "--set", "train.epochs=1"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn divergence_stops_the_run_with_no_result_and_keeps_the_partial() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    // the largest learning rates the config allows: the tiny encoder's loss is NaN at step 2 (at 1000, the
    // rate that made MiniLM diverge in epoch 1, it lasts into epoch 2)
    let lr = [
        "--set",
        "train.lr_encoder=1e6",
        "--set",
        "train.lr_heads=1e6",
        "--set",
        "train.warmup_ratio=0",
    ];
    let out = run(&cfg, "div", &lr);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains("training diverged at step"),
        "{err}"
    );
    assert!(
        last.contains("epoch 1, task `") && last.contains("div.partial"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!d.path().join("div").exists(), "a diverged run has no result");
    let error = std::fs::read_to_string(d.path().join("div.partial/error.txt")).unwrap();
    assert!(error.contains("diverged"), "{error}");
    let rows = std::fs::read_to_string(d.path().join("div.partial/metrics.csv")).unwrap();
    assert!(!rows.contains("NaN"), "no NaN row is written: {rows}");
}

#[test]
fn run_names_that_could_reach_other_paths_are_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    std::fs::write(d.path().join("keep.txt"), "precious").unwrap();
    for name in ["..", ".", "a/b", "../x", "", "x.partial", "x.lock", "with space"] {
        let out = run(&cfg, name, &[]);
        assert_user_error(&out, "plain folder name");
    }
    assert_eq!(std::fs::read_to_string(d.path().join("keep.txt")).unwrap(), "precious");
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "only c.yaml and keep.txt: {left:?}");
}

#[test]
fn threads_out_of_range_are_one_line_errors() {
    for n in ["--threads=0", "--threads=-1", "--threads=100000"] {
        let out = harness(&[n, "eval-sts", "--device", "cpu"]);
        assert_user_error(&out, "--threads");
    }
}

#[test]
fn ranges_are_checked_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path());
    for (set, key) in [
        ("train.epochs=0", "train.epochs"),
        ("encoder.max_length=1", "encoder.max_length"),
        ("train.temperature=.nan", "train.temperature"),
        ("train.lr_encoder=-1", "train.lr_encoder"),
        ("train.epochs=abc", "train.epochs"),
        ("tasks.0.head={type: linear, hidden: 3}", "tasks[0].head"),
    ] {
        assert_user_error(&run(&cfg, "r", &["--set", set]), key);
    }
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "only c.yaml");
    let both = run(&cfg, "r", &["--resume", "--restart"]);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn predict_refuses_unfinished_and_diverged_runs() {
    let (ref_dir, _) = reference();
    let good = ref_dir.path().join("ref");
    let out = harness(&[
        "predict",
        "--run",
        good.to_str().unwrap(),
        "--device",
        "cpu",
        "a fine film",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for f in ["config.yaml", "metrics.csv", "summary.json", "checkpoint.safetensors"] {
        std::fs::copy(good.join(f), bad.join(f)).unwrap();
    }
    let path = bad.join("summary.json");
    let mut s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    s["final"]["sentiment"]["loss"] = serde_json::Value::Null; // how serde_json writes NaN
    std::fs::write(&path, s.to_string()).unwrap();
    let out = harness(&["predict", "--run", bad.to_str().unwrap(), "a fine film"]);
    assert_user_error(&out, "not finite");

    std::fs::create_dir_all(d.path().join("p.partial")).unwrap();
    let out = harness(&["predict", "--run", d.path().join("p").to_str().unwrap(), "x"]);
    assert_user_error(&out, "not a finished run (its state: partial)");
}
