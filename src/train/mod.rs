//! Training: the loop (`trainer`: epochs and the cursor; `plan`: an epoch's steps; `step`: one optimisation
//! step; `joint`: a joint step's aggregated gradients; `weighted`: a joint step's loss weighting; `conflict`: its gradient-conflict diagnostics; `mtl`: the aggregators and weightings; `inflight`: step outputs awaiting a logging point; `eval`: evaluation points; `best`: early stopping and the best weights; `gradual`: gradual unfreezing; `hook`: what else is measured at them; `probe`: the STS probe; `drift`: layer-wise CKA to the pretrained encoder; `data`: a task's tokenised data), the
//! harness's AdamW, the schedule and seeds, batch sampling, and training checkpoints for exact resume.
//!
//! Invariants: nothing in a training step reads the device from the host (fp16's skip decision aside);
//! a resumed run is the uninterrupted run, bit for bit. Imports the layers below it (`model` and down), never
//! `run`.

pub mod adamw;
pub(crate) mod best;
mod conflict;
pub(crate) mod data;
pub(crate) mod drift;
pub(crate) mod eval;
pub(crate) mod gradual;
pub(crate) mod hook;
mod inflight;
mod joint;
pub mod mtl;
pub(crate) mod plan;
pub(crate) mod probe;
pub(crate) mod resume;
pub(crate) mod sampling;
pub(crate) mod schedule;
mod step;
pub(crate) mod trainer;
mod weighted;

pub(crate) use best::BestTracker;
pub(crate) use conflict::ConflictLog;
pub(crate) use data::TaskData;
pub(crate) use gradual::Unfreezing;
pub use schedule::lr_factor;
pub(crate) use trainer::{Checkpoints, FitStats, Setup, Trainer};
