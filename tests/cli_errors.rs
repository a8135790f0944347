//! Bad input to the encoder commands: one clear error line naming the file, exit 2, no panic.

mod common;

use std::path::Path;

use common::*;

fn embed(model: &Path) -> std::process::Output {
    harness(&["embed", "--model", model.to_str().unwrap(), "hello"])
}

#[test]
fn a_valid_tiny_folder_embeds() {
    let d = tempfile::tempdir().unwrap();
    let out = embed(&tiny_folder(d.path()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn missing_folder() {
    assert_user_error(
        &harness(&["embed", "--model", "/nonexistent/model", "hi"]),
        "/nonexistent/model",
    );
}

#[test]
fn missing_config() {
    let d = tempfile::tempdir().unwrap();
    let dir = tiny_folder(d.path());
    std::fs::remove_file(dir.join("config.json")).unwrap();
    assert_user_error(&embed(&dir), "config.json: missing");
}

#[test]
fn unknown_model_type() {
    let d = tempfile::tempdir().unwrap();
    let dir = tiny_folder(d.path());
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    assert_user_error(&embed(&dir), "model_type `gpt2` is not supported");
}

#[test]
fn missing_vocab() {
    let d = tempfile::tempdir().unwrap();
    let dir = tiny_folder(d.path());
    std::fs::remove_file(dir.join("vocab.txt")).unwrap();
    assert_user_error(&embed(&dir), "vocab.txt: missing");
}

#[test]
fn weight_of_wrong_shape() {
    let d = tempfile::tempdir().unwrap();
    let dir = tiny_folder(d.path());
    std::fs::write(
        dir.join("config.json"),
        TINY_DISTILBERT.replace("\"max_position_embeddings\": 64", "\"max_position_embeddings\": 32"),
    )
    .unwrap();
    assert_user_error(
        &embed(&dir),
        "weight `distilbert.embeddings.position_embeddings.weight` has shape [64, 16]",
    );
}

#[test]
fn missing_weights_are_named() {
    let d = tempfile::tempdir().unwrap();
    let dir = tiny_folder(d.path());
    std::fs::write(
        dir.join("config.json"),
        TINY_DISTILBERT.replace("\"n_layers\": 1", "\"n_layers\": 2"),
    )
    .unwrap();
    assert_user_error(&embed(&dir), "`n_layers` is 2, but ");
    let out = embed(&dir);
    assert!(String::from_utf8_lossy(&out.stderr).contains("has 1 layer (no weight `distilbert.transformer.layer.1.*`)"));
}

#[test]
fn empty_input_file() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    assert_user_error(
        &harness(&["embed", "--input", empty.to_str().unwrap()]),
        "empty.txt: empty input",
    );
}

#[test]
fn malformed_sts_file() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("sts.tsv");
    std::fs::write(&f, "sentence1\tsentence2\tscore\na\tb\t4.0\nc\td\tfive\n").unwrap();
    assert_user_error(
        &harness(&["eval-sts", "--data", f.to_str().unwrap()]),
        "sts.tsv:3: column `score`",
    );
}
