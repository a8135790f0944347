//! Linear CKA against the google-research representation_similarity notebook's two formulations
//! (`feature_space_linear_cka` and `cka(gram_linear(x), gram_linear(y))`, in numpy), its invariances,
//! CKA(X, X) = 1, the n < d regime, and masked mean pooling of token states against numpy.

mod common;

use common::*;
use harness::analysis::cka::{linear_cka, mean_pool_tokens};
use harness::encoder::{pool, Pooling};
use tch::{Device, Kind, Tensor};

/// Runs `f` right after seeding libtorch's global generator, holding a lock, so that tests running in
/// parallel threads of this binary do not draw from each other's sequence: every input is reproducible.
fn seeded<T>(seed: i64, f: impl FnOnce() -> T) -> T {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _lock = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    f()
}

fn randn(n: i64, d: i64) -> Tensor {
    Tensor::randn([n, d], (Kind::Double, Device::Cpu))
}

/// A random d x d orthogonal matrix (Q of a QR decomposition).
fn orthogonal(d: i64) -> Tensor {
    Tensor::linalg_qr(&randn(d, d), "reduced").0
}

fn cases() -> Vec<(&'static str, Tensor, Tensor)> {
    seeded(2019, make_cases)
}

fn make_cases() -> Vec<(&'static str, Tensor, Tensor)> {
    let x = randn(100, 20);
    let related = x.mm(&randn(20, 30)) + randn(100, 30) * 2.0;
    let wide = randn(10, 50);
    let wide_related = wide.mm(&randn(50, 64)) + randn(10, 64);
    let offset = randn(40, 8) * 1e-3 + 1e3;
    let layer_like = randn(200, 384).to_kind(Kind::Float);
    let layer_next = (&layer_like + randn(200, 384).to_kind(Kind::Float) * 0.5).to_kind(Kind::Float);
    vec![
        ("independent", x.copy(), randn(100, 30)),
        ("related", x.copy(), related),
        ("n_lt_d", wide.copy(), wide_related),
        ("n_lt_d_independent", wide, randn(10, 70)),
        ("offset_small_variance", offset.copy(), offset.square()),
        ("float32_layers", layer_like, layer_next),
        ("one_column", randn(30, 1), randn(30, 5)),
    ]
}

#[test]
fn matches_the_notebook_both_formulations() {
    let cases = cases();
    let d = tempfile::tempdir().unwrap();
    let mut saved = vec![];
    for (name, x, y) in &cases {
        // the reference reads float64 copies of the same values
        saved.push((format!("cka/{name}/x"), x.to_kind(Kind::Double)));
        saved.push((format!("cka/{name}/y"), y.to_kind(Kind::Double)));
    }
    let (inp, out) = (d.path().join("in.st"), d.path().join("out.json"));
    Tensor::write_safetensors(&saved, &inp).unwrap();
    run_reference("cka.py", &[inp.to_str().unwrap(), out.to_str().unwrap()]);
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let mut worst = 0f64;
    for (name, x, y) in &cases {
        let got = linear_cka(x, y).unwrap();
        for form in ["feature", "gram"] {
            let w = want["cka"][name][form].as_f64().unwrap();
            let diff = (got - w).abs();
            // the notebook's Gram form centres the Gram matrix of the *uncentred* data; with means 1e6
            // times the spread it loses ~1e-7 (the harness centres the data first, as the feature form does)
            let tol = if *name == "offset_small_variance" && form == "gram" {
                1e-6
            } else {
                1e-12
            };
            assert!(
                diff <= tol,
                "{name} vs {form}: harness {got} notebook {w} (|diff| {diff:e})"
            );
            if tol == 1e-12 {
                worst = worst.max(diff);
            } else {
                eprintln!("{name}: the notebook's Gram form is off by {diff:.1e} (its uncentred Gram matrix)");
            }
        }
        assert!((0.0..=1.0).contains(&got), "{name}: {got}");
        eprintln!("{name}: CKA {got:.6}");
    }
    eprintln!("vs the notebook: max |diff| {worst:.2e}");
    // the cases do exercise the range: unrelated small n is not near 0, related is high, independent is low
    let by = |n: &str| {
        linear_cka(
            &cases.iter().find(|c| c.0 == n).unwrap().1,
            &cases.iter().find(|c| c.0 == n).unwrap().2,
        )
    };
    assert!(by("related").unwrap() > 0.5 && by("independent").unwrap() < 0.3);
}

#[test]
fn identity_and_invariances() {
    seeded(7, check_identity_and_invariances);
}

