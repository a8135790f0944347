//! Multi-task runs on tiny real subsets of SST-2 and AG News: freezing scenarios, the training loop,
//! caching, determinism, and config/data errors.

mod common;

use std::path::Path;

use common::*;
use harness::config::ExperimentConfig;
use harness::model::Group;
use harness::model::MultiTaskModel;
use harness::run::experiment::{self, Outcome, Start};

/// libtorch's RNG (head initialisation, dropout) is process-global: in-process runs take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The config on a random tiny six-layer DistilBERT (`tiny_model`, width 16): the scenarios, the loop and the
/// caching are the same code for every encoder, and MiniLM would take most of this file's time.
fn load(dir: &Path, freeze: &str, train: &str) -> ExperimentConfig {
    let p = dir.join("c.yaml");
    let model = tiny_model(dir, 6);
    std::fs::write(&p, config_text_on(&model, dir, freeze, train)).unwrap();
    ExperimentConfig::load(&p, &[]).unwrap()
}

/// Runs the config, replacing a finished run of the same name on purpose (several tests run variants in one folder).
fn run(dir: &Path, freeze: &str, train: &str) -> (ExperimentConfig, Outcome) {
    let cfg = load(dir, freeze, train);
    let out = experiment::run(&cfg, Start::Restart).unwrap();
    (cfg, out)
}

fn metrics(dir: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(dir.join("metrics.csv")).unwrap();
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// For every group: did any of its tensors change between `before` and `after`?
fn changed_groups(before: &MultiTaskModel, after: &MultiTaskModel) -> Vec<(Group, bool)> {
    before
        .groups()
        .iter()
        .zip(after.groups())
        .map(|(b, a)| {
            assert_eq!(b.group, a.group);
            let changed = b.vars.iter().zip(&a.vars).any(|((_, x), (_, y))| !x.equal(y));
            (b.group.clone(), changed)
        })
        .collect()
}

/// Runs a scenario and checks that exactly the groups it trains moved.
fn check_scenario(freeze: &str, expect_trainable: &dyn Fn(&Group) -> bool) -> (tempfile::TempDir, Outcome) {
    let d = tempfile::tempdir().unwrap();
    let cfg = load(d.path(), freeze, "");
    let (before, _) = experiment::build(&cfg).unwrap();
    let out = experiment::run(&cfg, Start::Fresh).unwrap();
    assert!(out.summary.frozen_unchanged);
    for (group, changed) in changed_groups(&before, &out.model) {
        let want = expect_trainable(&group);
        assert_eq!(out.plan.trains(&group).unwrap(), want, "{freeze}: plan for {group}");
        assert_eq!(changed, want, "{freeze}: group {group} changed={changed}");
    }
    (d, out)
}

#[test]
fn full_finetune_trains_everything_but_the_unused_pooler() {
    let _serial = serial();
    check_scenario("  scenario: none", &|g| *g != Group::Pooler);
}

#[test]
fn backbone_trains_heads_only_from_cached_features() {
    let _serial = serial();
    let (_d, out) = check_scenario("  scenario: backbone", &|g| g.is_head());
    assert!(out.summary.features_cached);
    assert_eq!(out.summary.params_trainable, 16 * 2 + 2 + 16 * 4 + 4);
}

#[test]
fn one_frozen_head() {
    let _serial = serial();
    check_scenario("  scenario: head:topic", &|g| {
        *g != Group::Pooler && *g != Group::Head("topic".into())
    });
}

#[test]
fn unfreeze_top_layers() {
    let _serial = serial();
    check_scenario("  scenario: backbone\n  unfreeze_top_layers: 2", &|g| {
        g.is_head() || *g == Group::Layer(4) || *g == Group::Layer(5)
    });
}

#[test]
fn scenario_all_trains_nothing_and_still_writes_metrics() {
    let _serial = serial();
    let (_d, out) = check_scenario("  scenario: all", &|_| false);
    assert_eq!(out.summary.steps, 0);
    assert_eq!(out.summary.params_trainable, 0);
    let rows = metrics(&out.dir);
    assert_eq!(rows.len(), 2, "one eval row per task at epoch 0");
    assert!(rows.iter().all(|r| r[2] == "0" && r[5] == "eval"));
    assert!(out.dir.join("summary.json").is_file());
}

#[test]
fn frozen_task_loss_ignore_and_backprop_differ_as_designed() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let (_, ignore) = run(d.path(), "  scenario: head:sentiment\n  frozen_task_loss: ignore", "");
    let ignore_rows = metrics(&ignore.dir);
    let (_, backprop) = run(d.path(), "  scenario: head:sentiment\n  frozen_task_loss: backprop", "");
    let backprop_rows = metrics(&backprop.dir);
    let trained = |rows: &[Vec<String>], task: &str| rows.iter().any(|r| r[4] == task && r[5] == "train");
    // ignore: only topic batches train (32 examples = 2 steps); backprop: sentiment's 3 batches too
    assert_eq!(ignore.summary.steps, 2);
    assert_eq!(backprop.summary.steps, 5);
    assert!(!trained(&ignore_rows, "sentiment") && trained(&ignore_rows, "topic"));
    assert!(trained(&backprop_rows, "sentiment"));
    // the frozen head stays at its seeded initialisation either way
    let h = |o: &Outcome| o.model.head(0).vs.variables()["out.weight"].copy();
    assert!(h(&ignore).equal(&h(&backprop)));
    // but the encoder moved differently
    let l5 = |o: &Outcome| {
        o.model
            .groups()
            .into_iter()
            .find(|g| g.group == Group::Layer(5))
            .unwrap()
            .vars[0]
            .1
            .copy()
    };
    assert!(!l5(&ignore).equal(&l5(&backprop)));
}

