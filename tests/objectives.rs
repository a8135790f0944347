//! The pair objectives against sentence-transformers 3.3.1's own loss classes (values and gradients with
//! respect to the embeddings, float64 and float32), the correlation metrics against scipy as
//! EmbeddingSimilarityEvaluator calls it, and the retrieval metrics against a direct numpy computation.

mod common;

use std::collections::HashMap;

use common::*;
use harness::model::objective::{retrieval, PairBatch, PairLoss};
use harness::model::{pearson, spearman};
use tch::{Device, Kind, Tensor};

/// Runs `f` right after seeding libtorch's global generator, holding a lock, so that tests running in
/// parallel threads of this binary do not draw from each other's sequence: every input is reproducible.
fn seeded<T>(seed: i64, f: impl FnOnce() -> T) -> T {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    f()
}

struct Case {
    name: &'static str,
    losses: Vec<PairLoss>,
    a: Tensor,
    b: Tensor,
    gold: Option<Tensor>,
    negs: Vec<Tensor>,
}

fn randn(n: i64, d: i64, kind: Kind) -> Tensor {
    Tensor::randn([n, d], (Kind::Double, Device::Cpu)).to_kind(kind)
}

/// Gold scores that are float32 values, so the reference's `labels.float()` changes nothing.
fn gold_from(values: Tensor) -> Tensor {
    values.to_kind(Kind::Float).to_kind(Kind::Double)
}

fn pair_case(name: &'static str, n: i64, d: i64, kind: Kind, gold: Tensor, losses: Vec<PairLoss>) -> Case {
    Case {
        name,
        losses,
        a: randn(n, d, kind),
        b: randn(n, d, kind),
        gold: Some(gold.to_kind(kind)),
        negs: vec![],
    }
}

fn mnrl_case(name: &'static str, n: i64, d: i64, kind: Kind, columns: usize) -> Case {
    Case {
        name,
        losses: vec![PairLoss::Mnrl],
        a: randn(n, d, kind),
        b: randn(n, d, kind),
        gold: None,
        negs: (0..columns).map(|_| randn(n, d, kind)).collect(),
    }
}

fn cases() -> Vec<Case> {
    seeded(20, make_cases)
}

fn make_cases() -> Vec<Case> {
    use PairLoss::*;
    let all = || vec![Cosent, CosineMse, Mnrl];
    let pairs = || vec![Cosent, CosineMse];
    let uniform = |n: i64| gold_from(Tensor::rand([n], (Kind::Double, Device::Cpu)));
    // four distinct values over 16 pairs: many ties
    let tied = |n: i64| gold_from(Tensor::randint(4, [n], (Kind::Int64, Device::Cpu)).to_kind(Kind::Double) / 4.0);
    let mut v = vec![
        pair_case("rand64", 16, 32, Kind::Double, uniform(16), all()),
        pair_case("big64", 64, 384, Kind::Double, uniform(64), all()),
        pair_case("ties64", 16, 8, Kind::Double, tied(16), pairs()),
        pair_case(
            "equal64",
            8,
            8,
            Kind::Double,
            gold_from(Tensor::full([8], 0.6, (Kind::Double, Device::Cpu))),
            pairs(),
        ),
        pair_case("one64", 1, 8, Kind::Double, uniform(1), pairs()),
        pair_case("rand32", 16, 32, Kind::Float, uniform(16), all()),
        pair_case("ties32", 16, 8, Kind::Float, tied(16), all()),
        mnrl_case("hard1_64", 8, 16, Kind::Double, 1),
        mnrl_case("hard2_64", 8, 16, Kind::Double, 2),
        mnrl_case("one_hard64", 1, 16, Kind::Double, 1),
        mnrl_case("hard1_32", 8, 16, Kind::Float, 1),
    ];
    // nearly identical pairs: similarities near 1, where scale 20 makes the exponentials steep
    let mut close = pair_case("close64", 16, 32, Kind::Double, uniform(16), all());
    close.b = &close.a + randn(16, 32, Kind::Double) * 0.01;
    // a zero embedding: the normalisation's epsilon and cosine_similarity's eps decide the result
    let zero = pair_case("zero_row64", 8, 8, Kind::Double, uniform(8), all());
    let _ = zero.a.get(3).zero_();
    v.push(close);
    v.push(zero);
    v
}

