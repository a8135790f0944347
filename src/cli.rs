//! Command-line interface: argument parsing and one small function per subcommand.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::amp::{self, Precision};
use crate::cells::{self, CellIndex, GridAxis};
use crate::checkpoint;
use crate::config::ExperimentConfig;
use crate::data::read_lines;
use crate::device::parse_device;
use crate::experiment::{self, Start};
use crate::interrupt;
use crate::pooling::Pooling;
use crate::record::{Summary, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE};
use crate::report;
use crate::run_dir::{RunDir, RunState};
use crate::sentence::{SentenceEncoder, SentenceOptions};
use crate::slurm::SlurmOptions;
use crate::sts::{evaluate, StsPairs};
use crate::sweep::Sweep;

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Sentence embeddings and multi-task learning on libtorch",
    long_about = "Turns a pretrained BERT-family encoder into a sentence encoder, trains task heads on it under a \
                  chosen freezing scenario, and compares runs.\n\nExample:\n  harness embed --model all-MiniLM-L6-v2 \"A man is playing a guitar.\""
)]
pub struct Cli {
    /// CPU threads for libtorch (default: libtorch's choice, usually one per core)
    #[arg(long, global = true)]
    pub threads: Option<i32>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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

#[derive(Args)]
pub struct ModelsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CompareArgs {
    /// Run directories (each with metrics.csv and summary.json); other entries such as comparison.md are skipped
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Where comparison.md, comparison.png and comparison.svg go (default: the first run's parent)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("mode").multiple(false)))]
pub struct SweepArgs {
    /// Experiment configs (YAML); each gives cells in the order given
    #[arg(required_unless_present = "manifest")]
    pub configs: Vec<PathBuf>,
    /// A submitted sweep's results/<sweep>/manifest.json: its fixed cells, instead of configs and options
    #[arg(long, conflicts_with_all = ["configs", "seeds", "grid", "overrides", "name"])]
    pub manifest: Option<PathBuf>,
    /// Comma-separated seeds; each becomes its own run `<name>-seed<N>`
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Vary a config key over values, e.g. --grid train.lr_encoder=2e-5,5e-5 (repeatable: the cross product)
    #[arg(long, value_name = "KEY=V1,V2")]
    pub grid: Vec<String>,
    /// The sweep's name, its folder results/<name>/ (default: the configs' names joined, then `-sweep`)
    #[arg(long)]
    pub name: Option<String>,
    /// Print what would run (with --slurm: the batch script), run and write nothing
    #[arg(long, conflicts_with_all = ["list", "status", "cancel", "compare", "index"])]
    pub dry_run: bool,
    /// Override a key in every config (repeatable), e.g. --set train.epochs=1
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Where the comparison goes (default: the first config's output_dir; with --compare, the sweep's folder)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print every cell's index, run name and state (done, running, partial, failed, missing)
    #[arg(long, group = "mode")]
    pub list: bool,
    /// Run one cell: N, or `env` for SLURM_ARRAY_TASK_ID (else JOB_COMPLETION_INDEX); resumes it if partial,
    /// does nothing if done, never compares
    #[arg(long, group = "mode", value_name = "N|env")]
    pub index: Option<CellIndex>,
    /// Submit the cells not yet done as a Slurm job array (writes results/<sweep>/manifest.json first)
    #[arg(long, group = "mode")]
    pub slurm: bool,
    #[command(flatten)]
    pub slurm_options: SlurmOptions,
    /// Each cell's state, and its Slurm task's state for submitted sweeps
    #[arg(long, group = "mode")]
    pub status: bool,
    /// Cancel the sweep's Slurm jobs that are queued or running
    #[arg(long, group = "mode")]
    pub cancel: bool,
    /// Compare the cells that are done
    #[arg(long, group = "mode")]
    pub compare: bool,
    /// With --index under Slurm: a cell stopped by a signal requeues its own task (the batch script sets it)
    #[arg(long, hide = true, requires = "index")]
    pub requeue_on_signal: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Experiment config (YAML)
    pub config: PathBuf,
    /// Override a config key, e.g. --set train.epochs=1 --set tasks.0.limit_train=500 (repeatable)
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Args)]
pub struct RunCmdArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Continue an interrupted run from its last checkpoint (starts afresh when it has none)
    #[arg(long, conflicts_with = "restart")]
    pub resume: bool,
    /// Discard an interrupted run's .partial folder and start over
    #[arg(long)]
    pub restart: bool,
}

#[derive(Args)]
pub struct PredictArgs {
    /// A finished run directory (holds config.yaml and checkpoint.safetensors)
    #[arg(long)]
    pub run: PathBuf,
    /// auto, cpu, cuda or cuda:N (default: the run's config)
    #[arg(long)]
    pub device: Option<String>,
    /// Run encoder and heads under autocast at this precision (auto: bf16 where native, else fp32)
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    /// Sentences to classify
    #[arg(required = true)]
    pub sentences: Vec<String>,
}

/// Which encoder, and how its token states become a sentence vector.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// A local Hugging Face folder (config.json, vocab.txt, model.safetensors), a packaged name
    /// (all-MiniLM-L6-v2), or a hub id in the local Hugging Face cache, e.g. distilbert-base-uncased or
    /// org/name@revision (see `harness models`; nothing is downloaded)
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub model: String,
    /// Pooling over token states (default: the folder's 1_Pooling/config.json, else mean)
    #[arg(long, value_enum)]
    pub pooling: Option<Pooling>,
    /// L2-normalise embeddings (default: on when the folder's modules.json lists a Normalize module)
    #[arg(long, conflicts_with = "no_normalize")]
    pub normalize: bool,
    /// Do not L2-normalise embeddings
    #[arg(long)]
    pub no_normalize: bool,
    /// Truncate inputs to this many tokens, [CLS] and [SEP] included (default: the folder's
    /// sentence_bert_config.json max_seq_length, else 128)
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Sentences per forward pass
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// The transformer's weights in bf16 (faster on CPUs with AMX/AVX512-BF16 and on GPUs) or fp16 (CUDA
    /// only), at the cost of exact parity with fp32; auto: bf16 where native, else fp32. Pooling and
    /// normalisation stay in float32
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// The same as --precision bf16
    #[arg(long, conflicts_with = "precision")]
    pub bf16: bool,
}

