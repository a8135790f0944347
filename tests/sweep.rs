//! `harness sweep` and `harness compare` through the binary, on tiny real runs of the random tiny encoder
//! (`shared_tiny_model`: what is checked is the bookkeeping, not the model).

mod common;

use common::*;

fn status_lines(out: &std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('['))
        .map(str::to_string)
        .collect()
}

#[test]
fn sweep_skips_complete_runs_and_reruns_incomplete_ones() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.yaml");
    std::fs::write(
        &cfg,
        config_text_on(shared_tiny_model(), d.path(), "  scenario: backbone", ""),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let sweep = || harness(&["sweep", cfg, "--seeds", "1,2"]);

    let first = status_lines(&sweep());
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|l| l.contains(": done in")), "{first:?}");
    let md = std::fs::read_to_string(d.path().join("comparison.md")).unwrap();
    assert!(
        md.contains("| backbone | t | sentiment | 2 |") && md.contains(" ± "),
        "{md}"
    );
    assert!(d.path().join("comparison.png").is_file() && d.path().join("comparison.svg").is_file());

    let second = status_lines(&sweep());
    assert!(second.iter().all(|l| l.contains("skipped")), "{second:?}");

    // an interrupted run: its summary never said complete
    let summary = d.path().join("t-seed2/summary.json");
    let text = std::fs::read_to_string(&summary)
        .unwrap()
        .replace("\"complete\": true", "\"complete\": false");
    std::fs::write(&summary, text).unwrap();
    let third = status_lines(&sweep());
    assert!(
        third[0].contains("t-seed1") && third[0].contains("skipped"),
        "{third:?}"
    );
    assert!(
        third[1].contains("t-seed2") && third[1].contains("done in"),
        "{third:?}"
    );

    let dry = status_lines(&harness(&["sweep", cfg, "--seeds", "3", "--dry-run"]));
    assert!(dry[0].contains("would run"), "{dry:?}");
    assert!(!d.path().join("t-seed3").exists());
}

