//! all-MiniLM-L6-v2 through harness against sentence-transformers on the same weights.

mod common;

use common::*;
use harness::analysis::StsPairs;
use harness::encoder::{SentenceEncoder, SentenceOptions};
use tch::{Device, Tensor};

/// 240 STS-B test sentences across every genre, plus one longer than the 256-token limit.
fn sentences() -> Vec<String> {
    let pairs = StsPairs::read(&shared_data("stsb/test.tsv")).unwrap();
    let mut s: Vec<String> = (0..pairs.first.len())
        .step_by(pairs.first.len() / 120)
        .take(120)
        .flat_map(|i| [pairs.first[i].clone(), pairs.second[i].clone()])
        .collect();
    s.push(pairs.first[..60].join(" "));
    s
}

#[test]
fn embeddings_match_sentence_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let texts = sentences();
    assert!(texts.len() > 200);
    let input = dir.path().join("s.txt");
    std::fs::write(&input, texts.join("\n")).unwrap();
    let prefix = dir.path().join("ref");
    let model = SentenceEncoder::load("all-MiniLM-L6-v2", &SentenceOptions::default(), Device::Cpu).unwrap();
    run_reference(
        "st_embed.py",
        &[
            model.folder.dir.to_str().unwrap(),
            input.to_str().unwrap(),
            prefix.to_str().unwrap(),
        ],
    );
    assert!(
        model.normalize,
        "modules.json lists Normalize, so the default must normalise"
    );
    let ours = model.encode(&texts, 32, false).unwrap();
    let theirs = Tensor::read_npy(format!("{}.normalized.npy", prefix.display())).unwrap();
    let d = max_abs_diff(&ours, &theirs);
    println!("normalised: max |diff| = {d:e} over {} sentences", texts.len());
    assert!(d <= 1e-4, "normalised max |diff| = {d}");

    let raw_opts = SentenceOptions {
        normalize: Some(false),
        ..Default::default()
    };
    let raw = SentenceEncoder::load("all-MiniLM-L6-v2", &raw_opts, Device::Cpu).unwrap();
    let ours = raw.encode(&texts, 7, false).unwrap();
    let theirs = Tensor::read_npy(format!("{}.raw.npy", prefix.display())).unwrap();
    let d = max_abs_diff(&ours, &theirs);
    println!("raw: max |diff| = {d:e}");
    assert!(d <= 1e-4, "raw max |diff| = {d}");
}

#[test]
fn eval_sts_reproduces_sentence_transformers_figure() {
    let out = harness(&[
        "eval-sts",
        "--model",
        "all-MiniLM-L6-v2",
        "--data",
        "../shared/data/stsb/test.tsv",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let spearman = v["spearman"].as_f64().unwrap();
    // sentence-transformers 3.3.1's EmbeddingSimilarityEvaluator on this file: 82.03
    assert!((spearman - 82.03).abs() <= 0.01, "Spearman {spearman}");
    assert_eq!(v["pairs"].as_u64(), Some(1379));
}

#[test]
fn embed_prints_json_in_input_order() {
    let out = harness(&[
        "embed",
        "--model",
        "all-MiniLM-L6-v2",
        "--batch-size",
        "1",
        "a b c d e f",
        "hi",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["text"], "a b c d e f");
    assert_eq!(v[1]["text"], "hi");
    assert_eq!(v[1]["embedding"].as_array().unwrap().len(), 384);
}

#[test]
fn bf16_stays_close_to_float32() {
    let texts: Vec<String> = sentences().into_iter().take(64).collect();
    let f32_model = SentenceEncoder::load("all-MiniLM-L6-v2", &SentenceOptions::default(), Device::Cpu).unwrap();
    let bf16_opts = SentenceOptions {
        precision: harness::runtime::amp::Precision::Bf16,
        ..Default::default()
    };
    let bf16_model = SentenceEncoder::load("all-MiniLM-L6-v2", &bf16_opts, Device::Cpu).unwrap();
    let (a, b) = (
        f32_model.encode(&texts, 32, false).unwrap(),
        bf16_model.encode(&texts, 32, false).unwrap(),
    );
    assert_eq!(b.kind(), tch::Kind::Float);
    // both are unit vectors: the smallest row-wise cosine similarity
    let min_cos = (&a * &b)
        .sum_dim_intlist([1i64].as_slice(), false, tch::Kind::Double)
        .min()
        .double_value(&[]);
    assert!(min_cos > 0.99, "min cosine {min_cos}");
    assert!(max_abs_diff(&a, &b) > 0.0, "bf16 must actually change the arithmetic");
}
