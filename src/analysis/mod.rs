//! Reading results and representations back: comparing finished runs (table, plots, the gradient-conflict plot, retention and drift), STS evaluation of an
//! encoder, and linear CKA between two representations of the same sentences.
//!
//! Imports `record`, `encoder`, `data`, `model` (metrics) and the layers below; never `train` or `run`, so that
//! training can measure with it (probes and drift at evaluation points).

pub mod cka;
pub(crate) mod compare;
pub(crate) mod conflict;
pub(crate) mod like;
pub(crate) mod plot;
pub(crate) mod retention;
pub(crate) mod stat;
pub(crate) mod sts;
pub use sts::StsPairs;
