//! Model folders as users have them: hub ids resolved from a Hugging Face cache laid out as huggingface_hub
//! lays it out (symlinked blobs, refs, snapshots), BERT checkpoints without a pooler, sharded safetensors,
//! and one-line refusals for what cannot be loaded. The models are random-weight ones made by transformers
//! (scripts/reference/hf_cache.py), which also checks that huggingface_hub reads the cache back.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use common::*;
use harness::encoder::ModelFolder;
use harness::encoder::{SentenceEncoder, SentenceOptions};
use tch::{Device, Tensor};

const SENTENCES: [&str; 3] = [
    "A man is playing a guitar.",
    "Someone plays music.",
    "The striker scored twice in the final minutes of the match.",
];
const CANONICAL: &str = "models--distilbert--distilbert-base-uncased";
const LEGACY: &str = "models--distilbert-base-uncased";

/// The fixture, made once per test binary.
fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("models-fixture");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("s.txt");
        std::fs::write(&input, SENTENCES.join("\n")).unwrap();
        let vocab = ModelFolder::open("all-MiniLM-L6-v2").unwrap().vocab;
        let out = dir.join("out");
        run_reference(
            "hf_cache.py",
            &[vocab.to_str().unwrap(), input.to_str().unwrap(), out.to_str().unwrap()],
        );
        out
    })
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap()).unwrap()
}

/// Copies a tree, keeping symlinks as symlinks (the cache's are relative, so they stay valid).
fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
        } else if ft.is_dir() {
            copy_tree(&from, &to);
        } else {
            std::fs::copy(&from, &to).unwrap();
        }
    }
}

/// A private copy of the fixture's hub cache, its DistilBERT under `folder`.
fn cache_with(root: &Path, folder: &str) -> PathBuf {
    let cache = root.join("hub");
    copy_tree(&fixture().join("hub").join(CANONICAL), &cache.join(folder));
    cache
}

/// A private copy of one of the fixture's model folders.
fn folder_copy(root: &Path, name: &str) -> PathBuf {
    let dst = root.join(name);
    copy_tree(&fixture().join(name), &dst);
    dst
}

fn with_cache(cache: &Path, args: &[&str]) -> Output {
    harness_env(args, &[("HF_HUB_CACHE", Some(cache))])
}

fn embed_in(cache: &Path, model: &str) -> Output {
    let mut args = vec!["embed", "--model", model];
    args.extend(SENTENCES);
    with_cache(cache, &args)
}

fn ok(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn commit() -> String {
    expected()["commit"].as_str().unwrap().to_string()
}

#[test]
fn hub_ids_resolve_from_the_cache_as_huggingface_hub_does() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_with(d.path(), CANONICAL);
    let snapshot = cache.join(CANONICAL).join("snapshots").join(commit());
    let want = ok(&embed_in(&cache, snapshot.to_str().unwrap()));
    assert_eq!(want[0]["embedding"].as_array().unwrap().len(), 32);
    let at_commit = format!("distilbert-base-uncased@{}", commit());
    for id in [
        "distilbert-base-uncased",
        "distilbert/distilbert-base-uncased",
        "distilbert-base-uncased@main",
        at_commit.as_str(),
    ] {
        let out = embed_in(&cache, id);
        assert_eq!(ok(&out), want, "{id}");
        assert!(stderr(&out).is_empty(), "{id}: {}", stderr(&out));
    }

    // `harness models` finds it where huggingface_hub's snapshot_download(local_files_only) does
    let out = with_cache(&cache, &["models", "--json"]);
    let list = ok(&out);
    let cached: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["source"] == "hub cache")
        .collect();
    assert_eq!(cached.len(), 1, "{list}");
    let m = cached[0];
    let exp = expected();
    let hub_snapshot = exp["snapshot"]
        .as_str()
        .unwrap()
        .replace(fixture().join("hub").to_str().unwrap(), cache.to_str().unwrap());
    assert_eq!(m["name"], "distilbert/distilbert-base-uncased");
    assert_eq!(m["path"].as_str().unwrap(), hub_snapshot);
    assert_eq!(m["revision"].as_str().unwrap(), commit());
    assert_eq!(m["model_type"], "distilbert");
    assert_eq!(m["params"], exp["distilbert_params"]);
    // sizes follow the symlinks into blobs/
    assert!(m["size_bytes"].as_u64().unwrap() > 4 * exp["distilbert_params"].as_u64().unwrap());
    let table = String::from_utf8_lossy(&with_cache(&cache, &["models"]).stdout).into_owned();
    assert!(
        table.contains("distilbert/distilbert-base-uncased") && table.contains(&commit()[..12]),
        "{table}"
    );
}

