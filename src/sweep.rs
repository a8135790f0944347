//! `harness sweep`: several configs × seeds, one after another, skipping runs already complete, then
//! the comparison of everything it covered.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::compare::{compare, Comparison};
use crate::config::{check_name, ExperimentConfig};
use crate::experiment::{self, Start};
use crate::interrupt;
use crate::run_dir::{RunDir, RunState};

pub struct SweepRun {
    pub config: PathBuf,
    pub cfg: ExperimentConfig,
}

/// Resolves every (config, seed) pair; each seed gets its own run name `<name>-seed<N>` and keeps the
/// config's name as `base_name`, by which `compare` merges seeds.
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
            cfg.base_name = Some(base.base_name.clone().unwrap_or_else(|| base.name.clone()));
            check_name(&cfg.name).with_context(|| format!("{}: sweep run name", path.display()))?;
            runs.push(SweepRun {
                config: path.clone(),
                cfg,
            });
        }
    }
    Ok(runs)
}

fn run_dir(r: &SweepRun) -> Result<RunDir> {
    RunDir::new(&r.cfg.output_dir, &r.cfg.name)
}

/// Runs what is not complete (resuming interrupted runs from their checkpoints), prints one status line
/// per run, and writes the comparison into `out_dir`. A signal stops the sweep after the running run has
/// checkpointed; the error is then `interrupt::Interrupted`.
pub fn sweep(runs: &[SweepRun], dry_run: bool, out_dir: &Path) -> Result<Option<Comparison>> {
    let n = runs.len();
    let mut failed = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let rd = run_dir(r)?;
        let tag = format!(
            "[{}/{n}] {} (seed {}, {})",
            i + 1,
            r.cfg.name,
            r.cfg.seed,
            r.config.display()
        );
        let state = rd.state();
        match (&state, dry_run) {
            (RunState::Complete, _) => println!("{tag}: skipped, {} is complete", rd.path().display()),
            (RunState::Running(holder), _) => println!("{tag}: skipped, running elsewhere ({holder})"),
            (_, true) => println!("{tag}: would run into {} (now {state})", rd.path().display()),
            (_, false) => {
                let t0 = Instant::now();
                match experiment::run(&r.cfg, Start::Resume) {
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
                    Err(e) if interrupt::is_interrupted(&e) => {
                        println!("{tag}: interrupted; run the same sweep again to resume");
                        return Err(e);
                    }
                    Err(e) => {
                        println!("{tag}: FAILED: {e:#}");
                        failed.push(r.cfg.name.clone());
                    }
                }
            }
        }
    }
    if dry_run {
        return Ok(None);
    }
    let mut dirs = Vec::new();
    for r in runs {
        let rd = run_dir(r)?;
        if rd.state() == RunState::Complete {
            dirs.push(rd.path());
        }
    }
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
