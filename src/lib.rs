//! harness: sentence embeddings and multi-task learning on libtorch.
//!
//! The folders are layers; each imports only from the layers below it (checked by `tests/architecture.rs`),
//! so data flows one way: config → data → model → trainer → records. ARCHITECTURE.md is the codemap.
//!
//! Layers, bottom up: util, runtime, encoder, data, config, record, model, analysis, train, run, sweep, cli.

#![warn(unreachable_pub)]

pub mod analysis;
pub mod cli;
pub mod config;
pub mod data;
pub mod encoder;
pub mod model;
pub mod record;
pub mod run;
pub mod runtime;
pub mod sweep;
pub mod train;
pub mod util;