#[test]
fn legacy_folder_name_serves_both_ids() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_with(d.path(), LEGACY);
    let a = ok(&embed_in(&cache, "distilbert-base-uncased"));
    let b = ok(&embed_in(&cache, "distilbert/distilbert-base-uncased"));
    assert_eq!(a, b);
    // an unrelated fine-tune with the same short name is not taken for it
    let out = embed_in(&cache, "someone/distilbert-base-uncased");
    assert_user_error(&out, "models--someone--distilbert-base-uncased");
}

#[test]
fn cache_location_follows_hf_home_and_home() {
    let d = tempfile::tempdir().unwrap();
    let hf_home = d.path().join("hf");
    cache_with(&hf_home, CANONICAL);
    fn clear<'a>(extra: (&'static str, Option<&'a Path>)) -> Vec<(&'static str, Option<&'a Path>)> {
        let mut env: Vec<(&str, Option<&Path>)> = vec![
            ("HF_HUB_CACHE", None),
            ("HUGGINGFACE_HUB_CACHE", None),
            ("HF_HOME", None),
            ("XDG_CACHE_HOME", None),
        ];
        env.push(extra);
        env
    }
    let out = harness_env(
        &["embed", "--model", "distilbert-base-uncased", "hi"],
        &clear(("HF_HOME", Some(&hf_home))),
    );
    assert!(out.status.success(), "HF_HOME: {}", stderr(&out));
    let home = d.path().join("home");
    cache_with(&home.join(".cache/huggingface"), CANONICAL);
    let out = harness_env(
        &["embed", "--model", "distilbert-base-uncased", "hi"],
        &clear(("HOME", Some(&home))),
    );
    assert!(out.status.success(), "HOME: {}", stderr(&out));
}

#[test]
fn without_refs_a_single_snapshot_is_used_with_a_note_and_several_are_an_error() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_with(d.path(), CANONICAL);
    let repo = cache.join(CANONICAL);
    let want = ok(&embed_in(&cache, "distilbert-base-uncased"));
    std::fs::remove_file(repo.join("refs/main")).unwrap();
    let out = embed_in(&cache, "distilbert-base-uncased");
    assert_eq!(ok(&out), want);
    let err = stderr(&out);
    assert!(
        err.starts_with("note: ")
            && err.contains("no refs/main")
            && err.contains(&commit())
            && err.lines().count() == 1,
        "{err}"
    );

    let other = "0123456789abcdef0123456789abcdef01234567";
    copy_tree(
        &repo.join("snapshots").join(commit()),
        &repo.join("snapshots").join(other),
    );
    let out = embed_in(&cache, "distilbert-base-uncased");
    assert_user_error(&out, "no refs/main and 2 snapshots");
    let err = stderr(&out);
    assert!(
        err.contains(&commit()) && err.contains(other) && err.contains("distilbert-base-uncased@<revision>"),
        "{err}"
    );
    assert_eq!(ok(&embed_in(&cache, &format!("distilbert-base-uncased@{other}"))), want);
}

