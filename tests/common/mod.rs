#![allow(dead_code)]
//! Helpers shared by the integration tests: paths, the Python reference, the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn shared_data(rel: &str) -> PathBuf {
    let p = root().join("../shared/data").join(rel);
    assert!(
        p.exists(),
        "{} is missing: the tests read the shared data beside the checkout",
        p.display()
    );
    p
}

/// The venv's python, where scripts/setup --with-reference installed the reference packages.
pub fn python() -> PathBuf {
    std::env::var_os("HARNESS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

/// Runs a reference script; a failure is a test failure, never a skip.
pub fn run_reference(script: &str, args: &[&str]) {
    let out = Command::new(python())
        .arg(root().join("scripts/reference").join(script))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .output()
        .expect("cannot start the reference python (run scripts/setup --with-reference)");
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

pub fn harness_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Asserts the command failed the way a user error should: exit 2, one `error:` line that mentions
/// `needle`, no panic.
pub fn assert_user_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit code, stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "panic: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "`{needle}` not in: {err}"
    );
}

pub fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// A two-task config over the shared data, small enough to train in seconds.
pub fn config_text(out: &Path, freeze: &str, train: &str) -> String {
    config_text_for("", out, freeze, train)
}

/// `config_text` with the encoder `model` (a folder, e.g. `tiny_model`'s; sequences cut at 64 tokens).
pub fn config_text_on(model: &Path, out: &Path, freeze: &str, train: &str) -> String {
    let encoder = format!("encoder:\n  model: {}\n  max_length: 64\n", model.display());
    config_text_for(&encoder, out, freeze, train)
}

fn config_text_for(encoder: &str, out: &Path, freeze: &str, train: &str) -> String {
    let data = root().join("../shared/data");
    format!(
        r#"name: t
seed: 7
device: cpu
output_dir: {out}
{encoder}tasks:
  - name: sentiment
    train: {data}/sst2/train.tsv
    eval: {data}/sst2/dev.tsv
    labels: [negative, positive]
    limit_train: 48
    limit_eval: 24
  - name: topic
    train: {data}/ag_news/train.tsv
    eval: {data}/ag_news/test.tsv
    text_column: description
    label_offset: 1
    labels: [World, Sports, Business, Sci/Tech]
    limit_train: 32
    limit_eval: 24
freeze:
{freeze}
train:
{epochs}  batch_size: 16
  lr_encoder: 1.0e-4
  lr_heads: 1.0e-2
  warmup_ratio: 0.0
{train}
"#,
        out = out.display(),
        data = data.display(),
        epochs = if train.contains("epochs:") { "" } else { "  epochs: 1\n" },
    )
}

/// Runs the binary with extra environment variables (`None` removes one), from the repository root.
pub fn harness_env(args: &[&str], env: &[(&str, Option<&Path>)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.args(args).current_dir(root());
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.output().unwrap()
}

/// Polls `ok` every 20 ms; fails the test after `timeout_s`.
pub fn wait_until(what: &str, timeout_s: u64, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(timeout_s),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// metrics.csv without the run name and elapsed_s: what must be equal between two runs of one seed. Extra metric
/// columns (format 2) come after elapsed_s and are kept.
pub fn metrics(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let keep: Vec<bool> = header.iter().map(|h| h != "run" && h != "elapsed_s").collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            rec.iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(c, _)| c.to_string())
                .collect()
        })
        .collect()
}

/// The step of the checkpoint `<name>.partial` points at, if any.
pub fn checkpointed_step(partial: &Path) -> Option<usize> {
    let ptr: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(partial.join("checkpoint.json")).ok()?).ok()?;
    let prog = std::fs::read_to_string(partial.join(ptr["dir"].as_str()?).join("progress.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&prog).ok()?["step"]
        .as_u64()
        .map(|s| s as usize)
}

pub const TINY_DISTILBERT: &str = r#"{"model_type": "distilbert", "vocab_size": 30522, "dim": 16, "n_layers": 1,
  "n_heads": 2, "hidden_dim": 24, "max_position_embeddings": 64}"#;

/// A complete, valid tiny DistilBERT folder (one layer) with random weights saved by harness itself.
pub fn tiny_folder(root: &Path) -> PathBuf {
    tiny_folder_with(root, "tiny", TINY_DISTILBERT)
}

