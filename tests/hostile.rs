//! Hostile inputs, third round, tried with the real binary: a stdout closed early, a finished run run again,
//! signals before a run has anything to save, a FIFO or directory where a file should be, non-finite values
//! in STS scores and in model weights, a zero batch size, a config.json that disagrees with its weights,
//! and a line too long to read. Tests of a run's bookkeeping train on the random tiny encoder (`shared_tiny_model`).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tch::{Kind, Tensor};

/// Rewrites one tensor of the folder's weights with `change`.
fn edit_weight(dir: &Path, name: &str, change: impl Fn(&Tensor) -> Tensor) {
    let path = dir.join("model.safetensors");
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .map(|(n, t)| if n == name { (n, change(&t)) } else { (n, t) })
        .collect();
    Tensor::write_safetensors(&tensors, &path).unwrap();
}

const EDITED: &str = "distilbert.transformer.layer.0.ffn.lin1.weight";

/// A heads-only config on the random tiny encoder (`shared_tiny_model`), for tests of the run's bookkeeping.
fn write_config(dir: &Path, name: &str) -> PathBuf {
    write_config_with(
        dir,
        name,
        config_text_on(shared_tiny_model(), dir, "  scenario: backbone", ""),
    )
}

/// The same on all-MiniLM-L6-v2, for a test that needs a run that takes seconds.
fn write_minilm_config(dir: &Path, name: &str) -> PathBuf {
    write_config_with(dir, name, config_text(dir, "  scenario: backbone", ""))
}

fn write_config_with(dir: &Path, name: &str, text: String) -> PathBuf {
    let text = text.replace("name: t", &format!("name: {name}"));
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs the binary with its stdout's read end closed before it writes anything.
fn with_stdout_closed(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone, as after `| head -1` has its line
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_every_printing_subcommand_quietly() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "pipe");
    let sentences = ["a", "b", "c"];
    let cases: Vec<Vec<&str>> = vec![
        vec!["models"],
        vec!["models", "--json"],
        vec!["embed", "--device", "cpu", sentences[0], sentences[1], sentences[2]],
        vec!["embed", "--device", "cpu", "--format", "csv", "x"],
        vec!["inspect", cfg.to_str().unwrap()],
        vec!["sweep", "--list", cfg.to_str().unwrap()],
    ];
    for args in cases {
        let out = with_stdout_closed(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("error") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
    }
}

fn run(cfg: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--threads", "2", "run", cfg.to_str().unwrap()];
    args.extend(extra);
    harness(&args)
}

#[test]
fn a_finished_run_is_never_replaced_silently() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "done");
    let first = run(&cfg, &[]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let summary = std::fs::read(d.path().join("done/summary.json")).unwrap();

    // the same config, and another one, under the same name
    assert_user_error(&run(&cfg, &[]), "pass --restart to replace it");
    assert_user_error(&run(&cfg, &["--set", "seed=8"]), "--restart");
    let t0 = Instant::now();
    let resumed = run(&cfg, &["--resume"]);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success() && err.contains("already complete"), "{err}");
    assert!(
        !err.contains("run done ("),
        "--resume of a finished run trains nothing: {err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30));
    assert_eq!(std::fs::read(d.path().join("done/summary.json")).unwrap(), summary);

    let restarted = run(&cfg, &["--restart", "--set", "seed=8"]);
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    assert_ne!(std::fs::read(d.path().join("done/summary.json")).unwrap(), summary);
}

