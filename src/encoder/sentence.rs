//! The sentence encoder: tokenizer + transformer + pooling (+ L2 normalisation), the Rust counterpart of a
//! sentence-transformers model made of Transformer, Pooling and Normalize modules.

use anyhow::{bail, Result};
use indicatif::ProgressBar;
use tch::{Device, Kind, Tensor};

use crate::encoder::backbone::Encoder;
use crate::encoder::model_folder::ModelFolder;
use crate::encoder::pooling::{l2_normalize, pool, Pooling};
use crate::encoder::tokenizer::{length_sorted_batches, Batch, TextTokenizer};
use crate::runtime::amp::Precision;
use crate::util::progress::progress_bar;

/// How to turn token states into a sentence vector; unset fields take the model folder's defaults.
#[derive(Debug, Clone, Default)]
pub struct SentenceOptions {
    pub pooling: Option<Pooling>,
    pub normalize: Option<bool>,
    pub max_length: Option<usize>,
    /// the transformer's weights in bfloat16 or float16 (inference only; pooling stays in f32); `auto` must be
    /// resolved (amp::choose) before it gets here
    pub precision: Precision,
}

pub struct SentenceEncoder {
    pub folder: ModelFolder,
    pub encoder: Encoder,
    pub tokenizer: TextTokenizer,
    pub pooling: Pooling,
    pub normalize: bool,
    pub device: Device,
}

impl SentenceEncoder {
    pub fn load(model: &str, opts: &SentenceOptions, device: Device) -> Result<Self> {
        let folder = ModelFolder::open(model)?;
        let encoder = Encoder::load(&folder, device)?;
        Self::from_parts(folder, encoder, opts, device)
    }

    pub fn from_parts(
        folder: ModelFolder,
        mut encoder: Encoder,
        opts: &SentenceOptions,
        device: Device,
    ) -> Result<Self> {
        match opts.precision {
            Precision::Bf16 => encoder.vs.bfloat16(),
            Precision::Fp16 => encoder.vs.half(),
            Precision::Fp32 => {}
            Precision::Auto => bail!("precision auto must be resolved before the encoder loads"),
        }
        let pooling = opts.pooling.or(folder.sentence.pooling).unwrap_or(Pooling::Mean);
        let normalize = opts.normalize.unwrap_or(folder.sentence.normalize);
        // position ids run to max_length - 1 and index the position table: a longer limit would fail
        // inside the forward pass on the first long input, so an asked-for one is refused before any
        // work, and the default (128) is capped to what the model has
        let max_length = match opts.max_length.or(folder.sentence.max_seq_length) {
            Some(n) if n as i64 > folder.shape.max_positions => bail!(
                "max_length {n} exceeds max_position_embeddings {} in {} (use a max_length of at most {})",
                folder.shape.max_positions,
                folder.config_path.display(),
                folder.shape.max_positions
            ),
            Some(n) => n,
            None => 128.min(folder.shape.max_positions as usize),
        };
        if max_length < 2 {
            bail!("max_length {max_length} leaves no room for [CLS] and [SEP] (use at least 2)");
        }
        let tokenizer = TextTokenizer::new(&folder, max_length)?;
        Ok(SentenceEncoder {
            folder,
            encoder,
            tokenizer,
            pooling,
            normalize,
            device,
        })
    }

    pub fn dim(&self) -> i64 {
        self.encoder.hidden_size
    }

    /// Sentence vectors of one padded batch; `train` turns dropout on and keeps the graph.
    pub fn forward_t(&self, batch: &Batch, train: bool) -> Result<Tensor> {
        let hidden = self
            .encoder
            .forward_t(&batch.ids, &batch.mask, train)?
            .to_kind(Kind::Float);
        let pooled = pool(&hidden, &batch.mask, self.pooling);
        Ok(if self.normalize { l2_normalize(&pooled) } else { pooled })
    }

    /// Encodes pre-tokenised sequences in length-sorted batches, without a graph; rows come back in input
    /// order, on the CPU, as f32.
    pub fn encode_ids(&self, seqs: &[Vec<i64>], batch_size: usize, progress: bool) -> Result<Tensor> {
        let lengths: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let batches = length_sorted_batches(&lengths, batch_size);
        let bar = if progress && seqs.len() > batch_size {
            progress_bar(seqs.len() as u64, "encoding")
        } else {
            ProgressBar::hidden()
        };
        let mut out = Tensor::zeros([seqs.len() as i64, self.dim()], (Kind::Float, Device::Cpu));
        tch::no_grad(|| -> Result<()> {
            for idx in &batches {
                crate::util::interrupt::check()?;
                let batch = self.tokenizer.batch_of(seqs, idx, self.device);
                let emb = self
                    .forward_t(&batch, false)?
                    .to_kind(Kind::Float)
                    .to_device(Device::Cpu);
                let index = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
                let _ = out.index_copy_(0, &index, &emb);
                bar.inc(idx.len() as u64);
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        Ok(out)
    }

    pub fn encode(&self, texts: &[String], batch_size: usize, progress: bool) -> Result<Tensor> {
        self.encode_ids(&self.tokenizer.encode_all(texts), batch_size, progress)
    }
}