impl ModelArgs {
    fn load(&self) -> Result<SentenceEncoder> {
        let normalize = match (self.normalize, self.no_normalize) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        let device = parse_device(&self.device)?;
        let requested = if self.bf16 { Precision::Bf16 } else { self.precision };
        let opts = SentenceOptions {
            pooling: self.pooling,
            normalize,
            max_length: self.max_length,
            precision: resolve_precision(requested, device)?,
        };
        SentenceEncoder::load(&self.model, &opts, device)
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Json,
    Csv,
}

#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output format: json (array of {text, embedding}) or csv (text, then one column per dimension)
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
    /// Read sentences from this file, one per line
    #[arg(long, conflicts_with = "sentences")]
    pub input: Option<PathBuf>,
    /// Sentences to embed
    pub sentences: Vec<String>,
}

#[derive(Args)]
pub struct EvalStsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// STS file with columns sentence1, sentence2, score (TSV, quoting off)
    #[arg(long, default_value = "../shared/data/stsb/test.tsv")]
    pub data: PathBuf,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn main() -> Result<()> {
    let cli = parse_args();
    if let Some(n) = threads(cli.threads, std::env::var("SLURM_CPUS_PER_TASK").ok())? {
        tch::set_num_threads(n);
    }
    match cli.command {
        Command::Embed(a) => embed(a),
        Command::EvalSts(a) => eval_sts(a),
        Command::Run(a) => run(a),
        Command::Inspect(a) => inspect(a),
        Command::Predict(a) => predict(a),
        Command::Compare(a) => compare_runs(a),
        Command::Sweep(a) => sweep(*a, cli.threads),
        Command::Models(a) => models(a),
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
pub fn long_version() -> String {
    let cuda = if tch::Cuda::is_available() {
        format!("yes ({} device(s))", tch::Cuda::device_count())
    } else {
        "no".to_string()
    };
    format!(
        "{}\ntch {}\nlibtorch {} ({})\nCUDA available: {cuda}",
        crate::versions::HARNESS,
        crate::versions::TCH,
        crate::versions::libtorch(),
        option_env!("HARNESS_LIBTORCH_LIB").unwrap_or("libtorch path unknown"),
    )
}

fn embed(a: EmbedArgs) -> Result<()> {
    let texts = match &a.input {
        Some(p) => read_lines(p)?,
        None if a.sentences.is_empty() => bail!("no input: give sentences as arguments or --input FILE"),
        None => a.sentences.clone(),
    };
    let model = a.model.load()?;
    let emb = model.encode(&texts, a.model.batch_size, true)?;
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(emb)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match a.format {
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Item<'a> {
                text: &'a str,
                embedding: &'a [f32],
            }
            let items: Vec<_> = texts
                .iter()
                .zip(&rows)
                .map(|(text, e)| Item { text, embedding: e })
                .collect();
            serde_json::to_writer_pretty(&mut out, &items)?;
            writeln!(out)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let mut header = vec!["text".to_string()];
            header.extend((0..model.dim()).map(|i| format!("e{i}")));
            w.write_record(&header)?;
            for (t, e) in texts.iter().zip(&rows) {
                let mut rec = vec![t.clone()];
                rec.extend(e.iter().map(|v| v.to_string()));
                w.write_record(&rec)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

fn eval_sts(a: EvalStsArgs) -> Result<()> {
    let pairs = StsPairs::read(&a.data)?;
    let model = a.model.load()?;
    let score = evaluate(&model, &pairs, a.model.batch_size, true)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&score)?);
    } else {
        println!(
            "{}: {} pairs, pooling {}, normalize {}: Spearman {:.2}  Pearson {:.2}  ({} sentences in {:.1} s)",
            a.data.display(),
            score.pairs,
            model.pooling,
            model.normalize,
            score.spearman,
            score.pearson,
            score.sentences,
            score.encode_s
        );
    }
    Ok(())
}

fn run(a: RunCmdArgs) -> Result<()> {
    let cfg = ExperimentConfig::load(&a.run.config, &a.run.overrides)?;
    let start = match (a.resume, a.restart) {
        (true, _) => Start::Resume,
        (_, true) => Start::Restart,
        _ => Start::Fresh,
    };
    interrupt::install()?;
    let o = experiment::run(&cfg, start)?;
    let s = &o.summary;
    println!(
        "{}: {} ({} trainable of {} parameters), {:.1} s, {:.1} train examples/s",
        o.dir.display(),
        s.scenario,
        s.params_trainable,
        s.params_total,
        s.wall_s,
        s.train_examples_per_s
    );
    for (task, m) in &s.final_metrics {
        println!(
            "  {task}: accuracy {:.4}  macro-F1 {:.4}  loss {:.4}",
            m.accuracy, m.macro_f1, m.loss
        );
    }
    Ok(())
}

fn inspect(a: RunArgs) -> Result<()> {
    let cfg = ExperimentConfig::load(&a.config, &a.overrides)?;
    let (model, plan) = experiment::build(&cfg)?;
    println!("{} ({}), encoder {}", cfg.name, cfg.scenario_label(), cfg.encoder.model);
    print!("{}", report::groups_table(&model.groups(), &plan)?);
    Ok(())
}

/// `auto` resolved for this machine (said on stderr when it was asked for); fp16 on a CPU is refused.
fn resolve_precision(requested: Precision, device: tch::Device) -> Result<Precision> {
    let choice = amp::choose(requested, device, &amp::Hardware::probe(device))?;
    if requested == Precision::Auto {
        eprintln!("precision: {} ({})", choice.used, choice.why);
    }
    Ok(choice.used)
}

fn predict(a: PredictArgs) -> Result<()> {
    let rd = RunDir::from_path(&a.run)?;
    match rd.state() {
        RunState::Complete => {}
        state => bail!("{} is not a finished run (its state: {state})", a.run.display()),
    }
    if !Summary::read(&a.run.join(SUMMARY_FILE))?.is_finite() {
        bail!(
            "{}: the run's final metrics are not finite (it diverged); its model cannot predict",
            a.run.display()
        );
    }
    let mut cfg = ExperimentConfig::load(&a.run.join(CONFIG_FILE), &[])?;
    if let Some(d) = a.device {
        cfg.device = d;
    }
    let ckpt = a.run.join(checkpoint::FILE);
    if !ckpt.is_file() {
        bail!("{}: missing (is {} a finished run?)", ckpt.display(), a.run.display());
    }
    let (model, _) = experiment::build(&cfg)?;
    checkpoint::load(&model, &ckpt)?;
    let device = model.sentence.device;
    let precision = resolve_precision(a.precision, device)?;
    let preds: Vec<serde_json::Value> = amp::autocast(device, precision, || model.predict(&cfg.tasks, &a.sentences))??
        .iter()
        .map(|p| p.to_json())
        .collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&preds)?);
    } else {
        for item in &preds {
            println!("{}", item["text"].as_str().unwrap_or_default());
            for (task, v) in item["tasks"].as_object().into_iter().flatten() {
                let probs: Vec<String> = v["probabilities"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(n, p)| format!("{n} {p}"))
                    .collect();
                println!(
                    "  {task}: {}  ({})",
                    v["label"].as_str().unwrap_or_default(),
                    probs.join(", ")
                );
            }
        }
    }
    Ok(())
}

