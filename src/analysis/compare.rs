//! `harness compare`: loads finished run directories, merges seeds and writes
//! a Markdown table plus accuracy-curve plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::analysis::conflict::conflict_curves;
use crate::analysis::plot::{plot_curves, plot_on, Axes, CurvePoint, RunCurve, TaskCurve};
use crate::analysis::retention::{drift_curves, drift_markdown, retention_rows, GroupRuns, RetentionRow};
pub(crate) use crate::analysis::stat::Stat;
use crate::runtime::amp::Precision;

use crate::record::{
    read_metrics, BestEvaluation, FinalMetrics, MetricRow, Split, Summary, CONFIG_FILE, METRICS_FILE, SUMMARY_FILE,
};

#[derive(Debug, Clone)]
pub(crate) struct RunData {
    pub dir: PathBuf,
    pub summary: Summary,
    pub metrics: Vec<MetricRow>,
    /// the resolved `config.yaml`, when the run has one: runs merged as seeds must agree on it
    pub config: Option<serde_yaml::Value>,
}

impl RunData {
    /// Tasks in order of first appearance in `metrics.csv`, then any only in `final`.
    pub(crate) fn tasks(&self) -> Vec<String> {
        let mut tasks: Vec<String> = Vec::new();
        let names = self
            .metrics
            .iter()
            .filter(|m| m.split != Split::Probe)
            .map(|m| &m.task)
            .chain(self.summary.final_metrics.keys());
        for t in names {
            if !tasks.contains(t) {
                tasks.push(t.clone());
            }
        }
        tasks
    }

    fn eval_rows<'a>(&'a self, task: &'a str) -> impl Iterator<Item = (&'a MetricRow, f64)> + 'a {
        self.metrics
            .iter()
            .filter(move |m| m.split == Split::Eval && m.task == task)
            .filter_map(|m| m.accuracy.filter(|a| a.is_finite()).map(|a| (m, a)))
    }

    /// Final eval metrics: `summary.json` if it has them, else the last eval row.
    fn final_for(&self, task: &str) -> (Option<f64>, Option<f64>) {
        match self.summary.final_metrics.get(task).filter(|f| f.accuracy.is_finite()) {
            Some(f) => (Some(f.accuracy), Some(f.macro_f1).filter(|x| x.is_finite())),
            None => self
                .eval_rows(task)
                .max_by_key(|(m, _)| (m.epoch, m.step))
                .map_or((None, None), |(m, a)| (Some(a), m.macro_f1)),
        }
    }

    /// Whether every final metric and every metrics row is a number (a diverged run's are not).
    pub(crate) fn is_finite(&self) -> bool {
        self.summary.is_finite() && self.metrics.iter().all(MetricRow::is_finite)
    }

    /// The table's name for the runs of one configuration: the base name, with the precision it trained in when
    /// that is not fp32 (runs in bf16 are another configuration, never seeds of the fp32 one).
    pub(crate) fn group_label(&self) -> String {
        match self.summary.precision.used {
            Precision::Fp32 => self.base_name().to_string(),
            p => format!("{} ({p})", self.base_name()),
        }
    }

    /// The name runs of one configuration share: summary.json's `base_name`, or for runs written before
    /// it existed, the run name without its `-seed<N>` suffix.
    pub(crate) fn base_name(&self) -> &str {
        if self.summary.base_name.is_empty() {
            group_name(&self.summary.run)
        } else {
            &self.summary.base_name
        }
    }

    /// Epoch of the highest eval accuracy; ties go to the earliest epoch.
    pub(crate) fn best_epoch(&self, task: &str) -> Option<usize> {
        let mut best: Option<(f64, usize)> = None;
        for (m, a) in self.eval_rows(task) {
            if best.is_none_or(|(b, e)| a > b || (a == b && m.epoch < e)) {
                best = Some((a, m.epoch));
            }
        }
        best.map(|(_, e)| e)
    }

    /// Eval accuracy per epoch; with several eval points in one epoch, the last counts.
    pub(crate) fn eval_curve(&self, task: &str) -> BTreeMap<usize, f64> {
        let mut last: BTreeMap<usize, (usize, f64)> = BTreeMap::new();
        for (m, a) in self.eval_rows(task) {
            let e = last.entry(m.epoch).or_insert((m.step, a));
            if m.step >= e.0 {
                *e = (m.step, a);
            }
        }
        last.into_iter().map(|(k, (_, a))| (k, a)).collect()
    }
}

