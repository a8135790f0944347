//! `harness sweep`: several configs × seeds, one after another, skipping runs already complete, then
//! the comparison of everything it covered.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};

use crate::compare::{compare, Comparison};
use crate::config::ExperimentConfig;
use crate::experiment;

pub struct SweepRun {
    pub config: PathBuf,
    pub cfg: ExperimentConfig,
}

/// Resolves every (config, seed) pair; each seed gets its own run name `<name>-seed<N>`.
pub fn plan(configs: &[PathBuf], seeds: &[u64], overrides: &[String]) -> Result<Vec<SweepRun>> {
    let mut runs = Vec::new();
    for path in configs {
        let base = ExperimentConfig::load(path, overrides)?;
        if seeds.is_empty() {
            runs.push(SweepRun {
                config: path.clone(),
                cfg: base,
            });
            continue;
        }
        for &seed in seeds {
            let mut cfg = base.clone();
            cfg.seed = seed;
            cfg.name = format!("{}-seed{seed}", base.name);
            runs.push(SweepRun {
                config: path.clone(),
                cfg,
            });
        }
    }
    Ok(runs)
}

/// A run counts as done when its summary.json says complete.
pub fn is_complete(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("complete").and_then(|c| c.as_bool()))
        .unwrap_or(false)
}

/// Runs what is not complete, prints one status line per run, and writes the comparison into `out_dir`.
pub fn sweep(runs: &[SweepRun], dry_run: bool, out_dir: &Path) -> Result<Option<Comparison>> {
    let n = runs.len();
    let mut failed = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let dir = experiment::run_dir(&r.cfg);
        let tag = format!(
            "[{}/{n}] {} (seed {}, {})",
            i + 1,
            r.cfg.name,
            r.cfg.seed,
            r.config.display()
        );
        if is_complete(&dir) {
            println!("{tag}: skipped, {} is complete", dir.display());
        } else if dry_run {
            println!("{tag}: would run into {}", dir.display());
        } else {
            let t0 = Instant::now();
            match experiment::run(&r.cfg) {
                Ok(o) => {
                    let accs: Vec<String> = o
                        .summary
                        .final_metrics
                        .iter()
                        .map(|(t, m)| format!("{t} {:.4}", m.accuracy))
                        .collect();
                    println!(
                        "{tag}: done in {:.0} s, {}",
                        t0.elapsed().as_secs_f64(),
                        accs.join(", ")
                    );
                }
                Err(e) => {
                    println!("{tag}: FAILED: {e:#}");
                    failed.push(r.cfg.name.clone());
                }
            }
        }
    }
    if dry_run {
        return Ok(None);
    }
    let dirs: Vec<PathBuf> = runs
        .iter()
        .map(|r| experiment::run_dir(&r.cfg))
        .filter(|d| is_complete(d))
        .collect();
    let cmp = if dirs.is_empty() {
        None
    } else {
        Some(compare(&dirs, out_dir)?)
    };
    if !failed.is_empty() {
        bail!("{} of {n} runs failed: {}", failed.len(), failed.join(", "));
    }
    Ok(cmp)
}