fn print_comparison(cmp: &crate::compare::Comparison) {
    println!("{}", cmp.to_markdown());
    for w in &cmp.warnings {
        eprintln!("warning: {w}");
    }
    for p in &cmp.outputs {
        eprintln!("wrote {}", p.display());
    }
}

fn compare_runs(a: CompareArgs) -> Result<()> {
    // a shell glob such as results/* also matches files, unfinished `.partial` folders and folders
    // that are not runs (results/bench); a folder with either run file is a run, and must have both
    let runs: Vec<PathBuf> = a
        .runs
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".partial") && !p.to_string_lossy().ends_with(".old"))
        .filter(|p| p.join(SUMMARY_FILE).is_file() || p.join(METRICS_FILE).is_file())
        .collect();
    if runs.is_empty() {
        bail!("no run directories among the arguments");
    }
    let out = a
        .out
        .unwrap_or_else(|| runs[0].parent().map(PathBuf::from).unwrap_or_default());
    print_comparison(&crate::compare::compare(&runs, &out)?);
    Ok(())
}

fn plan_sweep(a: &SweepArgs) -> Result<Sweep> {
    if let Some(m) = &a.manifest {
        return Sweep::from_manifest(m);
    }
    let grid = a.grid.iter().map(|g| GridAxis::parse(g)).collect::<Result<Vec<_>>>()?;
    let cells = cells::plan(&a.configs, &grid, &a.seeds, &a.overrides)?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => cells::default_name(&a.configs, &a.overrides)?,
    };
    Sweep::planned(cells, &name)
}