pub(crate) fn load_run(dir: &Path) -> Result<RunData> {
    let summary = Summary::read(&dir.join(SUMMARY_FILE))?;
    let metrics = read_metrics(&dir.join(METRICS_FILE))?;
    let config_path = dir.join(CONFIG_FILE);
    let config = if config_path.is_file() {
        let text = crate::util::fsx::read_text(&config_path)?;
        Some(serde_yaml::from_str(&text).with_context(|| format!("{}: invalid YAML", config_path.display()))?)
    } else {
        None
    };
    Ok(RunData {
        dir: dir.to_path_buf(),
        summary,
        metrics,
        config,
    })
}

/// Run name with a trailing `-seed<N>`, `_seed<N>` or `-s<N>` removed.
pub(crate) fn group_name(run: &str) -> &str {
    let stem = run.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.len() == run.len() {
        return run;
    }
    ["-seed", "_seed", "-s"]
        .iter()
        .find_map(|suffix| stem.strip_suffix(suffix))
        .filter(|base| !base.is_empty())
        .unwrap_or(run)
}

/// One table row: a run group (runs differing only in seed) and one task.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TableRow {
    pub scenario: String,
    pub group: String,
    pub runs: Vec<String>,
    pub seeds: Vec<u64>,
    pub task: String,
    /// False when any merged run did not finish.
    pub complete: bool,
    pub trainable_params: Option<Stat>,
    pub accuracy: Option<Stat>,
    pub macro_f1: Option<Stat>,
    pub best_epoch: Option<Stat>,
    pub wall_s: Option<Stat>,
    /// Runs that trained nothing report 0 and are left out of this mean.
    pub train_examples_per_s: Option<Stat>,
}

/// One run as the comparison read it, before any merging: what `compare --json` gives scripts, so that none of
/// them reads the records by hand.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunBrief {
    pub dir: PathBuf,
    pub run: String,
    /// the table row's name it joins (base name, and the precision when not fp32)
    pub group: String,
    pub scenario: String,
    pub seed: u64,
    pub precision: Precision,
    pub complete: bool,
    pub frozen_unchanged: bool,
    /// summary.json's final metrics per task
    #[serde(rename = "final")]
    pub final_metrics: BTreeMap<String, FinalMetrics>,
    /// the evaluation before training (metrics.csv, epoch 0), per task
    pub initial: BTreeMap<String, FinalMetrics>,
    /// `train.early_stopping`'s best evaluation, and whether training stopped before its last planned step
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best: Option<BestEvaluation>,
    pub stopped_early: bool,
}

