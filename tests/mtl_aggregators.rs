//! The mtl aggregators against torchjd 0.18.0 (reference venv, scripts/reference/mtl_aggregators.py) on
//! Jacobians generated here: random m in 2..=5 with n = 1000, identical rows, opposite rows, a zero row,
//! all rows below the 1e-4 trace threshold, one tiny row among normal ones, and a conflicting pair.
//! Tolerance (absolute, times max(1, max |reference|)): 1e-4 for the solver-based methods (upgrad,
//! dualproj, mgda, cagrad), 1e-6 otherwise. Also: m = 1 returns exactly the row, config names parse,
//! bad input is an error.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::*;
use harness::train::mtl::{build, AggregatorKind};
use tch::{Device, Kind, Tensor};

/// PCGrad draws from libtorch's global generator: tests that touch it run one at a time.
static RNG: Mutex<()> = Mutex::new(());

const METHODS: [&str; 10] = [
    "sum",
    "mean",
    "pcgrad",
    "mgda",
    "imtl_g",
    "cagrad",
    "upgrad",
    "dualproj",
    "aligned_mtl",
    "config",
];

fn tolerance(method: &str) -> f64 {
    match method {
        "upgrad" | "dualproj" | "mgda" | "cagrad" => 1e-4,
        _ => 1e-6,
    }
}

fn randn(m: i64, n: i64) -> Tensor {
    Tensor::randn([m, n], (Kind::Double, Device::Cpu))
}

/// The named Jacobians of the parity test (float64).
fn cases() -> Vec<(String, Tensor)> {
    let n = 1000;
    let mut out = Vec::new();
    for (i, m) in [2, 3, 4, 5, 2, 3, 4, 5].into_iter().enumerate() {
        // a shared component makes the rows partly aligned, as task gradients usually are
        let shared = randn(1, n) * (i as f64 * 0.3);
        out.push((format!("random{i}_m{m}"), randn(m, n) + shared));
    }
    let (g, h) = (randn(1, n), randn(1, n));
    out.push(("identical".into(), Tensor::cat(&[&g, &g], 0)));
    out.push(("identical_plus".into(), Tensor::cat(&[&g, &g, &h], 0)));
    out.push(("opposite".into(), Tensor::cat(&[&g, &(-&g)], 0)));
    out.push(("opposite_plus".into(), Tensor::cat(&[&g, &(-&g), &h], 0)));
    out.push((
        "zero_row".into(),
        Tensor::cat(&[&g, &Tensor::zeros([1, n], (Kind::Double, Device::Cpu)), &h], 0),
    ));
    // every row of norm ~3e-4: trace(G) ~ 3e-7, below torchjd's norm_eps 1e-4
    out.push(("all_tiny".into(), randn(3, n) * 1e-5));
    out.push(("one_tiny".into(), Tensor::cat(&[&g, &(randn(1, n) * 1e-7), &h], 0)));
    out.push(("conflict".into(), Tensor::cat(&[&g, &(&g * -0.8 + &h * 0.3)], 0)));
    out.push((
        "scaled".into(),
        Tensor::cat(&[&(&g * 10.0), &(&h * 0.1), &(&g + &h)], 0),
    ));
    out
}

#[test]
fn aggregators_match_torchjd() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(18);
    let cases = cases();
    let d = tempfile::tempdir().unwrap();
    let mut saved = Vec::new();
    for (k, (_, j)) in cases.iter().enumerate() {
        saved.push((format!("j{k}"), j.copy()));
        saved.push((format!("seed{k}"), Tensor::from(1000 + k as i64)));
    }
    let (inp, out) = (d.path().join("in.safetensors"), d.path().join("out.safetensors"));
    Tensor::write_safetensors(&saved, &inp).unwrap();
    run_reference("mtl_aggregators.py", &[inp.to_str().unwrap(), out.to_str().unwrap()]);
    let want: HashMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();

    let mut failures = Vec::new();
    for method in METHODS {
        let agg = build(&AggregatorKind::from_name(method).unwrap()).unwrap();
        let mut worst = (0.0f64, String::new());
        for (k, (name, j)) in cases.iter().enumerate() {
            tch::manual_seed(1000 + k as i64);
            let got = agg.aggregate(j).unwrap();
            let reference = &want[&format!("{method}_{k}")];
            let scale = reference.abs().max().double_value(&[]).max(1.0);
            let diff = max_abs_diff(&got, reference) / scale;
            if diff > worst.0 || worst.1.is_empty() {
                worst = (diff, name.clone());
            }
            if diff > tolerance(method) {
                failures.push(format!("{method} on {name}: scaled max diff {diff:.3e}"));
            }
        }
        println!("{method:12} worst scaled max diff {:.3e} ({})", worst.0, worst.1);
    }
    // CAGrad against CLARABEL run to a 1e-12 gap: the remaining difference above is CLARABEL's 1e-8 stop
    let cagrad = build(&AggregatorKind::from_name("cagrad").unwrap()).unwrap();
    let mut worst = 0.0f64;
    for (k, (name, j)) in cases.iter().enumerate() {
        let reference = &want[&format!("cagrad_tight_{k}")];
        let diff =
            max_abs_diff(&cagrad.aggregate(j).unwrap(), reference) / reference.abs().max().double_value(&[]).max(1.0);
        worst = worst.max(diff);
        if diff > 1e-6 {
            failures.push(format!(
                "cagrad vs tight CLARABEL on {name}: scaled max diff {diff:.3e}"
            ));
        }
    }
    println!("cagrad vs CLARABEL at 1e-12: worst scaled max diff {worst:.3e}");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn float32_jacobians_aggregate_in_their_dtype() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(5);
    let j64 = randn(3, 500);
    let j32 = j64.to_kind(Kind::Float);
    for method in METHODS {
        let agg = build(&AggregatorKind::from_name(method).unwrap()).unwrap();
        tch::manual_seed(77);
        let a = agg.aggregate(&j32).unwrap();
        tch::manual_seed(77);
        let b = agg.aggregate(&j32.to_kind(Kind::Double)).unwrap();
        assert_eq!(a.kind(), Kind::Float, "{method}");
        assert_eq!(a.size(), [500], "{method}");
        let diff = max_abs_diff(&a.to_kind(Kind::Double), &b);
        assert!(diff < 1e-4, "{method}: float32 vs float64 differ by {diff}");
    }
}

