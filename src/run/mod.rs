//! A run's life: one experiment end to end, and its place on disk. Only `run_dir` creates, renames or deletes
//! a run's paths. Imports `train` and the layers below it.

pub mod experiment;
pub mod finished;
pub(crate) mod provenance;
pub(crate) mod run_dir;