/// A tiny DistilBERT of `layers` layers (dim 16, positions up to 64) in `root/tiny-<layers>`: for tests of the
/// training loop's bookkeeping, which need no pretrained weights and run in a fraction of MiniLM's time.
pub fn tiny_model(root: &Path, layers: usize) -> PathBuf {
    let config = TINY_DISTILBERT.replace(r#""n_layers": 1"#, &format!(r#""n_layers": {layers}"#));
    tiny_folder_with(root, &format!("tiny-{layers}"), &config)
}

/// One two-layer `tiny_model` for the whole test binary, made on first use in a folder of its own under the
/// target's tmp folder (so a test's output folder holds only what the test wrote, and a finished run's recorded
/// encoder outlives the test that made it).
pub fn shared_tiny_model() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(concat!("tiny-model-", env!("CARGO_CRATE_NAME")));
        let _ = std::fs::remove_dir_all(&root);
        tiny_model(&root, 2)
    })
}

/// The pid in a run's lock file (`<output_dir>/<name>.lock`), once the run holds it.
pub fn lock_holder(lock: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(lock).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["pid"]
        .as_u64()
        .map(|p| p as u32)
}

/// A process held with SIGSTOP (a tiny run kept from ending while a test acts on it: its lock stays held,
/// signals sent to it wait); dropping this, also when a check failed, lets it go on (SIGCONT).
pub struct Stopped(pub u32);

impl Stopped {
    pub fn new(pid: u32) -> Self {
        let ok = Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
        assert!(ok.success(), "kill -STOP {pid}");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

fn tiny_folder_with(root: &Path, name: &str, config: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let vocab = harness::encoder::ModelFolder::open("all-MiniLM-L6-v2").unwrap().vocab;
    std::fs::copy(vocab, dir.join("vocab.txt")).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"").unwrap();
    let folder = harness::encoder::ModelFolder::open(dir.to_str().unwrap()).unwrap();
    // the same weights every time, so that two folders made by one test hold one model
    tch::manual_seed(0);
    harness::encoder::Encoder::build(&folder, tch::Device::Cpu)
        .unwrap()
        .vs
        .save(dir.join("model.safetensors"))
        .unwrap();
    dir
}

/// Runs `harness run CONFIG ARGS` as a child process (stderr piped), `--resume` when `resume`.
pub fn spawn_run(cfg: &Path, args: &[String], resume: bool) -> std::process::Child {
    let mut a: Vec<String> = vec!["--threads".into(), "1".into(), "run".into(), cfg.display().to_string()];
    a.extend(args.iter().cloned());
    if resume {
        a.push("--resume".into());
    }
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(a)
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// How `interrupted_at` stops a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// SIGKILL: no handler runs
    Kill,
    /// SIGTERM: the run must end the documented way, exit 75
    Term,
}

/// `--set name=NAME` followed by `args`: a run's command-line settings for `spawn_run`.
pub fn named(name: &str, args: &[String]) -> Vec<String> {
    let mut a = vec!["--set".to_string(), format!("name={name}")];
    a.extend(args.iter().cloned());
    a
}

/// Starts the run `name` of `cfg` (its `output_dir` is `out`; `--resume` when `resume`; `args` added to the
/// command line) and stops it with `stop` once it has checkpointed step `at` or later
/// (`train.checkpoint_every_steps` must allow that). Returns the step of its last checkpoint.
pub fn interrupted_at(
    cfg: &Path,
    out: &Path,
    (name, args): (&str, &[String]),
    at: usize,
    resume: bool,
    stop: Stop,
) -> Option<usize> {
    let partial = out.join(format!("{name}.partial"));
    let mut child = spawn_run(cfg, &named(name, args), resume);
    wait_until(&format!("checkpoint of step {at}"), 300, || {
        checkpointed_step(&partial).is_some_and(|s| s >= at)
    });
    if stop == Stop::Kill {
        child.kill().unwrap();
        child.wait().unwrap();
    } else {
        let term = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(75), "{}", String::from_utf8_lossy(&o.stderr));
    }
    checkpointed_step(&partial)
}

/// Resumes the run `name` of `cfg` to the end (`args` added), which must succeed.
pub fn resumed(cfg: &Path, name: &str, args: &[String]) {
    let done = spawn_run(cfg, &named(name, args), true).wait_with_output().unwrap();
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
}

/// The run `name` of `cfg` (its `output_dir` is `out`) killed with SIGKILL once it has checkpointed step
/// `kill_at` or later, then resumed to the end; `args` are added to both command lines. Returns the step it
/// was killed after; the result is in `out/<name>`.
pub fn killed_then_resumed(cfg: &Path, out: &Path, name: &str, args: &[String], kill_at: usize) -> Option<usize> {
    let killed = interrupted_at(cfg, out, (name, args), kill_at, false, Stop::Kill);
    resumed(cfg, name, args);
    killed
}
