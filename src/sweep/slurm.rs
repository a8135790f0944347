//! Slurm, as `harness sweep --slurm` uses it: the batch script of a sweep's job array (and of the
//! comparison job that may follow it), `sbatch`, `squeue`, `sacct`, `scancel` and `scontrol` run as
//! programs, the record of a sweep's jobs (`jobs.json` beside its manifest), and a cell's own requeue.
//!
//! The script `exec`s harness because `--signal=B:TERM@120` and `scancel --batch` signal only the batch
//! shell: with `exec` harness is that process and gets the TERM. So no shell is left to act on harness's
//! exit code, and harness requeues its own task (`scontrol requeue JOB_TASK`) when a signal stopped it
//! while Slurm still has the task RUNNING (the time-limit warning, `scancel --batch`, a preemption notice).
//! When the task is already ending (`scancel`, `scontrol requeue`, preemption, the hard time limit)
//! Slurm decides, and harness does nothing. `RequeueExit=75` would do the same from the cluster's side,
//! but it is the administrators' setting, not the user's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::util::time::now_utc;

/// How the array's tasks are submitted; every value ends up as one `#SBATCH` line.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct SlurmOptions {
    /// Slurm partition (sbatch --partition)
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// Account to charge (sbatch --account)
    #[arg(long, requires = "slurm")]
    pub account: Option<String>,
    /// Quality of service (sbatch --qos)
    #[arg(long, requires = "slurm")]
    pub qos: Option<String>,
    /// Node features, e.g. a100 (sbatch --constraint)
    #[arg(long, requires = "slurm")]
    pub constraint: Option<String>,
    /// GPUs per cell; each cell uses the GPU(s) Slurm gives it through CUDA_VISIBLE_DEVICES
    #[arg(long, requires = "slurm")]
    pub gpus_per_task: Option<u32>,
    /// CPUs per cell; harness then uses as many threads unless --threads says otherwise
    #[arg(long, requires = "slurm")]
    pub cpus_per_task: Option<u32>,
    /// Memory per cell, e.g. 16G (sbatch --mem)
    #[arg(long, requires = "slurm")]
    pub mem: Option<String>,
    /// Time limit per cell, e.g. 2:00:00; a cell stopped by it checkpoints and requeues itself
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// At most this many cells run at once (the array's %K)
    #[arg(long, requires = "slurm")]
    pub max_parallel: Option<usize>,
    /// Any other sbatch option, one per flag, e.g. --sbatch-arg=--exclusive (repeatable)
    #[arg(
        long = "sbatch-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "slurm"
    )]
    pub sbatch_args: Vec<String>,
    /// A shell line run before harness in each task, e.g. --setup-line 'module load cuda' (repeatable)
    #[arg(long = "setup-line", value_name = "LINE", requires = "slurm")]
    pub setup_lines: Vec<String>,
    /// Also submit a job that runs the sweep's comparison once the array has ended
    #[arg(long, requires = "slurm")]
    pub compare_after: bool,
}

impl SlurmOptions {
    /// One line each, no control characters: a newline would end an `#SBATCH` line or the setup line.
    pub(crate) fn check(&self) -> Result<()> {
        let named = [
            ("--partition", &self.partition),
            ("--account", &self.account),
            ("--qos", &self.qos),
            ("--constraint", &self.constraint),
            ("--mem", &self.mem),
            ("--time", &self.time),
        ];
        for (flag, v) in named {
            if let Some(v) = v {
                one_line(flag, v)?;
                if v.trim().is_empty() || v.contains(char::is_whitespace) {
                    bail!("{flag} `{v}`: must be one word");
                }
            }
        }
        for a in &self.sbatch_args {
            one_line("--sbatch-arg", a)?;
            if !a.starts_with('-') {
                bail!("--sbatch-arg `{a}`: must be an sbatch option such as --exclusive or --gres=gpu:1");
            }
        }
        for l in &self.setup_lines {
            one_line("--setup-line", l)?;
        }
        if self.max_parallel == Some(0) {
            bail!("--max-parallel: must be at least 1");
        }
        for (flag, n) in [
            ("--gpus-per-task", self.gpus_per_task),
            ("--cpus-per-task", self.cpus_per_task),
        ] {
            if n == Some(0) {
                bail!("{flag}: must be at least 1");
            }
        }
        Ok(())
    }

