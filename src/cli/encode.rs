//! `embed`, `eval-sts` and `models`: the sentence encoder on its own, and the models it can load.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use crate::analysis::sts::{evaluate, StsPairs};
use crate::data::read_lines;
use crate::encoder::pooling::Pooling;
use crate::encoder::sentence::{SentenceEncoder, SentenceOptions};
use crate::runtime::amp::{self, Precision};
use crate::runtime::device::parse_device;

#[derive(Args)]
pub(super) struct ModelsArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub(crate) json: bool,
}

/// Which encoder, and how its token states become a sentence vector.
#[derive(Args, Clone)]
pub(super) struct ModelArgs {
    /// A local Hugging Face folder (config.json, vocab.txt, model.safetensors), a packaged name
    /// (all-MiniLM-L6-v2), or a hub id in the local Hugging Face cache, e.g. distilbert-base-uncased or
    /// org/name@revision (see `harness models`; nothing is downloaded)
    #[arg(long, default_value = "all-MiniLM-L6-v2")]
    pub(crate) model: String,
    /// Pooling over token states (default: the folder's 1_Pooling/config.json, else mean)
    #[arg(long, value_enum)]
    pub(crate) pooling: Option<Pooling>,
    /// L2-normalise embeddings (default: on when the folder's modules.json lists a Normalize module)
    #[arg(long, conflicts_with = "no_normalize")]
    pub(crate) normalize: bool,
    /// Do not L2-normalise embeddings
    #[arg(long)]
    pub(crate) no_normalize: bool,
    /// Truncate inputs to this many tokens, [CLS] and [SEP] included (default: the folder's
    /// sentence_bert_config.json max_seq_length, else 128)
    #[arg(long)]
    pub(crate) max_length: Option<usize>,
    /// Sentences per forward pass
    #[arg(long, default_value_t = 32)]
    pub(crate) batch_size: usize,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
    /// The transformer's weights in bf16 (faster on CPUs with AMX/AVX512-BF16 and on GPUs) or fp16 (CUDA
    /// only), at the cost of exact parity with fp32; auto: bf16 where native, else fp32. Pooling and
    /// normalisation stay in float32
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub(crate) precision: Precision,
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
        if self.batch_size == 0 {
            bail!("--batch-size 0 is out of range (expected 1 or more sentences per forward pass)");
        }
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
pub(super) enum Format {
    Json,
    Csv,
}

#[derive(Args)]
pub(super) struct EmbedArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Output format: json (array of {text, embedding}) or csv (text, then one column per dimension)
    #[arg(long, value_enum, default_value = "json")]
    pub(crate) format: Format,
    /// Read sentences from this file, one per line
    #[arg(long, conflicts_with = "sentences")]
    pub(crate) input: Option<PathBuf>,
    /// Sentences to embed
    pub(crate) sentences: Vec<String>,
}

#[derive(Args)]
pub(super) struct EvalStsArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// STS file with columns sentence1, sentence2, score (TSV, quoting off)
    #[arg(long, default_value = "../shared/data/stsb/test.tsv")]
    pub(crate) data: PathBuf,
    /// Print the result as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

pub(super) fn embed(a: EmbedArgs) -> Result<()> {
    let texts = match &a.input {
        Some(p) => read_lines(p)?,
        None if a.sentences.is_empty() => bail!("no input: give sentences as arguments or --input FILE"),
        None => a.sentences.clone(),
    };
    let model = a.model.load()?;
    let emb = model.encode(&texts, a.model.batch_size, true)?;
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(emb)?;
    if let Some((i, _)) = rows.iter().enumerate().find(|(_, e)| e.iter().any(|v| !v.is_finite())) {
        bail!(
            "the embedding of sentence {} is not finite (NaN or infinite values): the model's weights or \
             precision are broken; nothing was printed",
            i + 1
        );
    }
    // built whole, then written through `out!`, so a closed stdout ends the program quietly
    let mut out: Vec<u8> = Vec::new();
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
            let mut w = csv::Writer::from_writer(&mut out);
            let mut header = vec!["text".to_string()];
            header.extend((0..model.dim()).map(|i| format!("e{i}")));
            w.write_record(&header)?;
            for (t, e) in texts.iter().zip(&rows) {
                let mut rec = vec![t.clone()];
                rec.extend(e.iter().map(|v| v.to_string()));
                w.write_record(&rec)?;
            }
            w.flush()?;
            drop(w);
        }
    }
    crate::out_raw!("{}", String::from_utf8_lossy(&out));
    Ok(())
}

pub(super) fn eval_sts(a: EvalStsArgs) -> Result<()> {
    let pairs = StsPairs::read(&a.data)?;
    let model = a.model.load()?;
    let score = evaluate(&model, &pairs, a.model.batch_size, true)?;
    if a.json {
        crate::out!("{}", serde_json::to_string_pretty(&score)?);
    } else {
        crate::out!(
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

/// `auto` resolved for this machine (said on stderr when it was asked for); fp16 on a CPU is refused.
pub(super) fn resolve_precision(requested: Precision, device: tch::Device) -> Result<Precision> {
    let choice = amp::choose(requested, device, &amp::Hardware::probe(device))?;
    if requested == Precision::Auto {
        crate::say!("precision: {} ({})", choice.used, choice.why);
    }
    Ok(choice.used)
}

pub(super) fn models(a: ModelsArgs) -> Result<()> {
    let list = crate::encoder::model_folder::list_models();
    if a.json {
        crate::out!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    crate::out!(
        "Hugging Face cache: {}",
        crate::encoder::hub_cache::cache_dir().display()
    );
    crate::out!(
        "{:<44} {:<10} {:>12} {:>9}  {:<12}  path",
        "name",
        "model_type",
        "params",
        "size MB",
        "revision"
    );
    for m in &list {
        crate::out!(
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