impl RunBrief {
    fn of(r: &RunData) -> RunBrief {
        let initial = r
            .metrics
            .iter()
            .filter(|m| m.split == Split::Eval && m.epoch == 0)
            .map(|m| (m.task.clone(), FinalMetrics::of(m)))
            .collect();
        RunBrief {
            dir: r.dir.clone(),
            run: r.summary.run.clone(),
            group: r.group_label(),
            scenario: r.summary.scenario.clone(),
            seed: r.summary.seed,
            precision: r.summary.precision.used,
            complete: r.summary.complete,
            frozen_unchanged: r.summary.frozen_unchanged,
            final_metrics: r.summary.final_metrics.clone(),
            initial,
            best: r.summary.best.clone(),
            stopped_early: r.summary.stopped_early,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    pub rows: Vec<TableRow>,
    pub runs: Vec<RunBrief>,
    #[serde(skip)]
    pub curves: Vec<RunCurve>,
    /// mean gradient cosine per encoder group, for the run groups that logged conflicts (conflict.csv)
    #[serde(skip)]
    pub conflict: Vec<RunCurve>,
    #[serde(skip)]
    conflict_axes: Option<Axes>,
    /// each group's probes before and after training (`probes`), beside its mean accuracy
    pub retention: Vec<RetentionRow>,
    /// CKA per layer at the end of training, for the groups that measured drift (drift.csv)
    #[serde(skip)]
    drift: Option<(Vec<RunCurve>, Axes)>,
    pub n_runs: usize,
    pub n_groups: usize,
    /// Runs that did not finish or whose frozen parameters changed.
    pub warnings: Vec<String>,
    /// Runs left out of the table because their metrics are not finite.
    pub left_out: Vec<String>,
    /// Files written: comparison.md, comparison.png, comparison.svg (and conflict.png, conflict.svg).
    #[serde(skip)]
    pub outputs: Vec<PathBuf>,
}

struct Group<'a> {
    scenario: String,
    name: String,
    runs: Vec<&'a RunData>,
}

fn group_runs(runs: &[RunData]) -> Result<Vec<Group<'_>>> {
    let mut groups: Vec<Group> = Vec::new();
    for run in runs {
        let (scenario, name) = (&run.summary.scenario, run.group_label());
        match groups.iter_mut().find(|g| &g.scenario == scenario && g.name == name) {
            Some(g) => {
                if let Some(dup) = g.runs.iter().find(|r| r.summary.run == run.summary.run) {
                    bail!(
                        "run `{}` given twice ({} and {})",
                        run.summary.run,
                        dup.dir.display(),
                        run.dir.display()
                    );
                }
                same_experiment(g, run)?;
                g.runs.push(run)
            }
            None => groups.push(Group {
                scenario: scenario.clone(),
                name,
                runs: vec![run],
            }),
        }
    }
    Ok(groups)
}

/// Refuses to merge `run` into `g` as one more seed when its resolved config differs in a key other than
/// `like::FREE_KEYS`, naming the keys.
fn same_experiment(g: &Group, run: &RunData) -> Result<()> {
    let first = g.runs[0];
    let (Some(a), Some(b)) = (&first.config, &run.config) else {
        return Ok(()); // a run without config.yaml (written by hand, or very old) cannot be checked
    };
    let keys = crate::analysis::like::differing_keys(a, b);
    if !keys.is_empty() {
        bail!(
            "runs `{}` ({}) and `{}` ({}) share the name `{}` but are different experiments: their config.yaml \
             differs in {} (only {} may differ between seeds merged into one row); compare them under \
             different names or one at a time",
            first.summary.run,
            first.dir.display(),
            run.summary.run,
            run.dir.display(),
            g.name,
            keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "),
            crate::analysis::like::FREE_KEYS.join(", ")
        );
    }
    Ok(())
}

impl Group<'_> {
    fn tasks(&self) -> Vec<String> {
        let mut tasks: Vec<String> = Vec::new();
        for t in self.runs.iter().flat_map(|r| r.tasks()) {
            if !tasks.contains(&t) {
                tasks.push(t);
            }
        }
        tasks
    }

    fn stat(&self, f: impl Fn(&RunData) -> Option<f64>) -> Option<Stat> {
        Stat::of(self.runs.iter().filter_map(|r| f(r)))
    }

    fn row(&self, task: &str) -> TableRow {
        TableRow {
            scenario: self.scenario.clone(),
            group: self.name.clone(),
            runs: self.runs.iter().map(|r| r.summary.run.clone()).collect(),
            seeds: self.runs.iter().map(|r| r.summary.seed).collect(),
            task: task.to_string(),
            complete: self.runs.iter().all(|r| r.summary.complete),
            trainable_params: self.stat(|r| Some(r.summary.params_trainable as f64)),
            accuracy: self.stat(|r| r.final_for(task).0),
            macro_f1: self.stat(|r| r.final_for(task).1),
            best_epoch: self.stat(|r| r.best_epoch(task).map(|e| e as f64)),
            wall_s: self.stat(|r| Some(r.summary.wall_s)),
            train_examples_per_s: self.stat(|r| Some(r.summary.train_examples_per_s).filter(|&x| x > 0.0)),
        }
    }

    /// Mean (± std) eval accuracy per epoch over the runs that reached that epoch.
    fn curve(&self, tasks: &[String]) -> RunCurve {
        let tasks = tasks
            .iter()
            .map(|task| {
                let mut by_epoch: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
                for r in &self.runs {
                    for (e, a) in r.eval_curve(task) {
                        by_epoch.entry(e as u32).or_default().push(a);
                    }
                }
                let points = by_epoch
                    .into_iter()
                    .filter_map(|(epoch, accs)| {
                        let s = Stat::of(accs)?;
                        Some(CurvePoint {
                            epoch,
                            mean: s.mean,
                            std: s.std.unwrap_or(0.0),
                        })
                    })
                    .collect();
                TaskCurve {
                    task: task.clone(),
                    points,
                }
            })
            .collect();
        RunCurve {
            label: String::new(),
            tasks,
        }
    }
}

