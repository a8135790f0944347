//! WordPiece tokenisation and padded batches.

use anyhow::{Context, Result};
use rust_tokenizers::tokenizer::{BertTokenizer, Tokenizer, TruncationStrategy};
use rust_tokenizers::vocab::Vocab;
use tch::{Device, Tensor};

use crate::encoder::model_folder::ModelFolder;
use crate::runtime::device::upload;

pub struct TextTokenizer {
    inner: BertTokenizer,
    pub max_length: usize,
    pad_id: i64,
}

impl TextTokenizer {
    pub fn new(folder: &ModelFolder, max_length: usize) -> Result<Self> {
        let inner = BertTokenizer::from_file(&folder.vocab, folder.lower_case, folder.strip_accents)
            .with_context(|| format!("{}: cannot read vocabulary", folder.vocab.display()))?;
        let pad_id = inner.vocab().token_to_id("[PAD]");
        Ok(TextTokenizer {
            inner,
            max_length,
            pad_id,
        })
    }

    /// Token ids with [CLS] and [SEP], truncated to max_length.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        self.inner
            .encode(text, None, self.max_length, &TruncationStrategy::LongestFirst, 0)
            .token_ids
    }

    pub fn encode_all(&self, texts: &[String]) -> Vec<Vec<i64>> {
        texts.iter().map(|t| self.encode(t)).collect()
    }

    /// Right-pads to the longest sequence of the batch (dynamic padding).
    pub fn batch(&self, seqs: &[&[i64]], device: Device) -> Batch {
        let width = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(seqs.len() * width);
        let mut mask = Vec::with_capacity(seqs.len() * width);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(self.pad_id, width - s.len()));
            mask.extend(std::iter::repeat_n(1i64, s.len()));
            mask.extend(std::iter::repeat_n(0i64, width - s.len()));
        }
        let shape = [seqs.len() as i64, width as i64];
        Batch {
            ids: upload(Tensor::from_slice(&ids).view(shape), device),
            mask: upload(Tensor::from_slice(&mask).view(shape), device),
        }
    }

    /// The batch of sequences `idx` picked out of `seqs`.
    pub fn batch_of(&self, seqs: &[Vec<i64>], idx: &[usize], device: Device) -> Batch {
        let refs: Vec<&[i64]> = idx.iter().map(|&i| seqs[i].as_slice()).collect();
        self.batch(&refs, device)
    }
}

pub struct Batch {
    pub ids: Tensor,
    pub mask: Tensor,
}

/// Indices grouped into batches of similar length, so that little padding is computed.
/// Longest first, as sentence-transformers does, so that a too-large batch fails early.
pub(crate) fn length_sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order.chunks(batch_size.max(1)).map(|c| c.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_every_index_once_longest_first() {
        let lengths = [3, 9, 1, 7, 5];
        let b = length_sorted_batches(&lengths, 2);
        assert_eq!(b, vec![vec![1, 3], vec![4, 0], vec![2]]);
    }
}
