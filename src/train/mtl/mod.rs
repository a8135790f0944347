//! Multi-task optimisation: the numerical core of issue 18 (aggregators, weightings, the conflict helper).
//!
//! May import only `util` and `runtime` (and its own files): it knows nothing of the training loop, configs
//! or models; `train::step` calls it with a Jacobian and the task losses.
//!
//! Two families, both independent of the training loop:
//! - gradient-level **aggregators** ([`Aggregator`], built from an [`AggregatorKind`]): they map the m x n
//!   Jacobian J (row i = task i's gradient of the shared parameters, flattened) to one n-vector that
//!   replaces the shared parameters' gradient;
//! - loss-level **weightings** ([`weighting`]): they turn the m task losses into one loss to backward (or,
//!   for GradNorm, into weights for J), with a state a training checkpoint saves and restores exactly.
//!
//! Conventions (the contract the tests check against the reference libraries):
//! - Every aggregator follows torchjd 0.18.0 (`torchjd.aggregation`), with torchjd's defaults: the
//!   dual-cone projector (UPGrad, DualProj) normalises G by its trace (zero when the trace is below
//!   `norm_eps` 1e-4) and adds `reg_eps` 1e-4 to the diagonal; MGDA is torchjd's Frank-Wolfe (epsilon
//!   1e-3, 100 iterations); CAGrad normalises G (norm_eps 1e-4) and returns zero weights when
//!   `||J^T w||` of the normalised problem is below norm_eps; IMTL-G uses `pinv(G)` with torch's default
//!   cut-off and returns zeros when the weights sum below 1e-12; Aligned-MTL uses `scale_mode = min`;
//!   ConFIG uses the sum preference vector; PCGrad projects each task's gradient on the others in a
//!   fresh `torch.randperm(m)` order drawn from libtorch's global CPU generator (as torchjd does, so a
//!   seeded run is reproducible; LibMTL's Python-`random` order is not followed).
//! - One deliberate deviation: with one task (m = 1) every aggregator returns exactly that row (torchjd's
//!   CAGrad would return (1 + c) times it).
//! - The Gramian G = J J^T is accumulated in float64 (column chunks, so a float32 Jacobian on a GPU never
//!   needs a full float64 copy) and every m x m problem is solved in float64 on the CPU; the weights are
//!   then applied to J in J's own dtype and device (`sum_i w_i J_i`, elementwise, so TF32 matmuls do not
//!   touch it). ConFIG is not Gramian-based: it takes `pinv` of the normalised rows in J's dtype, as torchjd.
//! - Nash-MTL is not offered: torchjd's version is stateful and iterates ECOS with warm starts, which
//!   cannot be reproduced exactly.
//! - Errors (not panics) for a Jacobian that is not a 2-D floating tensor with m >= 1, or whose Gramian
//!   is not finite (e.g. an AMP overflow: the caller skips the step, and unscales J before aggregating,
//!   since the norm thresholds are absolute).

pub mod aligned_mtl;
pub mod cagrad;
pub mod con_fig;
pub mod conflict;
pub mod dualproj;
pub mod gramian;
pub mod imtl_g;
pub mod mgda;
pub mod pcgrad;
pub mod qp;
pub mod sum_mean;
pub mod upgrad;
pub mod weighting;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The aggregator a config names; parameters default to torchjd's (CAGrad's c to 0.5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AggregatorKind {
    Sum {},
    Mean {},
    Pcgrad {},
    Mgda {
        #[serde(default = "mgda::default_epsilon")]
        epsilon: f64,
        #[serde(default = "mgda::default_max_iters")]
        max_iters: usize,
    },
    ImtlG {},
    Cagrad {
        #[serde(default = "cagrad::default_c")]
        c: f64,
    },
    Upgrad {},
    Dualproj {},
    AlignedMtl {},
    Config {},
}