/// Compares finished runs and writes comparison.md, comparison.png and comparison.svg into `out_dir`.
pub(crate) fn compare(dirs: &[PathBuf], out_dir: &Path) -> Result<Comparison> {
    let mut cmp = analyse(dirs)?;
    cmp.write(out_dir)?;
    Ok(cmp)
}

/// Reads the runs and merges seeds into table rows; writes nothing.
pub(crate) fn analyse(dirs: &[PathBuf]) -> Result<Comparison> {
    if dirs.is_empty() {
        bail!("no run directories given");
    }
    let all = dirs.iter().map(|d| load_run(d)).collect::<Result<Vec<_>>>()?;
    // a diverged run's NaN would poison every mean it joins: list it under the table instead
    let (runs, diverged): (Vec<RunData>, Vec<RunData>) = all.into_iter().partition(RunData::is_finite);
    let left_out: Vec<String> = diverged
        .iter()
        .map(|r| format!("`{}` ({}): non-finite metrics", r.summary.run, r.dir.display()))
        .collect();
    if runs.is_empty() {
        bail!(
            "no run with finite metrics among the arguments (left out: {})",
            left_out.join("; ")
        );
    }
    let groups = group_runs(&runs)?;
    let rows: Vec<TableRow> = groups
        .iter()
        .flat_map(|g| g.tasks().into_iter().map(move |t| g.row(&t)))
        .collect();
    let curves = curves(&groups);
    let labelled: Vec<(String, Vec<&Path>)> = curves
        .iter()
        .zip(&groups)
        .map(|(c, g)| (c.label.clone(), g.runs.iter().map(|r| r.dir.as_path()).collect()))
        .collect();
    let (conflict, axes) = conflict_curves(&labelled)?;
    let drift = drift_curves(&labelled)?;
    let by_group: Vec<GroupRuns> = groups
        .iter()
        .map(|g| {
            let runs = g.runs.iter().map(|r| (&r.summary, r.dir.as_path())).collect();
            (g.scenario.clone(), g.name.clone(), runs)
        })
        .collect();
    Ok(Comparison {
        retention: retention_rows(&by_group),
        drift,
        rows,
        runs: runs.iter().map(RunBrief::of).collect(),
        conflict_axes: (!conflict.is_empty()).then_some(axes),
        conflict,
        curves,
        n_runs: runs.len(),
        n_groups: groups.len(),
        warnings: warnings(&runs),
        left_out,
        outputs: Vec::new(),
    })
}

/// One curve per group, labelled by scenario, naming the group too only where a scenario has several.
fn curves(groups: &[Group]) -> Vec<RunCurve> {
    let mut curves: Vec<RunCurve> = groups.iter().map(|g| g.curve(&g.tasks())).collect();
    for (i, g) in groups.iter().enumerate() {
        let shared = groups.iter().filter(|o| o.scenario == g.scenario).count() > 1;
        let mut label = if shared {
            format!("{} – {}", g.scenario, g.name)
        } else {
            g.scenario.clone()
        };
        if g.runs.len() > 1 {
            label += &format!(" (mean of {} seeds)", g.runs.len());
        }
        curves[i].label = label;
    }
    curves
}

/// Runs that did not finish or whose frozen parameters moved.
fn warnings(runs: &[RunData]) -> Vec<String> {
    let mut warnings = Vec::new();
    for r in runs {
        let (name, dir) = (&r.summary.run, r.dir.display());
        if !r.summary.complete {
            warnings.push(format!(
                "run `{name}` ({dir}) did not finish; its values are from where it stopped"
            ));
        }
        if !r.summary.frozen_unchanged {
            warnings.push(format!(
                "run `{name}` ({dir}): parameters meant to be frozen changed during training"
            ));
        }
    }
    warnings
}