/// Sends `signal` after `delay` and returns the output and how long the process took to end after it.
fn signalled(args: &[&str], signal: &str, delay: Duration) -> (std::process::Output, Duration) {
    let child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // libtorch's shared libraries load before `main`; nothing can catch a signal until its handler is in
    let caught = |pid: u32| -> bool {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:")).unwrap_or("0");
        u64::from_str_radix(mask.trim(), 16).unwrap_or(0) & (1 << (15 - 1)) != 0
    };
    wait_until("the SIGTERM handler", 60, || caught(child.id()));
    std::thread::sleep(delay);
    let t0 = Instant::now();
    assert!(Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    (out, t0.elapsed())
}

#[test]
fn a_signal_before_there_is_anything_to_save_ends_the_run_at_once_with_75() {
    let d = tempfile::tempdir().unwrap();
    // MiniLM: a tiny run could be over 300 ms after its handler is in, with nothing left to stop
    let cfg = write_minilm_config(d.path(), "early");
    for signal in ["-TERM", "-HUP", "-INT"] {
        for delay_ms in [0, 300] {
            let (out, took) = signalled(
                &["--threads", "2", "run", cfg.to_str().unwrap(), "--restart"],
                signal,
                Duration::from_millis(delay_ms),
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(75), "{signal} at {delay_ms} ms: {err}");
            let last = err.lines().last().unwrap_or("");
            assert!(last.starts_with("stopped: "), "{signal} at {delay_ms} ms: {err}");
            assert!(took < Duration::from_secs(5), "{signal} at {delay_ms} ms took {took:?}");
            assert!(!d.path().join("early").exists());
        }
    }
}

#[test]
fn a_fifo_or_directory_given_as_a_file_is_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("train.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let text = config_text_on(shared_tiny_model(), d.path(), "  scenario: backbone", "");
    let sst_train = root().join("../shared/data/sst2/train.tsv");
    let fifo_cfg = d.path().join("fifo.yaml");
    std::fs::write(
        &fifo_cfg,
        text.replacen(sst_train.to_str().unwrap(), fifo.to_str().unwrap(), 1),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", fifo_cfg.to_str().unwrap()])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("a FIFO as the train file blocked the run");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("train.fifo: is a FIFO"), "{err}");

    let dir_cfg = d.path().join("dir.yaml");
    std::fs::write(
        &dir_cfg,
        text.replacen(sst_train.to_str().unwrap(), d.path().to_str().unwrap(), 1),
    )
    .unwrap();
    assert_user_error(
        &harness(&["run", dir_cfg.to_str().unwrap()]),
        "is a directory, not a file",
    );
    assert_user_error(&harness(&["inspect", d.path().to_str().unwrap()]), "is a directory");

    let model = tiny_folder(d.path());
    std::fs::remove_file(model.join("vocab.txt")).unwrap();
    std::fs::create_dir(model.join("vocab.txt")).unwrap();
    let out = harness(&["embed", "--device", "cpu", "--model", model.to_str().unwrap(), "x"]);
    assert_user_error(&out, "vocab.txt: is a directory, not a file");
}

#[test]
fn non_finite_sts_scores_are_refused_naming_file_and_line() {
    let d = tempfile::tempdir().unwrap();
    for bad in ["nan", "inf", "-inf", "NaN"] {
        let f = d.path().join("sts.tsv");
        std::fs::write(&f, format!("sentence1\tsentence2\tscore\na\tb\t4.0\nc\td\t{bad}\n")).unwrap();
        let out = harness(&["eval-sts", "--device", "cpu", "--data", f.to_str().unwrap()]);
        assert_user_error(
            &out,
            &format!("sts.tsv:3: column `score`: `{bad}` is not a finite number"),
        );
    }
}

#[test]
fn a_weight_with_nan_or_stored_as_int64_is_refused_naming_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    let dir = tiny_folder(d.path());
    let embed = |dir: &Path| harness(&["embed", "--device", "cpu", "--model", dir.to_str().unwrap(), "hello"]);
    edit_weight(&dir, EDITED, |t| {
        let t = t.copy();
        let _ = t.get(0).get(0).fill_(f64::NAN);
        t
    });
    assert_user_error(&embed(&dir), &format!("weight `{EDITED}` holds NaN or infinite values"));
    edit_weight(&dir, EDITED, |t| t.nan_to_num(0.0, None, None).to_kind(Kind::Int64));
    assert_user_error(&embed(&dir), &format!("weight `{EDITED}` is stored as Int64"));
}

#[test]
fn a_zero_batch_size_is_refused() {
    assert_user_error(&harness(&["embed", "--batch-size", "0", "x"]), "--batch-size 0");
    let f = shared_data("stsb/test.tsv");
    let out = harness(&["eval-sts", "--batch-size", "0", "--data", f.to_str().unwrap()]);
    assert_user_error(&out, "--batch-size 0");
}

/// A folder whose weights are all-MiniLM-L6-v2's (linked, not copied) under a config.json edited by `edit`.
fn minilm_with_config(root: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = harness::encoder::ModelFolder::open("all-MiniLM-L6-v2").unwrap().dir;
    let dir = root.join("minilm");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "vocab.txt"] {
        let _ = std::fs::remove_file(dir.join(f));
        std::os::unix::fs::symlink(src.join(f), dir.join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    dir
}

/// Runs the binary under an address-space limit of `bytes` (prlimit --as), killing it after 60 s.
fn limited(bytes: u64, args: &[&str]) -> std::process::Output {
    let child = Command::new("prlimit")
        .arg(format!("--as={bytes}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(root())
        .env_remove("SLURM_CPUS_PER_TASK") // no thread pool before the input is read
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t0 = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

/// The least address space (within 16 MiB) in which `args` gets as far as printing `needle`: the binary and
/// its libraries (libtorch, CUDA's) alone take gigabytes of address space, so limits are set relative to it.
fn least_address_space(args: &[&str], needle: &str) -> u64 {
    let ok = |b: u64| String::from_utf8_lossy(&limited(b, args).stderr).contains(needle);
    let (mut lo, mut hi) = (256u64 << 20, 8u64 << 30);
    assert!(ok(hi), "{args:?} fails even with 8 GiB of address space");
    while hi - lo > 16 << 20 {
        let mid = lo + (hi - lo) / 2;
        if ok(mid) {
            hi = mid
        } else {
            lo = mid
        }
    }
    hi
}

#[test]
fn a_config_json_that_disagrees_with_the_weights_is_refused_before_anything_is_allocated() {
    let d = tempfile::tempdir().unwrap();
    let embed = |dir: &Path| {
        let out = limited(
            16 << 30, // 3840000 x 30522 floats would be 468 GB
            &["embed", "--device", "cpu", "--model", dir.to_str().unwrap(), "hello"],
        );
        assert!(out.status.code().is_some(), "killed: {out:?}");
        out
    };
    let cases: [(&str, i64, &str); 6] = [
        (
            "hidden_size",
            3_840_000,
            "weight `embeddings.word_embeddings.weight` has shape [30522, 384]",
        ),
        (
            "num_hidden_layers",
            100_000,
            "has 6 layers (no weight `encoder.layer.6.*`)",
        ),
        (
            "num_hidden_layers",
            2,
            "has 6 layers (weights `encoder.layer.2.*` beyond them)",
        ),
        (
            "vocab_size",
            1 << 30,
            "weight `embeddings.word_embeddings.weight` has shape [30522, 384]",
        ),
        (
            "intermediate_size",
            1 << 30,
            "`encoder.layer.0.intermediate.dense.weight` has shape [1536, 384]",
        ),
        (
            "max_position_embeddings",
            1 << 30,
            "`embeddings.position_embeddings.weight` has shape [512, 384]",
        ),
    ];
    for (key, value, tensor) in cases {
        let out = embed(&minilm_with_config(d.path(), |c| c[key] = value.into()));
        assert_user_error(&out, &format!("config.json: `{key}` is {value}, but "));
        assert!(String::from_utf8_lossy(&out.stderr).contains(tensor), "{out:?}");
    }
}

#[test]
fn a_line_over_a_mebibyte_fails_naming_file_and_line_without_being_read_whole() {
    let d = tempfile::tempdir().unwrap();
    // sparse: 200 MB of NUL bytes with no newline take no disk
    let sparse = |name: &str, head: &str| -> PathBuf {
        let p = d.path().join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        std::io::Write::write_all(&mut f, head.as_bytes()).unwrap();
        f.set_len(200_000_000).unwrap();
        p
    };
    let long_txt = sparse("long.txt", "");
    let empty = d.path().join("empty.txt");
    std::fs::write(&empty, "\n").unwrap();
    // the address space the binary needs to get as far as reading its input, plus 100 MiB: less than the line
    let base = least_address_space(&["embed", "--input", empty.to_str().unwrap()], "empty input");
    let limit = base + (100 << 20);

    let out = limited(
        limit,
        &["embed", "--device", "cpu", "--input", long_txt.to_str().unwrap()],
    );
    assert_user_error(&out, "long.txt:1: line 1 is over 1048576 bytes");

    let train = sparse("train.tsv", "sentence\tlabel\nfine\t0\n");
    let text = config_text_on(shared_tiny_model(), d.path(), "  scenario: backbone", "");
    let sst_train = root().join("../shared/data/sst2/train.tsv");
    let cfg = d.path().join("long.yaml");
    std::fs::write(
        &cfg,
        text.replacen(sst_train.to_str().unwrap(), train.to_str().unwrap(), 1),
    )
    .unwrap();
    let out = limited(limit, &["run", cfg.to_str().unwrap()]);
    assert_user_error(&out, "train.tsv:3: line 3 is over 1048576 bytes");
}

/// A config training heads on the tiny encoder `model` (as written: relative paths resolve from the cwd).
fn tiny_config(dir: &Path, name: &str, model: &str, train: &str) -> PathBuf {
    let text = config_text(dir, "  scenario: backbone", train).replace("name: t", &format!("name: {name}"));
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, format!("{text}encoder:\n  model: {model}\n  max_length: 32\n")).unwrap();
    p
}

#[test]
fn predict_uses_the_encoder_the_run_was_trained_on_or_refuses() {
    let d = tempfile::tempdir().unwrap();
    let (here, elsewhere) = (d.path().join("here"), d.path().join("elsewhere"));
    std::fs::create_dir_all(&elsewhere).unwrap();
    tiny_folder(&here);
    // another encoder under the same relative name, with other weights
    tiny_folder(&elsewhere);
    edit_weight(&elsewhere.join("tiny"), EDITED, |t| t * 3.0);
    let cfg = tiny_config(d.path(), "prov", "tiny", "");
    let out = harness_in(&here, &["--threads", "2", "run", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = d.path().join("prov");
    let predict = |cwd: &Path| {
        harness_in(
            cwd,
            &[
                "predict",
                "--device",
                "cpu",
                "--json",
                "--run",
                run.to_str().unwrap(),
                "a fine film",
            ],
        )
    };
    let trained_here = predict(&here);
    assert!(
        trained_here.status.success(),
        "{}",
        String::from_utf8_lossy(&trained_here.stderr)
    );
    // from another folder, `tiny` names other weights: the recorded encoder is used, so the answer is the same
    let from_elsewhere = predict(&elsewhere);
    assert!(
        from_elsewhere.status.success(),
        "{}",
        String::from_utf8_lossy(&from_elsewhere.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&trained_here.stdout),
        String::from_utf8_lossy(&from_elsewhere.stdout)
    );
    // the trained-on encoder changed: neither path holds its weights any more
    edit_weight(&here.join("tiny"), EDITED, |t| t * 2.0);
    assert_user_error(&predict(&elsewhere), "its heads were trained on the encoder");
    assert_user_error(&predict(&here), "holds other weights");
}

/// Starts `cfg` and SIGTERMs it once it has a checkpoint: a resumable `.partial` (exit 75).
fn interrupted(cfg: &Path, partial: &Path) {
    let child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["--threads", "2", "run", cfg.to_str().unwrap()])
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("a checkpoint", 120, || checkpointed_step(partial).is_some());
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn resume_refuses_changed_data_and_a_checkpoint_pointer_outside_the_run() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_folder(d.path());
    let train = d.path().join("train.tsv");
    std::fs::copy(shared_data("sst2/train.tsv"), &train).unwrap();
    let cfg = tiny_config(
        d.path(),
        "res",
        model.to_str().unwrap(),
        "  epochs: 500\n  checkpoint_every_steps: 1\n",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replacen(
            shared_data("sst2/train.tsv").to_str().unwrap(),
            train.to_str().unwrap(),
            1,
        ),
    )
    .unwrap();
    let partial = d.path().join("res.partial");
    interrupted(&cfg, &partial);
    let resume = || run(&cfg, &["--resume"]);

    // checkpoint.json pointing outside the run's folder: absolute, `..`, a symlink
    let pointer = partial.join("checkpoint.json");
    let good = std::fs::read_to_string(&pointer).unwrap();
    let real_dir = partial.join(
        serde_json::from_str::<serde_json::Value>(&good).unwrap()["dir"]
            .as_str()
            .unwrap(),
    );
    let outside = d.path().join("outside");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(&real_dir)
        .arg(&outside)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink(&outside, partial.join("checkpoints/step-evil")).unwrap();
    for (dir, needle) in [
        (
            outside.to_str().unwrap().to_string(),
            "not at a checkpoint inside the run's folder",
        ),
        ("../outside".to_string(), "not at a checkpoint inside the run's folder"),
        (
            "checkpoints/../../outside".to_string(),
            "not at a checkpoint inside the run's folder",
        ),
        (
            "checkpoints/step-evil".to_string(),
            "a symlink leading outside the run's folder",
        ),
    ] {
        std::fs::write(&pointer, serde_json::json!({ "dir": dir }).to_string()).unwrap();
        assert_user_error(&resume(), needle);
    }
    std::fs::write(&pointer, &good).unwrap();

    // the train file changed after the checkpoint (one label flipped)
    let mut rows = std::fs::read_to_string(&train).unwrap();
    let at = rows.find("\t1\n").unwrap();
    rows.replace_range(at..at + 3, "\t0\n");
    std::fs::write(&train, rows).unwrap();
    assert_user_error(
        &resume(),
        &format!("cannot resume: {} changed since the run started", train.display()),
    );
}

/// A copy of the finished run `src` as run `name` with `seed`, its config.yaml edited by `edit`.
fn copy_run(src: &Path, name: &str, seed: u64, edit: impl Fn(&mut serde_yaml::Value)) -> PathBuf {
    let dst = src.with_file_name(name);
    assert!(Command::new("cp")
        .arg("-r")
        .arg(src)
        .arg(&dst)
        .status()
        .unwrap()
        .success());
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dst.join("summary.json")).unwrap()).unwrap();
    summary["run"] = name.into();
    summary["seed"] = seed.into();
    std::fs::write(dst.join("summary.json"), summary.to_string()).unwrap();
    let mut cfg: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dst.join("config.yaml")).unwrap()).unwrap();
    cfg["name"] = name.into();
    cfg["seed"] = seed.into();
    edit(&mut cfg);
    std::fs::write(dst.join("config.yaml"), serde_yaml::to_string(&cfg).unwrap()).unwrap();
    dst
}

#[test]
fn compare_merges_only_like_with_like_and_a_missing_path_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_folder(d.path());
    let cfg = tiny_config(d.path(), "cmp", model.to_str().unwrap(), "");
    let out = run(&cfg, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let first = d.path().join("cmp");
    let seed8 = copy_run(&first, "cmp-seed8", 8, |_| {});
    let other_lr = copy_run(&first, "cmp-seed9", 9, |c| c["train"]["lr_heads"] = 0.5.into());
    let other_data = copy_run(&first, "cmp-seed10", 10, |c| c["tasks"][0]["limit_train"] = 40.into());
    let compare = |dirs: &[&Path]| {
        let mut args = vec!["compare", "--json"];
        args.extend(dirs.iter().map(|p| p.to_str().unwrap()));
        harness(&args)
    };
    let same = compare(&[&first, &seed8]);
    assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stderr));
    let json: serde_json::Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!((json["n_runs"].as_u64(), json["n_groups"].as_u64()), (Some(2), Some(1)));

    assert_user_error(&compare(&[&first, &seed8, &other_lr]), "differs in `train.lr_heads`");
    assert_user_error(&compare(&[&first, &other_data]), "differs in `tasks.0.limit_train`");
    let missing = d.path().join("cmp-seed11");
    assert_user_error(
        &compare(&[&first, &missing]),
        &format!("{}: no such run directory", missing.display()),
    );
}

