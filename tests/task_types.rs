//! The sts and pairs task types end to end, on a random tiny DistilBERT (`tiny_model`) and a few dozen STS-B
//! rows: metrics.csv's columns; the eval metrics against a direct Python computation on the embeddings
//! `harness embed` gives (scipy's spearmanr/pearsonr of the cosine, as EmbeddingSimilarityEvaluator; accuracy@1
//! and MRR by numpy); the first step's training loss against sentence-transformers' CoSENTLoss and
//! MultipleNegativesRankingLoss on those embeddings; exact resume after a SIGKILL; a frozen encoder's sts values
//! equal at every evaluation point; and bad input refused in one line before the run's lock.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const STS: &str = "  - name: stsb
    type: sts
    train: {data}/stsb/train.tsv
    eval: {data}/stsb/dev.tsv
    score_range: [0, 5]
    limit_train: {n}
    limit_eval: 24
";

const PAIRS: &str = "  - name: para
    type: pairs
    train: {data}/stsb/train.tsv
    eval: {data}/stsb/dev.tsv
    anchor_column: sentence1
    positive_column: sentence2
    limit_train: {n}
    limit_eval: 24
";

const SENTIMENT: &str = "  - name: sentiment
    train: {data}/sst2/train.tsv
    eval: {data}/sst2/dev.tsv
    labels: [negative, positive]
    limit_train: {n}
    limit_eval: 16
";

fn task(t: &str, n: usize) -> String {
    t.replace("{data}", &root().join("../shared/data").display().to_string())
        .replace("{n}", &n.to_string())
}

/// A two-layer tiny DistilBERT without dropout, so that a training step's embeddings are `harness embed`'s.
fn tiny_without_dropout(dir: &Path) -> PathBuf {
    let m = tiny_model(dir, 2);
    let c = std::fs::read_to_string(m.join("config.json")).unwrap();
    let c = c.replace(r#""n_heads""#, r#""dropout": 0.0, "attention_dropout": 0.0, "n_heads""#);
    std::fs::write(m.join("config.json"), c).unwrap();
    m
}

fn write_config(dir: &Path, model: &Path, tasks: &str, freeze: &str, train: &str) -> PathBuf {
    let text = format!(
        "name: t\nseed: 3\ndevice: cpu\noutput_dir: {}\nencoder:\n  model: {}\n  max_length: 64\ntasks:\n{tasks}freeze:\n  scenario: {freeze}\ntrain:\n  warmup_ratio: 0.0\n  lr_encoder: 1.0e-3\n  lr_heads: 1.0e-2\n{train}",
        dir.display(),
        model.display()
    );
    let p = dir.join("c.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// metrics.csv as header → cell maps.
fn rows(run: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut r = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| {
            header
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_string))
                .collect()
        })
        .collect();
    (header, rows)
}

fn cell(rows: &[BTreeMap<String, String>], epoch: &str, split: &str, col: &str) -> f64 {
    let r = rows
        .iter()
        .find(|r| r["epoch"] == epoch && r["split"] == split)
        .unwrap_or_else(|| panic!("no {split} row at epoch {epoch}"));
    r[col].parse().unwrap_or_else(|_| panic!("{col} = `{}`", r[col]))
}

/// The first `n` rows of an STS-B file: (sentence1, sentence2, score).
fn stsb(file: &str, n: usize) -> Vec<(String, String, f64)> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .quoting(false)
        .flexible(true)
        .from_path(shared_data(&format!("stsb/{file}")))
        .unwrap();
    r.records()
        .take(n)
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[5].to_string(), rec[6].to_string(), rec[4].parse().unwrap())
        })
        .collect()
}