    fn directives(&self) -> Vec<String> {
        let mut d = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                d.push(format!("--{k}={v}"));
            }
        };
        put("partition", self.partition.clone());
        put("account", self.account.clone());
        put("qos", self.qos.clone());
        put("constraint", self.constraint.clone());
        put("gpus-per-task", self.gpus_per_task.map(|n| n.to_string()));
        put("cpus-per-task", self.cpus_per_task.map(|n| n.to_string()));
        put("mem", self.mem.clone());
        put("time", self.time.clone());
        d.extend(self.sbatch_args.iter().cloned());
        d
    }
}

fn one_line(flag: &str, v: &str) -> Result<()> {
    if v.chars().any(char::is_control) {
        bail!(
            "{flag} `{}`: must be one line without control characters",
            v.escape_debug()
        );
    }
    Ok(())
}

/// `0-3,5,8-9%2`: the indices as ranges, then the limit on tasks running at once.
pub(crate) fn array_spec(indices: &[usize], max_parallel: Option<usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(match i == j {
            true => indices[i].to_string(),
            false => format!("{}-{}", indices[i], indices[j]),
        });
        i = j + 1;
    }
    let mut s = parts.join(",");
    if let Some(k) = max_parallel {
        s.push_str(&format!("%{k}"));
    }
    s
}

/// A word for bash: as is when it is plainly safe, else in single quotes.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '=' | ':' | ',' | '+'))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where a sweep's job runs: absolute paths, since the job may start on another node, in another folder.
pub(crate) struct JobPaths {
    pub exe: PathBuf,
    pub workdir: PathBuf,
    pub manifest: PathBuf,
    pub logs: PathBuf,
}

/// The array's batch script: each task runs the cell named by its array index, resuming it if partial.
pub(crate) fn array_script(
    sweep: &str,
    cells: &[usize],
    total: usize,
    p: &JobPaths,
    threads: Option<i32>,
    o: &SlurmOptions,
) -> String {
    let mut s = format!(
        "#!/bin/bash\n# harness sweep `{sweep}`: {} of its {total} cells, each an array task running the cell of its index\n",
        cells.len()
    );
    let mut d = vec![
        format!("--job-name={sweep}"),
        format!("--array={}", array_spec(cells, o.max_parallel)),
        format!("--output={}/%a.log", p.logs.display()),
        "--open-mode=append".into(),
        "--requeue".into(),
        // two minutes before the time limit: harness checkpoints, requeues its task and exits 75
        "--signal=B:TERM@120".into(),
        format!("--chdir={}", p.workdir.display()),
    ];
    d.extend(o.directives());
    for x in d {
        s.push_str(&format!("#SBATCH {x}\n"));
    }
    for l in &o.setup_lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(
        "echo \"[harness] cell $SLURM_ARRAY_TASK_ID, job ${SLURM_ARRAY_JOB_ID}_$SLURM_ARRAY_TASK_ID, restart ${SLURM_RESTART_COUNT:-0}, on $(hostname), $(date -u +%FT%TZ)\"\n",
    );
    s.push_str("# exec: the TERM Slurm sends to this shell must reach harness itself\n");
    let mut cmd = vec![shell_quote(&p.exe.to_string_lossy())];
    if let Some(t) = threads {
        cmd.extend(["--threads".to_string(), t.to_string()]);
    }
    cmd.extend(["sweep", "--manifest"].map(String::from));
    cmd.push(shell_quote(&p.manifest.to_string_lossy()));
    cmd.extend(["--index", "env", "--requeue-on-signal"].map(String::from));
    s.push_str(&format!("exec {}\n", cmd.join(" ")));
    s
}

/// The comparison job's script; it is submitted with `--dependency=afterany:<array job>`.
pub(crate) fn compare_script(sweep: &str, p: &JobPaths, out: Option<&Path>, o: &SlurmOptions) -> String {
    let mut s =
        format!("#!/bin/bash\n# harness sweep `{sweep}`: compares its finished cells once its array has ended\n");
    let mut d = vec![
        format!("--job-name={sweep}-compare"),
        format!("--output={}/compare.log", p.logs.display()),
        "--open-mode=append".into(),
        format!("--chdir={}", p.workdir.display()),
    ];
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            d.push(format!("--{k}={v}"));
        }
    };
    put("partition", &o.partition);
    put("account", &o.account);
    put("qos", &o.qos);
    for x in d {
        s.push_str(&format!("#SBATCH {x}\n"));
    }
    for l in &o.setup_lines {
        s.push_str(l);
        s.push('\n');
    }
    let mut cmd = vec![
        shell_quote(&p.exe.to_string_lossy()),
        "sweep".into(),
        "--manifest".into(),
    ];
    cmd.push(shell_quote(&p.manifest.to_string_lossy()));
    cmd.push("--compare".into());
    if let Some(out) = out {
        cmd.extend(["--out".to_string(), shell_quote(&out.to_string_lossy())]);
    }
    s.push_str(&format!("exec {}\n", cmd.join(" ")));
    s
}

