//! config.json against the shapes of the weights themselves, before anything is built from config.json:
//! rust-bert allocates every variable from config.json's sizes, so a `hidden_size: 3840000` would ask for
//! hundreds of gigabytes and a `num_hidden_layers: 100000` would grow without end before strict loading
//! could notice. Each size is compared with the tensor that carries it (word, position and token-type
//! embeddings, the first feed-forward layer, the number of `layer.N` blocks); a disagreement is one line
//! naming config.json, the key and the tensor.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use crate::encoder::model_folder::{size_keys, Architecture, ModelFolder};

/// Where each size lives, under the VarStore's (canonical) names: (tensor, dimension, config key, value).
fn expectations(folder: &ModelFolder) -> Vec<(String, usize, &'static str, i64)> {
    let s = folder.shape;
    let [hidden, _, _, inter, positions, vocab] = size_keys(folder.arch);
    let (emb, layer0) = match folder.arch {
        Architecture::Bert => ("embeddings", "encoder.layer.0.intermediate.dense.weight".to_string()),
        Architecture::DistilBert => (
            "distilbert.embeddings",
            "distilbert.transformer.layer.0.ffn.lin1.weight".to_string(),
        ),
    };
    let words = format!("{emb}.word_embeddings.weight");
    let mut out = vec![
        (words.clone(), 1, hidden, s.hidden_size),
        (words, 0, vocab, s.vocab_size),
        (
            format!("{emb}.position_embeddings.weight"),
            0,
            positions,
            s.max_positions,
        ),
        (format!("{emb}.position_embeddings.weight"), 1, hidden, s.hidden_size),
        (layer0, 0, inter, s.intermediate_size),
    ];
    if let Some(types) = s.type_vocab_size {
        out.push((
            format!("{emb}.token_type_embeddings.weight"),
            0,
            "type_vocab_size",
            types,
        ));
    }
    out
}

/// The `N` of every `<prefix>N.` block among the tensor names.
fn layer_indices<'a>(names: impl Iterator<Item = &'a String>, prefix: &str) -> BTreeSet<u64> {
    names
        .filter_map(|n| n.strip_prefix(prefix)?.split('.').next()?.parse().ok())
        .collect()
}

/// Checks config.json's sizes against `shapes` (canonical tensor name → shape, as the weights hold them).
/// A tensor that is absent is left to strict loading, which names every missing weight.
pub(crate) fn check(folder: &ModelFolder, shapes: &BTreeMap<String, Vec<i64>>) -> Result<()> {
    let (cfg, weights) = (folder.config_path.display(), folder.weights.display());
    for (tensor, dim, key, value) in expectations(folder) {
        if let Some(shape) = shapes.get(&tensor) {
            if shape.get(dim) != Some(&value) {
                bail!("{cfg}: `{key}` is {value}, but weight `{tensor}` has shape {shape:?} in {weights}");
            }
        }
    }
    let [_, _, layers_key, ..] = size_keys(folder.arch);
    let prefix = match folder.arch {
        Architecture::Bert => "encoder.layer.",
        Architecture::DistilBert => "distilbert.transformer.layer.",
    };
    let found = layer_indices(shapes.keys(), prefix);
    let want = folder.shape.num_layers as u64;
    let first_absent = (0..want).find(|i| !found.contains(i));
    let layers = |n: usize| {
        if n == 1 {
            "1 layer".to_string()
        } else {
            format!("{n} layers")
        }
    };
    let beyond = found.iter().find(|&&i| i >= want);
    if let Some(i) = first_absent {
        bail!(
            "{cfg}: `{layers_key}` is {want}, but {weights} has {} (no weight `{prefix}{i}.*`)",
            layers(found.len())
        );
    }
    if let Some(i) = beyond {
        bail!(
            "{cfg}: `{layers_key}` is {want}, but {weights} has {} (weights `{prefix}{i}.*` beyond them)",
            layers(found.len())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_blocks_are_counted_by_index() {
        let names: Vec<String> = [
            "encoder.layer.0.a",
            "encoder.layer.1.b",
            "encoder.layer.1.c",
            "pooler.x",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(layer_indices(names.iter(), "encoder.layer."), BTreeSet::from([0, 1]));
    }
}
