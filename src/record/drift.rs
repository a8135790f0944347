//! `drift.csv` (`analysis.drift`): how far each layer's representations have moved from the pretrained
//! encoder's. One row per measurement and layer (`layer.N`, the layer's output; `pooled`, the sentence
//! embedding): linear CKA between the pretrained and the current encoder's representations of the same fixed
//! sentences (1: the same up to rotation and scale).
//!
//! Rows are flushed one by one, and a resumed run cuts the file back to the rows its checkpoint counted, as
//! metrics.csv is.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::record::row_log::{read_rows, CsvRow, RowLog};

pub const DRIFT_FILE: &str = "drift.csv";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftRow {
    pub run: String,
    pub scenario: String,
    /// 0 before training
    pub epoch: usize,
    pub step: usize,
    pub layer: String,
    pub cka: f64,
}

impl CsvRow for DriftRow {
    const HEADER: &'static [&'static str] = &["run", "scenario", "epoch", "step", "layer", "cka"];
    const WHAT: &'static str = "a drift row";
}

/// Reads a drift.csv (the file and the row named on error).
pub fn read_drift(path: &Path) -> Result<Vec<DriftRow>> {
    read_rows(path)
}

/// Appends rows to drift.csv, each flushed.
pub(crate) type DriftWriter = RowLog<DriftRow>;