#[test]
fn one_task_returns_exactly_the_row() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(3);
    let rows = [
        randn(1, 300),
        Tensor::zeros([1, 300], (Kind::Double, Device::Cpu)),
        randn(1, 300) * 1e-9,
        randn(1, 300).to_kind(Kind::Float),
    ];
    for method in METHODS {
        let agg = build(&AggregatorKind::from_name(method).unwrap()).unwrap();
        for row in &rows {
            let got = agg.aggregate(row).unwrap();
            assert_eq!(got.kind(), row.kind());
            assert!(got.equal(&row.get(0)), "{method}: m = 1 must return the row itself");
        }
    }
}

#[test]
fn kinds_parse_with_torchjd_defaults() {
    let k: AggregatorKind = serde_json::from_str(r#"{"method": "cagrad"}"#).unwrap();
    assert_eq!(k, AggregatorKind::Cagrad { c: 0.5 });
    let k: AggregatorKind = serde_json::from_str(r#"{"method": "cagrad", "c": 0.25}"#).unwrap();
    assert_eq!(k, AggregatorKind::Cagrad { c: 0.25 });
    let k: AggregatorKind = serde_json::from_str(r#"{"method": "mgda"}"#).unwrap();
    assert_eq!(
        k,
        AggregatorKind::Mgda {
            epsilon: 1e-3,
            max_iters: 100
        }
    );
    for method in METHODS {
        let k: AggregatorKind = serde_json::from_str(&format!(r#"{{"method": "{method}"}}"#)).unwrap();
        assert_eq!(k.name(), method);
        assert_eq!(AggregatorKind::from_name(method).unwrap(), k);
    }
    assert!(serde_json::from_str::<AggregatorKind>(r#"{"method": "nash_mtl"}"#).is_err());
    assert!(serde_json::from_str::<AggregatorKind>(r#"{"method": "upgrad", "c": 1}"#).is_err());
    assert!(AggregatorKind::from_name("pc_grad").is_err());
    assert!(build(&AggregatorKind::Cagrad { c: -1.0 }).is_err());
    assert!(build(&AggregatorKind::Mgda {
        epsilon: 0.0,
        max_iters: 5
    })
    .is_err());
}

#[test]
fn bad_jacobians_are_errors_not_panics() {
    let agg = build(&AggregatorKind::Upgrad {}).unwrap();
    assert!(agg.aggregate(&Tensor::ones([5], (Kind::Float, Device::Cpu))).is_err());
    assert!(agg
        .aggregate(&Tensor::ones([0, 5], (Kind::Float, Device::Cpu)))
        .is_err());
    assert!(agg
        .aggregate(&Tensor::ones([2, 5], (Kind::Int64, Device::Cpu)))
        .is_err());
    let nan = Tensor::ones([2, 5], (Kind::Float, Device::Cpu));
    let _ = nan.get(1).get(2).fill_(f64::NAN);
    for method in [
        "upgrad",
        "mgda",
        "cagrad",
        "imtl_g",
        "pcgrad",
        "aligned_mtl",
        "dualproj",
    ] {
        let agg = build(&AggregatorKind::from_name(method).unwrap()).unwrap();
        assert!(agg.aggregate(&nan).is_err(), "{method} accepted a NaN Jacobian");
    }
}

#[test]
fn conflict_pairs_match_a_direct_computation() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(9);
    let g = randn(1, 200);
    let rows = Tensor::cat(
        &[
            randn(1, 200),
            -&g * 2.0,
            g.shallow_clone(),
            Tensor::zeros([1, 200], (Kind::Double, Device::Cpu)),
        ],
        0,
    )
    .to_kind(Kind::Float);
    let stats = harness::train::mtl::conflict::pairwise(&rows).unwrap();
    assert_eq!(stats.len(), 6);
    let r = rows.to_kind(Kind::Double);
    for st in &stats {
        let (a, b) = (r.get(st.task_i as i64), r.get(st.task_j as i64));
        let (na, nb) = (a.norm().double_value(&[]), b.norm().double_value(&[]));
        let cos = (&a * &b).sum(Kind::Double).double_value(&[]) / (na * nb);
        match st.cosine {
            Some(c) => assert!((c - cos).abs() < 1e-12, "{st:?} vs {cos}"),
            None => assert!(na == 0.0 || nb == 0.0, "{st:?}"),
        }
        match st.norm_ratio {
            Some(q) => assert!((q - na / nb).abs() < 1e-12 * (na / nb).max(1.0), "{st:?}"),
            None => assert_eq!(nb, 0.0),
        }
    }
    // rows 1 and 2 are exactly opposite, with norm ratio 2
    let opp = stats.iter().find(|s| s.task_i == 1 && s.task_j == 2).unwrap();
    assert!((opp.cosine.unwrap() + 1.0).abs() < 1e-12 && (opp.norm_ratio.unwrap() - 2.0).abs() < 1e-12);
    let zero = stats.iter().find(|s| s.task_i == 0 && s.task_j == 3).unwrap();
    assert_eq!((zero.cosine, zero.norm_ratio), (None, None));
}
