//! Training less than whole groups, on a random tiny DistilBERT: `freeze.train` globs over tensor names
//! (BitFit: only the biases and the heads move, frozen tensors are checked one by one, a kill -9 and
//! `--resume` equals the uninterrupted run, a glob that matches nothing is a one-line error), and
//! `train.layer_lr_decay` (each layer's first update at lr·d^(L−i), out-of-range values refused), and
//! `freeze.lora` (only A, B and the heads move, targets hold W0 + s·B·A, exact resume, bad settings refused).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use harness::config::ExperimentConfig;
use harness::run::experiment::{self, Start};

/// libtorch's RNG (head initialisation, dropout) is process-global: in-process runs take turns.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared two-task config on the tiny model; returns its path.
fn write_config(dir: &Path, model: &Path, freeze: &str, train: &str) -> PathBuf {
    let text = config_text(dir, freeze, train) + &format!("encoder:\n  model: {}\n  max_length: 32\n", model.display());
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("c.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

const BITFIT: &str = "  scenario: backbone\n  train: ['*.bias']";
const LORA: &str = "  scenario: none\n  lora: {r: 2, alpha: 4}";

#[test]
fn bitfit_moves_only_the_biases_and_the_heads() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 2);
    let cfg = ExperimentConfig::load(&write_config(d.path(), &model, BITFIT, ""), &[]).unwrap();
    assert_eq!(cfg.scenario_label(), "backbone+train:*.bias");
    let (before, _) = experiment::build(&cfg).unwrap();
    let out = experiment::run(&cfg, Start::Fresh).unwrap();
    assert!(out.summary.frozen_unchanged);
    let (mut biases, mut frozen, mut head_params) = (0i64, 0usize, 0i64);
    for (b, a) in before.groups().iter().zip(out.model.groups()) {
        for ((name, x), (_, y)) in b.vars.iter().zip(&a.vars) {
            let bias = !b.group.is_head() && name.ends_with(".bias");
            let want = b.group.is_head() || bias;
            assert_eq!(!x.equal(y), want, "{name} changed");
            assert_eq!(out.plan.tensor_trains(&b.group, name).unwrap(), want, "{name}");
            if bias {
                biases += x.numel() as i64;
            } else if b.group.is_head() {
                head_params += x.numel() as i64;
            } else {
                frozen += 1;
            }
        }
    }
    assert!(biases > 0 && frozen > 0);
    assert_eq!(
        out.summary.frozen_tensors_checked, frozen,
        "every frozen weight checked on its own"
    );
    assert_eq!(out.summary.params_trainable, biases + head_params);
    let layer0 = &out.summary.groups["layer.0"];
    assert!(layer0.trainable && layer0.trainable_params.is_some_and(|n| n > 0 && n < layer0.params));
    // the final checkpoint holds the trained biases and the heads, no frozen weight
    let saved = tch::Tensor::read_safetensors(out.dir.join("checkpoint.safetensors")).unwrap();
    assert!(saved
        .iter()
        .all(|(n, _)| n.starts_with("head:") || n.ends_with(".bias")));
    assert_eq!(
        saved.iter().map(|(_, t)| t.numel() as i64).sum::<i64>(),
        biases + head_params
    );
}