fn sweep(a: SweepArgs, threads: Option<i32>) -> Result<()> {
    interrupt::install()?;
    let s = plan_sweep(&a)?;
    if a.list || a.status || a.cancel || a.index.is_some() {
        s.check_manifest()?;
    }
    if a.list {
        return crate::sweep::list(&s);
    }
    if a.status {
        return crate::sweep::status(&s);
    }
    if a.cancel {
        return crate::sweep::cancel(&s);
    }
    if let Some(ix) = a.index {
        let i = ix.resolve(s.cells.len(), |k| std::env::var(k).ok())?;
        return crate::sweep::run_one(&s, i, a.requeue_on_signal);
    }
    if a.slurm {
        return crate::sweep::submit(&s, &a.slurm_options, threads, a.out.as_deref(), a.dry_run);
    }
    if a.compare {
        print_comparison(&crate::sweep::compare_done(&s, a.out.as_deref())?);
        return Ok(());
    }
    let out = a.out.unwrap_or_else(|| s.cells[0].cfg.output_dir.clone());
    if let Some(cmp) = crate::sweep::run_all(&s, a.dry_run, &out)? {
        print_comparison(&cmp);
    }
    Ok(())
}

fn models(a: ModelsArgs) -> Result<()> {
    let list = crate::model_folder::list_models();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("Hugging Face cache: {}", crate::hub_cache::cache_dir().display());
    println!(
        "{:<44} {:<10} {:>12} {:>9}  {:<12}  path",
        "name", "model_type", "params", "size MB", "revision"
    );
    for m in &list {
        println!(
            "{:<44} {:<10} {:>12} {:>9.1}  {:<12}  {}",
            m.name,
            m.model_type.as_deref().unwrap_or("?"),
            m.params.map_or("?".to_string(), |p| p.to_string()),
            m.size_bytes as f64 / 1e6,
            m.revision
                .as_deref()
                .map_or("-".to_string(), |r| r.chars().take(12).collect()),
            m.path.display()
        );
    }
    Ok(())
}