#[test]
fn messages_a_researcher_understands() {
    let d = tempfile::tempdir().unwrap();
    let base = config_text_on(shared_tiny_model(), d.path(), "  scenario: backbone", "");
    let write = |name: &str, text: &str| -> PathBuf {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let jargon = ["usize", "u128", "struct ", "unit value", "invalid type", "FreezeConfig"];
    let inspect = |cfg: &Path, extra: &[&str]| {
        let mut args = vec!["inspect", cfg.to_str().unwrap()];
        args.extend(extra);
        harness(&args)
    };
    // serde's type names, in a file and through --set
    for (from, to, says) in [
        (
            "epochs: 1",
            "epochs: abc",
            "train.epochs: `abc` is text, expected a whole number (0 or more)",
        ),
        (
            "epochs: 1",
            "epochs: -1",
            "train.epochs: -1 is not a whole number (0 or more)",
        ),
        (
            "epochs: 1",
            "epochs: 99999999999999999999999",
            "train.epochs: 99999999999999999999999 is too large",
        ),
        ("epochs: 1", "epochs:", "train.epochs: the value is empty"),
        (
            "freeze:\n  scenario: backbone",
            "freeze: 3",
            "freeze: 3 is not a section of keys",
        ),
    ] {
        let text = base.replacen(from, to, 1);
        let cfg = write("bad.yaml", &text);
        let want = format!("bad.yaml, line {}: {says}", line_of(&text, to.lines().next().unwrap()));
        // a fault in the file is the file's, also when unrelated --set overrides are given
        let extras: &[&[&str]] = if to == "epochs: abc" {
            &[&[], &["--set", "train.batch_size=8"]]
        } else {
            &[&[]]
        };
        for extra in extras {
            let out = inspect(&cfg, extra);
            assert_user_error(&out, &want);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                jargon.iter().all(|j| !err.contains(j)) && !err.contains("--set"),
                "{err}"
            );
        }
    }
    let good = write("good.yaml", &base);
    assert_user_error(
        &inspect(&good, &["--set", "train.epochs=abc"]),
        "`train.epochs=abc` (given on the command line): train.epochs: `abc` is text",
    );
    assert_user_error(
        &inspect(&good, &["--set", "train.lr_heads=inf"]),
        "YAML writes infinity and not-a-number as .inf",
    );
    // `~` is not the home folder outside a shell
    let tilde = write(
        "tilde.yaml",
        &base.replacen(&format!("output_dir: {}", d.path().display()), "output_dir: ~/runs", 1),
    );
    assert_user_error(
        &inspect(&tilde, &[]),
        "output_dir: `~/runs` starts with `~`, which harness does not expand",
    );
    assert_user_error(
        &harness(&["embed", "--input", "~/sentences.txt"]),
        "~/sentences.txt: missing (a leading `~` is expanded only by a shell",
    );
    // a column name given twice in a header
    let dup = write("dup.tsv", "sentence\tlabel\tsentence\na\t1\tb\n");
    let sst_train = root().join("../shared/data/sst2/train.tsv");
    let cfg = write(
        "dup.yaml",
        &base.replacen(sst_train.to_str().unwrap(), dup.to_str().unwrap(), 1),
    );
    assert_user_error(
        &harness(&["run", cfg.to_str().unwrap()]),
        "dup.tsv:1: column `sentence` appears twice in the header (columns 1 and 3)",
    );
    // the label column read as the text: refused; the same file to train and evaluate on: a note
    let answer = write(
        "answer.yaml",
        &base.replacen(
            "labels: [negative, positive]",
            "labels: [negative, positive]\n    text_column: label",
            1,
        ),
    );
    assert_user_error(
        &inspect(&answer, &[]),
        "tasks.0: text_column: `label` is also the label_column",
    );
    let sst_dev = root().join("../shared/data/sst2/dev.tsv");
    let same = write(
        "same.yaml",
        &base.replacen(sst_dev.to_str().unwrap(), sst_train.to_str().unwrap(), 1),
    );
    let out = harness(&["run", same.to_str().unwrap(), "--set", "name=same"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("note: task `sentiment` trains and evaluates on the same file"),
        "{err}"
    );
}

/// A full disk, as `prlimit --fsize` makes one (every write past the limit fails with EFBIG; SIGXFSZ, which
/// would kill the process instead, is ignored by the shell before it execs the binary): the run fails naming
/// the file it could not write, the half-written checkpoint is removed, and the failure record holds the reason.
#[test]
fn a_disk_that_fills_during_a_run_fails_naming_the_file_and_keeps_the_reason() {
    let d = tempfile::tempdir().unwrap();
    let model = tiny_model(d.path(), 1);
    let p = d.path().join("c.yaml");
    let train = "  checkpoint_every_steps: 1";
    std::fs::write(&p, config_text_on(&model, d.path(), "  scenario: none", train)).unwrap();
    // the tiny model's checkpoint is about 2 MB; config.yaml, inputs.json and metrics.csv are a few kB
    let out = Command::new("sh")
        .args(["-c", "trap '' XFSZ; exec prlimit --fsize=500000 -- \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_harness"))
        .args(["--threads", "1", "run", p.to_str().unwrap()])
        .current_dir(root())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let partial = d.path().join("t.partial");
    let tmp = partial.join("checkpoints/step-00000001.tmp");
    assert!(
        err.contains(&format!(
            "{}: cannot write: File too large",
            tmp.join("model.safetensors").display()
        )),
        "{err}"
    );
    assert!(!err.contains("IoError"), "{err}");
    assert!(!tmp.exists(), "the half-written checkpoint is left behind");
    let reason = std::fs::read_to_string(partial.join("error.txt")).unwrap();
    assert!(reason.contains("cannot write: File too large"), "{reason}");
    let list = harness(&["sweep", "--list", p.to_str().unwrap()]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("failed"), "{listed}");
}

/// Out of memory anywhere (loading libraries, reading weights, encoding): at every address-space limit from too
/// little to enough, the binary either succeeds or prints one line; libtorch's C++ stack trace never reaches the
/// user (it did: `frame #0: c10::ThrowEnforceNotMet ...`, 40 lines).
#[test]
fn running_out_of_memory_is_one_line_at_every_limit() {
    let args = ["--threads", "2", "embed", "--model", "all-MiniLM-L6-v2", "hello"];
    let (mut lo, mut hi) = (256u64 << 20, 8u64 << 30);
    let mut failures = 0;
    while hi - lo > 32 << 20 {
        let mid = lo + (hi - lo) / 2;
        let out = limited(mid, &args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            hi = mid;
        } else {
            failures += 1;
            assert_eq!(err.lines().count(), 1, "at {} MiB: {err}", mid >> 20);
            lo = mid;
        }
    }
    assert!(failures > 0, "never ran out of memory");
}
