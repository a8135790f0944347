//! Training control on a random tiny DistilBERT (`tiny_model`), two tasks of 48 and 32 examples in batches of
//! 16 (5 steps an epoch): early stopping with the best weights kept (`train.early_stopping`, `train.keep_best`),
//! and what bad settings of them give.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use harness::record::Summary;

fn write_config(dir: &Path, layers: usize, freeze: &str, train: &str) -> PathBuf {
    let model = tiny_model(dir, layers);
    let p = dir.join("c.yaml");
    let mut text = config_text_on(&model, dir, freeze, train);
    if train.contains("batch_size") {
        text = text.replacen("  batch_size: 16\n", "", 1);
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn run(cfg: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--threads", "1", "run", cfg.to_str().unwrap()];
    for e in extra {
        args.extend(["--set", e]);
    }
    harness(&args)
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// No improvement can beat the first by more than 1 (accuracies are at most 1): epoch 1 is the best, and with
/// patience 2 the run stops after epoch 3's evaluation, at step 15 of 20.
const STOPPING: &str =
    "  epochs: 4\n  keep_best: true\n  early_stopping: {metric: mean_accuracy, patience: 2, min_delta: 1.0}";

/// The eval file's texts and labels of each task, as `config_text` defines them.
fn eval_sets() -> Vec<(Vec<String>, Vec<usize>)> {
    let read = |file: &str, text: &str, offset: usize, limit: usize| {
        let mut r = csv::ReaderBuilder::new()
            .delimiter(b'\t')
            .quoting(false)
            .from_path(shared_data(file))
            .unwrap();
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|c| c == n).unwrap();
        let (t, l) = (col(text), col("label"));
        r.records()
            .take(limit)
            .map(|rec| {
                let rec = rec.unwrap();
                (rec[t].to_string(), rec[l].parse::<usize>().unwrap() - offset)
            })
            .unzip()
    };
    vec![
        read("sst2/dev.tsv", "sentence", 0, 24),
        read("ag_news/test.tsv", "description", 1, 24),
    ]
}

/// Each task's (accuracy, mean cross-entropy) of a finished run's model as `finished::load` gives it (the
/// weights `predict` and `export` use), over its eval file.
fn reevaluate(run: &Path) -> Vec<(f64, f64)> {
    let (cfg, model) = harness::run::finished::load(run).unwrap();
    eval_sets()
        .into_iter()
        .enumerate()
        .map(|(ti, (texts, gold))| {
            let preds = model.predict(&cfg.tasks, &texts).unwrap();
            let (mut right, mut loss) = (0usize, 0.0);
            for (p, &g) in preds.iter().zip(&gold) {
                let probs = &p.tasks[ti].probabilities;
                let best = (0..probs.len())
                    .max_by(|&a, &b| probs[a].1.total_cmp(&probs[b].1))
                    .unwrap();
                right += usize::from(best == g);
                loss -= probs[g].1.ln();
            }
            (right as f64 / gold.len() as f64, loss / gold.len() as f64)
        })
        .collect()
}

#[test]
fn a_run_that_stops_improving_stops_after_patience_and_keeps_the_best_weights() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), 1, "  scenario: none", STOPPING);
    ok(&run(&cfg, &[]));
    let dir = d.path().join("t");
    let s = Summary::read(&dir.join("summary.json")).unwrap();
    assert!(s.stopped_early, "stopped_early");
    assert_eq!(s.steps, 15, "two evaluations without improvement after epoch 1's");
    let best = s.best.expect("best");
    assert_eq!((best.epoch, best.step), (1, 5));
    assert_eq!(best.weights.as_deref(), Some("best.safetensors"));
    let rows = metrics(&dir);
    let evals: Vec<&Vec<String>> = rows.iter().filter(|r| r[4] == "eval").collect();
    assert_eq!(evals.last().unwrap()[1], "3", "no evaluation after epoch 3");
    // the best row's metrics, as metrics.csv has them
    for task in ["sentiment", "topic"] {
        let row = evals.iter().find(|r| r[1] == "1" && r[3] == task).unwrap();
        let m = &best.metrics[task];
        assert_eq!(row[6].parse::<f64>().unwrap(), m.accuracy, "{task} accuracy");
        assert_eq!(row[5].parse::<f64>().unwrap(), m.loss, "{task} loss");
        let last = &s.final_metrics[task];
        assert!(
            (last.loss - m.loss).abs() > 1e-3,
            "{task}: epochs 1 and 3 must differ for this test to tell"
        );
    }
    // re-evaluating what predict/export load gives the best row's metrics, not the last one's
    for ((acc, loss), task) in reevaluate(&dir).into_iter().zip(["sentiment", "topic"]) {
        let m = &best.metrics[task];
        assert_eq!(acc, m.accuracy, "{task}: accuracy of the kept weights");
        assert!(
            (loss - m.loss).abs() < 1e-5,
            "{task}: loss {loss} vs the best row's {}",
            m.loss
        );
    }
}

