//! The mtl weightings against LibMTL 1.1.5 (reference venv, scripts/reference/mtl_weightings.py),
//! step by step: 4 epochs x 3 steps of given float32 losses and shared-parameter gradients, both sides
//! updating the learned parameters (UW's and GradNorm's loss_scale) with the same plain SGD. Compared per
//! step: the weights, d loss / d losses (methods that backward a loss), GradNorm's shared gradient, the
//! learned parameter after the update. RLW gets the same normal draws on both sides (LibMTL's
//! distribution stubbed). Also: state() / load_state() mid-run (through JSON) continues bit for bit.

mod common;

use std::collections::HashMap;

use common::*;
use harness::train::mtl::combine;
use harness::train::mtl::weighting::rlw::Rlw;
use harness::train::mtl::weighting::{build, Combined, WeightingKind, WeightingState};
use tch::{Device, Kind, Tensor};

const M: usize = 3;
const N: i64 = 40;
const EPOCHS: usize = 4;
const PER_EPOCH: usize = 3;
const STEPS: usize = EPOCHS * PER_EPOCH;
const LR: f64 = 0.1;
const SEED: u64 = 99;

struct Inputs {
    losses: Tensor,
    jac: Tensor,
    history: Vec<Vec<f64>>,
}

fn inputs() -> Inputs {
    tch::manual_seed(21);
    // losses that fall over the epochs at task-dependent rates, so DWA's ratios differ
    let decay = Tensor::from_slice(&[0.9f32, 0.7, 0.95]);
    let steps = Tensor::arange(STEPS as i64, (Kind::Float, Device::Cpu)).unsqueeze(1);
    let losses = (Tensor::rand([STEPS as i64, M as i64], (Kind::Float, Device::Cpu)) * 0.3 + 1.0)
        * decay.unsqueeze(0).pow(&(steps / PER_EPOCH as f64).floor());
    let jac = Tensor::randn([STEPS as i64, M as i64, N], (Kind::Float, Device::Cpu))
        * Tensor::from_slice(&[1.0f32, 0.2, 3.0]).view([1, M as i64, 1]);
    let l = Vec::<Vec<f64>>::try_from(&losses.to_kind(Kind::Double)).unwrap();
    let history = (0..EPOCHS)
        .map(|e| {
            (0..M)
                .map(|i| (0..PER_EPOCH).map(|k| l[e * PER_EPOCH + k][i]).sum::<f64>() / PER_EPOCH as f64)
                .collect()
        })
        .collect();
    Inputs { losses, jac, history }
}

/// One step as the test observes it.
#[derive(Debug, PartialEq)]
struct Step {
    weights: Vec<f64>,
    dloss: Option<Vec<f64>>,
    shared: Option<Vec<f64>>,
    param: Option<Vec<f64>>,
}

fn vec64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.detach().to_kind(Kind::Double).view([-1])).unwrap()
}

/// Drives a weighting over `steps` as LibMTL's Trainer would, from an optional saved state.
fn drive(
    kind: &WeightingKind,
    inp: &Inputs,
    steps: std::ops::Range<usize>,
    state: Option<&WeightingState>,
) -> (Vec<Step>, WeightingState) {
    let mut w = build(kind, M, Device::Cpu).unwrap();
    if let Some(s) = state {
        w.load_state(s).unwrap();
    }
    let mut out = Vec::new();
    for s in steps {
        if s > 0 && s / PER_EPOCH != (s - 1) / PER_EPOCH {
            w.end_epoch(&inp.history[s / PER_EPOCH - 1]).unwrap();
        }
        let losses = inp.losses.get(s as i64).copy().set_requires_grad(true);
        let jac = inp.jac.get(s as i64);
        let jac_arg = w.needs_jacobian().then_some(&jac);
        let mut step = Step {
            weights: vec![],
            dloss: None,
            shared: None,
            param: None,
        };
        match w.combine(&losses, jac_arg).unwrap() {
            Combined::Loss { loss, weights } => {
                loss.backward();
                step.weights = vec64(&weights);
                step.dloss = Some(vec64(&losses.grad()));
            }
            Combined::Gradient { weights, aux } => {
                aux.backward();
                step.weights = vec64(&weights);
                step.shared = Some(vec64(&combine(&jac, &step.weights)));
            }
        }
        for (_, p) in w.parameters() {
            // as LibMTL's SGD: a parameter without a gradient (GradNorm in epoch 0) is skipped
            if p.grad().defined() {
                tch::no_grad(|| {
                    let mut p = p.shallow_clone();
                    let g = p.grad();
                    p -= g * LR;
                    let _ = p.grad().zero_();
                });
            }
            step.param = Some(vec64(&p));
        }
        out.push(step);
    }
    (out, w.state().unwrap())
}

