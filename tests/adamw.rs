//! The harness's AdamW against `torch.optim.AdamW` (reference venv) on the same saved gradients: 100
//! steps, two learning rates under the warmup/decay schedule, weight decay, and a parameter that gets
//! no gradient every third step (skipped, as torch skips `grad is None`).

mod common;

use common::*;
use harness::train::adamw::{AdamW, AdamWConfig};
use harness::train::lr_factor;
use tch::{Kind, Tensor};

#[test]
fn matches_torch_adamw_over_100_steps() {
    let steps = 100;
    tch::manual_seed(11);
    let shapes: [&[i64]; 3] = [&[4, 3], &[5], &[2, 2]];
    let lrs = [1e-3, 1e-3, 5e-2];
    let init: Vec<Tensor> = shapes
        .iter()
        .map(|s| Tensor::randn(*s, (Kind::Float, tch::Device::Cpu)))
        .collect();
    let grads: Vec<Tensor> = shapes
        .iter()
        .map(|s| Tensor::randn([&[steps as i64][..], s].concat(), (Kind::Float, tch::Device::Cpu)))
        .collect();
    let has = |i: usize, s: usize| !(i == 2 && s.is_multiple_of(3));
    let factors: Vec<f64> = (0..steps).map(|s| lr_factor(s, 10, steps)).collect();

    let d = tempfile::tempdir().unwrap();
    let mut saved: Vec<(String, Tensor)> = vec![
        ("factor".into(), Tensor::from_slice(&factors).to_kind(Kind::Float)),
        ("wd".into(), Tensor::from(0.01f32)),
    ];
    for i in 0..3 {
        let mask: Vec<f32> = (0..steps).map(|s| if has(i, s) { 1.0 } else { 0.0 }).collect();
        saved.push((format!("p{i}"), init[i].copy()));
        saved.push((format!("g{i}"), grads[i].copy()));
        saved.push((format!("m{i}"), Tensor::from_slice(&mask)));
        saved.push((format!("lr{i}"), Tensor::from(lrs[i] as f32)));
    }
    let (inp, out) = (d.path().join("in.safetensors"), d.path().join("out.safetensors"));
    Tensor::write_safetensors(&saved, &inp).unwrap();
    run_reference("adamw_steps.py", &[inp.to_str().unwrap(), out.to_str().unwrap()]);

    let params: Vec<Tensor> = init.iter().map(|t| t.copy().set_requires_grad(true)).collect();
    let named = |r: std::ops::Range<usize>| r.map(|i| (format!("p{i}"), params[i].shallow_clone())).collect();
    let cfg = AdamWConfig {
        weight_decay: 0.01,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(cfg, vec![(1e-3, named(0..2)), (5e-2, named(2..3))]);
    for (s, f) in factors.iter().enumerate() {
        let g: Vec<Tensor> = (0..3)
            .map(|i| {
                if has(i, s) {
                    grads[i].get(s as i64)
                } else {
                    Tensor::new()
                }
            })
            .collect();
        opt.step(&g, *f);
    }

    let want: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    let (state, steps_taken) = opt.state();
    let state: std::collections::HashMap<String, Tensor> = state.into_iter().collect();
    let mut worst = 0f64;
    for i in 0..3 {
        worst = worst.max(max_abs_diff(&params[i].detach(), &want[&format!("p{i}")]));
        worst = worst.max(max_abs_diff(
            &state[&format!("p{i}.exp_avg")],
            &want[&format!("exp_avg{i}")],
        ));
        worst = worst.max(max_abs_diff(
            &state[&format!("p{i}.exp_avg_sq")],
            &want[&format!("exp_avg_sq{i}")],
        ));
        assert_eq!(
            steps_taken[&format!("p{i}")] as f64,
            want[&format!("step{i}")].double_value(&[0]),
            "steps of p{i}"
        );
    }
    eprintln!("AdamW vs torch.optim.AdamW after {steps} steps: max |diff| {worst:.2e}");
    assert!(worst <= 1e-6, "max |diff| {worst}");
    // the skipped parameter really took fewer steps
    assert_eq!(steps_taken["p2"], 66);
}