fn cell(s: Option<Stat>, decimals: usize) -> String {
    s.map_or_else(|| "–".to_string(), |s| s.fmt(decimals))
}

/// Thousands separators; parameter counts are unreadable otherwise.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn params_cell(s: Option<Stat>) -> String {
    match s {
        None => "–".to_string(),
        // Seeds of one configuration normally share the count; a ± 0 would be noise.
        Some(s) if s.std.is_none_or(|d| d == 0.0) => grouped(s.mean.round() as u64),
        Some(s) => format!(
            "{} ± {}",
            grouped(s.mean.round() as u64),
            grouped(s.std.unwrap().round() as u64)
        ),
    }
}

impl Comparison {
    /// comparison.md, comparison.png and comparison.svg into `out_dir`, listed in `outputs`.
    fn write(&mut self, out_dir: &Path) -> Result<()> {
        fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
        let md_path = out_dir.join("comparison.md");
        fs::write(&md_path, self.report()).with_context(|| format!("cannot write {}", md_path.display()))?;
        self.outputs.push(md_path);
        for ext in ["png", "svg"] {
            let path = out_dir.join(format!("comparison.{ext}"));
            plot_curves(&self.curves, &path)?;
            self.outputs.push(path);
        }
        if let Some(axes) = &self.conflict_axes {
            for ext in ["png", "svg"] {
                let path = out_dir.join(format!("conflict.{ext}"));
                plot_on(&self.conflict, &path, axes)?;
                self.outputs.push(path);
            }
        }
        if let Some((curves, axes)) = &self.drift {
            for ext in ["png", "svg"] {
                let path = out_dir.join(format!("drift.{ext}"));
                plot_on(curves, &path, axes)?;
                self.outputs.push(path);
            }
        }
        Ok(())
    }

