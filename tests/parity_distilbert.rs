//! DistilBERT through harness against Hugging Face transformers, on randomly initialised weights
//! (no package ships DistilBERT weights), in a tiny shape and in distilbert-base's real shape.

mod common;

use common::*;
use harness::analysis::StsPairs;
use harness::encoder::Encoder;
use harness::encoder::TextTokenizer;
use harness::encoder::{pool, Pooling};
use harness::encoder::{Architecture, ModelFolder};
use tch::{Device, Kind, Tensor};

fn check(size: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pairs = StsPairs::read(&shared_data("stsb/test.tsv")).unwrap();
    let texts: Vec<String> = pairs.first.iter().step_by(70).cloned().collect();
    let input = dir.path().join("s.txt");
    std::fs::write(&input, texts.join("\n")).unwrap();
    let vocab = ModelFolder::open("all-MiniLM-L6-v2").unwrap().vocab;
    let out = dir.path();
    run_reference(
        "distilbert_random.py",
        &[
            size,
            vocab.to_str().unwrap(),
            input.to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let want_ids = Tensor::read_npy(out.join("ids.npy")).unwrap();
    let want_hidden = Tensor::read_npy(out.join("hidden.npy")).unwrap();
    let want_mean = Tensor::read_npy(out.join("mean.npy")).unwrap();

    for variant in ["plain", "prefixed"] {
        let folder = ModelFolder::open(out.join(variant).to_str().unwrap()).unwrap();
        assert_eq!(folder.arch, Architecture::DistilBert);
        let enc = Encoder::load(&folder, Device::Cpu).unwrap();
        let tok = TextTokenizer::new(&folder, 128).unwrap();
        let seqs = tok.encode_all(&texts);
        let refs: Vec<&[i64]> = seqs.iter().map(Vec::as_slice).collect();
        let batch = tok.batch(&refs, Device::Cpu);
        assert!(batch.ids.equal(&want_ids), "token ids differ from BertTokenizerFast");
        let hidden = tch::no_grad(|| enc.forward_t(&batch.ids, &batch.mask, false).unwrap());
        let masked = &hidden * batch.mask.unsqueeze(-1).to_kind(Kind::Float);
        let dh = max_abs_diff(&masked, &want_hidden);
        let dm = max_abs_diff(&pool(&hidden, &batch.mask, Pooling::Mean), &want_mean);
        println!("distilbert {size}/{variant}: hidden max |diff| {dh:e}, mean-pooled {dm:e}");
        assert!(dh <= 1e-4 && dm <= 1e-4, "{size}/{variant}: hidden {dh}, mean {dm}");
    }
}

#[test]
fn tiny_distilbert_matches_transformers() {
    check("tiny");
}

#[test]
fn base_shaped_distilbert_matches_transformers() {
    check("base");
}
