//! `harness sweep` and `harness compare` through the binary, on tiny real runs.

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
    std::fs::write(&cfg, config_text(d.path(), "  scenario: backbone", "")).unwrap();
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
    std::fs::write(&cfg, config_text(d.path(), "  scenario: all", "")).unwrap();
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
