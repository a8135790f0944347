//! Leaf helpers that know nothing of models or runs: files (reads that name the file, durable atomic
//! writes, line lengths bounded, fingerprints), run names and their path suffixes, user-facing output (`say!`, `out!`), progress bars,
//! interruption by signals, timestamps, and what this binary was built with. Imports nothing from the crate.

pub(crate) mod fingerprint;
pub(crate) mod fsx;
pub mod interrupt;
pub(crate) mod lines;
pub(crate) mod names;
pub(crate) mod progress;
pub mod say;
pub(crate) mod time;
pub(crate) mod versions;