#[test]
fn revisions_that_are_not_in_the_cache_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_with(d.path(), CANONICAL);
    assert_user_error(
        &embed_in(&cache, "distilbert-base-uncased@v9.9"),
        "revision `v9.9` is not in the cache (refs: main; snapshots: ",
    );
    // a revision cannot walk out of the repo folder
    for hostile in [
        "distilbert-base-uncased@../../x",
        "distilbert-base-uncased@",
        "distilbert-base-uncased@/etc",
    ] {
        assert_user_error(&embed_in(&cache, hostile), "is not a ref name or a commit hash");
    }
    // refs/main naming a snapshot that is not there
    std::fs::write(cache.join(CANONICAL).join("refs/main"), "f".repeat(40)).unwrap();
    assert_user_error(
        &embed_in(&cache, "distilbert-base-uncased"),
        "missing, though the cache's refs name it",
    );
}

#[test]
fn an_interrupted_download_is_named() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_with(d.path(), CANONICAL);
    let snap = cache.join(CANONICAL).join("snapshots").join(commit());
    let blob = snap.join("model.safetensors").canonicalize().unwrap();
    std::fs::remove_file(blob).unwrap();
    assert_user_error(
        &embed_in(&cache, "distilbert-base-uncased"),
        "model.safetensors: a broken symlink",
    );
}

#[test]
fn a_model_found_nowhere_says_where_it_looked_and_how_to_get_it() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("hub");
    std::fs::create_dir(&empty).unwrap();
    let out = embed_in(&empty, "distilbert-base-uncased");
    assert_user_error(&out, "huggingface-cli download distilbert-base-uncased");
    let err = stderr(&out);
    assert!(
        err.contains(empty.to_str().unwrap()) && err.contains(LEGACY) && err.contains(CANONICAL),
        "{err}"
    );
    assert_user_error(
        &embed_in(&d.path().join("nope"), "bert-base-uncased"),
        "which does not exist",
    );
}

