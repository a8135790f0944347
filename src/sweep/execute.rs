//! `harness sweep`: a sweep's cells (see `cells`) run one after another here, or one cell by index (an
//! array task, a Kubernetes indexed job), or submitted as a Slurm job array (see `slurm`); `--list`,
//! `--status`, `--cancel` and `--compare` look at or act on the same cells. A sweep lives in
//! `<output_dir>/<sweep>/` (the first cell's output_dir): `manifest.json` (written at submit), `jobs.json`,
//! the batch scripts and `logs/`. Whatever uses indices takes the cells from the manifest when there is one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::analysis::compare::{compare, Comparison};
use crate::run::experiment::{self, Start};
use crate::run::run_dir::{RunDir, RunState};
use crate::sweep::cells::{Cell, Manifest, MANIFEST_FILE};
use crate::sweep::slurm::{self, JobKind, JobPaths, Requeue, SlurmOptions};
use crate::util::interrupt;
use crate::util::names::check_run_name as check_name;

/// A named sweep and its cells, in index order.
pub(crate) struct Sweep {
    pub name: String,
    pub dir: PathBuf,
    pub cells: Vec<Cell>,
}

impl Sweep {
    /// The sweep a manifest fixed; its folder is the manifest's.
    pub(crate) fn from_manifest(path: &Path) -> Result<Sweep> {
        let m = Manifest::read(path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Sweep {
            name: m.sweep,
            dir,
            cells: m.cells,
        })
    }

    /// Cells planned from the command line, under `name` (one plain folder name that no run uses).
    pub(crate) fn planned(cells: Vec<Cell>, name: &str) -> Result<Sweep> {
        check_name(name).context("--name")?;
        let out = cells[0].cfg.output_dir.clone();
        if cells.iter().any(|c| c.run() == name) || RunDir::new(&out, name)?.state() != RunState::Missing {
            bail!(
                "--name `{name}`: {} is a run's name; choose another sweep name",
                out.join(name).display()
            );
        }
        Ok(Sweep {
            name: name.to_string(),
            dir: out.join(name),
            cells,
        })
    }

    pub(crate) fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    /// Indices mean the manifest's cells: when the sweep's folder holds one, it must list these cells.
    pub(crate) fn check_manifest(&self) -> Result<()> {
        let p = self.manifest_path();
        if !p.exists() {
            return Ok(());
        }
        if !Manifest::read(&p)?.same_cells(&self.cells)? {
            bail!(
                "{} fixes other cells than these configs give now (a config or an option changed since it was written): \
                 use --manifest {} to address its cells, or --name to start another sweep",
                p.display(),
                p.display()
            );
        }
        Ok(())
    }

    fn tag(&self, c: &Cell) -> String {
        format!(
            "[{}/{}] {} (seed {}, {})",
            c.index,
            self.cells.len(),
            c.run(),
            c.cfg.seed,
            c.config.display()
        )
    }
}

/// Runs what is not complete, one cell after another (resuming interrupted runs), prints one status line
/// per cell, and writes the comparison into `out_dir`. A signal stops the sweep after the running cell has
/// checkpointed; the error is then `interrupt::Interrupted`.
pub(crate) fn run_all(sweep: &Sweep, dry_run: bool, out_dir: &Path) -> Result<Option<Comparison>> {
    let mut failed = Vec::new();
    for c in &sweep.cells {
        let rd = c.run_dir()?;
        let tag = sweep.tag(c);
        let state = rd.state();
        match (&state, dry_run) {
            (RunState::Complete, _) => crate::out!("{tag}: skipped, {} is complete", rd.path().display()),
            (RunState::Running(holder), _) => crate::out!("{tag}: skipped, running elsewhere ({holder})"),
            (_, true) => crate::out!("{tag}: would run into {} (now {state})", rd.path().display()),
            (_, false) => match run_cell(c) {
                Ok(line) => crate::out!("{tag}: {line}"),
                Err(e) if interrupt::is_interrupted(&e) => {
                    crate::out!("{tag}: interrupted; run the same sweep again to resume");
                    return Err(e);
                }
                Err(e) => {
                    crate::out!("{tag}: FAILED: {e:#}");
                    failed.push(c.run().to_string());
                }
            },
        }
    }
    if dry_run {
        return Ok(None);
    }
    let dirs = done_dirs(sweep)?;
    let cmp = if dirs.is_empty() {
        None
    } else {
        Some(compare(&dirs, out_dir)?)
    };
    if !failed.is_empty() {
        bail!(
            "{} of {} runs failed: {}",
            failed.len(),
            sweep.cells.len(),
            failed.join(", ")
        );
    }
    Ok(cmp)
}