impl AggregatorKind {
    /// The snake_case name used in configs and file names.
    pub fn name(&self) -> &'static str {
        match self {
            AggregatorKind::Sum {} => "sum",
            AggregatorKind::Mean {} => "mean",
            AggregatorKind::Pcgrad {} => "pcgrad",
            AggregatorKind::Mgda { .. } => "mgda",
            AggregatorKind::ImtlG {} => "imtl_g",
            AggregatorKind::Cagrad { .. } => "cagrad",
            AggregatorKind::Upgrad {} => "upgrad",
            AggregatorKind::Dualproj {} => "dualproj",
            AggregatorKind::AlignedMtl {} => "aligned_mtl",
            AggregatorKind::Config {} => "config",
        }
    }

    /// The kind with default parameters for a bare name (`mgda`, `cagrad`, ...).
    pub fn from_name(name: &str) -> Result<AggregatorKind> {
        Ok(match name {
            "sum" => AggregatorKind::Sum {},
            "mean" => AggregatorKind::Mean {},
            "pcgrad" => AggregatorKind::Pcgrad {},
            "mgda" => AggregatorKind::Mgda {
                epsilon: mgda::default_epsilon(),
                max_iters: mgda::default_max_iters(),
            },
            "imtl_g" => AggregatorKind::ImtlG {},
            "cagrad" => AggregatorKind::Cagrad { c: cagrad::default_c() },
            "upgrad" => AggregatorKind::Upgrad {},
            "dualproj" => AggregatorKind::Dualproj {},
            "aligned_mtl" => AggregatorKind::AlignedMtl {},
            "config" => AggregatorKind::Config {},
            other => bail!(
                "unknown aggregator `{other}` (expected one of: sum, mean, pcgrad, mgda, imtl_g, cagrad, upgrad, \
                 dualproj, aligned_mtl, config)"
            ),
        })
    }
}

/// Maps the m x n Jacobian to the n-vector that becomes the shared parameters' gradient.
pub trait Aggregator {
    /// `jacobian`: m x n floating tensor (any device); returns an n-vector of the same dtype and device.
    fn aggregate(&self, jacobian: &Tensor) -> Result<Tensor>;
}

/// Builds the aggregator of `kind`, validating its parameters.
pub fn build(kind: &AggregatorKind) -> Result<Box<dyn Aggregator>> {
    use gramian::GramianAggregator as G;
    Ok(match kind {
        AggregatorKind::Sum {} => Box::new(sum_mean::Sum),
        AggregatorKind::Mean {} => Box::new(sum_mean::Mean),
        AggregatorKind::Pcgrad {} => Box::new(G(pcgrad::PcGrad)),
        AggregatorKind::Mgda { epsilon, max_iters } => Box::new(G(mgda::Mgda::new(*epsilon, *max_iters)?)),
        AggregatorKind::ImtlG {} => Box::new(G(imtl_g::ImtlG)),
        AggregatorKind::Cagrad { c } => Box::new(G(cagrad::CaGrad::new(*c)?)),
        AggregatorKind::Upgrad {} => Box::new(G(upgrad::UpGrad)),
        AggregatorKind::Dualproj {} => Box::new(G(dualproj::DualProj)),
        AggregatorKind::AlignedMtl {} => Box::new(G(aligned_mtl::AlignedMtl)),
        AggregatorKind::Config {} => Box::new(con_fig::ConFig),
    })
}

/// Checks that `jacobian` is an m x n floating matrix with m >= 1; returns (m, n).
pub fn check_jacobian(jacobian: &Tensor) -> Result<(usize, usize)> {
    let size = jacobian.size();
    if size.len() != 2 || size[0] < 1 {
        bail!("the Jacobian must be an m x n matrix with m >= 1, got shape {size:?}");
    }
    if !is_float(jacobian.kind()) {
        bail!(
            "the Jacobian must be a floating-point tensor, got {:?}",
            jacobian.kind()
        );
    }
    Ok((size[0] as usize, size[1] as usize))
}

/// Whether a tensor kind is a real floating-point type.
pub fn is_float(kind: tch::Kind) -> bool {
    use tch::Kind::*;
    matches!(kind, Half | BFloat16 | Float | Double)
}

/// `sum_i w_i J_i` in J's dtype and device, one row at a time (elementwise: no TF32 matmul, no m x n temporary).
pub fn combine(jacobian: &Tensor, weights: &[f64]) -> Tensor {
    let mut acc = jacobian.get(0) * weights[0];
    for (i, w) in weights.iter().enumerate().skip(1) {
        acc += jacobian.get(i as i64) * *w;
    }
    acc
}