#[test]
fn a_local_folder_wins_over_the_cache() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_with(d.path(), CANONICAL);
    let work = d.path().join("work");
    std::fs::create_dir(&work).unwrap();
    copy_tree(&fixture().join("bert_full"), &work.join("distilbert-base-uncased"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harness"));
    let out = cmd
        .args(["embed", "--model", "distilbert-base-uncased", SENTENCES[0]])
        .current_dir(&work)
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    let local = ok(&out);
    let cached = ok(&embed_in(&cache, "distilbert-base-uncased"));
    assert_ne!(
        local[0]["embedding"], cached[0]["embedding"],
        "the folder in the working directory comes first"
    );
}

#[test]
fn configs_name_hub_ids_and_the_shipped_distilbert_configs_resolve() {
    let d = tempfile::tempdir().unwrap();
    let cache = cache_with(d.path(), LEGACY);
    let out = with_cache(&cache, &["inspect", "configs/distilbert/unfreeze_top2.yaml"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    // the fixture's DistilBERT has 2 layers; the top two train
    assert!(table.contains("encoder distilbert-base-uncased"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("layer.1") && l.ends_with("yes")),
        "{table}"
    );
    assert!(!table.contains("pooler"), "DistilBERT has no pooler group: {table}");
}

#[test]
fn bert_without_pooler_gives_the_full_models_embeddings() {
    let f = fixture();
    let empty = tempfile::tempdir().unwrap();
    let full = embed_in(empty.path(), f.join("bert_full").to_str().unwrap());
    let nopool = embed_in(empty.path(), f.join("bert_nopooler").to_str().unwrap());
    assert_eq!(ok(&full), ok(&nopool));
    assert!(stderr(&full).is_empty(), "{}", stderr(&full));
    let notes: Vec<String> = stderr(&nopool).lines().map(String::from).collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("note: ") && notes[0].contains("no pooler weights"),
        "{notes:?}"
    );

    // and both are transformers' BertModel
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    let want = Tensor::read_npy(f.join("bert_mean.npy")).unwrap();
    for name in ["bert_full", "bert_nopooler", "bert_sharded"] {
        let m =
            SentenceEncoder::load(f.join(name).to_str().unwrap(), &SentenceOptions::default(), Device::Cpu).unwrap();
        assert_eq!(m.encoder.pooler_absent, name == "bert_nopooler");
        let diff = max_abs_diff(&m.encode(&texts, 2, false).unwrap(), &want);
        println!("{name}: max |diff| vs transformers {diff:e}");
        assert!(diff <= 1e-5, "{name}: {diff}");
    }
}

#[test]
fn inspect_and_summary_mark_the_absent_pooler() {
    let f = fixture();
    let d = tempfile::tempdir().unwrap();
    let exp = expected();
    let mut seen = Vec::new();
    for (name, absent) in [("bert_nopooler", true), ("bert_full", false)] {
        let out_dir = d.path().join(name);
        let cfg = d.path().join(format!("{name}.yaml"));
        let text = config_text(&out_dir, "  scenario: backbone", "")
            + &format!("encoder:\n  model: {}\n", f.join(name).display());
        std::fs::write(&cfg, text).unwrap();
        let out = harness(&["inspect", cfg.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        let pooler = table
            .lines()
            .find(|l| l.starts_with("pooler"))
            .unwrap_or_default()
            .to_string();
        assert_eq!(pooler.contains("absent"), absent, "{table}");

        let out = harness(&["run", cfg.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out_dir.join("t/summary.json")).unwrap()).unwrap();
        let g = &summary["groups"]["pooler"];
        if absent {
            assert_eq!(g["absent"], true, "{g}");
            assert_eq!(g["params"], 0, "{g}");
        } else {
            assert!(g.get("absent").is_none(), "written only when true: {g}");
            assert_eq!(g["params"], exp["pooler_params"]);
        }
        let pred = harness(&["predict", "--run", out_dir.join("t").to_str().unwrap(), "a fine film"]);
        assert!(pred.status.success(), "{}", stderr(&pred));
        seen.push(summary["params_total"].as_i64().unwrap());
    }
    // the absent pooler is not counted
    assert_eq!(seen[1] - seen[0], exp["pooler_params"].as_i64().unwrap());
}

#[test]
fn sharded_safetensors_load_and_hostile_indexes_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("hub");
    let full = ok(&embed_in(&empty, fixture().join("bert_full").to_str().unwrap()));
    let dir = folder_copy(d.path(), "bert_sharded");
    assert_eq!(ok(&embed_in(&empty, dir.to_str().unwrap())), full);

    let index_path = dir.join("model.safetensors.index.json");
    let index = std::fs::read_to_string(&index_path).unwrap();
    let shard = "model-00002-of-00002.safetensors";
    std::fs::write(&index_path, index.replace(shard, "../../etc/passwd")).unwrap();
    assert_user_error(
        &embed_in(&empty, dir.to_str().unwrap()),
        "shard `../../etc/passwd` is not a file name inside the folder",
    );
    std::fs::write(&index_path, &index).unwrap();
    std::fs::remove_file(dir.join(shard)).unwrap();
    assert_user_error(&embed_in(&empty, dir.to_str().unwrap()), "missing (listed in");
    std::fs::write(&index_path, "{\"weight_map\": 3}").unwrap();
    assert_user_error(&embed_in(&empty, dir.to_str().unwrap()), "no `weight_map` object");
}

#[test]
fn a_pickle_is_refused_never_unpickled() {
    let d = tempfile::tempdir().unwrap();
    let dir = folder_copy(d.path(), "bert_bin");
    // a pickle that would leave a trace if anything unpickled it is not needed: nothing reads the file
    let before: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let out = embed_in(d.path(), dir.to_str().unwrap());
    assert_user_error(&out, "pytorch_model.bin: a pickled PyTorch checkpoint");
    let err = stderr(&out);
    assert!(err.contains("save_file(") && err.contains("weights_only=True"), "{err}");
    let after: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before.len(), after.len());
}

#[test]
fn tokenizer_json_without_vocab_txt_names_what_is_missing() {
    let d = tempfile::tempdir().unwrap();
    let dir = folder_copy(d.path(), "bert_full");
    std::fs::remove_file(dir.join("vocab.txt")).unwrap();
    let out = embed_in(d.path(), dir.to_str().unwrap());
    assert_user_error(&out, "vocab.txt: missing");
    assert!(
        stderr(&out).contains("the folder has tokenizer.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unsupported_model_types_name_what_is_supported() {
    let d = tempfile::tempdir().unwrap();
    let dir = folder_copy(d.path(), "bert_full");
    for t in ["roberta", "mpnet", "xlm-roberta"] {
        std::fs::write(
            dir.join("config.json"),
            format!("{{\"model_type\": \"{t}\", \"hidden_size\": 32}}"),
        )
        .unwrap();
        let out = embed_in(d.path(), dir.to_str().unwrap());
        assert_user_error(&out, &format!("model_type `{t}` is not supported"));
        assert!(stderr(&out).contains("`bert` and `distilbert`"), "{}", stderr(&out));
    }
}

#[test]
fn config_values_that_would_break_the_forward_pass_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("hub");
    let bert = folder_copy(d.path(), "bert_full");
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bert.join("config.json")).unwrap()).unwrap();
    let cases: &[(&str, serde_json::Value, &str)] = &[
        (
            "num_attention_heads",
            5.into(),
            "`hidden_size` 32 is not divisible by `num_attention_heads` 5",
        ),
        (
            "num_hidden_layers",
            0.into(),
            "`num_hidden_layers` is 0, expected a positive integer",
        ),
        (
            "hidden_size",
            "big".into(),
            "`hidden_size` is \"big\", expected a positive integer",
        ),
        ("hidden_size", (-32).into(), "`hidden_size` is -32"),
        ("type_vocab_size", 0.into(), "`type_vocab_size` is 0"),
        (
            "num_attention_heads",
            serde_json::Value::Null,
            "`num_attention_heads` is null",
        ),
        (
            "vocab_size",
            1000.into(),
            "vocab.txt: 30522 tokens, but config.json's vocab_size is 1000",
        ),
        ("max_position_embeddings", 1e12.into(), "expected a positive integer"),
    ];
    for (key, value, needle) in cases {
        let mut cfg = base.clone();
        cfg[*key] = value.clone();
        std::fs::write(bert.join("config.json"), cfg.to_string()).unwrap();
        assert_user_error(&embed_in(&empty, bert.to_str().unwrap()), needle);
    }
    let mut cfg = base.clone();
    cfg.as_object_mut().unwrap().remove("num_hidden_layers");
    std::fs::write(bert.join("config.json"), cfg.to_string()).unwrap();
    assert_user_error(&embed_in(&empty, bert.to_str().unwrap()), "no `num_hidden_layers`");

    std::fs::write(bert.join("config.json"), base.to_string()).unwrap();
    for (len, needle) in [
        ("513", "max_length 513 exceeds max_position_embeddings 512"),
        ("1", "max_length 1 leaves no room"),
        ("0", "max_length 0 leaves no room"),
    ] {
        let out = with_cache(
            &empty,
            &["embed", "--model", bert.to_str().unwrap(), "--max-length", len, "hi"],
        );
        assert_user_error(&out, needle);
    }
    let out = with_cache(
        &empty,
        &["embed", "--model", bert.to_str().unwrap(), "--max-length", "512", "hi"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // DistilBERT's own keys
    let distil = d.path().join("distil");
    // a plain folder with the snapshot's files (its symlinks followed)
    std::fs::create_dir(&distil).unwrap();
    for e in std::fs::read_dir(fixture().join("hub").join(CANONICAL).join("snapshots").join(commit())).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), distil.join(e.file_name())).unwrap();
    }
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(distil.join("config.json")).unwrap()).unwrap();
    for (key, value, needle) in [
        ("n_heads", 3, "`dim` 32 is not divisible by `n_heads` 3"),
        ("n_layers", 0, "`n_layers` is 0"),
    ] {
        let mut cfg = base.clone();
        cfg[key] = value.into();
        std::fs::write(distil.join("config.json"), cfg.to_string()).unwrap();
        assert_user_error(&embed_in(&empty, distil.to_str().unwrap()), needle);
    }
}