/// Runs (or resumes) one cell; says how it went in one line.
fn run_cell(c: &Cell) -> Result<String> {
    let t0 = Instant::now();
    let o = experiment::run(&c.cfg, Start::Resume)?;
    let accs: Vec<String> = o
        .summary
        .final_metrics
        .iter()
        .map(|(t, m)| format!("{t} {:.4}", m.accuracy))
        .collect();
    Ok(format!(
        "done in {:.0} s, {}",
        t0.elapsed().as_secs_f64(),
        accs.join(", ")
    ))
}

fn done_dirs(sweep: &Sweep) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for c in &sweep.cells {
        let rd = c.run_dir()?;
        if rd.state() == RunState::Complete {
            dirs.push(rd.path());
        }
    }
    Ok(dirs)
}

/// `--list`: index, run name and state of every cell.
pub(crate) fn list(sweep: &Sweep) -> Result<()> {
    let width = sweep.cells.iter().map(|c| c.run().len()).max().unwrap_or(0);
    crate::out!("{:>5}  {:<width$}  state", "index", "run");
    for c in &sweep.cells {
        crate::out!("{:>5}  {:<width$}  {}", c.index, c.run(), c.run_dir()?.state());
    }
    Ok(())
}

/// `--index`: runs cell `i` alone (resuming it if partial, nothing if done), never the comparison, since
/// cells running in parallel would race on its files. With `requeue_on_signal` (the generated batch
/// script passes it) a cell stopped by a signal requeues its own Slurm task before exiting 75.
pub(crate) fn run_one(sweep: &Sweep, i: usize, requeue_on_signal: bool) -> Result<()> {
    let c = &sweep.cells[i];
    let rd = c.run_dir()?;
    if rd.state() == RunState::Complete {
        crate::out!("{}: already done ({})", sweep.tag(c), rd.path().display());
        return Ok(());
    }
    match run_cell(c) {
        Ok(line) => {
            crate::out!("{}: {line}", sweep.tag(c));
            Ok(())
        }
        Err(e) if interrupt::is_interrupted(&e) && requeue_on_signal => {
            match slurm::requeue_self(|k| std::env::var(k).ok()) {
                Requeue::Requeued(task) => crate::say!("requeued Slurm task {task}: it resumes from its checkpoint"),
                Requeue::Left(why) => crate::say!("not requeued: {why}"),
            }
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn job_paths(sweep: &Sweep) -> Result<JobPaths> {
    let workdir = std::env::current_dir().context("the current folder")?;
    let dir = workdir.join(&sweep.dir);
    Ok(JobPaths {
        exe: std::env::current_exe().context("the harness binary's path")?,
        manifest: dir.join(MANIFEST_FILE),
        logs: dir.join("logs"),
        workdir,
    })
}

/// `--slurm`: fixes the cells in the manifest and submits the cells that are missing, partial or failed
/// as one job array (plus, with `--compare-after`, a comparison job after it). `dry_run` prints the
/// script(s) and writes nothing.
pub(crate) fn submit(
    sweep: &Sweep,
    o: &SlurmOptions,
    threads: Option<i32>,
    out: Option<&Path>,
    dry_run: bool,
) -> Result<()> {
    o.check()?;
    sweep.check_manifest()?;
    let mut todo = Vec::new();
    for c in &sweep.cells {
        if matches!(
            c.run_dir()?.state(),
            RunState::Missing | RunState::Partial { .. } | RunState::Failed(_)
        ) {
            todo.push(c.index);
        }
    }
    let paths = job_paths(sweep)?;
    let script = slurm::array_script(&sweep.name, &todo, sweep.cells.len(), &paths, threads, o);
    let compare_script = slurm::compare_script(&sweep.name, &paths, out, o);
    if dry_run {
        crate::out_raw!("{script}");
        if o.compare_after {
            crate::out!("\n# submitted after the array with --dependency=afterany:<array job id>");
            crate::out_raw!("{compare_script}");
        }
        return Ok(());
    }
    if todo.is_empty() {
        crate::out!(
            "sweep {}: nothing to submit, all {} cells are done or running",
            sweep.name,
            sweep.cells.len()
        );
        return Ok(());
    }
    refuse_if_queued(sweep)?;
    std::fs::create_dir_all(&paths.logs).with_context(|| format!("{}: cannot create", paths.logs.display()))?;
    if !sweep.manifest_path().exists() {
        Manifest::new(&sweep.name, sweep.cells.clone()).write(&sweep.manifest_path())?;
    }
    let path = sweep.dir.join("array.sbatch");
    std::fs::write(&path, &script).with_context(|| format!("{}: cannot write", path.display()))?;
    let id = slurm::sbatch(&path, &[])?;
    slurm::record_job(&sweep.dir, id, JobKind::Array, &todo)?;
    crate::out!(
        "sweep {}: submitted job array {id} (cells {}); logs in {}/<index>.log",
        sweep.name,
        slurm::array_spec(&todo, o.max_parallel),
        paths.logs.display()
    );
    if o.compare_after {
        let path = sweep.dir.join("compare.sbatch");
        std::fs::write(&path, &compare_script).with_context(|| format!("{}: cannot write", path.display()))?;
        let cid = slurm::sbatch(&path, &[format!("--dependency=afterany:{id}")])?;
        slurm::record_job(&sweep.dir, cid, JobKind::Compare, &[])?;
        crate::out!("sweep {}: submitted comparison job {cid}, after {id}", sweep.name);
    }
    crate::out!("{id}");
    Ok(())
}

/// A second submit while the first's tasks are still queued would run their cells twice.
fn refuse_if_queued(sweep: &Sweep) -> Result<()> {
    let ids: Vec<u64> = slurm::read_jobs(&sweep.dir)?.iter().map(|j| j.id).collect();
    let active: Vec<String> = slurm::task_states(&ids)?
        .into_iter()
        .filter(|(_, s)| s.is_active())
        .map(|(t, s)| format!("{t} {}", s.state))
        .collect();
    if !active.is_empty() {
        bail!(
            "sweep {} has jobs still in Slurm ({}): watch them with --status, or --cancel them first",
            sweep.name,
            active.join(", ")
        );
    }
    Ok(())
}

/// `--status`: each cell's state on disk and, for cells a recorded job ran, Slurm's state of its task.
pub(crate) fn status(sweep: &Sweep) -> Result<()> {
    let jobs = slurm::read_jobs(&sweep.dir)?;
    let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
    let states = match slurm::task_states(&ids) {
        Ok(s) => s,
        Err(e) => {
            crate::say!("note: no Slurm state ({e:#})");
            Default::default()
        }
    };
    let width = sweep.cells.iter().map(|c| c.run().len()).max().unwrap_or(0);
    crate::out!("{:>5}  {:<width$}  {:<8}  slurm", "index", "run", "state");
    for c in &sweep.cells {
        // the latest array job that lists the cell speaks for it
        let task = jobs
            .iter()
            .rev()
            .find(|j| j.kind == JobKind::Array && j.cells.contains(&c.index))
            .map(|j| format!("{}_{}", j.id, c.index));
        let slurm = match &task {
            Some(t) => match states.get(t) {
                Some(s) => format!("{t} {}", s.state),
                None => format!("{t} (no longer known to Slurm)"),
            },
            None => "-".into(),
        };
        crate::out!(
            "{:>5}  {:<width$}  {:<8}  {slurm}",
            c.index,
            c.run(),
            c.run_dir()?.state().to_string()
        );
    }
    for j in jobs.iter().filter(|j| j.kind == JobKind::Compare) {
        let s = states
            .get(&j.id.to_string())
            .map_or("(no longer known to Slurm)", |s| s.state.as_str());
        crate::out!("comparison job {}: {s}", j.id);
    }
    Ok(())
}

/// `--cancel`: cancels the sweep's jobs that Slurm still runs or queues. Cancelled cells keep their
/// checkpoints; a later submit resumes them.
pub(crate) fn cancel(sweep: &Sweep) -> Result<()> {
    let ids: Vec<u64> = slurm::read_jobs(&sweep.dir)?.iter().map(|j| j.id).collect();
    let mut active: Vec<u64> = slurm::task_states(&ids)?
        .into_iter()
        .filter(|(_, s)| s.is_active())
        .filter_map(|(t, _)| t.split('_').next()?.parse().ok())
        .collect();
    active.sort_unstable();
    active.dedup();
    if active.is_empty() {
        crate::out!("sweep {}: no job of it is queued or running", sweep.name);
        return Ok(());
    }
    slurm::scancel(&active)?;
    let list: Vec<String> = active.iter().map(u64::to_string).collect();
    crate::out!("sweep {}: cancelled job(s) {}", sweep.name, list.join(", "));
    Ok(())
}

/// `--compare`: the comparison of the cells that are done, into `out` (default: the sweep's folder).
pub(crate) fn compare_done(sweep: &Sweep, out: Option<&Path>) -> Result<Comparison> {
    let dirs = done_dirs(sweep)?;
    if dirs.is_empty() {
        bail!("sweep {}: no cell is done yet", sweep.name);
    }
    if dirs.len() < sweep.cells.len() {
        crate::say!(
            "note: {} of {} cells are done; the others are left out",
            dirs.len(),
            sweep.cells.len()
        );
    }
    compare(&dirs, out.unwrap_or(&sweep.dir))
}