fn max_diff(a: &[f64], b: &Tensor) -> f64 {
    let b = vec64(b);
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f64::max)
}

#[test]
fn weightings_match_libmtl_step_by_step() {
    let inp = inputs();
    let mut rlw = Rlw::new(SEED, M);
    let z: Vec<f64> = (0..STEPS).flat_map(|_| rlw.draw()).collect();
    let hist: Vec<f64> = inp.history.iter().flatten().cloned().collect();
    let d = tempfile::tempdir().unwrap();
    let saved = vec![
        ("losses".to_string(), inp.losses.copy()),
        ("jac".to_string(), inp.jac.copy()),
        (
            "epoch".to_string(),
            Tensor::from_slice(&(0..STEPS).map(|s| (s / PER_EPOCH) as i64).collect::<Vec<_>>()),
        ),
        (
            "history".to_string(),
            Tensor::from_slice(&hist).view([EPOCHS as i64, M as i64]),
        ),
        ("z".to_string(), Tensor::from_slice(&z).view([STEPS as i64, M as i64])),
        ("lr".to_string(), Tensor::from(LR)),
    ];
    let (inp_path, out_path) = (d.path().join("in.safetensors"), d.path().join("out.safetensors"));
    Tensor::write_safetensors(&saved, &inp_path).unwrap();
    run_reference(
        "mtl_weightings.py",
        &[inp_path.to_str().unwrap(), out_path.to_str().unwrap()],
    );
    let want: HashMap<String, Tensor> = Tensor::read_safetensors(&out_path).unwrap().into_iter().collect();

    let kinds = [
        ("uncertainty", WeightingKind::Uncertainty {}),
        ("dwa", WeightingKind::Dwa { temperature: 2.0 }),
        ("gradnorm", WeightingKind::Gradnorm { alpha: 1.5 }),
        ("gls", WeightingKind::Gls {}),
        ("rlw", WeightingKind::Rlw { seed: SEED }),
    ];
    let mut failures = Vec::new();
    for (name, kind) in &kinds {
        let (steps, _) = drive(kind, &inp, 0..STEPS, None);
        let mut worst = 0.0f64;
        let mut check = |what: &str, s: usize, got: &[f64]| {
            let key = format!("{name}_{what}{s}");
            let reference = want.get(&key).unwrap_or_else(|| panic!("the reference has no {key}"));
            let diff = max_diff(got, reference);
            worst = worst.max(diff);
            // float32 gradients composed over 9 steps: GradNorm's shared gradient (`g`) drifts to ~2e-6 relative
            // (measured 2.4e-7 and 1.55e-6 on two machines' kernels); everything else holds 1e-6
            let tol = if what == "g" { 1e-5 } else { 1e-6 };
            if diff > tol {
                failures.push(format!("{key}: {got:?} vs {reference:?} ({diff:.2e})"));
            }
        };
        for (s, st) in steps.iter().enumerate() {
            // LibMTL's GLS returns L_i / (m prod L), not its gradient: the gradient is compared instead
            if *name != "gls" {
                check("w", s, &st.weights);
            }
            if let Some(dl) = &st.dloss {
                check("dl", s, dl);
            }
            if let Some(g) = &st.shared {
                check("g", s, g);
            }
            if let Some(p) = &st.param {
                check("p", s, p);
            }
        }
        let jacobian_steps = steps.iter().filter(|s| s.shared.is_some()).count();
        println!("{name:12} worst relative diff {worst:.3e} over {STEPS} steps ({jacobian_steps} Jacobian steps)");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // the steps exercised what they are meant to: DWA left ones, GradNorm used J after epoch 0
    assert!(!want.contains_key("gradnorm_g0") && want.contains_key(&format!("gradnorm_g{PER_EPOCH}")));
}

#[test]
fn state_round_trips_mid_run_exactly() {
    let inp = inputs();
    let kinds = [
        WeightingKind::Fixed {
            weights: vec![0.5, 1.0, 2.0],
        },
        WeightingKind::Uncertainty {},
        WeightingKind::Dwa { temperature: 2.0 },
        WeightingKind::Gradnorm { alpha: 1.5 },
        WeightingKind::Gls {},
        WeightingKind::Rlw { seed: 5 },
    ];
    // 7 is mid-epoch, 9 is an epoch boundary (the resumed run calls end_epoch first)
    for cut in [7, 9] {
        for kind in &kinds {
            let (all, end) = drive(kind, &inp, 0..STEPS, None);
            let (first, state) = drive(kind, &inp, 0..cut, None);
            let json = serde_json::to_string(&state).unwrap();
            let restored: WeightingState = serde_json::from_str(&json).unwrap();
            let (rest, end2) = drive(kind, &inp, cut..STEPS, Some(&restored));
            let resumed: Vec<&Step> = first.iter().chain(&rest).collect();
            assert_eq!(all.iter().collect::<Vec<_>>(), resumed, "{kind:?} cut at {cut}");
            assert_eq!(end, end2, "{kind:?}");
        }
    }
}

#[test]
fn states_refuse_the_wrong_method_or_size() {
    let mut uw = build(&WeightingKind::Uncertainty {}, 2, Device::Cpu).unwrap();
    let other = build(&WeightingKind::Uncertainty {}, 3, Device::Cpu)
        .unwrap()
        .state()
        .unwrap();
    assert!(uw.load_state(&other).is_err());
    let dwa = build(&WeightingKind::Dwa { temperature: 2.0 }, 2, Device::Cpu)
        .unwrap()
        .state()
        .unwrap();
    assert!(uw.load_state(&dwa).is_err());
    assert!(build(&WeightingKind::Fixed { weights: vec![1.0] }, 2, Device::Cpu).is_err());
    assert!(build(&WeightingKind::Dwa { temperature: 0.0 }, 2, Device::Cpu).is_err());
    let losses = Tensor::ones([3], (Kind::Float, Device::Cpu));
    assert!(uw.combine(&losses, None).is_err());
    let k: WeightingKind = serde_json::from_str(r#"{"method": "dwa"}"#).unwrap();
    assert_eq!(k, WeightingKind::Dwa { temperature: 2.0 });
    let k: WeightingKind = serde_json::from_str(r#"{"method": "gradnorm"}"#).unwrap();
    assert_eq!(k, WeightingKind::Gradnorm { alpha: 1.5 });
    assert!(serde_json::from_str::<WeightingKind>(r#"{"method": "gls", "alpha": 1}"#).is_err());
}

#[test]
fn rlw_draws_are_standard_normal_and_weights_a_softmax() {
    let mut rlw = Rlw::new(1, 4);
    let z: Vec<f64> = (0..5000).flat_map(|_| rlw.draw()).collect();
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / z.len() as f64;
    assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, var {var}");
    let mut w = build(&WeightingKind::Rlw { seed: 1 }, 4, Device::Cpu).unwrap();
    let Combined::Loss { weights, .. } = w.combine(&Tensor::ones([4], (Kind::Float, Device::Cpu)), None).unwrap()
    else {
        panic!("rlw returns a loss");
    };
    let first = Rlw::new(1, 4).draw();
    let e: Vec<f64> = first.iter().map(|x| x.exp()).collect();
    let sum: f64 = e.iter().sum();
    let want: Vec<f64> = e.iter().map(|x| x / sum).collect();
    assert!(max_diff(&want, &weights) < 1e-7);
}