#[test]
fn without_stopping_settings_the_summary_has_no_best_and_the_final_weights_are_used() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), 1, "  scenario: none", "  epochs: 2");
    ok(&run(&cfg, &[]));
    let dir = d.path().join("t");
    let s = Summary::read(&dir.join("summary.json")).unwrap();
    assert!(s.best.is_none() && !s.stopped_early);
    assert!(!dir.join("best.safetensors").exists());
    for ((acc, loss), task) in reevaluate(&dir).into_iter().zip(["sentiment", "topic"]) {
        let m = &s.final_metrics[task];
        assert_eq!(acc, m.accuracy, "{task}");
        assert!((loss - m.loss).abs() < 1e-5, "{task}: {loss} vs {}", m.loss);
    }
}

#[test]
fn a_kill_9_after_the_best_and_a_resume_give_the_uninterrupted_run() {
    let d = tempfile::tempdir().unwrap();
    let train = format!("{STOPPING}\n  checkpoint_every_steps: 1");
    let cfg = write_config(d.path(), 1, "  scenario: none", &train);
    ok(&run(&cfg, &["name=ref"]));
    // past epoch 1's evaluation (the best, written to best.safetensors), before the stop at 15
    interrupted_at(&cfg, d.path(), ("k", &[]), 7, false, Stop::Kill);
    assert!(
        d.path().join("k.partial/best.safetensors").is_file(),
        "the best weights survive the kill"
    );
    resumed(&cfg, "k", &[]);
    let (a, b) = (d.path().join("ref"), d.path().join("k"));
    assert_eq!(metrics(&a), metrics(&b));
    let best = |dir: &Path| serde_json::to_string(&Summary::read(&dir.join("summary.json")).unwrap().best).unwrap();
    assert_eq!(best(&a), best(&b));
    let bytes = |dir: &Path| std::fs::read(dir.join("best.safetensors")).unwrap();
    assert!(bytes(&a) == bytes(&b), "best.safetensors differs after the resume");
}

/// A bad setting: one line, exit 2, and nothing written (not even the lock).
fn refused(freeze: &str, train: &str, needle: &str) {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), 1, freeze, train);
    let out = run(&cfg, &[]);
    assert_user_error(&out, needle);
    assert!(
        !d.path().join("t.lock").exists() && !d.path().join("t.partial").exists(),
        "{needle}: wrote"
    );
}

#[test]
fn bad_stopping_settings_are_refused_before_the_lock() {
    let none = "  scenario: none";
    let es = |x: &str| format!("  early_stopping: {{{x}}}");
    refused(none, &es("metric: nope.accuracy"), "unknown task `nope`");
    refused(none, &es("metric: sentiment.recall"), "not one of mean_accuracy");
    refused(none, &es("metric: accuracy"), "not one of mean_accuracy");
    refused(none, &es("patience: 0"), "train.early_stopping.patience");
    refused(none, &es("min_delta: -0.1"), "train.early_stopping.min_delta");
    refused(none, &es("min_delta: .nan"), "train.early_stopping.min_delta");
    refused(none, &es("patiense: 2"), "did you mean `patience`");
    refused(none, "  keep_best: true", "train.keep_best: needs train.early_stopping");
    refused("  scenario: all", &es("patience: 1"), "trains nothing");
}

/// Gradual unfreezing on a two-layer encoder, batches of 8 (10 steps an epoch): epoch 1 trains layer 1 (and the
/// heads), epoch 2 layers 0 and 1, epoch 3 the embeddings too.
const GRADUAL: &str = "  scenario: none\n  gradual: {start_layers: 1, add_every_epochs: 1}";
const GRADUAL_TRAIN: &str = "  epochs: 3\n  batch_size: 8\n  checkpoint_every_steps: 1";

