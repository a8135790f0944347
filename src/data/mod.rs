//! Reading data files: TSV/CSV tables with a header, plain text files, labelled task data, sentence rows (sts and pairs tasks, probes, drift). Every error names
//! the file and, where it applies, the line. Imports `util` only.

pub(crate) mod pairs;
pub(crate) mod table;

pub(crate) use table::*;