/// `harness embed` of `texts` with the model folder `model`.
fn embed(dir: &Path, model: &Path, texts: &[&str]) -> Vec<Value> {
    let input = dir.join("embed.txt");
    std::fs::write(&input, texts.join("\n") + "\n").unwrap();
    let out = harness(&[
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    items.into_iter().map(|i| i["embedding"].clone()).collect()
}

/// The reference's numbers for the first `n` rows of an STS-B file, embedded by the pretrained `model`.
fn reference(dir: &Path, model: &Path, file: &str, n: usize) -> Value {
    let rows = stsb(file, n);
    let a = embed(dir, model, &rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>());
    let b = embed(dir, model, &rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>());
    let gold: Vec<f64> = rows.iter().map(|r| r.2 / 5.0).collect();
    let input = dir.join("ref_in.json");
    let output = dir.join("ref_out.json");
    let body = json!({"sts": {"a": a, "b": b, "gold": gold}, "pairs": {"a": a, "b": b}});
    std::fs::write(&input, body.to_string()).unwrap();
    run_reference("task_types.py", &[input.to_str().unwrap(), output.to_str().unwrap()]);
    serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol * want.abs().max(1.0),
        "{what}: harness {got}, reference {want}"
    );
}

#[test]
fn sts_and_pairs_train_and_match_the_references() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_without_dropout(d.path());
    // 24 train rows in one batch: epoch 1 is one step, whose loss is on the pretrained encoder's embeddings
    let train = "  epochs: 1\n  batch_size: 24\n  eval_batch_size: 64\n";
    let eval_ref = reference(d.path(), &model, "dev.tsv", 24);
    let train_ref = reference(d.path(), &model, "train.tsv", 24);
    for (name, yaml, columns) in [
        ("stsb", STS, ["spearman", "pearson"]),
        ("para", PAIRS, ["acc_at_1", "mrr"]),
    ] {
        let cfg = write_config(d.path(), &model, &task(yaml, 24), "none", train);
        let out = harness(&[
            "--threads",
            "1",
            "run",
            cfg.to_str().unwrap(),
            "--set",
            &format!("name={name}"),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let run = d.path().join(name);
        let (header, rows) = rows(&run);
        assert_eq!(header[header.len() - 2..], columns, "{header:?}");
        assert_eq!(header.len(), 13, "{header:?}");
        for r in &rows {
            assert!(r["accuracy"].is_empty() && r["macro_f1"].is_empty(), "{r:?}");
        }
        let at0 = |c: &str| cell(&rows, "0", "eval", c);
        let at1 = |c: &str| cell(&rows, "1", "eval", c);
        let step1 = cell(&rows, "1", "train", "loss");
        if name == "stsb" {
            let r = &eval_ref["sts"];
            close("spearman", at0("spearman"), r["spearman"].as_f64().unwrap(), 1e-6);
            close("pearson", at0("pearson"), r["pearson"].as_f64().unwrap(), 1e-6);
            close("eval CoSENT", at0("loss"), r["cosent"].as_f64().unwrap(), 1e-5);
            close(
                "step 1 CoSENT",
                step1,
                train_ref["sts"]["cosent"].as_f64().unwrap(),
                1e-5,
            );
        } else {
            let r = &eval_ref["pairs"];
            close("acc@1", at0("acc_at_1"), r["acc_at_1"].as_f64().unwrap(), 1e-12);
            close("mrr", at0("mrr"), r["mrr"].as_f64().unwrap(), 1e-12);
            close("eval MNRL", at0("loss"), r["mnrl"].as_f64().unwrap(), 1e-5);
            close("step 1 MNRL", step1, train_ref["pairs"]["mnrl"].as_f64().unwrap(), 1e-5);
        }
        // the step trained the encoder: the eval loss moved
        assert_ne!(at0("loss"), at1("loss"), "{name}: the encoder did not move");
        let s = harness::record::Summary::read(&run.join("summary.json")).unwrap();
        let f = &s.final_metrics[name];
        assert!(s.is_finite() && f.accuracy.is_nan(), "{f:?}");
        assert_eq!(f.other[columns[0]], at1(columns[0]));
    }
}

#[test]
fn killed_and_resumed_equals_the_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 2);
    let tasks = task(SENTIMENT, 32) + &task(STS, 40) + &task(PAIRS, 32);
    // 4 + 5 + 4 = 13 steps an epoch, with dropout
    let train = "  epochs: 2\n  batch_size: 8\n  checkpoint_every_steps: 1\n";
    let cfg = write_config(d.path(), &model, &tasks, "none", train);
    let reference = spawn_run(&cfg, &["--set".into(), "name=ref".into()], false)
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
    let kill_at = 2 + nanos % 20;
    let killed = killed_then_resumed(&cfg, d.path(), "k", &[], kill_at);
    eprintln!("killed after step {killed:?}");
    assert_eq!(
        metrics(&d.path().join("k")),
        metrics(&d.path().join("ref")),
        "killed after {killed:?}"
    );
    let (header, _) = rows(&d.path().join("k"));
    assert_eq!(header[11..], ["spearman", "pearson", "acc_at_1", "mrr"]);
}

#[test]
fn a_frozen_encoder_keeps_the_sts_values_at_every_evaluation() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 1);
    let tasks = task(SENTIMENT, 16) + &task(STS, 16);
    let cfg = write_config(d.path(), &model, &tasks, "backbone", "  epochs: 2\n  batch_size: 8\n");
    let out = harness(&["--threads", "1", "run", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("task `stsb` (sts) has no head"), "{err}");
    let (_, rows) = rows(&d.path().join("t"));
    let sts: Vec<Vec<&String>> = rows
        .iter()
        .filter(|r| r["task"] == "stsb")
        .map(|r| vec![&r["loss"], &r["spearman"], &r["pearson"], &r["split"]])
        .collect();
    // no train rows (it trains nothing), an eval row at epochs 0, 1 and 2, all equal
    assert_eq!(sts.len(), 3, "{sts:?}");
    assert!(sts.iter().all(|r| *r == sts[0]), "{sts:?}");
    // the sentiment head did train
    let acc: Vec<&String> = rows
        .iter()
        .filter(|r| r["task"] == "sentiment")
        .map(|r| &r["loss"])
        .collect();
    assert_ne!(acc[0], acc[acc.len() - 1]);
}

