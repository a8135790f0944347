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
    /// Initialised on the CPU from the torch generator, then moved to `device`: with the encoder also built on the
    /// CPU (`Encoder::load`), a run on CUDA starts from the very heads a CPU run of the same seed starts from (the
    /// CUDA generator draws other numbers), which is what lets `scripts/gpu-check` compare the two runs before and
    /// after training.
    pub fn new(task: &str, cfg: &HeadConfig, in_dim: i64, num_labels: usize, device: Device) -> Head {
        let mut vs = nn::VarStore::new(Device::Cpu);
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
        vs.set_device(device); // moves the variables in place, so `layers` holds the moved tensors
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
