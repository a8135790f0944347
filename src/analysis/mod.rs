//! Reading results back: comparing finished runs (table, plots) and STS evaluation of an encoder. Reads
//! records; never writes into a run's folder.
//!
//! Imports `record`, `encoder`, `data`, `model` (metrics) and the layers below; never `train` or `run`.

pub(crate) mod compare;
pub(crate) mod plot;
pub(crate) mod sts;
pub use sts::StsPairs;
