//! `conflict.csv`: where in the encoder tasks' gradients agree or fight (`train.mtl.log_conflict_every`). One
//! row per logged step, parameter group (`embeddings`, `layer.N`, and `encoder`: all its trainable tensors)
//! and task pair: the cosine of the two tasks' gradients of that group and the ratio of their norms. A value
//! that is undefined (a zero gradient) is an empty cell, never NaN.
//!
//! Rows are flushed one by one, and a resumed run cuts the file back to the rows its checkpoint counted, as
//! metrics.csv is.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::record::row_log::{read_rows, CsvRow, RowLog};

pub const CONFLICT_FILE: &str = "conflict.csv";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRow {
    /// the optimizer step (1-based) whose gradients these are, before its update
    pub step: usize,
    pub epoch: usize,
    pub group: String,
    pub task_a: String,
    pub task_b: String,
    pub cosine: Option<f64>,
    /// ||g_a|| / ||g_b||
    pub norm_ratio: Option<f64>,
}

impl CsvRow for ConflictRow {
    const HEADER: &'static [&'static str] = &["step", "epoch", "group", "task_a", "task_b", "cosine", "norm_ratio"];
    const WHAT: &'static str = "a conflict row";
}

/// Reads a conflict.csv (the file and the row named on error).
pub fn read_conflicts(path: &Path) -> Result<Vec<ConflictRow>> {
    read_rows(path)
}

/// Appends rows to conflict.csv, each flushed.
pub(crate) type ConflictWriter = RowLog<ConflictRow>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_a_resume_cuts_back() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(CONFLICT_FILE);
        let row = |step, cosine| ConflictRow {
            step,
            epoch: 1,
            group: "layer.0".into(),
            task_a: "a".into(),
            task_b: "b".into(),
            cosine,
            norm_ratio: Some(0.5),
        };
        let mut w = ConflictWriter::create(&p).unwrap();
        for (s, c) in [(1, Some(-0.25)), (2, None), (3, Some(1.0))] {
            w.write(&row(s, c)).unwrap();
        }
        assert_eq!(
            read_conflicts(&p).unwrap(),
            vec![row(1, Some(-0.25)), row(2, None), row(3, Some(1.0))]
        );
        let w = ConflictWriter::truncate_to(&p, 2).unwrap();
        assert_eq!(w.written(), 2);
        assert_eq!(read_conflicts(&p).unwrap().len(), 2);
        assert!(ConflictWriter::truncate_to(&p, 5).is_err());
    }
}
