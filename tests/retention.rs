//! What training does to the encoder, measured without training on it (issue 20), on a random tiny DistilBERT
//! (`tiny_model`): the STS probe (`probes`, rows of metrics.csv with split `probe`) and layer-wise drift
//! (`analysis.drift`, drift.csv). The probe's value equals scipy's correlations of the cosines of the
//! encoder's own embeddings; a frozen encoder keeps its probe value and CKA 1.0 exactly; neither changes any
//! other number of the run; an interrupted run resumes to the same files; bad probe and drift settings are
//! one line, exit 2, before the lock.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use harness::record::{read_drift, Summary};

/// `n` STS-B dev pairs, from the top of the file (their gold scores have ties: 5.000 and 4.750 repeat).
fn probe_file(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(shared_data("stsb/dev.tsv")).unwrap();
    let p = dir.join("probe.tsv");
    std::fs::write(&p, text.lines().take(n + 1).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    p
}

const TRAIN: &str = "  epochs: 2\n  precision: fp32\n  checkpoint_every_steps: 1";

fn measures(probe: &Path, sentences: usize) -> String {
    format!(
        "probes:\n  - name: stsb\n    data: {}\nanalysis:\n  drift:\n    data: {}\n    column: sentence1\n    sentences: {sentences}\n",
        probe.display(),
        probe.display()
    )
}

/// A config on the tiny encoder (2 layers), with `extra` appended at the top level.
fn write_config(dir: &Path, freeze: &str, extra: &str) -> PathBuf {
    let model = tiny_model(dir, 2);
    let p = dir.join(format!("c{}.yaml", extra.len()));
    std::fs::write(&p, config_text_on(&model, dir, freeze, TRAIN) + extra).unwrap();
    p
}

fn run(cfg: &Path, name: &str, more: &[&str]) -> Output {
    let mut args = vec!["--threads", "1", "run", cfg.to_str().unwrap(), "--set"];
    let set = format!("name={name}");
    args.push(&set);
    args.extend(more);
    harness(&args)
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// metrics.csv's rows of one split, as (task, epoch, extra cells).
fn rows(dir: &Path, split: &str) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    r.records()
        .map(Result::unwrap)
        .filter(|rec| &rec[col("split")] == split)
        .map(|rec| rec.iter().map(str::to_string).collect())
        .collect()
}

#[test]
fn the_probe_is_scipys_correlation_of_the_encoders_cosines_and_changes_nothing_else() {
    let d = tempfile::tempdir().unwrap();
    let probe = probe_file(d.path(), 40);
    let plain = write_config(d.path(), "  scenario: none", "");
    let measured = write_config(d.path(), "  scenario: none", &measures(&probe, 30));
    ok(&run(&plain, "plain", &[]));
    ok(&run(&measured, "measured", &[]));
    let (a, b) = (d.path().join("plain"), d.path().join("measured"));
    // every task row is the run without the measurements', bit for bit (the extra columns aside)
    let tasks = |dir: &Path| {
        let mut m = metrics(dir);
        m.retain(|r| r[4] != "probe");
        m.iter().map(|r| r[..9].to_vec()).collect::<Vec<_>>()
    };
    assert_eq!(tasks(&a), tasks(&b));
    let probes = rows(&b, "probe");
    assert_eq!(probes.len(), 3, "epoch 0, 1 and 2: {probes:?}");
    assert!(probes
        .iter()
        .all(|r| r[6].is_empty() && r[7].is_empty() && r[8].is_empty()));

    // epoch 0's value from the encoder's own embeddings, through scipy
    let model = d.path().join("tiny-2");
    let table = std::fs::read_to_string(&probe).unwrap();
    let pairs: Vec<(String, String, f64)> = table
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            (c[5].to_string(), c[6].to_string(), c[4].parse().unwrap())
        })
        .collect();
    let lines = d.path().join("sentences.txt");
    let all: Vec<&str> = pairs.iter().flat_map(|(x, y, _)| [x.as_str(), y.as_str()]).collect();
    std::fs::write(&lines, all.join("\n")).unwrap();
    let out = harness(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--input",
        lines.to_str().unwrap(),
    ]);
    ok(&out);
    let emb: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let vec_of = |i: usize| -> Vec<f64> {
        emb[i]["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let cos: Vec<f64> = (0..pairs.len())
        .map(|i| {
            let (x, y) = (vec_of(2 * i), vec_of(2 * i + 1));
            let dot: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
            let n = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
            dot / (n(&x) * n(&y))
        })
        .collect();
    let gold: Vec<f64> = pairs.iter().map(|p| p.2).collect();
    let io = d.path().join("corr_in.json");
    let res = d.path().join("corr_out.json");
    std::fs::write(
        &io,
        serde_json::json!([{"name": "p", "cos": cos, "gold": gold}]).to_string(),
    )
    .unwrap();
    run_reference("scipy_corr.py", &[io.to_str().unwrap(), res.to_str().unwrap()]);
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(res).unwrap()).unwrap();
    let got = |col: usize| probes[0][col].parse::<f64>().unwrap();
    // the embeddings went through JSON with 8 significant digits: close, not bit-equal
    assert!((got(11) - 100.0 * want["p"]["spearman"].as_f64().unwrap()).abs() < 1e-4);
    assert!((got(12) - 100.0 * want["p"]["pearson"].as_f64().unwrap()).abs() < 1e-4);

    // the summary's before, after and change are the first and last probe rows
    let s = Summary::read(&b.join("summary.json")).unwrap();
    let p = &s.probes["stsb"];
    assert_eq!(p.before["spearman"], got(11));
    assert_eq!(p.after["spearman"], probes[2][11].parse::<f64>().unwrap());
    assert_eq!(p.change["spearman"], p.after["spearman"] - p.before["spearman"]);
    // a full fine-tuning moves every layer: CKA below 1 after training, exactly 1 before
    let drift = read_drift(&b.join("drift.csv")).unwrap();
    assert_eq!(drift.len(), 3 * 3, "layer.0, layer.1, pooled at epochs 0, 1, 2");
    assert!(drift.iter().all(|r| (r.cka == 1.0) == (r.epoch == 0)), "{drift:?}");
    assert!(drift.iter().all(|r| r.cka > 0.0 && r.cka <= 1.0));
}

