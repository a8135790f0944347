//! `harness sweep --slurm` against a real one-node Slurm (`scripts/slurm-local`, docs/slurm-local.md):
//! a 2 configs × 2 seeds sweep submitted as a job array runs to the end and its comparison job reads all
//! four runs; a second submit while tasks are queued is refused; then one cell, resubmitted alone, gets
//! TERM the way Slurm sends it before a time limit (`scancel --batch --signal=TERM`), requeues itself and
//! finishes with metrics equal to its uninterrupted run. Every wait is bounded. Without `sbatch` or a
//! cluster that comes up, the test skips with a printed reason, unless `HARNESS_REQUIRE_SLURM=1` (CI).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::*;

/// The cluster while the test runs; dropping it runs `scripts/slurm-local down`, on failure too, unless
/// the cluster was already up before the test (then it is someone else's and is left running).
struct Cluster {
    conf: String,
    started: bool,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started {
            let _ = Command::new(root().join("scripts/slurm-local")).arg("down").status();
        }
    }
}

fn skip_or_fail(why: &str) -> Option<Cluster> {
    if std::env::var("HARNESS_REQUIRE_SLURM").as_deref() == Ok("1") {
        panic!("HARNESS_REQUIRE_SLURM=1 but {why}");
    }
    eprintln!("SKIPPED: the Slurm sweep test needs a local Slurm: {why}");
    None
}

fn cluster() -> Option<Cluster> {
    if Command::new("sbatch").arg("--version").output().is_err() {
        return skip_or_fail("`sbatch` is not installed (scripts/slurm-local install)");
    }
    let script = root().join("scripts/slurm-local");
    let was_up = Command::new(&script)
        .arg("status")
        .output()
        .is_ok_and(|o| o.status.success());
    let up = Command::new(&script).arg("up").output().unwrap();
    if !up.status.success() {
        let err = String::from_utf8_lossy(&up.stderr).into_owned();
        return skip_or_fail(&format!("`scripts/slurm-local up` failed: {err}"));
    }
    let env = Command::new(&script).arg("env").output().unwrap();
    let env_file = String::from_utf8_lossy(&env.stdout).trim().to_string();
    let line = std::fs::read_to_string(&env_file).unwrap();
    let conf = line
        .trim()
        .strip_prefix("export SLURM_CONF=")
        .expect("the env file's line")
        .to_string();
    Some(Cluster { conf, started: !was_up })
}

fn slurm(c: &Cluster, program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("SLURM_CONF", &c.conf)
        .output()
        .unwrap()
}

fn sweep(c: &Cluster, configs: &[&Path], extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec!["sweep".into()];
    args.extend(configs.iter().map(|p| p.display().to_string()));
    args.extend(["--seeds", "1,2"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(&args)
        .current_dir(root())
        .env("SLURM_CONF", &c.conf)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Two tiny configs: `a` trains its top layer with a checkpoint after every step (2 epochs × 5 steps),
/// `b` trains heads on cached features.
fn configs(dir: &Path) -> (PathBuf, PathBuf) {
    let a = config_text(
        dir,
        "  scenario: none\n  unfreeze_top_layers: 1",
        "  epochs: 2\n  checkpoint_every_steps: 1",
    )
    .replace("name: t\n", "name: a\n");
    let b = config_text(dir, "  scenario: backbone", "").replace("name: t\n", "name: b\n");
    let (pa, pb) = (dir.join("a.yaml"), dir.join("b.yaml"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    (pa, pb)
}

#[test]
fn a_sweep_runs_as_a_job_array_and_a_cell_stopped_by_term_requeues_and_resumes_exactly() {
    let Some(c) = cluster() else { return };
    let t0 = Instant::now();
    let d = tempfile::tempdir().unwrap();
    let (a, b) = configs(d.path());
    let cfgs = [a.as_path(), b.as_path()];
    let opts = ["--slurm", "--max-parallel", "2", "--cpus-per-task", "1"];
    let mut first: Vec<&str> = opts.to_vec();
    first.push("--compare-after");
    let out = stdout(&sweep(&c, &cfgs, &first));
    let id = out.lines().last().unwrap().trim().to_string();
    assert!(
        out.contains(&format!("submitted job array {id} (cells 0-3%2)")),
        "{out}"
    );
    assert!(d.path().join("a-b-sweep/logs").is_dir() && d.path().join("a-b-sweep/manifest.json").is_file());

    // cells 2 and 3 wait for a free slot: submitting again would run them twice
    assert_user_error(&sweep(&c, &cfgs, &opts), "still in Slurm");

    let cmp = d.path().join("a-b-sweep/comparison.md");
    wait_until("the array and its comparison job", 240, || cmp.is_file());
    let md = std::fs::read_to_string(&cmp).unwrap();
    for (scenario, name) in [("unfreeze_top1", "a"), ("backbone", "b")] {
        for task in ["sentiment", "topic"] {
            let row = format!("| {scenario} | {name} | {task} | 2 |");
            assert!(md.contains(&row), "{row} not in {md}");
        }
    }
    let status = stdout(&sweep(&c, &cfgs, &["--status"]));
    for i in 0..4 {
        assert!(status.contains(&format!("{id}_{i} COMPLETED")), "{status}");
    }
    assert_eq!(status.matches(" done ").count(), 4, "{status}");
    eprintln!("4 cells and the comparison in {:.0} s", t0.elapsed().as_secs_f64());

    // cell 0 again, alone, stopped by the TERM Slurm sends before a time limit
    let want = metrics(&d.path().join("a-seed1"));
    std::fs::remove_dir_all(d.path().join("a-seed1")).unwrap();
    let out = stdout(&sweep(&c, &cfgs, &opts));
    let id = out.lines().last().unwrap().trim().to_string();
    assert!(out.contains("(cells 0%2)"), "only the missing cell is submitted: {out}");
    let partial = d.path().join("a-seed1.partial");
    wait_until("a checkpoint of cell 0", 120, || {
        checkpointed_step(&partial).is_some_and(|s| s >= 2)
    });
    let task = format!("{id}_0");
    let term = slurm(&c, "scancel", &["--batch", "--signal=TERM", &task]);
    assert!(term.status.success(), "{}", String::from_utf8_lossy(&term.stderr));
    let result = d.path().join("a-seed1/summary.json");
    wait_until("cell 0 requeued and finished", 150, || result.is_file());
    let log = std::fs::read_to_string(d.path().join("a-b-sweep/logs/0.log")).unwrap();
    assert!(log.contains(&format!("requeued Slurm task {task}")), "{log}");
    assert!(log.contains(&format!("job {task}, restart 1")), "{log}");
    let resumed = log.lines().find(|l| l.starts_with("resuming a-seed1 from step"));
    eprintln!("TERM after step 2 or later; {}", resumed.unwrap_or("not resumed"));
    assert!(resumed.is_some(), "{log}");
    assert_eq!(
        metrics(&d.path().join("a-seed1")),
        want,
        "the requeued cell equals its uninterrupted run"
    );
    eprintln!("whole test in {:.0} s", t0.elapsed().as_secs_f64());
}