#[test]
fn training_loss_falls() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let (_, out) = run(d.path(), "  scenario: backbone", "  epochs: 6");
    let losses: Vec<f64> = metrics(&out.dir)
        .iter()
        .filter(|r| r[4] == "topic" && r[5] == "train")
        .map(|r| r[6].parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 6);
    assert!(losses[5] < losses[0] * 0.9, "{losses:?}");
}

#[test]
fn cached_features_give_the_same_metrics_as_the_encoder_path() {
    let _serial = serial();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let (_, cached) = run(d1.path(), "  scenario: backbone", "  epochs: 2\n  cache_features: true");
    let (_, direct) = run(
        d2.path(),
        "  scenario: backbone",
        "  epochs: 2\n  cache_features: false",
    );
    assert!(cached.summary.features_cached && !direct.summary.features_cached);
    let (a, b) = (metrics(&cached.dir), metrics(&direct.dir));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x[..6], y[..6]);
        assert_eq!(x[7], y[7], "accuracy differs: {x:?} vs {y:?}");
        let (lx, ly): (f64, f64) = (x[6].parse().unwrap(), y[6].parse().unwrap());
        assert!((lx - ly).abs() < 1e-5, "loss {lx} vs {ly}");
    }
}

#[test]
fn same_seed_same_metrics() {
    let _serial = serial();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let (_, a) = run(d1.path(), "  scenario: none", "");
    let (_, b) = run(d2.path(), "  scenario: none", "");
    let strip = |rows: Vec<Vec<String>>| {
        rows.into_iter()
            .map(|mut r| {
                r.pop();
                r
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(metrics(&a.dir)), strip(metrics(&b.dir)));
}

#[test]
fn predict_uses_the_trained_heads() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let (_, out) = run(d.path(), "  scenario: backbone", "  epochs: 3");
    let dir = out.dir.to_str().unwrap();
    let p = harness(&[
        "predict",
        "--run",
        dir,
        "--json",
        "a wonderful , moving film",
        "stocks fell as oil prices rose",
    ]);
    assert!(p.status.success(), "{}", String::from_utf8_lossy(&p.stderr));
    let v: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let probs = v[0]["tasks"]["sentiment"]["probabilities"].as_object().unwrap();
    let sum: f64 = probs.values().map(|p| p.as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-3);
    assert!(v[1]["tasks"]["topic"]["label"].is_string());
}

// ---- errors: one line, exit 2, file and line named; earlier results intact ----

fn write_cfg(dir: &Path, text: &str) -> String {
    let p = dir.join("c.yaml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn unknown_key_is_named_with_a_suggestion() {
    let d = tempfile::tempdir().unwrap();
    let text = config_text(d.path(), "  scenario: none", "  epoch: 2");
    assert_user_error(
        &harness(&["run", &write_cfg(d.path(), &text)]),
        "did you mean `epochs`?",
    );
}

#[test]
fn scenario_naming_an_unknown_task() {
    let d = tempfile::tempdir().unwrap();
    let text = config_text(d.path(), "  scenario: head:weather", "");
    assert_user_error(
        &harness(&["run", &write_cfg(d.path(), &text)]),
        "unknown task `weather`",
    );
}

#[test]
fn missing_data_file() {
    let d = tempfile::tempdir().unwrap();
    let text = config_text(d.path(), "  scenario: none", "").replace("sst2/dev.tsv", "sst2/nope.tsv");
    assert_user_error(&harness(&["run", &write_cfg(d.path(), &text)]), "nope.tsv: missing");
}

fn with_eval_file(body: &str) -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.tsv");
    std::fs::write(&f, body).unwrap();
    let data = root().join("../shared/data");
    let text = config_text(d.path(), "  scenario: none", "")
        .replace(&format!("{}/sst2/dev.tsv", data.display()), f.to_str().unwrap());
    let cfg = write_cfg(d.path(), &text);
    (d, cfg)
}

#[test]
fn label_out_of_range() {
    let (_d, cfg) = with_eval_file("sentence\tlabel\ngood\t1\nbad\t2\n");
    assert_user_error(
        &harness(&["run", &cfg]),
        "bad.tsv:3: column `label`: label 2 out of range",
    );
}

#[test]
fn empty_dataset() {
    let (_d, cfg) = with_eval_file("sentence\tlabel\n");
    assert_user_error(&harness(&["run", &cfg]), "bad.tsv: no rows");
}

#[test]
fn malformed_row() {
    let (_d, cfg) = with_eval_file("sentence\tlabel\ngood\t1\nno label here\n");
    assert_user_error(&harness(&["run", &cfg]), "bad.tsv:3: expected 2 fields");
}

#[test]
fn a_failed_run_leaves_the_earlier_result_intact() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let (cfg, out) = run(d.path(), "  scenario: all", "");
    let before = std::fs::read(out.dir.join("metrics.csv")).unwrap();
    let text = config_text(d.path(), "  scenario: all", "").replace("sst2/dev.tsv", "sst2/nope.tsv");
    let o = harness(&["run", &write_cfg(d.path(), &text)]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        std::fs::read(cfg.output_dir.join(&cfg.name).join("metrics.csv")).unwrap(),
        before
    );
}