#[test]
fn compare_names_a_malformed_file() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.yaml");
    std::fs::write(
        &cfg,
        config_text_on(shared_tiny_model(), d.path(), "  scenario: all", ""),
    )
    .unwrap();
    let run = harness(&["run", cfg.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let metrics = d.path().join("t/metrics.csv");
    let text = std::fs::read_to_string(&metrics).unwrap();
    // as with `results/*`: the config file and a folder that is no run are passed over
    std::fs::create_dir(d.path().join("bench")).unwrap();
    let glob: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    let mut args = vec!["compare"];
    args.extend(glob.iter().map(String::as_str));
    let ok = harness(&args);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("| all | t | topic | 1 |"));
    std::fs::write(&metrics, text.replacen(",eval,", ",eval,not-a-number-", 1)).unwrap();
    let bad = harness(&["compare", d.path().join("t").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        err.contains("metrics.csv line 2") || err.contains("metrics.csv:2"),
        "{err}"
    );
}

/// A folder with stand-ins for `sbatch` (records its arguments and the script, prints job id 4242),
/// `squeue` (knows no job) and `sacct` (no accounting), first on PATH: submission without a cluster.
fn fake_slurm(dir: &std::path::Path) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let scripts = [
        (
            "sbatch",
            format!(
                "#!/bin/sh\necho \"$@\" >> {0}/sbatch.args\nfor a; do last=$a; done\ncat \"$last\" >> {0}/submitted.sh\necho 4242\n",
                dir.display()
            ),
        ),
        ("squeue", "#!/bin/sh\necho 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1\n".into()),
        ("sacct", "#!/bin/sh\necho 'Slurm accounting storage is disabled' >&2\nexit 1\n".into()),
    ];
    for (name, text) in scripts {
        let p = bin.join(name);
        std::fs::write(&p, text).unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    }
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

fn harness_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_harness"));
    c.args(args).current_dir(root());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn out_text(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cells_are_configs_by_grid_by_seeds_and_one_runs_by_index() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("c.yaml");
    std::fs::write(
        &cfg,
        config_text_on(shared_tiny_model(), d.path(), "  scenario: backbone", ""),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let base = ["sweep", cfg, "--seeds", "1,2", "--grid", "train.lr_heads=1e-2,1e-3"];
    let with = |extra: &[&'static str]| [&base[..], extra].concat();
    let list = out_text(&harness(&with(&["--list"])));
    let runs: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        runs,
        [
            "t-lr_heads_1e-2-seed1",
            "t-lr_heads_1e-2-seed2",
            "t-lr_heads_1e-3-seed1",
            "t-lr_heads_1e-3-seed2"
        ]
    );
    assert!(list.lines().skip(1).all(|l| l.ends_with("missing")), "{list}");

    // `--index env` reads Slurm's, else Kubernetes' index; without --index the environment is ignored
    let one = harness_env(&with(&["--index", "env"]), &[("JOB_COMPLETION_INDEX", "2")]);
    assert!(out_text(&one).contains("t-lr_heads_1e-3-seed1"), "{}", out_text(&one));
    assert!(!d.path().join("comparison.md").exists(), "one cell never compares");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("t-lr_heads_1e-3-seed1/summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        s["base_name"], "t-lr_heads_1e-3",
        "base_name has the grid point, not the seed"
    );
    let again = harness_env(
        &with(&["--index", "env"]),
        &[("SLURM_ARRAY_TASK_ID", "2"), ("JOB_COMPLETION_INDEX", "0")],
    );
    assert!(out_text(&again).contains("already done"), "{}", out_text(&again));
    let list = out_text(&harness(&with(&["--list"])));
    assert_eq!(list.matches(" done").count(), 1, "{list}");
    assert!(harness_env(&with(&["--dry-run"]), &[("SLURM_ARRAY_TASK_ID", "0")])
        .status
        .success());
    let dry = out_text(&harness_env(&with(&["--dry-run"]), &[("SLURM_ARRAY_TASK_ID", "0")]));
    assert_eq!(dry.matches("would run").count(), 3, "all cells but the done one: {dry}");

    for (extra, env, needle) in [
        (
            vec!["--index", "4"],
            vec![],
            "out of range: the sweep has 4 cells (0 to 3)",
        ),
        (
            vec!["--index", "env"],
            vec![],
            "neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX",
        ),
        (
            vec!["--index", "env"],
            vec![("SLURM_ARRAY_TASK_ID", "-1")],
            "not a cell index",
        ),
        (vec!["--grid", "train.epoch=1,2"], vec![], "did you mean `epochs`?"),
        (vec!["--grid", "train.lr_heads=5e-3"], vec![], "given twice"),
        (
            vec!["--grid", "train.lr_encoder=1e-4,0.0001"],
            vec![],
            "value `0.0001` is given twice",
        ),
        (
            vec!["--grid", "train.epochs=1,1.0"],
            vec![],
            "train.epochs: 1.0 is not a whole number",
        ),
        (vec!["--grid", "seed=1,2"], vec![], "cannot vary"),
        (
            vec!["--set", "train.lr_heads=1", "--list"],
            vec![],
            "also given with --set",
        ),
        (vec!["--name", "../x", "--list"], vec![], "plain folder name"),
        (vec!["--seeds", "3,3", "--list"], vec![], "seed 3 is given twice"),
        (
            vec!["--list"],
            vec![("SLURM_CPUS_PER_TASK", "many")],
            "SLURM_CPUS_PER_TASK",
        ),
    ] {
        assert_user_error(&harness_env(&with(&extra), &env), needle);
    }
    // two configs of one name would write the same runs
    let two = harness(&["sweep", cfg, cfg, "--list"]);
    assert_user_error(&two, "would both be run `t`");
}

#[test]
fn slurm_submit_fixes_the_cells_in_a_manifest_that_later_indices_use() {
    let d = tempfile::tempdir().unwrap();
    let path = fake_slurm(d.path());
    let cfg = d.path().join("c.yaml");
    std::fs::write(
        &cfg,
        config_text_on(shared_tiny_model(), d.path(), "  scenario: backbone", ""),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let env = [("PATH", path.as_str())];
    let args = [
        "sweep",
        cfg,
        "--seeds",
        "1,2",
        "--slurm",
        "--max-parallel",
        "1",
        "--time",
        "1:00:00",
    ];
    let with = |extra: &[&'static str]| [&args[..], extra].concat();

    let dry = out_text(&harness_env(&with(&["--dry-run"]), &env));
    assert!(
        dry.contains("#SBATCH --array=0-1%1\n") && dry.contains("\nexec "),
        "{dry}"
    );
    assert!(
        !d.path().join("t-sweep").exists() && !d.path().join("sbatch.args").exists(),
        "a dry run writes nothing"
    );

    let out = out_text(&harness_env(&with(&[]), &env));
    assert_eq!(out.lines().last(), Some("4242"), "{out}");
    let script = std::fs::read_to_string(d.path().join("submitted.sh")).unwrap();
    for line in [
        "#SBATCH --array=0-1%1",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:TERM@120",
        "#SBATCH --open-mode=append",
        "#SBATCH --time=1:00:00",
        "--index env --requeue-on-signal",
    ] {
        assert!(script.contains(line), "{line} not in {script}");
    }
    let manifest = d.path().join("t-sweep/manifest.json");
    assert!(d.path().join("t-sweep/logs").is_dir() && manifest.is_file());
    let m = manifest.to_str().unwrap();

    // a config edited after submit: indices keep meaning the manifest's cells
    let text = std::fs::read_to_string(cfg).unwrap();
    std::fs::write(cfg, text.replace("seed: 7", "seed: 8").replace("name: t", "name: t2")).unwrap();
    let by_manifest = out_text(&harness(&["sweep", "--manifest", m, "--list"]));
    assert!(
        by_manifest.contains("t-seed1") && by_manifest.contains("t-seed2"),
        "{by_manifest}"
    );
    std::fs::write(cfg, text.replace("limit_eval: 24", "limit_eval: 16")).unwrap();
    assert_user_error(
        &harness(&["sweep", cfg, "--seeds", "1,2", "--index", "0"]),
        "fixes other cells",
    );
    std::fs::write(cfg, &text).unwrap();
    let one = out_text(&harness(&["sweep", "--manifest", m, "--index", "1"]));
    assert!(
        one.contains("t-seed2") && d.path().join("t-seed2/summary.json").is_file(),
        "{one}"
    );

    // submitted again: only the cell that is not done
    let again = out_text(&harness_env(&with(&[]), &env));
    assert!(again.contains("(cells 0%1)"), "{again}");
    let status = out_text(&harness_env(&["sweep", "--manifest", m, "--status"], &env));
    assert!(status.contains("4242_0 (no longer known to Slurm)"), "{status}");

    // a manifest edited by hand is checked like a config
    let good = std::fs::read_to_string(&manifest).unwrap();
    for (from, to, needle) in [
        ("\"index\": 1", "\"index\": 5", "cells.1.index"),
        ("\"name\": \"t-seed2\"", "\"name\": \"../t-seed2\"", "plain folder name"),
        ("\"name\": \"t-seed2\"", "\"name\": \"t-seed1\"", "would both be run"),
        ("\"format\": 1", "\"format\": 9", "format 9"),
        ("\"epochs\": 1", "\"epochs\": 0", "train.epochs"),
        ("\"sweep\": ", "\"swept\": ", "unknown field"),
    ] {
        assert!(good.contains(from), "{from} not in {good}");
        std::fs::write(&manifest, good.replacen(from, to, 1)).unwrap();
        assert_user_error(&harness(&["sweep", "--manifest", m, "--list"]), needle);
    }
    std::fs::write(&manifest, &good).unwrap();
    for (extra, needle) in [
        (vec!["--partition", "a\n#SBATCH --x"], "--partition"),
        (vec!["--sbatch-arg", "exclusive"], "--sbatch-arg"),
        (vec!["--gpus-per-task", "0"], "--gpus-per-task"),
        (vec!["--name", "t-seed1"], "is a run's name"),
    ] {
        assert_user_error(&harness_env(&with(&extra), &env), needle);
    }
}