fn check_identity_and_invariances() {
    // both code paths: n > d (feature space) and n < d (Gram matrices)
    for (n, d1, d2) in [(100i64, 16i64, 24i64), (12, 64, 40)] {
        let x = randn(n, d1);
        let y = x.mm(&randn(d1, d2)) + randn(n, d2);
        for (what, v) in [
            ("CKA(X, X)", linear_cka(&x, &x).unwrap()),
            (
                "CKA(X, 3.7 X Q)",
                linear_cka(&x, &(x.mm(&orthogonal(d1)) * 3.7)).unwrap(),
            ),
            ("CKA(X, X + c)", linear_cka(&x, &(&x + 123.0)).unwrap()),
        ] {
            assert!(
                (v - 1.0).abs() <= 1e-12,
                "n={n} d={d1}: {what} = {v} (|1 - v| {:e})",
                (v - 1.0).abs()
            );
        }
        let base = linear_cka(&x, &y).unwrap();
        let moved = linear_cka(&(x.mm(&orthogonal(d1)) * 0.01), &(y.mm(&orthogonal(d2)) * 50.0 - 7.0)).unwrap();
        assert!((base - moved).abs() <= 1e-12, "n={n}: {base} vs transformed {moved}");
        // symmetric
        assert!((base - linear_cka(&y, &x).unwrap()).abs() <= 1e-12);
        assert!(base < 1.0 - 1e-3, "a noisy transform is not similarity 1: {base}");
    }
}

#[test]
fn cka_errors() {
    let x = seeded(1, || randn(10, 4));
    assert!(linear_cka(&x, &x.narrow(0, 0, 9))
        .unwrap_err()
        .to_string()
        .contains("same ones"));
    assert!(linear_cka(&x.narrow(0, 0, 1), &x.narrow(0, 1, 1))
        .unwrap_err()
        .to_string()
        .contains("at least two"));
    let constant = Tensor::ones([10, 3], (Kind::Double, Device::Cpu)) * 4.0;
    assert!(linear_cka(&x, &constant)
        .unwrap_err()
        .to_string()
        .contains("no variance"));
    assert!(linear_cka(&x, &Tensor::ones([10], (Kind::Double, Device::Cpu))).is_err());
    let nan = x.copy();
    let _ = nan.get(2).get(1).fill_(f64::NAN);
    assert!(linear_cka(&x, &nan).is_err());
}

#[test]
fn mean_pooling_over_the_mask() {
    let hidden = seeded(3, || Tensor::randn([4, 7, 5], (Kind::Float, Device::Cpu)));
    let lengths = [7i64, 3, 1, 5];
    let mask = Tensor::stack(
        &lengths
            .iter()
            .map(|&l| Tensor::arange(7, (Kind::Int64, Device::Cpu)).lt(l).to_kind(Kind::Int64))
            .collect::<Vec<_>>(),
        0,
    );
    let d = tempfile::tempdir().unwrap();
    let (inp, out) = (d.path().join("in.st"), d.path().join("out.json"));
    Tensor::write_safetensors(&[("pool/p/hidden", &hidden), ("pool/p/mask", &mask)], &inp).unwrap();
    run_reference("cka.py", &[inp.to_str().unwrap(), out.to_str().unwrap()]);
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let want: Vec<Vec<f64>> = serde_json::from_value(want["pool"]["p"].clone()).unwrap();
    let want = Tensor::from_slice(&want.concat()).view([4, 5]);
    let got = mean_pool_tokens(&hidden, &mask).unwrap();
    assert_eq!(got.kind(), Kind::Double);
    let diff = max_abs_diff(&got, &want);
    eprintln!("mean pooling vs numpy: max |diff| {diff:.2e}");
    assert!(diff <= 1e-12, "{diff}");
    // padding content does not matter, and it agrees with the encoder's own (float32) mean pooling
    let repadded = hidden.where_self(&mask.unsqueeze(-1).ne(0), &Tensor::full_like(&hidden, 1e4));
    assert!(max_abs_diff(&mean_pool_tokens(&repadded, &mask).unwrap(), &got) <= 1e-12);
    assert!(max_abs_diff(&pool(&hidden, &mask, Pooling::Mean).to_kind(Kind::Double), &got) <= 1e-6);
    // a sentence without tokens is an error, as are mismatched shapes
    let empty = mask.copy();
    let _ = empty.get(2).zero_();
    assert!(mean_pool_tokens(&hidden, &empty)
        .unwrap_err()
        .to_string()
        .contains("no unmasked token"));
    assert!(mean_pool_tokens(&hidden, &mask.narrow(1, 0, 6)).is_err());
}
