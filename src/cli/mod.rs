//! Command-line interface: argument parsing, the global options, and dispatch to one small function per
//! subcommand, grouped by what they work on: `encode` (embed, eval-sts, models), `train` (run, inspect,
//! predict), `export`, `results` (compare) and `sweep`. Results go to stdout through `out!`, messages to stderr
//! through `say!`.
//!
//! Imports every layer; nothing imports it but `main.rs`.

mod encode;
mod export;
mod results;
mod sweep;
mod train;

use encode::{EmbedArgs, EvalStsArgs, ModelsArgs};
use export::ExportArgs;
use results::CompareArgs;
use sweep::SweepArgs;
use train::{PredictArgs, RunArgs, RunCmdArgs};

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Sentence embeddings and multi-task learning on libtorch",
    long_about = "Turns a pretrained BERT-family encoder into a sentence encoder, trains task heads on it under a \
                  chosen freezing scenario, and compares runs.\n\nExample:\n  harness embed --model all-MiniLM-L6-v2 \"A man is playing a guitar.\""
)]
struct Cli {
    /// CPU threads for libtorch (default: libtorch's choice, usually one per core)
    #[arg(long, global = true)]
    pub(crate) threads: Option<i32>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print one embedding per sentence.
    ///
    /// Example: harness embed --model all-MiniLM-L6-v2 "A man is playing a guitar." "Someone plays music."
    Embed(EmbedArgs),
    /// Spearman and Pearson correlation (×100) of cosine similarity against gold STS scores.
    ///
    /// Example: harness eval-sts --model all-MiniLM-L6-v2 --data ../shared/data/stsb/test.tsv
    EvalSts(EvalStsArgs),
    /// Train and evaluate one multi-task experiment from a YAML config; writes
    /// <output_dir>/<name>/{metrics.csv, summary.json, config.yaml, checkpoint.safetensors}.
    ///
    /// Example: harness run configs/freeze_heads_a.yaml --set train.epochs=1 --set tasks.0.limit_train=500
    Run(RunCmdArgs),
    /// Print the parameter groups of a config's model: parameters and whether they train.
    ///
    /// Example: harness inspect configs/unfreeze_top2.yaml
    Inspect(RunArgs),
    /// Predict every task's label for sentences with a trained run.
    ///
    /// Example: harness predict --run results/freeze_heads_a "a gripping, beautifully shot film"
    Predict(PredictArgs),
    /// Write a finished run's encoder as a Hugging Face / sentence-transformers folder (config.json,
    /// model.safetensors, tokenizer files, modules.json, 1_Pooling/) with its heads (heads.safetensors, heads.json).
    ///
    /// Example: harness export --run results/full_finetune --out exported/full_finetune
    Export(ExportArgs),
    /// Compare finished runs: a table (one row per run group and task, seeds merged as mean ± std),
    /// comparison.md, and eval-accuracy curves as PNG and SVG.
    ///
    /// Example: harness compare results/*
    Compare(CompareArgs),
    /// Run configs × grid points × seeds one after another (skipping runs already complete, then comparing),
    /// one cell by index, or as a Slurm job array.
    ///
    /// Example: harness sweep configs/full_finetune.yaml --seeds 1,2,3 --grid train.lr_encoder=2e-5,5e-5 --slurm --time 2:00:00
    Sweep(Box<SweepArgs>),
    /// List the models `--model` can name without a download: the packaged ones and every model in the
    /// local Hugging Face cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub), with
    /// model_type, parameters, size on disk, revision and path.
    ///
    /// Example: harness models
    Models(ModelsArgs),
}

pub fn main() -> Result<()> {
    // first, so a signal in any phase ends the program the documented way (exit 75), never by default action
    crate::util::interrupt::install()?;
    let cli = parse_args();
    if let Some(n) = threads(cli.threads, std::env::var("SLURM_CPUS_PER_TASK").ok())? {
        tch::set_num_threads(n);
    }
    match cli.command {
        Command::Embed(a) => encode::embed(a),
        Command::EvalSts(a) => encode::eval_sts(a),
        Command::Run(a) => train::run(a),
        Command::Inspect(a) => train::inspect(a),
        Command::Predict(a) => train::predict(a),
        Command::Export(a) => export::export(a),
        Command::Compare(a) => results::compare_runs(a),
        Command::Sweep(a) => sweep::sweep(*a, cli.threads),
        Command::Models(a) => encode::models(a),
    }
}

/// Threads: `--threads` if given, else Slurm's CPUs per task (inside a job), else libtorch's choice.
fn threads(flag: Option<i32>, slurm_cpus: Option<String>) -> Result<Option<i32>> {
    match (flag, slurm_cpus) {
        (Some(n), _) => Ok(Some(check_threads(n)?)),
        (None, Some(v)) => {
            let n: i32 = v
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("SLURM_CPUS_PER_TASK=`{v}` is not a CPU count"))?;
            Ok(Some(check_threads(n).context("SLURM_CPUS_PER_TASK")?))
        }
        (None, None) => Ok(None),
    }
}

/// 1 to 4x the logical CPUs: 0 panics in libtorch, and thousands of threads stall the machine.
fn check_threads(n: i32) -> Result<i32> {
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get()) as i32;
    if n < 1 || n > 4 * cpus {
        bail!(
            "--threads {n} is out of range (expected 1 to {}, this machine has {cpus} logical CPUs)",
            4 * cpus
        );
    }
    Ok(n)
}

/// Like `Cli::parse()`, but `--version` also names tch, libtorch and whether CUDA is available. That text is made
/// only when `--version` is asked for: asking libtorch about CUDA initialises the driver, which other commands
/// should not pay for before they choose a device.
fn parse_args() -> Cli {
    let mut cmd = Cli::command();
    if std::env::args_os().skip(1).any(|a| a == "--version") {
        cmd = cmd.long_version(&*Box::leak(long_version().into_boxed_str()));
    }
    Cli::from_arg_matches(&cmd.get_matches()).unwrap_or_else(|e| e.exit())
}

/// The versions this binary was built with (build.rs reads them from Cargo.lock and the libtorch install) and
/// what libtorch sees at run time; `scripts/setup` prints it after every build.
pub(crate) fn long_version() -> String {
    let cuda = if tch::Cuda::is_available() {
        format!("yes ({} device(s))", tch::Cuda::device_count())
    } else {
        "no".to_string()
    };
    format!(
        "{}\ntch {}\nlibtorch {} ({})\nCUDA available: {cuda}",
        crate::util::versions::HARNESS,
        crate::util::versions::TCH,
        crate::util::versions::libtorch(),
        option_env!("HARNESS_LIBTORCH_LIB").unwrap_or("libtorch path unknown"),
    )
}
