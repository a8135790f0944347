//! `compare`: finished runs side by side.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::record::{METRICS_FILE, SUMMARY_FILE};

#[derive(Args)]
pub(super) struct CompareArgs {
    /// Run directories (each with metrics.csv and summary.json); other entries such as comparison.md are skipped
    #[arg(required = true)]
    pub(crate) runs: Vec<PathBuf>,
    /// Where comparison.md, comparison.png and comparison.svg go (default: the first run's parent)
    #[arg(long, conflicts_with = "json")]
    pub(crate) out: Option<PathBuf>,
    /// Print the comparison as JSON (the merged rows, and every run's final and epoch-0 metrics) and write no
    /// files; what scripts read instead of the records
    #[arg(long)]
    pub(crate) json: bool,
}

pub(super) fn print_comparison(cmp: &crate::analysis::compare::Comparison) {
    crate::out!("{}", cmp.to_markdown());
    for w in &cmp.warnings {
        crate::say!("warning: {w}");
    }
    for p in &cmp.outputs {
        crate::say!("wrote {}", p.display());
    }
}

pub(super) fn compare_runs(a: CompareArgs) -> Result<()> {
    // a path that does not exist is a typo or a run that was never made, not something to skip
    if let Some(p) = a.runs.iter().find(|p| p.symlink_metadata().is_err()) {
        bail!("{}: no such run directory", p.display());
    }
    // a shell glob such as results/* also matches files, unfinished `.partial` folders and folders
    // that are not runs (results/bench); a folder with either run file is a run, and must have both
    let runs: Vec<PathBuf> = a
        .runs
        .into_iter()
        .filter(|p| !crate::util::names::is_run_sidecar(p))
        .filter(|p| p.join(SUMMARY_FILE).is_file() || p.join(METRICS_FILE).is_file())
        .collect();
    if runs.is_empty() {
        bail!("no run directories among the arguments");
    }
    if a.json {
        let cmp = crate::analysis::compare::analyse(&runs)?;
        crate::out!("{}", serde_json::to_string_pretty(&cmp)?);
        return Ok(());
    }
    let out = a
        .out
        .unwrap_or_else(|| runs[0].parent().map(PathBuf::from).unwrap_or_default());
    print_comparison(&crate::analysis::compare::compare(&runs, &out)?);
    Ok(())
}
