//! Parameter groups: the unit that freezing, reporting and checkpoints work on.
//!
//! A group is typed, so code asks "does layer 3 train?" rather than matching `"layer.3"` strings; its
//! `Display` gives the names used in metrics, summary.json and `inspect` (`embeddings`, `layer.N`,
//! `pooler`, `head:<task>`), and the derived order is the model's order: embeddings, layers bottom-up,
//! pooler, then heads.

use std::fmt;

use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Embeddings,
    Layer(usize),
    /// BERT's pooler: unused by mean/cls/max pooling
    Pooler,
    Head(String),
}

impl Group {
    /// The group of an encoder variable, from its VarStore name (BERT or DistilBERT naming):
    /// `...layer.N...` is layer N, `pooler...` the pooler, everything else the embeddings.
    pub fn of_encoder_var(name: &str) -> Group {
        let parts: Vec<&str> = name.split('.').collect();
        if let Some(i) = parts.iter().position(|p| *p == "layer") {
            if let Some(n) = parts.get(i + 1).and_then(|n| n.parse().ok()) {
                return Group::Layer(n);
            }
        }
        if parts.contains(&"pooler") {
            return Group::Pooler;
        }
        Group::Embeddings
    }

    pub fn is_head(&self) -> bool {
        matches!(self, Group::Head(_))
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::Embeddings => f.write_str("embeddings"),
            Group::Layer(n) => write!(f, "layer.{n}"),
            Group::Pooler => f.write_str("pooler"),
            Group::Head(task) => write!(f, "head:{task}"),
        }
    }
}

/// The variables of one group, named uniquely across the model's VarStores.
pub struct ParamGroup {
    pub group: Group,
    pub vars: Vec<(String, Tensor)>,
    /// the architecture has this group but the checkpoint did not (BERT's pooler saved with
    /// `add_pooling_layer=False`): no variables, reported as absent rather than silently dropped
    pub absent: bool,
}

impl ParamGroup {
    pub fn numel(&self) -> i64 {
        self.vars.iter().map(|(_, t)| t.numel() as i64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_layer_index() {
        assert_eq!(
            Group::of_encoder_var("encoder.layer.3.attention.self.query.weight"),
            Group::Layer(3)
        );
        assert_eq!(
            Group::of_encoder_var("distilbert.transformer.layer.5.ffn.lin1.bias"),
            Group::Layer(5)
        );
        assert_eq!(
            Group::of_encoder_var("embeddings.word_embeddings.weight"),
            Group::Embeddings
        );
        assert_eq!(Group::of_encoder_var("pooler.dense.weight"), Group::Pooler);
    }

    #[test]
    fn names_and_order_are_the_reported_ones() {
        let mut gs = [
            Group::Head("a".into()),
            Group::Pooler,
            Group::Layer(10),
            Group::Layer(2),
            Group::Embeddings,
        ];
        gs.sort();
        let names: Vec<String> = gs.iter().map(Group::to_string).collect();
        assert_eq!(names, ["embeddings", "layer.2", "layer.10", "pooler", "head:a"]);
    }
}
