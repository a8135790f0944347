//! Task heads: a classifier on the sentence vector, each in its own VarStore so that it can be frozen,
//! saved and loaded on its own.

use tch::nn::{self, Module};
use tch::{Device, Tensor};

use crate::config::HeadConfig;

enum Layers {
    Linear(nn::Linear),
    Mlp {
        hidden: nn::Linear,
        out: nn::Linear,
        dropout: f64,
    },
}

pub struct Head {
    pub task: String,
    pub vs: nn::VarStore,
    layers: Layers,
}

impl Head {
    pub fn new(task: &str, cfg: &HeadConfig, in_dim: i64, num_labels: usize, device: Device) -> Head {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let n = num_labels as i64;
        let layers = match cfg {
            HeadConfig::Linear(_) => Layers::Linear(nn::linear(&root / "out", in_dim, n, Default::default())),
            HeadConfig::Mlp(m) => Layers::Mlp {
                hidden: nn::linear(&root / "hidden", in_dim, m.hidden, Default::default()),
                out: nn::linear(&root / "out", m.hidden, n, Default::default()),
                dropout: m.dropout,
            },
        };
        Head {
            task: task.to_string(),
            vs,
            layers,
        }
    }

    /// Logits, [batch, num_labels].
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match &self.layers {
            Layers::Linear(l) => l.forward(x),
            Layers::Mlp { hidden, out, dropout } => {
                out.forward(&hidden.forward(x).gelu("none").dropout(*dropout, train))
            }
        }
    }
}