    pub(crate) fn to_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut md = String::from(
            "| scenario | run | task | seeds | trainable params | eval accuracy | eval macro-F1 | best epoch | wall time (s) | train examples/s |\n\
             |---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            let name = if r.complete {
                esc(&r.group)
            } else {
                format!("{} (incomplete)", esc(&r.group))
            };
            let best_decimals = if r.best_epoch.is_some_and(|s| s.n > 1) { 1 } else { 0 };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                esc(&r.scenario),
                name,
                esc(&r.task),
                r.seeds.len(),
                params_cell(r.trainable_params),
                cell(r.accuracy, 4),
                cell(r.macro_f1, 4),
                cell(r.best_epoch, best_decimals),
                cell(r.wall_s, 1),
                cell(r.train_examples_per_s, 1),
            );
        }
        if !self.left_out.is_empty() {
            md += &format!(
                "\nLeft out, non-finite metrics (diverged): {}.\n",
                self.left_out.join("; ")
            );
        }
        md
    }

    fn report(&self) -> String {
        let mut md = format!("# Run comparison\n\n{}\n", self.to_markdown());
        let _ = write!(md, "{} runs in {} groups.", self.n_runs, self.n_groups);
        let mut seen = Vec::new();
        for r in self.rows.iter().filter(|r| r.runs.len() > 1) {
            if !seen.contains(&(&r.scenario, &r.group)) {
                seen.push((&r.scenario, &r.group));
                let seeds: Vec<String> = r.seeds.iter().map(u64::to_string).collect();
                let _ = write!(
                    md,
                    " Merged {} seeds ({}) of `{}` into one row per task: {}.",
                    r.runs.len(),
                    seeds.join(", "),
                    r.group,
                    r.runs.join(", ")
                );
            }
        }
        if seen.is_empty() {
            md += " No runs differed only in seed, so nothing was merged.";
        } else {
            md += " Merged values are mean ± sample std over seeds.";
        }
        md += " Accuracy and macro-F1 are final eval values; best epoch has the highest eval accuracy.\n";
        for w in &self.warnings {
            let _ = write!(md, "\n**Warning:** {w}\n");
        }
        for r in self.runs.iter() {
            if let Some(b) = &r.best {
                let how = if r.stopped_early {
                    "stopped early; its"
                } else {
                    "ran to the end; its"
                };
                let kept = if b.weights.is_some() {
                    ", whose weights it kept"
                } else {
                    ""
                };
                let _ = write!(
                    md,
                    "\nEarly stopping: `{}` {how} best evaluation was at epoch {}, step {} ({} {:.4}){kept}.\n",
                    r.run, b.epoch, b.step, b.metric, b.value
                );
            }
        }
        md += "\n![eval accuracy per epoch](comparison.png)\n";
        if !self.retention.is_empty() {
            md += &format!("\n## Retention\n\n{}", self.retention_markdown());
        }
        if let Some((curves, axes)) = &self.drift {
            md += &format!(
                "\n## Drift\n\n{}\n![CKA to the pretrained encoder per layer](drift.png)\n",
                drift_markdown(curves, axes)
            );
        }
        md
    }

    /// The retention table: each group's probes (Spearman x100) before and after training and the change,
    /// beside its mean eval accuracy.
    pub(crate) fn retention_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
        let mut md = String::from(
            "| scenario | run | seeds | mean eval accuracy | probe | Spearman before | Spearman after | change |\n\
             |---|---|---:|---:|---|---:|---:|---:|\n",
        );
        for r in &self.retention {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                esc(&r.scenario),
                esc(&r.group),
                r.seeds,
                cell(r.mean_accuracy, 4),
                esc(&r.probe),
                cell(r.before, 2),
                cell(r.after, 2),
                cell(r.change, 2),
            );
        }
        md + "\nSpearman x100 of the probe's cosine similarities (as sentence-transformers' EmbeddingSimilarityEvaluator); before: at epoch 0; after: at the last evaluation; mean ± sample std over seeds.\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "run,scenario,epoch,step,task,split,loss,accuracy,macro_f1,examples_seen,elapsed_s";

    /// `accs[task][epoch]` become eval rows; one train row per trained epoch.
    fn write_run(
        root: &Path,
        run: &str,
        scenario: &str,
        seed: i64,
        accs: &[(&str, &[f64])],
        wall: f64,
        eps: f64,
    ) -> PathBuf {
        let dir = root.join(run);
        fs::create_dir_all(&dir).unwrap();
        let mut csv = format!("{HEADER}\n");
        let mut finals = serde_json::Map::new();
        for (task, curve) in accs {
            for (epoch, acc) in curve.iter().enumerate() {
                let step = epoch * 10;
                csv += &format!(
                    "{run},{scenario},{epoch},{step},{task},eval,0.5,{acc},{},{},{}\n",
                    acc - 0.1,
                    step * 8,
                    epoch as f64
                );
                if epoch > 0 {
                    csv += &format!(
                        "{run},{scenario},{epoch},{step},{task},train,0.4,0.5,0.5,{},{}\n",
                        step * 8,
                        epoch as f64
                    );
                }
            }
            let last = *curve.last().unwrap();
            finals.insert(
                task.to_string(),
                serde_json::json!({"accuracy": last, "macro_f1": last - 0.1, "loss": 0.5}),
            );
        }
        fs::write(dir.join("metrics.csv"), csv).unwrap();
        let summary = serde_json::json!({
            "run": run, "scenario": scenario, "device": "cpu", "seed": seed, "model": "m",
            "params_total": 1000, "params_trainable": 250,
            "groups": {"encoder": {"params": 750, "trainable": false}, "head": {"params": 250, "trainable": true}},
            "frozen_unchanged": true, "frozen_tensors_checked": 3, "final": finals,
            "train_examples": {}, "eval_examples": {}, "epochs": 3, "steps": 30, "examples_seen": 240,
            "features_cached": false, "wall_s": wall, "train_s": wall / 2.0,
            "train_examples_per_s": eps, "complete": true
        });
        fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
        dir
    }

    fn fixture(root: &Path) -> Vec<PathBuf> {
        vec![
            write_run(
                root,
                "frozen-seed1",
                "frozen",
                1,
                &[("sst2", &[0.5, 0.7, 0.8, 0.75]), ("nli", &[0.3, 0.4, 0.5, 0.6])],
                10.0,
                100.0,
            ),
            write_run(
                root,
                "frozen-seed2",
                "frozen",
                2,
                &[("sst2", &[0.5, 0.9, 0.85, 0.8]), ("nli", &[0.3, 0.4, 0.45, 0.5])],
                12.0,
                120.0,
            ),
            write_run(root, "baseline", "zero-shot", 7, &[("sst2", &[0.6])], 1.0, 0.0),
        ]
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn group_names() {
        assert_eq!(group_name("frozen-seed3"), "frozen");
        assert_eq!(group_name("frozen_seed12"), "frozen");
        assert_eq!(group_name("lora-s0"), "lora");
        assert_eq!(group_name("full-ft"), "full-ft");
        assert_eq!(group_name("bert2"), "bert2");
        assert_eq!(group_name("-s1"), "-s1");
    }

    #[test]
    fn merges_seeds_with_mean_and_sample_std() {
        let tmp = tempfile::tempdir().unwrap();
        let cmp = compare(&fixture(tmp.path()), &tmp.path().join("out")).unwrap();
        assert_eq!((cmp.n_runs, cmp.n_groups, cmp.rows.len()), (3, 2, 3));

        let sst = cmp
            .rows
            .iter()
            .find(|r| r.group == "frozen" && r.task == "sst2")
            .unwrap();
        assert_eq!(sst.seeds, vec![1, 2]);
        let acc = sst.accuracy.unwrap();
        assert!(
            close(acc.mean, 0.775) && close(acc.std.unwrap(), 0.05 / 2f64.sqrt()),
            "{acc:?}"
        );
        // best epochs 2 and 1
        let best = sst.best_epoch.unwrap();
        assert!(
            close(best.mean, 1.5) && close(best.std.unwrap(), 0.5_f64.sqrt()),
            "{best:?}"
        );
        assert!(close(sst.wall_s.unwrap().mean, 11.0));
        assert!(close(sst.train_examples_per_s.unwrap().mean, 110.0));
        assert!(close(sst.trainable_params.unwrap().mean, 250.0));

        let nli = cmp
            .rows
            .iter()
            .find(|r| r.group == "frozen" && r.task == "nli")
            .unwrap();
        assert!(close(nli.best_epoch.unwrap().mean, 3.0) && close(nli.best_epoch.unwrap().std.unwrap(), 0.0));

        let base = cmp.rows.iter().find(|r| r.scenario == "zero-shot").unwrap();
        assert_eq!((base.accuracy.unwrap().std, base.best_epoch.unwrap().mean), (None, 0.0));
        assert!(base.train_examples_per_s.is_none());

        let md = cmp.to_markdown();
        assert!(
            md.contains("| frozen | frozen | sst2 | 2 | 250 | 0.7750 ± 0.0354 |"),
            "{md}"
        );
        assert!(
            md.contains("| zero-shot | baseline | sst2 | 1 | 250 | 0.6000 | 0.5000 | 0 | 1.0 | – |"),
            "{md}"
        );
        let report = fs::read_to_string(tmp.path().join("out/comparison.md")).unwrap();
        assert!(
            report.starts_with("# Run comparison")
                && report.contains("3 runs in 2 groups. Merged 2 seeds (1, 2) of `frozen`"),
            "{report}"
        );

        // mean curve over seeds: epoch 1 of sst2 is (0.7 + 0.9) / 2
        let frozen = cmp
            .curves
            .iter()
            .find(|c| c.label == "frozen (mean of 2 seeds)")
            .unwrap();
        assert!(close(frozen.tasks[0].points[1].mean, 0.8));
        for ext in ["png", "svg"] {
            let len = fs::metadata(tmp.path().join(format!("out/comparison.{ext}")))
                .unwrap()
                .len();
            assert!(len > 1000, "comparison.{ext} is {len} bytes");
        }
    }

    #[test]
    fn malformed_csv_names_file_line_and_column() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fixture(tmp.path()).remove(0);
        let path = dir.join("metrics.csv");
        let mut lines: Vec<String> = fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
        let mut fields: Vec<&str> = lines[4].split(',').collect();
        fields[7] = "abc";
        lines[4] = fields.join(",");
        fs::write(&path, lines.join("\n")).unwrap();
        let err = format!("{:#}", load_run(&dir).unwrap_err());
        assert!(
            err.contains("metrics.csv line 5: column `accuracy`: invalid value `abc`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_header_names_expected_header() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fixture(tmp.path()).remove(0);
        fs::write(dir.join("metrics.csv"), "run,epoch,acc\nx,1,0.5\n").unwrap();
        let err = format!("{:#}", load_run(&dir).unwrap_err());
        assert!(err.contains("metrics.csv") && err.contains(HEADER), "{err}");
    }

    #[test]
    fn missing_summary_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fixture(tmp.path()).remove(0);
        fs::remove_file(dir.join("summary.json")).unwrap();
        let err = format!("{:#}", load_run(&dir).unwrap_err());
        assert!(err.contains(&dir.join("summary.json").display().to_string()), "{err}");
    }

    #[test]
    fn incomplete_run_is_flagged() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = fixture(tmp.path());
        let path = dirs[2].join("summary.json");
        let text = fs::read_to_string(&path)
            .unwrap()
            .replace("\"complete\":true", "\"complete\":false");
        fs::write(&path, text).unwrap();
        let cmp = compare(&dirs, &tmp.path().join("out")).unwrap();
        assert!(cmp.to_markdown().contains("| baseline (incomplete) |"));
        assert_eq!(cmp.warnings.len(), 1, "{:?}", cmp.warnings);
    }

    #[test]
    fn a_run_with_non_finite_metrics_is_listed_not_averaged() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dirs = fixture(tmp.path());
        dirs.push(write_run(
            tmp.path(),
            "frozen-seed3",
            "frozen",
            3,
            &[("sst2", &[0.5, f64::NAN])],
            10.0,
            100.0,
        ));
        let cmp = compare(&dirs, &tmp.path().join("out")).unwrap();
        let sst = cmp
            .rows
            .iter()
            .find(|r| r.group == "frozen" && r.task == "sst2")
            .unwrap();
        assert_eq!(sst.seeds, vec![1, 2], "the diverged seed is not merged");
        assert!(sst.accuracy.unwrap().mean.is_finite());
        assert_eq!(cmp.left_out.len(), 1, "{:?}", cmp.left_out);
        assert!(cmp
            .to_markdown()
            .contains("Left out, non-finite metrics (diverged): `frozen-seed3`"));
        let only_nan = compare(&dirs[3..], &tmp.path().join("out2")).unwrap_err();
        assert!(
            format!("{only_nan:#}").contains("no run with finite metrics"),
            "{only_nan:#}"
        );
    }

    #[test]
    fn base_name_groups_runs_whatever_their_folder_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = fixture(tmp.path());
        for (d, base) in dirs.iter().zip(["lr-a", "lr-b", "base"]) {
            let path = d.join("summary.json");
            let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            v["base_name"] = base.into();
            fs::write(&path, v.to_string()).unwrap();
        }
        let cmp = compare(&dirs, &tmp.path().join("out")).unwrap();
        assert_eq!(cmp.n_groups, 3, "different base names are never merged");
    }

    #[test]
    fn runs_in_another_precision_are_their_own_group() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = fixture(tmp.path());
        let path = dirs[1].join("summary.json");
        let mut v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        v["precision"] = serde_json::json!({"requested": "auto", "used": "bf16", "why": "auto"});
        fs::write(&path, v.to_string()).unwrap();
        let cmp = compare(&dirs, &tmp.path().join("out")).unwrap();
        assert!(cmp.rows.iter().any(|r| r.group.ends_with(" (bf16)")), "{:?}", cmp.rows);
        assert!(cmp
            .rows
            .iter()
            .all(|r| !r.group.ends_with(" (bf16)") || r.runs.len() == 1));
        assert_eq!(cmp.n_groups, 3, "frozen-seed1 (fp32), frozen-seed2 (bf16), baseline");
    }

    #[test]
    fn duplicate_run_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = fixture(tmp.path());
        let err = compare(&[dirs[0].clone(), dirs[0].clone()], &tmp.path().join("out")).unwrap_err();
        assert!(err.to_string().contains("given twice"), "{err}");
    }
}