/// Runs a Slurm client; a missing program is a one-line error that says so.
fn tool(program: &str, args: &[String]) -> Result<Output> {
    Command::new(program).args(args).output().with_context(|| {
        format!(
            "cannot run `{program}`: is Slurm installed here (a login node)? --dry-run prints the script without it"
        )
    })
}

fn stderr_line(out: &Output) -> String {
    let e = String::from_utf8_lossy(&out.stderr);
    e.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `sbatch --parsable [args] script`: the new job's id.
pub(crate) fn sbatch(script: &Path, args: &[String]) -> Result<u64> {
    let mut a = vec!["--parsable".to_string()];
    a.extend(args.iter().cloned());
    a.push(script.display().to_string());
    let out = tool("sbatch", &a)?;
    if !out.status.success() {
        bail!("sbatch {} failed: {}", script.display(), stderr_line(&out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `ID` or `ID;CLUSTER`
    let id = text.trim().split(';').next().unwrap_or("");
    id.parse()
        .with_context(|| format!("sbatch printed `{}`, not a job id", text.trim()))
}

/// A job a sweep submitted, as recorded in its `jobs.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Job {
    pub id: u64,
    pub kind: JobKind,
    /// the cells an array job runs (its array indices)
    pub cells: Vec<usize>,
    pub submitted: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobKind {
    Array,
    Compare,
}

pub(crate) const JOBS_FILE: &str = "jobs.json";

pub(crate) fn read_jobs(sweep_dir: &Path) -> Result<Vec<Job>> {
    let p = sweep_dir.join(JOBS_FILE);
    if !p.exists() {
        return Ok(Vec::new());
    }
    let text = crate::util::fsx::read_text(&p)?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a list of jobs", p.display()))
}

pub(crate) fn record_job(sweep_dir: &Path, id: u64, kind: JobKind, cells: &[usize]) -> Result<()> {
    let mut jobs = read_jobs(sweep_dir)?;
    jobs.push(Job {
        id,
        kind,
        cells: cells.to_vec(),
        submitted: now_utc(),
    });
    let p = sweep_dir.join(JOBS_FILE);
    crate::util::fsx::write_atomic(&p, (serde_json::to_string_pretty(&jobs)? + "\n").as_bytes())
}

/// What Slurm says about one task (`12_3`) or job (`13`): its state, and where that came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskState {
    pub state: String,
    pub detail: String,
}

impl TaskState {
    /// Not yet ended: pending, running, completing, requeued, suspended, ...
    pub(crate) fn is_active(&self) -> bool {
        const ENDED: [&str; 10] = [
            "COMPLETED",
            "FAILED",
            "CANCELLED",
            "TIMEOUT",
            "NODE_FAIL",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
            "OUT_OF_MEMORY",
            "REVOKED",
        ];
        !ENDED.contains(&self.state.as_str())
    }
}

/// Every task of these jobs Slurm still knows, by task id: from `sacct` where accounting exists, else
/// from `squeue -t all` (which forgets jobs `MinJobAge` seconds after they end).
pub(crate) fn task_states(ids: &[u64]) -> Result<BTreeMap<String, TaskState>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let sacct = tool(
        "sacct",
        &["-n", "-P", "-X", "-j", &list, "-o", "JobID,State,ExitCode"].map(String::from),
    );
    if let Ok(out) = sacct.as_ref().map_err(|_| ()) {
        if out.status.success() {
            return Ok(parse_rows(&String::from_utf8_lossy(&out.stdout), "exit"));
        }
    }
    let out = tool(
        "squeue",
        &["-h", "-r", "-t", "all", "-j", &list, "-o", "%i|%T|%r"].map(String::from),
    )?;
    if !out.status.success() {
        // every id forgotten: squeue says `Invalid job id specified`
        if String::from_utf8_lossy(&out.stderr).contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        bail!("squeue failed: {}", stderr_line(&out));
    }
    Ok(parse_rows(&String::from_utf8_lossy(&out.stdout), "reason"))
}

/// `ID|STATE|DETAIL` rows; sacct writes `CANCELLED by 0`, of which the first word is the state.
fn parse_rows(text: &str, detail: &str) -> BTreeMap<String, TaskState> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let (id, state, d) = (f.next()?.trim(), f.next()?.trim(), f.next().unwrap_or("").trim());
            let state = state.split_whitespace().next()?.trim_end_matches('+').to_string();
            Some((
                id.to_string(),
                TaskState {
                    state,
                    detail: format!("{detail} {d}"),
                },
            ))
        })
        .collect()
}