#[test]
fn bad_pair_input_is_one_line_naming_file_line_or_key() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 1);
    let file = |name: &str, body: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let good = file(
        "good.tsv",
        "sentence1\tsentence2\tscore\na b\tc d\t1\ne f\tg h\t4\ni j\tk l\t2.5\n",
    );
    let sts = |train: &str, extra: &str| {
        format!("  - name: s\n    type: sts\n    train: {train}\n    eval: {good}\n    score_range: [0, 5]\n{extra}")
    };
    let pairs = |train: &str, extra: &str| {
        format!("  - name: p\n    type: pairs\n    train: {train}\n    eval: {good}\n    anchor_column: sentence1\n    positive_column: sentence2\n{extra}")
    };
    let outside = file("outside.tsv", "sentence1\tsentence2\tscore\na\tb\t1\nc\td\t5.5\n");
    let nan = file("nan.tsv", "sentence1\tsentence2\tscore\na\tb\tmuch\n");
    let empty = file("empty.tsv", "sentence1\tsentence2\tscore\na\tb\t1\nc\t \t2\n");
    let one = file("one.tsv", "sentence1\tsentence2\na\tb\n");
    let cases: Vec<(String, String, String)> = vec![
        (
            sts(&good, "    sentence2_column: second\n"),
            String::new(),
            "good.tsv: no column `second`".into(),
        ),
        (
            sts(&outside, ""),
            String::new(),
            "outside.tsv:3: column `score`: 5.5 is outside score_range [0, 5]".into(),
        ),
        (
            sts(&nan, ""),
            String::new(),
            "nan.tsv:2: column `score`: `much` is not a number".into(),
        ),
        (
            sts(&empty, ""),
            String::new(),
            "empty.tsv:3: column `sentence2`: the sentence is empty".into(),
        ),
        (
            pairs(&one, ""),
            String::new(),
            "one.tsv: 1 pairs in batches of train.batch_size 8 give a batch of one pair".into(),
        ),
        (
            pairs(&good, ""),
            "  batch_size: 1\n".into(),
            "good.tsv: 3 pairs in batches of train.batch_size 1".into(),
        ),
        (
            sts(&good, "").replace("[0, 5]", "[5, 5]"),
            String::new(),
            "tasks.0: score_range: [5, 5] is not a range".into(),
        ),
        (
            sts(&good, "").replace("    score_range: [0, 5]\n", ""),
            String::new(),
            "tasks.0: score_range: is required for an sts task".into(),
        ),
        (
            sts(&good, "    loss: mnrl\n"),
            String::new(),
            "tasks.0: loss: `mnrl` is not a loss of an `sts` task".into(),
        ),
        (
            pairs(&good, "    loss: cosent\n"),
            String::new(),
            "tasks.0: loss: `cosent` is not a loss of a `pairs` task".into(),
        ),
        (
            sts(&good, "    labels: [a, b]\n"),
            String::new(),
            "tasks.0: labels: is a key of a `classification` task, but this task's type is `sts`".into(),
        ),
        (
            task(SENTIMENT, 8) + "    score_range: [0, 1]\n",
            String::new(),
            "tasks.0: score_range: is a key of a `sts` task".into(),
        ),
        (
            task(SENTIMENT, 8) + "    loss: cosent\n",
            String::new(),
            "tasks.0: loss: `cosent` is for sts and pairs tasks".into(),
        ),
        (
            sts(&good, ""),
            "  batch_size: 8\n  early_stopping: {metric: s.accuracy, patience: 1}\n".into(),
            "train.early_stopping.metric: `s.accuracy`: task `s` is a `sts` task, which has no accuracy".into(),
        ),
    ];
    for (tasks, train, needle) in cases {
        let train = if train.is_empty() {
            "  batch_size: 8\n".to_string()
        } else {
            train
        };
        let cfg = write_config(d.path(), &model, &tasks, "none", &train);
        let out = harness(&["run", cfg.to_str().unwrap()]);
        assert_user_error(&out, &needle);
        assert!(
            !d.path().join("t.lock").exists() && !d.path().join("t.partial").exists(),
            "{needle}: a lock"
        );
    }
    // a head:<task> scenario on a head-less task
    let cfg = write_config(d.path(), &model, &sts(&good, ""), "head:s", "");
    assert_user_error(
        &harness(&["run", cfg.to_str().unwrap()]),
        "freeze.scenario: `head:s`: task `s` is a `sts` task, which has no head",
    );
}