fn safetensors(path: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// Names of the tensors of `part` (`layer.0.`, `embeddings.`) in `trained`, split by whether they equal the
/// model folder's bit for bit.
fn moved(trained: &Path, initial: &Path, part: &str) -> (usize, usize) {
    let (a, b) = (safetensors(trained), safetensors(initial));
    let names: Vec<&String> = a.keys().filter(|n| n.contains(part)).collect();
    assert!(!names.is_empty(), "no `{part}` tensor in {}", trained.display());
    let same = names.iter().filter(|n| a[**n].equal(&b[**n])).count();
    (names.len() - same, same)
}

#[test]
fn gradual_unfreezing_opens_one_layer_an_epoch_from_the_top_and_proves_the_rest_unmoved() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), 2, GRADUAL, "  epochs: 1\n  batch_size: 8");
    let out = run(&cfg, &[]);
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("epoch 1 trains the top 1 of 2 layers"));
    let (ckpt, initial) = (
        d.path().join("t/checkpoint.safetensors"),
        d.path().join("tiny-2/model.safetensors"),
    );
    // after epoch 1 only layer 1 moved: layer 0 and the embeddings kept every bit (no weight decay either)
    assert_eq!(moved(&ckpt, &initial, ".layer.0.").0, 0, "layer 0 moved in epoch 1");
    assert_eq!(
        moved(&ckpt, &initial, "embeddings.").0,
        0,
        "the embeddings moved in epoch 1"
    );
    assert_eq!(
        moved(&ckpt, &initial, ".layer.1.").1,
        0,
        "a tensor of layer 1 did not train"
    );
    let s = Summary::read(&d.path().join("t/summary.json")).unwrap();
    assert!(s.frozen_unchanged && s.complete);
    assert!(s.frozen_tensors_checked > 0);
    assert_eq!(s.scenario, "none+gradual:1/1");
    // the summary counts what this one epoch trained, not what a longer schedule would reach
    let trains = |g: &str| s.groups[g].trainable;
    assert!(
        trains("layer.1") && !trains("layer.0") && !trains("embeddings"),
        "{:?}",
        s.groups
    );
    let heads: i64 = s
        .groups
        .iter()
        .filter(|(n, _)| n.starts_with("head:"))
        .map(|(_, g)| g.params)
        .sum();
    assert_eq!(s.params_trainable, s.groups["layer.1"].params + heads);
}

#[test]
fn gradual_unfreezing_killed_after_a_phase_boundary_resumes_exactly() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), 2, GRADUAL, GRADUAL_TRAIN);
    ok(&run(&cfg, &["name=ref"]));
    let partial = d.path().join("k.partial");
    // killed in epoch 2; the checkpoint: each tensor took an optimizer step only in the phases that train it
    let at = interrupted_at(&cfg, d.path(), ("k", &[]), 12, false, Stop::Kill).unwrap();
    let ptr: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(partial.join("checkpoint.json")).unwrap()).unwrap();
    let ck = partial.join(ptr["dir"].as_str().unwrap());
    let prog: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("progress.json")).unwrap()).unwrap();
    let opt = safetensors(&ck.join("optimizer.safetensors"));
    for (part, from) in [(".layer.1.", 0), (".layer.0.", 10), ("embeddings.", 20)] {
        let want = at.saturating_sub(from) as u64;
        for (name, steps) in prog["adam_steps"].as_object().unwrap() {
            if name.contains(part) {
                assert_eq!(steps.as_u64(), Some(want), "{name} at step {at}");
                let m = &opt[&format!("{name}.exp_avg")];
                assert_eq!(
                    m.abs().sum(tch::Kind::Double).double_value(&[]) == 0.0,
                    want == 0,
                    "{name}'s moments"
                );
            }
        }
    }
    resumed(&cfg, "k", &[]);
    let (a, b) = (d.path().join("ref"), d.path().join("k"));
    assert_eq!(metrics(&a), metrics(&b));
    let bytes = |dir: &Path| std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
    assert!(bytes(&a) == bytes(&b), "final weights differ after the resume");
    let initial = d.path().join("tiny-2/model.safetensors");
    assert_eq!(
        moved(&a.join("checkpoint.safetensors"), &initial, "embeddings.").1,
        0,
        "epoch 3 trains the embeddings"
    );
    // every group opened by epoch 3, in the resumed run as in the uninterrupted one
    for run in [&a, &b] {
        let s = Summary::read(&run.join("summary.json")).unwrap();
        assert!(
            s.groups["embeddings"].trainable && s.groups["layer.0"].trainable,
            "{:?}",
            s.groups
        );
    }
}

#[test]
fn bad_gradual_settings_are_refused_before_the_lock() {
    let g = |x: &str| format!("  scenario: none\n  gradual: {{{x}}}");
    let t = "  epochs: 1";
    refused(
        &g("start_layers: 0"),
        t,
        "freeze.gradual.start_layers: must be at least 1",
    );
    refused(
        &g("start_layers: 2"),
        t,
        "freeze.gradual.start_layers is 2 but the encoder has 1 layers",
    );
    refused(&g("add_every_epochs: 0"), t, "freeze.gradual.add_every_epochs");
    refused(&g("start_layer: 1"), t, "did you mean `start_layers`");
    refused(
        &format!("{}\n  lora: {{r: 2}}", g("")),
        t,
        "cannot be combined with freeze.lora",
    );
    refused(&format!("{}\n  unfreeze_top_layers: 1", g("")), t, "cannot be combined");
    refused(&format!("{}\n  train: ['*.bias']", g("")), t, "cannot be combined");
    refused(
        "  scenario: backbone\n  gradual: {}",
        t,
        "scenario `backbone` freezes the encoder",
    );
    refused(
        "  scenario: all\n  gradual: {}",
        t,
        "scenario `all` freezes the encoder",
    );
    refused(
        &g(""),
        "  epochs: 1\n  step: joint\n  mtl: {aggregator: upgrad}",
        "freeze.gradual: not supported",
    );
}
