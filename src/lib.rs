//! harness: sentence embeddings and multi-task learning on libtorch.
//!
//! The data flows one way: config → datasets → model → trainer → metrics writer.

pub mod cli;
pub mod data;
pub mod device;
pub mod encoder;
pub mod metrics;
pub mod pooling;
pub mod sentence;
pub mod sts;
pub mod tokenizer;
