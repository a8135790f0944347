//! The records a run writes, one definition each, written and read by serde: `metrics.csv` rows
//! (`MetricRow`), `summary.json` (`Summary`), `conflict.csv` rows (`ConflictRow`), `drift.csv` rows (`DriftRow`), and the names of the files in a run folder. Both files carry
//! the run folder's format version (`FORMAT`): summary.json as `format`, metrics.csv through its header (format
//! 1: the eleven base columns; format 2 may append one column per extra metric). Readers take both formats.
//!
//! Imports `util` and `runtime` (the precision type) only: `analysis` and the scripts read these records
//! without anything else.

mod appender;
mod conflict;
mod drift;
mod metrics;
mod row_log;
mod summary;

pub(crate) use conflict::ConflictWriter;
pub use conflict::{read_conflicts, ConflictRow, CONFLICT_FILE};
pub(crate) use drift::DriftWriter;
pub use drift::{read_drift, DriftRow, DRIFT_FILE};
pub(crate) use metrics::*;
pub use summary::*;

pub const METRICS_FILE: &str = "metrics.csv";
pub const SUMMARY_FILE: &str = "summary.json";
pub const CONFIG_FILE: &str = "config.yaml";
/// written into a `.partial` when its run stopped with an error
pub const ERROR_FILE: &str = "error.txt";

/// The format of the records this harness writes. 1: up to this version (no `format` in summary.json);
/// 2: `format` in summary.json, extra metric columns in metrics.csv.
pub const FORMAT: u32 = 2;
