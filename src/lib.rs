//! harness: sentence embeddings and multi-task learning on libtorch.
//!
//! The data flows one way: config → datasets → model → trainer → metrics writer.

pub mod adamw;
pub mod amp;
pub mod cells;
pub mod checkpoint;
pub mod cli;
pub mod compare;
pub mod config;
pub mod data;
pub mod device;
pub mod encoder;
pub mod experiment;
pub mod freeze;
pub mod group;
pub mod heads;
pub mod hub_cache;
pub mod interrupt;
pub mod metrics;
pub mod model;
pub mod model_folder;
pub mod mtl;
pub mod plot;
pub mod pooling;
pub mod progress;
pub mod record;
pub mod report;
pub mod resume;
pub mod run_dir;
pub mod sampling;
pub mod sentence;
pub mod slurm;
pub mod sts;
pub mod sweep;
pub mod tokenizer;
pub mod train;
pub mod versions;
