//! `harness export` against sentence-transformers 3.3.1 and transformers 4.46.3
//! (scripts/reference/export_check.py): a tiny full fine-tuning run (64 examples, 1 epoch) is exported;
//! `SentenceTransformer(DIR).encode`, `harness embed --model DIR` and the run's own encoder (rebuilt in
//! process from its checkpoint) agree within 1e-5; `AutoModel.from_pretrained(DIR)` reports no missing,
//! unexpected or mismatched keys; the heads file holds the run's heads bit for bit; a non-empty folder, a
//! file, a missing, failed or diverged run are refused in one line with exit 2 and nothing written.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;
use serde_json::Value;
use tch::Tensor;

const SENTENCES: [&str; 5] = [
    "A man is playing a guitar.",
    "the film is a gripping, beautifully shot thriller",
    "Stocks fell sharply on Wall Street after the report.",
    "x",
    "An unusually long sentence, with punctuation; numbers like 1,234 and UPPER case words, to use more tokens.",
];

fn embed(dir: &Path) -> Tensor {
    let mut args = vec!["embed", "--model", dir.to_str().unwrap(), "--device", "cpu"];
    args.extend(SENTENCES);
    let out = harness(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let items: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<Vec<f32>> = items
        .iter()
        .map(|i| {
            i["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let dim = rows[0].len() as i64;
    Tensor::from_slice(&rows.concat()).reshape([rows.len() as i64, dim])
}

fn export(run: &Path, out: &Path) -> std::process::Output {
    harness(&["export", "--run", run.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

#[test]
fn export_matches_sentence_transformers_and_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.yaml");
    std::fs::write(&cfg, config_text(&tmp.path().join("runs"), "  scenario: none", "")).unwrap();
    let out = harness(&[
        "run",
        cfg.to_str().unwrap(),
        "--set",
        "tasks.0.limit_train=32",
        "--set",
        "tasks.1.limit_train=32",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = tmp.path().join("runs/t");
    let dir = tmp.path().join("exported");
    let out = export(&run, &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in [
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "tokenizer_config.json",
        "modules.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(dir.join("1_Pooling/config.json").is_file() && dir.join("2_Normalize").is_dir());

    let (_, model) = harness::run::finished::load(&run).unwrap();
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let own = model.sentence.encode(&texts, 2, false).unwrap();
    let ours = embed(&dir);
    std::fs::write(tmp.path().join("s.txt"), SENTENCES.join("\n") + "\n").unwrap();
    let prefix = tmp.path().join("ref");
    run_reference(
        "export_check.py",
        &[
            dir.to_str().unwrap(),
            tmp.path().join("s.txt").to_str().unwrap(),
            prefix.to_str().unwrap(),
        ],
    );
    let st = Tensor::read_npy(format!("{}.st.npy", prefix.display())).unwrap();
    let (d_st, d_embed) = (max_abs_diff(&st, &own), max_abs_diff(&ours, &own));
    eprintln!("max |ST - run| {d_st:.3e}, max |embed - run| {d_embed:.3e}");
    assert!(d_st < 1e-5 && d_embed < 1e-5, "ST {d_st}, embed {d_embed}");
    // the run trained: its encoder is not the base model's any more
    let base = harness(&["embed", "--model", "all-MiniLM-L6-v2", "--device", "cpu", SENTENCES[0]]);
    let base: Vec<Value> = serde_json::from_slice(&base.stdout).unwrap();
    let b0: Vec<f32> = base[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert!(
        max_abs_diff(&Tensor::from_slice(&b0), &own.get(0)) > 1e-4,
        "export equals the base model"
    );

    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.loading.json", prefix.display())).unwrap()).unwrap();
    for k in ["missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"] {
        assert_eq!(info[k].as_array().map(Vec::len), Some(0), "{k}: {info}");
    }
    assert_eq!(info["class"], "BertModel");
    assert_eq!(
        info["modules"],
        serde_json::json!(["Transformer", "Pooling", "Normalize"])
    );

    // the heads, bit for bit, under <task>.<variable>, described in heads.json
    let ckpt: HashMap<String, Tensor> = Tensor::read_safetensors(run.join("checkpoint.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    let heads: HashMap<String, Tensor> = Tensor::read_safetensors(dir.join("heads.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(heads.len(), 4);
    for task in ["sentiment", "topic"] {
        for v in ["out.weight", "out.bias"] {
            assert!(
                heads[&format!("{task}.{v}")].equal(&ckpt[&format!("head:{task}/{v}")]),
                "{task}.{v}"
            );
        }
    }
    let hj: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("heads.json")).unwrap()).unwrap();
    assert_eq!(
        hj["tasks"][1]["labels"],
        serde_json::json!(["World", "Sports", "Business", "Sci/Tech"])
    );

    // refusals: one line, exit 2, nothing written
    assert_user_error(&export(&run, &dir), "is not empty");
    let file = tmp.path().join("s.txt");
    assert_user_error(&export(&run, &file), "not a folder");
    let target = tmp.path().join("never");
    assert_user_error(
        &export(&tmp.path().join("runs/nothing"), &target),
        "is not a finished run",
    );
    std::fs::create_dir_all(tmp.path().join("runs/bad.partial")).unwrap();
    std::fs::write(tmp.path().join("runs/bad.partial/error.txt"), "boom").unwrap();
    assert_user_error(&export(&tmp.path().join("runs/bad"), &target), "is not a finished run");
    let diverged = tmp.path().join("runs/div");
    std::fs::create_dir_all(&diverged).unwrap();
    for f in ["config.yaml", "checkpoint.safetensors", "metrics.csv"] {
        std::fs::copy(run.join(f), diverged.join(f)).unwrap();
    }
    let mut summary: Value = serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert!(summary["final"]["sentiment"]["loss"].is_number());
    summary["final"]["sentiment"]["loss"] = Value::Null;
    std::fs::write(diverged.join("summary.json"), summary.to_string()).unwrap();
    assert_user_error(&export(&diverged, &target), "diverged");
    assert!(!target.exists(), "a refused export wrote {}", target.display());
}