pub(crate) fn scancel(ids: &[u64]) -> Result<()> {
    let args: Vec<String> = ids.iter().map(u64::to_string).collect();
    let out = tool("scancel", &args)?;
    if !out.status.success() {
        bail!("scancel {} failed: {}", args.join(" "), stderr_line(&out));
    }
    Ok(())
}

/// A cell requeues itself at most this often, so one that can never finish does not loop for ever.
pub(crate) const MAX_RESTARTS: u32 = 100;

/// What a cell stopped by a signal did about its Slurm task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Requeue {
    Requeued(String),
    Left(String),
}

/// Requeues the task this process runs in when Slurm still has it RUNNING (see the module contract).
pub(crate) fn requeue_self(get: impl Fn(&str) -> Option<String>) -> Requeue {
    let task = match (
        get("SLURM_ARRAY_JOB_ID"),
        get("SLURM_ARRAY_TASK_ID"),
        get("SLURM_JOB_ID"),
    ) {
        (Some(a), Some(t), _) => format!("{a}_{t}"),
        (_, _, Some(j)) => j,
        _ => return Requeue::Left("not in a Slurm job".into()),
    };
    let restarts: u32 = get("SLURM_RESTART_COUNT").and_then(|r| r.parse().ok()).unwrap_or(0);
    if restarts >= MAX_RESTARTS {
        return Requeue::Left(format!("task {task} has restarted {restarts} times already"));
    }
    let show = match tool("scontrol", &["show".into(), "job".into(), task.clone()]) {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => return Requeue::Left(format!("scontrol show job {task}: {}", stderr_line(&o))),
        Err(e) => return Requeue::Left(format!("{e:#}")),
    };
    let state = show
        .split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or("?");
    if state != "RUNNING" {
        return Requeue::Left(format!(
            "task {task} is {state}: Slurm is ending or requeueing it itself"
        ));
    }
    match tool("scontrol", &["requeue".into(), task.clone()]) {
        Ok(o) if o.status.success() => Requeue::Requeued(task),
        Ok(o) => Requeue::Left(format!("scontrol requeue {task}: {}", stderr_line(&o))),
        Err(e) => Requeue::Left(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_are_ranges_with_the_limit() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[3, 5, 8], Some(2)), "3,5,8%2");
        assert_eq!(array_spec(&[0, 1, 3, 7, 8, 9, 11], Some(1)), "0-1,3,7-9,11%1");
    }

    #[test]
    fn quoting_keeps_every_word_one_word() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's $HOME"), r"'it'\''s $HOME'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn options_with_newlines_or_spaces_are_refused() {
        let mut o = SlurmOptions {
            partition: Some("gpu\n#SBATCH --x".into()),
            ..Default::default()
        };
        assert!(format!("{:#}", o.check().unwrap_err()).contains("--partition"));
        o.partition = Some("a b".into());
        assert!(o.check().is_err());
        o.partition = None;
        o.sbatch_args = vec!["exclusive".into()];
        assert!(format!("{:#}", o.check().unwrap_err()).contains("--sbatch-arg"));
        o.sbatch_args = vec!["--exclusive".into()];
        o.max_parallel = Some(0);
        assert!(o.check().is_err());
        o.max_parallel = Some(2);
        assert!(o.check().is_ok());
    }

    #[test]
    fn sacct_and_squeue_rows_parse() {
        let r = parse_rows("12_0|CANCELLED by 0|0:15\n12_1|RUNNING|None\n", "x");
        assert_eq!(r["12_0"].state, "CANCELLED");
        assert!(!r["12_0"].is_active() && r["12_1"].is_active());
    }

    #[test]
    fn requeue_needs_a_slurm_job() {
        assert!(matches!(requeue_self(|_| None), Requeue::Left(_)));
        let env = |k: &str| match k {
            "SLURM_JOB_ID" => Some("5".to_string()),
            "SLURM_RESTART_COUNT" => Some(MAX_RESTARTS.to_string()),
            _ => None,
        };
        assert!(matches!(requeue_self(env), Requeue::Left(w) if w.contains("restarted")));
    }
}