#[test]
fn inspect_counts_the_trainable_tensors_of_each_group() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 2);
    let cfg = write_config(
        d.path(),
        &model,
        "  scenario: all\n  train: ['layer.1.*', 'embeddings.LayerNorm.*']",
        "",
    );
    let out = harness(&["inspect", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    let row = |g: &str| -> Vec<String> {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{g} ")))
            .unwrap_or_else(|| panic!("{table}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    // the embeddings' LayerNorm: weight and bias of width 16
    assert_eq!(row("embeddings")[2..], ["32", "part"], "{table}");
    assert_eq!(row("layer.0")[2..], ["0", "no"], "{table}");
    let l1 = row("layer.1");
    assert_eq!((l1[1].as_str(), l1[3].as_str()), (l1[2].as_str(), "yes"), "{table}");
    // scenario all keeps the heads frozen
    assert_eq!(row("head:sentiment")[2..], ["0", "no"], "{table}");
    let total: i64 = row("trainable")[1].parse().unwrap();
    assert_eq!(total, 32 + l1[1].parse::<i64>().unwrap(), "{table}");
}

#[test]
fn a_glob_that_matches_nothing_is_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 1);
    let out_dir = d.path().join("out");
    let cfg = write_config(&out_dir, &model, BITFIT, "");
    for (set, needle) in [
        (
            "freeze.train=['*.bias', 'layer.7.*']",
            "freeze.train.1: `layer.7.*` matches no encoder tensor",
        ),
        ("freeze.train=['pooler.*']", "matches no encoder tensor"),
        ("freeze.train=['[']", "freeze.train.0: `[` is not a glob"),
        ("freeze.train=['']", "freeze.train.0: an empty glob"),
    ] {
        for cmd in ["run", "inspect"] {
            let out = harness(&[cmd, cfg.to_str().unwrap(), "--set", set]);
            assert_user_error(&out, needle);
        }
    }
    let out = harness(&["run", cfg.to_str().unwrap(), "--set", "freeze.train=['layer.7.*']"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`distilbert.transformer.layer.0.attention."),
        "valid names shown: {err}"
    );
    let both = harness(&["run", cfg.to_str().unwrap(), "--set", "freeze.unfreeze_top_layers=1"]);
    assert_user_error(&both, "cannot be combined with freeze.unfreeze_top_layers");
    assert!(!out_dir.join("t.lock").exists() && !out_dir.join("t.partial").exists());
}

/// A run killed (SIGKILL) after the checkpoint of step 3 or later, then resumed, equals the uninterrupted run.
fn killed_at_a_checkpoint_resumes_exactly(freeze: &str) {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 1);
    let train = "  epochs: 2\n  checkpoint_every_steps: 1\n  layer_lr_decay: 0.8";
    let cfg = write_config(d.path(), &model, freeze, train);
    let args = |name: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["--threads", "1", "run", cfg.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        a.extend(["--set", "train.batch_size=2", "--set"].map(String::from));
        a.push(format!("name={name}"));
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |name: &str, extra: &[&str]| {
        let out = harness(&args(name, extra).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out
    };
    run("ref", &[]);
    let want = metrics(&d.path().join("ref"));
    assert_eq!(want.len(), 2 + 2 * 4);

    let partial = d.path().join("k.partial");
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args("k", &[]))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the checkpoint of step 3", 120, || {
        checkpointed_step(&partial).is_some_and(|s| s >= 3)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let at = checkpointed_step(&partial);
    eprintln!("killed after the checkpoint of step {at:?} of 80");
    assert!(!d.path().join("k").exists(), "killed too late: the run had finished");
    let out = run("k", &["--resume"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resuming k from step"), "{err}");
    assert_eq!(
        metrics(&d.path().join("k")),
        want,
        "resumed from the checkpoint of step {at:?}"
    );
}

#[test]
fn bitfit_with_layer_decay_killed_at_a_checkpoint_resumes_exactly() {
    killed_at_a_checkpoint_resumes_exactly(BITFIT);
}

#[test]
fn lora_killed_at_a_checkpoint_resumes_exactly() {
    killed_at_a_checkpoint_resumes_exactly(LORA);
}

/// One AdamW step (one batch of one task, no warmup) with layer-wise decay `d` on a 2-layer model: the
/// first step moves every element by lr·g/(|g| + eps) after weight decay, so the largest such move of each
/// tensor is its learning rate: lr_encoder·d^(L−i) for layer i, lr_encoder·d^(L+1) for the embeddings.
fn first_step_lrs(d: f64) -> Vec<(String, f64, f64)> {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), 2);
    let p = write_config(
        dir.path(),
        &model,
        "  scenario: head:topic\n  frozen_task_loss: ignore",
        &format!("  layer_lr_decay: {d}"),
    );
    let (lr, wd) = (1e-2, 0.01);
    let sets = ["train.batch_size=64".to_string(), format!("train.lr_encoder={lr}")];
    let cfg = ExperimentConfig::load(&p, &sets).unwrap();
    assert_eq!(cfg.train.weight_decay, wd);
    let (before, _) = experiment::build(&cfg).unwrap();
    let out = experiment::run(&cfg, Start::Fresh).unwrap();
    assert_eq!(out.summary.steps, 1);
    let mut seen = Vec::new();
    for (b, a) in before.groups().iter().zip(out.model.groups()) {
        let want = match b.group {
            harness::model::Group::Embeddings => lr * d.powi(3),
            harness::model::Group::Layer(i) => lr * d.powi(2 - i as i32),
            harness::model::Group::Head(ref t) if t == "sentiment" => cfg.train.lr_heads,
            _ => continue,
        };
        for ((name, x), (_, y)) in b.vars.iter().zip(&a.vars) {
            let step = (y - x + x * (want * wd)).abs().max().double_value(&[]);
            seen.push((name.clone(), step, want));
        }
    }
    seen
}

#[test]
fn layer_decay_scales_each_layers_first_step_by_its_power_of_d() {
    let _serial = serial();
    for d in [1.0, 0.5] {
        let seen = first_step_lrs(d);
        assert!(seen.len() > 20);
        for (name, step, want) in &seen {
            assert!(
                step / want < 1.0 + 2e-3,
                "d {d}: {name} moved {step:e}, more than lr {want:e}"
            );
            // the key bias shifts every attention score of a query equally: its gradient is ~0, below eps
            if !name.ends_with("k_lin.bias") {
                assert!(
                    step / want > 1.0 - 2e-3,
                    "d {d}: {name} moved {step:e}, expected lr {want:e}"
                );
            }
        }
    }
}

#[test]
fn layer_decay_outside_0_1_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 1);
    let cfg = write_config(&d.path().join("out"), &model, BITFIT, "");
    for v in ["0", "1.5", "-0.5", ".nan"] {
        let out = harness(&[
            "run",
            cfg.to_str().unwrap(),
            "--set",
            &format!("train.layer_lr_decay={v}"),
        ]);
        assert_user_error(&out, "train.layer_lr_decay:");
        assert_user_error(&out, "outside (0, 1]");
    }
    assert!(!d.path().join("out/t.lock").exists());
}

#[test]
fn lora_trains_only_its_adapters_and_the_heads() {
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 2);
    let p = write_config(d.path(), &model, LORA, "");
    let (lr, wd) = (1e-2, 0.01);
    // one step: one batch of sentiment (topic's head frozen and its batches left out)
    let sets = [
        "train.batch_size=64".to_string(),
        format!("train.lr_encoder={lr}"),
        "freeze.scenario=head:topic".into(),
        "freeze.frozen_task_loss=ignore".into(),
    ];
    let cfg = ExperimentConfig::load(&p, &sets).unwrap();
    assert_eq!(cfg.scenario_label(), "head:topic+lora:r2");
    let (before, _) = experiment::build(&cfg).unwrap();
    let lora0 = before.lora.as_ref().unwrap();
    let targets: Vec<String> = lora0.targets().iter().map(|t| format!("{}.weight", t.module)).collect();
    assert_eq!(targets.len(), 4, "q_lin and v_lin of 2 layers: {targets:?}");
    let a0: Vec<(String, tch::Tensor)> = lora0.named_tensors();
    let out = experiment::run(&cfg, Start::Fresh).unwrap();
    assert_eq!(out.summary.steps, 1);
    assert!(out.summary.frozen_unchanged);
    let lora = out.model.lora.as_ref().unwrap();
    // the sentiment head trains (topic's is frozen)
    let head: i64 = out
        .model
        .head(0)
        .vs
        .variables()
        .values()
        .map(|t| t.numel() as i64)
        .sum();
    assert_eq!(lora.trainable_parameters(), 4 * 2 * (16 + 16));
    assert_eq!(out.summary.params_trainable, lora.trainable_parameters() + head);
    assert_eq!(out.summary.groups["lora"].params, lora.trainable_parameters());
    // every encoder tensor is as loaded; the targets hold W0 + s·B·A
    for (b, a) in before.groups().iter().zip(out.model.groups()) {
        for ((name, x), (_, y)) in b.vars.iter().zip(&a.vars) {
            if b.group.is_head() {
                continue;
            }
            if targets.contains(name) {
                let t = lora
                    .targets()
                    .iter()
                    .find(|t| format!("{}.weight", t.module) == *name)
                    .unwrap();
                let want = x + t.b.detach().matmul(&t.a.detach()) * 2.0;
                assert!(max_abs_diff(y, &want) < 1e-7, "{name}");
                assert!(!x.equal(y), "{name}: the adapter moved it");
            } else {
                assert!(x.equal(y), "{name} moved");
            }
        }
    }
    // first step from B = 0: dA = s·Bᵀ·dW = 0, so A only decays; B moves by lr·dB/(|dB| + eps)
    for ((name, t0), (_, t1)) in a0.iter().zip(lora.named_tensors()) {
        if name.ends_with("lora_A.weight") {
            assert!(max_abs_diff(&t1, &(t0 * (1.0 - lr * wd))) < 1e-9, "{name}");
        } else {
            let step = t1.abs().max().double_value(&[]);
            assert!((step / lr - 1.0).abs() < 2e-3, "{name}: {step:e}");
        }
    }
    // the final checkpoint holds A, B and the heads only, and predicts as the trained model does
    let saved = tch::Tensor::read_safetensors(out.dir.join("checkpoint.safetensors")).unwrap();
    assert!(saved
        .iter()
        .all(|(n, _)| n.starts_with("head:") || n.contains(".lora_")));
    let (_, reloaded) = harness::run::finished::load(&out.dir).unwrap();
    for (x, y) in out.model.groups().iter().zip(reloaded.groups()) {
        for ((n, a), (_, b)) in x.vars.iter().zip(&y.vars) {
            assert!(a.equal(b), "{n} after reloading the finished run");
        }
    }
    // export writes the merged weights: the folder, loaded as a plain model, embeds as the trained encoder
    let dest = d.path().join("exported");
    let e = harness(&[
        "export",
        "--run",
        out.dir.to_str().unwrap(),
        "--out",
        dest.to_str().unwrap(),
    ]);
    assert!(e.status.success(), "{}", String::from_utf8_lossy(&e.stderr));
    let texts: Vec<String> = ["a fine film", "stocks fell on tuesday"].map(String::from).to_vec();
    let plain = harness::encoder::SentenceEncoder::load(
        dest.to_str().unwrap(),
        &harness::encoder::SentenceOptions {
            pooling: cfg.encoder.pooling,
            normalize: cfg.encoder.normalize,
            max_length: Some(cfg.encoder.max_length),
            ..Default::default()
        },
        tch::Device::Cpu,
    )
    .unwrap();
    let diff = max_abs_diff(
        &plain.encode(&texts, 2, false).unwrap(),
        &out.model.sentence.encode(&texts, 2, false).unwrap(),
    );
    eprintln!("export of the LoRA run vs its trained encoder: max abs diff {diff:e}");
    assert!(diff < 1e-5, "export of a LoRA run vs its trained encoder: {diff:e}");
}

#[test]
fn inspect_shows_loras_trainable_count_and_bad_lora_settings_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 2);
    let out_dir = d.path().join("out");
    let cfg = write_config(&out_dir, &model, LORA, "");
    let out = harness(&["inspect", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    // PEFT: r·(in + out) per adapted Linear, q_lin and v_lin (16 x 16) in 2 layers
    let lora = 4 * 2 * (16 + 16);
    let row = table
        .lines()
        .find(|l| l.starts_with("lora "))
        .unwrap_or_else(|| panic!("{table}"));
    let f: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        f[1..4],
        [lora.to_string().as_str(), &lora.to_string(), "yes"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("layer.0 ") && l.ends_with(" 0  no")),
        "{table}"
    );
    for (set, needle) in [
        (
            "freeze.lora.target=[query]",
            "freeze.lora.target `query` matches no Linear layer",
        ),
        ("freeze.lora.r=0", "freeze.lora.r is 0"),
        ("freeze.lora.r=17", "freeze.lora.r is 17"),
        ("freeze.lora.alpha=-1", "freeze.lora.alpha is -1"),
        ("freeze.lora.dropout=0.1", "freeze.lora.dropout is 0.1"),
        ("freeze.lora.layers=[5]", "freeze.lora.layers: layer 5"),
        (
            "freeze.train=['*.bias']",
            "freeze.lora: cannot be combined with freeze.train",
        ),
        ("freeze.lora.rank=2", "rank"),
    ] {
        assert_user_error(&harness(&["run", cfg.to_str().unwrap(), "--set", set]), needle);
    }
    let c = cfg.to_str().unwrap();
    let weighted = harness(&[
        "run",
        c,
        "--set",
        "train.step=joint",
        "--set",
        "train.mtl.weighting=dwa",
    ]);
    assert_user_error(
        &weighted,
        "freeze.lora: not supported with train.mtl.aggregator, train.mtl.weighting or",
    );
    let e = harness(&["run", cfg.to_str().unwrap(), "--set", "freeze.lora.target=[query]"]);
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("q_lin"),
        "valid names listed"
    );
    assert!(!out_dir.join("t.lock").exists() && !out_dir.join("t.partial").exists());
}
