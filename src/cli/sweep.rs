//! `sweep`: configs × grid × seeds here, one cell by index, or as a Slurm job array, and watching it.

use std::path::PathBuf;

use anyhow::Result;
use clap::{ArgGroup, Args};

use crate::sweep::cells::{self, CellIndex, GridAxis};
use crate::sweep::slurm::SlurmOptions;
use crate::sweep::Sweep;
use crate::util::interrupt;

#[derive(Args)]
#[command(group(ArgGroup::new("mode").multiple(false)))]
pub(super) struct SweepArgs {
    /// Experiment configs (YAML); each gives cells in the order given
    #[arg(required_unless_present = "manifest")]
    pub(crate) configs: Vec<PathBuf>,
    /// A submitted sweep's results/<sweep>/manifest.json: its fixed cells, instead of configs and options
    #[arg(long, conflicts_with_all = ["configs", "seeds", "grid", "overrides", "name"])]
    pub(crate) manifest: Option<PathBuf>,
    /// Comma-separated seeds; each becomes its own run `<name>-seed<N>`
    #[arg(long, value_delimiter = ',')]
    pub(crate) seeds: Vec<u64>,
    /// Vary a config key over values, e.g. --grid train.lr_encoder=2e-5,5e-5 (repeatable: the cross product)
    #[arg(long, value_name = "KEY=V1,V2")]
    pub(crate) grid: Vec<String>,
    /// The sweep's name, its folder results/<name>/ (default: the configs' names joined, then `-sweep`)
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Print what would run (with --slurm: the batch script), run and write nothing
    #[arg(long, conflicts_with_all = ["list", "status", "cancel", "compare", "index"])]
    pub(crate) dry_run: bool,
    /// Override a key in every config (repeatable), e.g. --set train.epochs=1
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) overrides: Vec<String>,
    /// Where the comparison goes (default: the first config's output_dir; with --compare, the sweep's folder)
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Print every cell's index, run name and state (done, running, partial, failed, missing)
    #[arg(long, group = "mode")]
    pub(crate) list: bool,
    /// Run one cell: N, or `env` for SLURM_ARRAY_TASK_ID (else JOB_COMPLETION_INDEX); resumes it if partial,
    /// does nothing if done, never compares
    #[arg(long, group = "mode", value_name = "N|env")]
    pub(crate) index: Option<CellIndex>,
    /// Submit the cells not yet done as a Slurm job array (writes results/<sweep>/manifest.json first)
    #[arg(long, group = "mode")]
    pub(crate) slurm: bool,
    #[command(flatten)]
    pub(crate) slurm_options: SlurmOptions,
    /// Each cell's state, and its Slurm task's state for submitted sweeps
    #[arg(long, group = "mode")]
    pub(crate) status: bool,
    /// Cancel the sweep's Slurm jobs that are queued or running
    #[arg(long, group = "mode")]
    pub(crate) cancel: bool,
    /// Compare the cells that are done
    #[arg(long, group = "mode")]
    pub(crate) compare: bool,
    /// With --index under Slurm: a cell stopped by a signal requeues its own task (the batch script sets it)
    #[arg(long, hide = true, requires = "index")]
    pub(crate) requeue_on_signal: bool,
}

fn plan_sweep(a: &SweepArgs) -> Result<Sweep> {
    if let Some(m) = &a.manifest {
        return Sweep::from_manifest(m);
    }
    let grid = a.grid.iter().map(|g| GridAxis::parse(g)).collect::<Result<Vec<_>>>()?;
    let cells = cells::plan(&a.configs, &grid, &a.seeds, &a.overrides)?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => cells::default_name(&a.configs, &a.overrides)?,
    };
    Sweep::planned(cells, &name)
}

pub(super) fn sweep(a: SweepArgs, threads: Option<i32>) -> Result<()> {
    interrupt::install()?;
    let s = plan_sweep(&a)?;
    if a.list || a.status || a.cancel || a.index.is_some() {
        s.check_manifest()?;
    }
    if a.list {
        return crate::sweep::list(&s);
    }
    if a.status {
        return crate::sweep::status(&s);
    }
    if a.cancel {
        return crate::sweep::cancel(&s);
    }
    if let Some(ix) = a.index {
        let i = ix.resolve(s.cells.len(), |k| std::env::var(k).ok())?;
        return crate::sweep::run_one(&s, i, a.requeue_on_signal);
    }
    if a.slurm {
        return crate::sweep::submit(&s, &a.slurm_options, threads, a.out.as_deref(), a.dry_run);
    }
    if a.compare {
        super::results::print_comparison(&crate::sweep::compare_done(&s, a.out.as_deref())?);
        return Ok(());
    }
    let out = a.out.unwrap_or_else(|| s.cells[0].cfg.output_dir.clone());
    if let Some(cmp) = crate::sweep::run_all(&s, a.dry_run, &out)? {
        super::results::print_comparison(&cmp);
    }
    Ok(())
}