#[test]
fn a_frozen_encoder_keeps_its_probe_value_and_cka_one_exactly() {
    let d = tempfile::tempdir().unwrap();
    let probe = probe_file(d.path(), 40);
    let cfg = write_config(d.path(), "  scenario: backbone", &measures(&probe, 30));
    ok(&run(&cfg, "frozen", &[]));
    let dir = d.path().join("frozen");
    let probes = rows(&dir, "probe");
    assert_eq!(probes.len(), 3);
    assert!(probes.iter().all(|r| r[11..] == probes[0][11..]), "{probes:?}");
    let s = Summary::read(&dir.join("summary.json")).unwrap();
    assert_eq!(s.probes["stsb"].change["spearman"], 0.0);
    let drift = read_drift(&dir.join("drift.csv")).unwrap();
    assert_eq!(drift.len(), 9);
    assert!(drift.iter().all(|r| r.cka == 1.0), "{drift:?}");
}

#[test]
fn a_run_killed_with_probe_and_drift_resumes_to_the_same_files() {
    let d = tempfile::tempdir().unwrap();
    let probe = probe_file(d.path(), 40);
    let cfg = write_config(d.path(), "  scenario: none", &measures(&probe, 30));
    ok(&run(&cfg, "ref", &[]));
    // past epoch 1's evaluation (5 steps an epoch), before the end at 10
    let killed = killed_then_resumed(&cfg, d.path(), "k", &[], 6);
    assert!(
        killed.is_some_and(|s| (6..10).contains(&s)),
        "killed after step {killed:?}"
    );
    let (a, b) = (d.path().join("ref"), d.path().join("k"));
    assert_eq!(metrics(&a), metrics(&b));
    let drift = |dir: &Path| {
        read_drift(&dir.join("drift.csv"))
            .unwrap()
            .into_iter()
            .map(|r| (r.epoch, r.step, r.layer, r.cka))
            .collect::<Vec<_>>()
    };
    assert_eq!(drift(&a), drift(&b));
}

/// A bad setting: one line naming `needle`, exit 2, and nothing written (not even the lock).
fn refused(dir: &Path, extra: &str, needle: &str) {
    let cfg = write_config(dir, "  scenario: none", extra);
    let out = run(&cfg, "bad", &[]);
    assert_user_error(&out, needle);
    assert!(
        !dir.join("bad.lock").exists() && !dir.join("bad.partial").exists(),
        "{needle}: wrote"
    );
}

#[test]
fn bad_probes_and_drift_are_one_line_before_the_lock() {
    let d = tempfile::tempdir().unwrap();
    let probe = probe_file(d.path(), 10);
    let write = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let probe_of = |p: &Path| format!("probes:\n  - name: stsb\n    data: {}\n", p.display());
    let missing = d.path().join("nope.tsv");
    refused(d.path(), &probe_of(&missing), "nope.tsv");
    let bad_score = write("s.tsv", "sentence1\tsentence2\tscore\na\tb\t1\nc\td\thigh\n");
    refused(
        d.path(),
        &probe_of(&bad_score),
        "s.tsv:3: column `score`: `high` is not a number",
    );
    let no_col = write("c.tsv", "sentence1\tscore\na\t1\n");
    refused(d.path(), &probe_of(&no_col), "no column `sentence2`");
    let empty = write("e.tsv", "sentence1\tsentence2\tscore\na\t \t1\n");
    refused(
        d.path(),
        &probe_of(&empty),
        "e.tsv:2: column `sentence2`: the sentence is empty",
    );
    let header_only = write("h.tsv", "sentence1\tsentence2\tscore\n");
    refused(
        d.path(),
        &probe_of(&header_only),
        "h.tsv: no rows (the dataset is empty)",
    );
    refused(
        d.path(),
        &format!("probes:\n  - name: topic\n    data: {}\n", probe.display()),
        "probes.0.name: `topic` is already a task's",
    );
    refused(
        d.path(),
        &format!("probes:\n  - name: stsb\n    data: {}\n    kind: x\n", probe.display()),
        "unknown field `kind`",
    );
    refused(
        d.path(),
        &measures(&probe, 11),
        "analysis.drift.sentences: 11 asked for",
    );
    refused(
        d.path(),
        &measures(&probe, 1),
        "analysis.drift.sentences: 1 is out of range",
    );
    refused(
        d.path(),
        &measures(&probe, 5).replace("column: sentence1", "column: text"),
        "no column `text`",
    );
}
