//! harness's LoRA (src/model/lora.rs) against PEFT 0.13.2 (scripts/reference/lora.py) on a random tiny BERT, a random
//! tiny DistilBERT and all-MiniLM-L6-v2, with the same A and B on both sides (B random, not PEFT's zeros,
//! so the adapters matter): the matched modules, forward outputs, A/B gradients, A/B after 20 AdamW
//! steps, frozen weights bit-unchanged, and per config PEFT's trainable count, A's init bound, B = 0 and
//! the scaling.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use harness::encoder::Encoder;
use harness::encoder::{pool, Pooling};
use harness::encoder::{Architecture, ModelFolder};
use harness::model::lora::{a_init_bound, default_targets, LoraAdapters, LoraConfig};
use harness::train::adamw::{AdamW, AdamWConfig};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

const STEPS: usize = 20;
const BATCH: i64 = 4;
const SEQ: i64 = 10;

struct Case {
    model: String,
    cfg: LoraConfig,
    /// configurations whose trainable count, modules and initialisation are compared
    counts: Vec<LoraConfig>,
    lr: f64,
    weight_decay: f64,
    /// smallest token id drawn (above the special tokens)
    min_id: i64,
}

fn cfg(r: i64, alpha: f64, target: &[&str], layers: Option<Vec<usize>>, use_rslora: bool) -> LoraConfig {
    LoraConfig {
        r,
        alpha,
        target: Some(target.iter().map(|s| s.to_string()).collect()),
        layers,
        use_rslora,
        ..LoraConfig::default()
    }
}

fn job_cfg(c: &LoraConfig, arch: Architecture) -> Value {
    json!({"r": c.r, "alpha": c.alpha, "target": c.target.clone().unwrap_or_else(|| default_targets(arch)),
           "layers": c.layers, "use_rslora": c.use_rslora})
}