struct Ours {
    value: f64,
    grads: Vec<(String, Tensor)>,
}

fn ours(case: &Case, loss: PairLoss) -> Ours {
    let leaf = |t: &Tensor| t.copy().set_requires_grad(true);
    let (a, b) = (leaf(&case.a), leaf(&case.b));
    let negs: Vec<Tensor> = case.negs.iter().map(leaf).collect();
    let batch = PairBatch {
        first: &a,
        second: &b,
        gold: case.gold.as_ref().filter(|_| loss.needs_gold()),
        hard_negatives: if loss == PairLoss::Mnrl { &negs } else { &[] },
    };
    let value = loss.loss(&batch).unwrap();
    assert_eq!(value.size(), Vec::<i64>::new(), "a scalar");
    value.backward();
    let mut grads = vec![("a".to_string(), a.grad()), ("b".to_string(), b.grad())];
    if loss == PairLoss::Mnrl {
        grads.extend(negs.iter().enumerate().map(|(k, n)| (format!("neg{k}"), n.grad())));
    }
    Ours {
        value: value.double_value(&[]),
        grads,
    }
}

#[test]
fn losses_match_sentence_transformers() {
    let cases = cases();
    let d = tempfile::tempdir().unwrap();
    let mut saved: Vec<(String, Tensor)> = vec![];
    let mut manifest = vec![];
    for c in &cases {
        saved.push((format!("{}/a", c.name), c.a.copy()));
        saved.push((format!("{}/b", c.name), c.b.copy()));
        if let Some(g) = &c.gold {
            saved.push((format!("{}/gold", c.name), g.copy()));
        }
        for (k, n) in c.negs.iter().enumerate() {
            saved.push((format!("{}/neg{k}", c.name), n.copy()));
        }
        let losses: Vec<String> = c.losses.iter().map(|l| l.to_string()).collect();
        manifest.push(serde_json::json!({"name": c.name, "losses": losses, "negatives": c.negs.len()}));
    }
    let (inp, cases_json, out) = (
        d.path().join("in.st"),
        d.path().join("cases.json"),
        d.path().join("out.st"),
    );
    Tensor::write_safetensors(&saved, &inp).unwrap();
    std::fs::write(&cases_json, serde_json::to_string(&manifest).unwrap()).unwrap();
    run_reference(
        "st_losses.py",
        &[
            inp.to_str().unwrap(),
            cases_json.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let want: HashMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();

    let mut worst: HashMap<(PairLoss, bool), (f64, f64)> = HashMap::new();
    for c in &cases {
        let f64_case = c.a.kind() == Kind::Double;
        for &loss in &c.losses {
            let got = ours(c, loss);
            let key = format!("{}/{loss}", c.name);
            let ref_value = want[&format!("{key}/value")].double_value(&[0]);
            let dv = (got.value - ref_value).abs();
            let dg = got
                .grads
                .iter()
                .map(|(col, g)| max_abs_diff(g, &want[&format!("{key}/grad_{col}")]))
                .fold(0.0, f64::max);
            // float64: agreement to rounding; float32: relative to the loss's size (logsumexp of ~20s)
            let (tv, tg) = if f64_case {
                (1e-10, 1e-10)
            } else {
                (1e-5 * (1.0 + ref_value.abs()), 1e-5)
            };
            assert!(
                dv <= tv,
                "{key}: value {} vs reference {ref_value} (|diff| {dv:e})",
                got.value
            );
            assert!(dg <= tg, "{key}: gradient max |diff| {dg:e}");
            let w = worst.entry((loss, f64_case)).or_default();
            *w = (w.0.max(dv), w.1.max(dg));
            eprintln!(
                "{key}: value {:.6} ref {ref_value:.6} |dv| {dv:.1e} |dgrad| {dg:.1e}",
                got.value
            );
        }
    }
    for ((loss, f), (dv, dg)) in &worst {
        eprintln!(
            "{loss} {}: max |value diff| {dv:.2e}, max |grad diff| {dg:.2e}",
            if *f { "f64" } else { "f32" }
        );
    }
    // the degenerate cases are what the reference makes them: no ordered pair, loss 0 and no gradient
    for name in ["one64", "equal64"] {
        let c = cases.iter().find(|c| c.name == name).unwrap();
        let got = ours(c, PairLoss::Cosent);
        assert_eq!(got.value, 0.0, "{name}");
        assert!(
            got.grads.iter().all(|(_, g)| g.abs().max().double_value(&[]) == 0.0),
            "{name}"
        );
    }
}

#[test]
fn loss_errors_are_errors_not_panics() {
    let e = |n: i64| seeded(n, || Tensor::randn([n, 4], (Kind::Float, Device::Cpu)));
    let (a1, b1) = (e(1), e(1));
    let err = PairLoss::Mnrl
        .loss(&PairBatch {
            first: &a1,
            second: &b1,
            gold: None,
            hard_negatives: &[],
        })
        .unwrap_err();
    assert!(err.to_string().contains("no negative"), "{err}");
    let (a, b, g) = (e(3), e(3), Tensor::from_slice(&[0.1f32, 0.5, 0.9]));
    let no_gold = PairBatch {
        first: &a,
        second: &b,
        gold: None,
        hard_negatives: &[],
    };
    assert!(PairLoss::Cosent
        .loss(&no_gold)
        .unwrap_err()
        .to_string()
        .contains("gold"));
    assert!(PairLoss::CosineMse
        .loss(&no_gold)
        .unwrap_err()
        .to_string()
        .contains("gold"));
    let negs = [e(3)];
    let with_negs = PairBatch {
        first: &a,
        second: &b,
        gold: Some(&g),
        hard_negatives: &negs,
    };
    assert!(PairLoss::Cosent
        .loss(&with_negs)
        .unwrap_err()
        .to_string()
        .contains("hard negatives"));
    let b4 = e(4);
    let mismatch = PairBatch {
        first: &a,
        second: &b4,
        gold: Some(&g),
        hard_negatives: &[],
    };
    for l in [PairLoss::Cosent, PairLoss::CosineMse, PairLoss::Mnrl] {
        assert!(l.loss(&mismatch).unwrap_err().to_string().contains("shape"), "{l}");
    }
    let g2 = Tensor::from_slice(&[0.1f32, 0.5]);
    let short_gold = PairBatch {
        first: &a,
        second: &b,
        gold: Some(&g2),
        hard_negatives: &[],
    };
    assert!(PairLoss::Cosent
        .loss(&short_gold)
        .unwrap_err()
        .to_string()
        .contains("gold scores must be [3]"));
    let ints = Tensor::ones([3, 4], (Kind::Int64, Device::Cpu));
    let int_batch = PairBatch {
        first: &ints,
        second: &ints,
        gold: Some(&g),
        hard_negatives: &[],
    };
    assert!(PairLoss::CosineMse
        .loss(&int_batch)
        .unwrap_err()
        .to_string()
        .contains("floating"));
}

#[test]
fn pair_loss_config_names() {
    for (name, l) in [
        ("cosent", PairLoss::Cosent),
        ("cosine_mse", PairLoss::CosineMse),
        ("mnrl", PairLoss::Mnrl),
    ] {
        assert_eq!(serde_yaml::from_str::<PairLoss>(name).unwrap(), l);
        assert_eq!(serde_yaml::to_string(&l).unwrap().trim(), name);
        assert_eq!(l.to_string(), name);
    }
    assert!(serde_yaml::from_str::<PairLoss>("cosine").is_err());
}

/// Values rounded to `step`, so that many are equal (STS-B's gold comes in steps of 0.2, and so on).
fn rounded(v: &Tensor, step: f64) -> Vec<f64> {
    Vec::<f64>::try_from((v / step).round() * step).unwrap()
}

#[test]
fn pearson_and_spearman_match_scipy() {
    seeded(5, correlation_cases_and_check);
}

fn correlation_cases_and_check() {
    let r = |n: i64| Tensor::rand([n], (Kind::Double, Device::Cpu));
    let mut cases: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![];
    let g = r(1000) * 5.0;
    let noisy = (&g / 5.0 + r(1000) * 0.4).clamp(0.0, 1.0);
    cases.push(("sts_like", Vec::try_from(&noisy).unwrap(), rounded(&g, 0.2)));
    cases.push(("ties_both", rounded(&noisy, 0.05), rounded(&g, 0.5)));
    cases.push(("heavy_ties", rounded(&r(200), 0.5), rounded(&r(200), 0.34)));
    cases.push(("two", vec![0.3, 0.9], vec![1.0, 0.0]));
    cases.push(("three_tied", vec![0.5, 0.5, 0.7], vec![1.0, 2.0, 2.0]));
    let x = Vec::<f64>::try_from(r(100)).unwrap();
    cases.push(("monotone", x.clone(), x.iter().map(|v| 3.0 * v + 1.0).collect()));
    cases.push(("reversed", x.clone(), x.iter().map(|v| -2.0 * v).collect()));
    cases.push((
        "offset",
        x.iter().map(|v| 1e6 + v).collect(),
        x.iter().map(|v| v * v).collect(),
    ));
    cases.push(("constant_gold", x[..10].to_vec(), vec![2.5; 10]));
    // constant, but its computed mean is not the value itself (0.1 * 10 / 10 != 0.1)
    cases.push(("constant_inexact", x[..10].to_vec(), vec![0.1; 10]));
    cases.push(("constant_cos", vec![0.3; 7], x[..7].to_vec()));
    let d = tempfile::tempdir().unwrap();
    let json: Vec<_> = cases
        .iter()
        .map(|(n, c, g)| serde_json::json!({"name": n, "cos": c, "gold": g}))
        .collect();
    let (inp, out) = (d.path().join("in.json"), d.path().join("out.json"));
    std::fs::write(&inp, serde_json::to_string(&json).unwrap()).unwrap();
    run_reference("scipy_corr.py", &[inp.to_str().unwrap(), out.to_str().unwrap()]);
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let mut worst = (0f64, 0f64);
    for (name, cos, gold) in &cases {
        // as crate::sts calls them: cosine first, gold second
        let (p, s) = (pearson(cos, gold), spearman(cos, gold));
        for (what, got, w) in [
            ("pearson", p, &want[name]["pearson"]),
            ("spearman", s, &want[name]["spearman"]),
        ] {
            match w.as_f64() {
                None => assert!(got.is_nan(), "{name} {what}: scipy gives NaN, harness {got}"),
                Some(w) => {
                    let diff = (got - w).abs();
                    assert!(
                        diff <= 1e-12,
                        "{name} {what}: harness {got} scipy {w} (|diff| {diff:e})"
                    );
                    assert!((-1.0..=1.0).contains(&got), "{name} {what}: {got} outside [-1, 1]");
                    if what == "pearson" {
                        worst.0 = worst.0.max(diff);
                    } else {
                        worst.1 = worst.1.max(diff);
                    }
                }
            }
        }
    }
    eprintln!("vs scipy: max |diff| pearson {:.2e}, spearman {:.2e}", worst.0, worst.1);
}

fn retrieval_cases() -> Vec<(&'static str, Tensor, Tensor)> {
    seeded(9, make_retrieval_cases)
}

fn make_retrieval_cases() -> Vec<(&'static str, Tensor, Tensor)> {
    let r = |n: i64, d: i64| Tensor::randn([n, d], (Kind::Double, Device::Cpu));
    // entries of ±0.5 in 4 dimensions: unit rows, every cosine an exact multiple of 0.25, so ties are exact
    let signs = |n: i64| Tensor::randint(2, [n, 4], (Kind::Int64, Device::Cpu)).to_kind(Kind::Double) - 0.5;
    let pos = signs(40);
    // a quarter of the anchors are their own positive (cosine 1, tied by any duplicate positive)
    let anch = signs(40);
    anch.narrow(0, 0, 10).copy_(&pos.narrow(0, 0, 10));
    let noisy_pos = r(60, 16);
    let noisy_anch = &noisy_pos + r(60, 16) * 0.8;
    let big_pos = r(2500, 8);
    let big_anch = &big_pos + r(2500, 8) * 0.5;
    let same = Tensor::ones([5, 3], (Kind::Double, Device::Cpu));
    vec![
        ("random", noisy_anch, noisy_pos),
        ("exact_ties", anch, pos),
        ("blocks", big_anch, big_pos),
        ("collapsed", same.copy(), same),
    ]
}

#[test]
fn retrieval_matches_direct_computation_and_ties_count_against() {
    let cases = retrieval_cases();
    let d = tempfile::tempdir().unwrap();
    let mut saved = vec![];
    for (name, a, p) in &cases {
        saved.push((format!("{name}/anchors"), a.copy()));
        saved.push((format!("{name}/positives"), p.copy()));
    }
    let (inp, out) = (d.path().join("in.st"), d.path().join("out.json"));
    Tensor::write_safetensors(&saved, &inp).unwrap();
    run_reference("retrieval.py", &[inp.to_str().unwrap(), out.to_str().unwrap()]);
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for (name, a, p) in &cases {
        let ranks = retrieval::ranks(a, p).unwrap();
        let want_ranks: Vec<i64> = serde_json::from_value(want[name]["ranks"].clone()).unwrap();
        assert_eq!(ranks, want_ranks, "{name}: ranks");
        let got = retrieval::evaluate(a, p).unwrap();
        let (acc, mrr) = (
            want[name]["accuracy_at_1"].as_f64().unwrap(),
            want[name]["mrr"].as_f64().unwrap(),
        );
        assert!(
            (got.accuracy_at_1 - acc).abs() <= 1e-12 && (got.mrr - mrr).abs() <= 1e-12,
            "{name}: {got:?}"
        );
        eprintln!(
            "{name}: acc@1 {:.4} MRR {:.4} (reference {acc:.4} {mrr:.4})",
            got.accuracy_at_1, got.mrr
        );
    }
    // the tie rule by hand: a collapsed encoder ranks every positive last
    let same = Tensor::ones([5, 3], (Kind::Double, Device::Cpu));
    let c = retrieval::evaluate(&same, &same).unwrap();
    assert_eq!((c.accuracy_at_1, c.mrr), (0.0, 0.2));
    // the exact-ties case has ties, and they did change ranks (some anchor equal to its positive is not rank 1)
    let (_, a, p) = &cases[1];
    assert!(retrieval::ranks(a, p).unwrap()[..10].iter().any(|&r| r > 1));
    // float32 input is read in float64: the same ranks as the float64 copy of its values
    let (_, a, p) = &cases[0];
    let (a32, p32) = (a.to_kind(Kind::Float), p.to_kind(Kind::Float));
    let (a64, p64) = (a32.to_kind(Kind::Double), p32.to_kind(Kind::Double));
    assert_eq!(
        retrieval::ranks(&a32, &p32).unwrap(),
        retrieval::ranks(&a64, &p64).unwrap()
    );
}

#[test]
fn retrieval_errors() {
    let one = Tensor::ones([1, 3], (Kind::Double, Device::Cpu));
    assert!(retrieval::evaluate(&one, &one)
        .unwrap_err()
        .to_string()
        .contains("at least two"));
    let nan = Tensor::ones([3, 3], (Kind::Double, Device::Cpu));
    let _ = nan.get(1).get(1).fill_(f64::NAN);
    let ok = Tensor::ones([3, 3], (Kind::Double, Device::Cpu));
    assert!(retrieval::evaluate(&nan, &ok)
        .unwrap_err()
        .to_string()
        .contains("not finite"));
    assert!(retrieval::evaluate(&ok, &nan)
        .unwrap_err()
        .to_string()
        .contains("not finite"));
    let wide = Tensor::ones([3, 4], (Kind::Double, Device::Cpu));
    assert!(retrieval::evaluate(&ok, &wide).is_err());
}

#[test]
fn half_precision_embeddings_are_computed_in_float32() {
    let (a, b) = seeded(4, || (randn(6, 8, Kind::BFloat16), randn(6, 8, Kind::BFloat16)));
    let gold = Tensor::from_slice(&[0.1f32, 0.5, 0.9, 0.3, 0.3, 0.7]);
    let (a32, b32) = (a.to_kind(Kind::Float), b.to_kind(Kind::Float));
    for loss in [PairLoss::Cosent, PairLoss::CosineMse, PairLoss::Mnrl] {
        let batch = |first, second| PairBatch {
            first,
            second,
            gold: Some(&gold),
            hard_negatives: &[],
        };
        let half = loss.loss(&batch(&a, &b)).unwrap();
        let full = loss.loss(&batch(&a32, &b32)).unwrap();
        assert_eq!(half.kind(), Kind::Float, "{loss}");
        assert_eq!(
            half.double_value(&[]),
            full.double_value(&[]),
            "{loss}: the upcast is the only difference"
        );
    }
}
