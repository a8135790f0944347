//! Representation drift (`analysis.drift`): at each measurement, linear CKA between the pretrained encoder's
//! and the current encoder's representations of the same fixed sentences, for every layer's output and for
//! the sentence embedding, one drift.csv row each (see `record::drift`).
//!
//! A layer's representation of a sentence is the mean of its token states over the attention mask
//! (`analysis::cka::mean_pool_tokens`, which says why); the sentence embedding is the encoder's own (its
//! pooling, and its normalisation when it has one).
//!
//! Invariants:
//! - the pretrained representations are taken when the hook is built, before a resumed run loads its
//!   checkpoint, so a resumed run compares against the same reference;
//! - layers are read through a twin of the encoder built to return every layer's output (the training
//!   encoder would otherwise keep a copy of each layer's output in every forward pass); its weights are
//!   copied from the current encoder at each measurement;
//! - it trains nothing and draws no random number; a representation equal to the reference bit for bit has
//!   CKA exactly 1 (a frozen encoder's, at every point), and so has epoch 0's, which is the reference itself
//!   (measured once, not twice).

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use crate::analysis::cka::{linear_cka, mean_pool_tokens};
use crate::config::DriftEvery;
use crate::encoder::backbone::Encoder;
use crate::encoder::pooling::{l2_normalize, pool};
use crate::encoder::sentence::SentenceEncoder;
use crate::encoder::tokenizer::length_sorted_batches;
use crate::model::MultiTaskModel;
use crate::record::{DriftRow, DriftWriter, MetricRow, DRIFT_FILE};
use crate::runtime::amp::{self, Precision};
use crate::train::hook::{EvalHook, EvalPoint};

pub(crate) struct DriftHook {
    ids: Vec<Vec<i64>>,
    batch_size: usize,
    twin: Encoder,
    every: DriftEvery,
    /// (layer name, pretrained representation [sentences, dim] in float64 on the CPU)
    reference: Vec<(String, Tensor)>,
    writer: DriftWriter,
}

impl DriftHook {
    /// Takes the pretrained representations from `model`'s encoder, which must still hold its pretrained
    /// weights.
    pub(crate) fn new(
        sentences: &[String],
        every: DriftEvery,
        model: &MultiTaskModel,
        writer: DriftWriter,
        precision: Precision,
        batch_size: usize,
    ) -> Result<Self> {
        let s = &model.sentence;
        let mut hook = DriftHook {
            ids: s.tokenizer.encode_all(sentences),
            batch_size,
            twin: s.encoder.layered_twin(&s.folder)?,
            every,
            reference: Vec::new(),
            writer,
        };
        hook.reference = hook.representations(s, precision)?;
        Ok(hook)
    }

    /// Every layer's representation and the sentence embedding, by name, from the twin's current weights.
    fn representations(&self, s: &SentenceEncoder, precision: Precision) -> Result<Vec<(String, Tensor)>> {
        let n = self.ids.len() as i64;
        let layers = self.twin.num_layers as usize;
        let mut out: Vec<Tensor> = (0..=layers)
            .map(|_| Tensor::zeros([n, self.twin.hidden_size], (Kind::Double, Device::Cpu)))
            .collect();
        let lengths: Vec<usize> = self.ids.iter().map(Vec::len).collect();
        tch::no_grad(|| -> Result<()> {
            for idx in length_sorted_batches(&lengths, self.batch_size) {
                crate::util::interrupt::check()?;
                let batch = s.tokenizer.batch_of(&self.ids, &idx, s.device);
                let states = amp::autocast(s.device, precision, || self.twin.layer_states(&batch.ids, &batch.mask))??;
                let index = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
                let last = states.last().map(|t| t.to_kind(Kind::Float));
                for (l, h) in states.iter().enumerate() {
                    let rows = mean_pool_tokens(h, &batch.mask)?.to_device(Device::Cpu);
                    let _ = out[l].index_copy_(0, &index, &rows);
                }
                if let Some(last) = last {
                    let pooled = pool(&last, &batch.mask, s.pooling);
                    let pooled = if s.normalize { l2_normalize(&pooled) } else { pooled };
                    let _ = out[layers].index_copy_(0, &index, &pooled.to_kind(Kind::Double).to_device(Device::Cpu));
                }
            }
            Ok(())
        })?;
        let names = (0..layers).map(|l| format!("layer.{l}")).chain(["pooled".to_string()]);
        Ok(names.zip(out).collect())
    }
}

impl EvalHook for DriftHook {
    fn evaluate(&mut self, at: &EvalPoint, model: &MultiTaskModel, precision: Precision) -> Result<Vec<MetricRow>> {
        if self.every == DriftEvery::Epoch && !at.epoch_end {
            return Ok(Vec::new());
        }
        // Before training (epoch 0) the encoder still holds the weights `new` took the reference from, so the
        // reference is today's representation: CKA 1 without a second pass over the sentences.
        let now = if at.epoch == 0 {
            None
        } else {
            self.twin.copy_weights_from(&model.sentence.encoder)?;
            Some(self.representations(&model.sentence, precision)?)
        };
        for (i, (layer, before)) in self.reference.iter().enumerate() {
            let cka = match now.as_ref().map(|n| &n[i].1) {
                Some(after) if !before.equal(after) => linear_cka(before, after)?,
                _ => 1.0,
            };
            self.writer.write(&DriftRow {
                run: at.run.clone(),
                scenario: at.scenario.clone(),
                epoch: at.epoch,
                step: at.step,
                layer: layer.clone(),
                cka,
            })?;
        }
        Ok(Vec::new())
    }

    fn own_file(&self) -> Option<(String, usize)> {
        Some((DRIFT_FILE.to_string(), self.writer.written()))
    }
}