/// Random batches (ids, mask with varied lengths, targets) and random A/B values, named as in IN.safetensors.
fn inputs(lora: &LoraAdapters, vocab: i64, min_id: i64, hidden: i64) -> Vec<(String, Tensor)> {
    tch::manual_seed(5);
    let mut out = Vec::new();
    for k in 0..STEPS {
        let lens = Tensor::randint_low(3, SEQ + 1, [BATCH, 1], (Kind::Int64, Device::Cpu));
        let mask = Tensor::arange(SEQ, (Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .lt_tensor(&lens)
            .to_kind(Kind::Int64);
        let ids = Tensor::randint_low(min_id, vocab, [BATCH, SEQ], (Kind::Int64, Device::Cpu)) * &mask;
        out.push((format!("ids{k}"), ids));
        out.push((format!("mask{k}"), mask));
        out.push((
            format!("target{k}"),
            Tensor::randn([BATCH, hidden], (Kind::Float, Device::Cpu)),
        ));
    }
    for (name, t) in lora.trainable() {
        out.push((name, Tensor::randn(t.size(), (Kind::Float, Device::Cpu)) * 0.1));
    }
    out
}

fn loss_on(enc: &Encoder, src: &HashMap<String, Tensor>, k: usize) -> (Tensor, Tensor) {
    let (ids, mask) = (&src[&format!("ids{k}")], &src[&format!("mask{k}")]);
    let hidden = enc.forward_t(ids, mask, false).unwrap();
    let mean = pool(&hidden, mask, Pooling::Mean);
    let loss = mean.mse_loss(&src[&format!("target{k}")], tch::Reduction::Mean);
    (hidden * mask.unsqueeze(-1).to_kind(Kind::Float), loss)
}

fn modules(lora: &LoraAdapters) -> Vec<String> {
    lora.targets().iter().map(|t| t.module.clone()).collect()
}

/// PEFT's trainable count, modules, scaling and initialisation against ours, per configuration.
fn check_counts(enc: &Encoder, arch: Architecture, case: &Case, want: &[Value]) {
    for (c, w) in case.counts.iter().zip(want) {
        let lora = LoraAdapters::attach(&enc.vs, arch, c, 9).unwrap();
        let tag = format!("{}: {:?}", case.model, c);
        assert_eq!(
            lora.trainable_parameters(),
            w["trainable"].as_i64().unwrap(),
            "trainable count, {tag}"
        );
        let peft_modules: Vec<String> = serde_json::from_value(w["modules"].clone()).unwrap();
        assert_eq!(modules(&lora), peft_modules, "{tag}");
        assert!(
            (lora.scaling() - w["scaling"].as_f64().unwrap()).abs() < 1e-12,
            "scaling, {tag}"
        );
        assert_eq!(w["b_max"].as_f64(), Some(0.0), "PEFT's B starts at zero");
        for t in lora.targets() {
            let bound = a_init_bound(t.in_features());
            let peft_bound = w["bound"][&t.module].as_f64().unwrap();
            assert!(
                (bound - peft_bound).abs() < 1e-12,
                "{}: bound {bound} vs PEFT {peft_bound}",
                t.module
            );
            let (ours, theirs) = (
                t.a.abs().max().double_value(&[]),
                w["a_max"][&t.module].as_f64().unwrap(),
            );
            // n = r·in uniform draws: max |A| < bound·(1 - 25/n) has probability about e^-25
            let floor = bound * (1.0 - (25.0 / t.a.numel() as f64).min(1.0));
            assert!(
                ours <= bound && ours > floor,
                "{}: max |A| {ours}, bound {bound}",
                t.module
            );
            assert!(theirs <= bound && theirs > floor, "{}: PEFT max |A| {theirs}", t.module);
            assert_eq!(t.b.abs().max().double_value(&[]), 0.0);
        }
    }
}

fn check(case: Case) {
    let folder = ModelFolder::open(&case.model).unwrap();
    let arch = folder.arch;
    let enc = Encoder::load(&folder, Device::Cpu).unwrap();
    let vocab = folder.shape.vocab_size;
    let lora = LoraAdapters::attach(&enc.vs, arch, &case.cfg, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = inputs(&lora, vocab, case.min_id, enc.hidden_size);
    let (inp, out, out_json, job) = (
        dir.path().join("in.safetensors"),
        dir.path().join("out.safetensors"),
        dir.path().join("out.json"),
        dir.path().join("job.json"),
    );
    Tensor::write_safetensors(&saved, &inp).unwrap();
    let mut j = job_cfg(&case.cfg, arch);
    j["model_dir"] = json!(folder.dir);
    j["prefix"] = json!(if arch == Architecture::DistilBert {
        "distilbert."
    } else {
        ""
    });
    j["lr"] = json!(case.lr);
    j["weight_decay"] = json!(case.weight_decay);
    j["steps"] = json!(STEPS);
    j["counts"] = Value::Array(case.counts.iter().map(|c| job_cfg(c, arch)).collect());
    std::fs::write(&job, j.to_string()).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    run_reference("lora.py", &["run", &p(&job), &p(&inp), &p(&out), &p(&out_json)]);
    let want: HashMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(&out_json).unwrap()).unwrap();
    let src: HashMap<String, Tensor> = saved.into_iter().collect();

    let peft_modules: Vec<String> = serde_json::from_value(meta["modules"].clone()).unwrap();
    assert_eq!(modules(&lora), peft_modules, "{}: adapted modules", case.model);
    lora.load(&src).unwrap();
    let frozen: Vec<(String, Tensor)> = enc
        .vs
        .variables()
        .into_iter()
        .filter(|(n, _)| !lora.targets().iter().any(|t| *n == format!("{}.weight", t.module)))
        .map(|(n, t)| (n, t.copy()))
        .collect();

    // forward
    let (hidden, loss) = loss_on(&enc, &src, 0);
    let mean = pool(&hidden, &src["mask0"], Pooling::Mean);
    let (dh, dm) = (
        max_abs_diff(&hidden, &want["hidden"]),
        max_abs_diff(&mean, &want["mean"]),
    );
    // gradients
    let grads = lora
        .grads_from(&Tensor::run_backward(&[loss], &lora.probes(), false, false))
        .unwrap();
    let grad_none: Vec<String> = serde_json::from_value(meta["grad_none"].clone()).unwrap();
    let (mut dg, mut gmax) = (0f64, 0f64);
    for ((name, _), g) in lora.trainable().iter().zip(&grads) {
        match want.get(&format!("grad.{name}")) {
            Some(w) => {
                dg = dg.max(max_abs_diff(g, w));
                gmax = gmax.max(w.abs().max().double_value(&[]));
            }
            None => assert!(!g.defined() && grad_none.contains(name), "{name}: PEFT has no gradient"),
        }
    }
    // AdamW steps
    let adamw = AdamWConfig {
        weight_decay: case.weight_decay,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(adamw, vec![(case.lr, lora.trainable())]);
    for k in 0..STEPS {
        let (_, loss) = loss_on(&enc, &src, k);
        let grads = lora
            .grads_from(&Tensor::run_backward(&[loss], &lora.probes(), false, false))
            .unwrap();
        opt.step(&grads, 1.0);
        lora.apply();
    }
    let mut df = 0f64;
    let mut moved = 0f64;
    for (name, t) in lora.trainable() {
        df = df.max(max_abs_diff(&t.detach(), &want[&format!("final.{name}")]));
        moved = moved.max(max_abs_diff(&t.detach(), &src[&name]));
    }
    println!(
        "{} ({} targets): hidden {dh:.2e}, mean {dm:.2e}, grads {dg:.2e} (max |grad| {gmax:.2e}), after {STEPS} steps {df:.2e} (A/B moved {moved:.2e})",
        case.model,
        lora.targets().len()
    );
    assert!(
        dh <= 1e-5 && dm <= 1e-5,
        "{}: forward hidden {dh}, mean {dm}",
        case.model
    );
    // relative too: an error of a constant factor (the scaling) must not hide under small gradients
    assert!(
        dg <= 1e-5 && dg <= 1e-4 * gmax,
        "{}: gradients {dg} (max {gmax})",
        case.model
    );
    assert!(df <= 1e-4, "{}: A/B after training {df}", case.model);
    assert!(
        moved > 10.0 * df,
        "{}: training must move A/B ({moved}) well past the tolerance",
        case.model
    );
    let vars = enc.vs.variables();
    for (n, before) in &frozen {
        assert!(vars[n].equal(before), "{n} is frozen but changed");
    }
    for ((n, w), t) in lora.merged().iter().zip(lora.targets()) {
        assert!(
            w.equal(&t.weight.detach()),
            "{n}: merged differs from the applied weight"
        );
    }
    check_counts(&enc, arch, &case, meta["counts"].as_array().unwrap());
}

fn tiny(arch: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join(arch);
    run_reference("lora.py", &["make", arch, d.to_str().unwrap()]);
    (dir, d.to_str().unwrap().to_string())
}

const QV: &[&str] = &["query", "value"];
const QKVD: &[&str] = &["query", "key", "value", "dense"];

fn bert_counts() -> Vec<LoraConfig> {
    let mut v: Vec<LoraConfig> = [1, 8]
        .iter()
        .flat_map(|&r| [cfg(r, 8.0, QV, None, false), cfg(r, 8.0, QKVD, None, false)])
        .collect();
    v.push(cfg(4, 8.0, &["self.key", "output.dense"], Some(vec![1]), true));
    v
}

#[test]
fn tiny_bert_matches_peft() {
    let (_dir, model) = tiny("bert");
    check(Case {
        model,
        // dense includes the pooler, which the loss never reaches: no gradient on either side
        cfg: cfg(8, 16.0, QKVD, None, false),
        counts: bert_counts(),
        lr: 1e-3,
        weight_decay: 0.01,
        min_id: 5,
    });
}

#[test]
fn tiny_distilbert_matches_peft() {
    let (_dir, model) = tiny("distilbert");
    let all = &["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"];
    let counts = [1, 8]
        .iter()
        .flat_map(|&r| {
            [
                cfg(r, 8.0, &["q_lin", "v_lin"], None, false),
                cfg(r, 8.0, all, None, false),
            ]
        })
        .chain([cfg(2, 4.0, &["ffn.lin2"], Some(vec![0, 2]), true)])
        .collect();
    check(Case {
        model,
        cfg: cfg(4, 16.0, all, Some(vec![0, 2]), true),
        counts,
        lr: 1e-3,
        weight_decay: 0.01,
        min_id: 5,
    });
}

#[test]
fn minilm_matches_peft() {
    check(Case {
        model: "all-MiniLM-L6-v2".into(),
        // PEFT's defaults: r 8, alpha 8, BERT's mapped targets query and value
        cfg: LoraConfig::default(),
        counts: bert_counts(),
        lr: 1e-3,
        weight_decay: 0.0,
        min_id: 1000,
    });
}

#[test]
fn bad_config_on_a_real_model_names_valid_values() {
    let folder = ModelFolder::open("all-MiniLM-L6-v2").unwrap();
    let enc = Encoder::load(&folder, Device::Cpu).unwrap();
    let err = |c: LoraConfig| format!("{:#}", LoraAdapters::attach(&enc.vs, folder.arch, &c, 0).err().unwrap());
    let e = err(cfg(8, 8.0, &["q_lin"], None, false));
    assert!(e.contains("`q_lin`") && e.contains("dense, key, query, value"), "{e}");
    let e = err(cfg(8, 8.0, QV, Some(vec![6]), false));
    assert!(e.contains("lora.layers: layer 6") && e.contains("0..=5"), "{e}");
    let e = err(cfg(385, 8.0, QV, None, false));
    assert!(e.contains("lora.r is 385") && e.contains("384"), "{e}");
    let e = err(cfg(0, 8.0, QV, None, false));
    assert!(e.contains("lora.r is 0"), "{e}");
    let e = err(cfg(8, -2.0, QV, None, false));
    assert!(e.contains("lora.alpha is -2"), "{e}");
}
