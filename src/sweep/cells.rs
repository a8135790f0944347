//! A sweep's cells and its manifest. The cells are the configs (in the order given) × the points of the
//! grid (the cross product of `--grid key=v1,v2`, keys in the order given, the first varying slowest) ×
//! the seeds. Each cell is one fully resolved config whose run name is one plain folder name made from
//! the config's name, the grid point and the seed, and whose `base_name` carries the grid point (not the
//! seed), so `compare` merges seeds and never different hyperparameters. The manifest fixes the cells at
//! submit time: an index always means the same cell, whatever happens to the config files later.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::run::run_dir::RunDir;
use crate::util::names::check_run_name as check_name;
use crate::util::time::now_utc;

/// One `--grid key=v1,v2,...`: a config key (a dotted path, as for `--set`) and its values in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GridAxis {
    pub key: String,
    pub values: Vec<String>,
}

/// Keys a grid may not vary: the sweep itself sets names and seeds, and all runs share one output folder.
const RESERVED: [&str; 4] = ["name", "base_name", "seed", "output_dir"];

impl GridAxis {
    /// Parses `key=v1,v2`; commas inside `[...]` or `{...}` belong to a value (`tasks.0.labels=[a,b],[c,d]`).
    pub(crate) fn parse(spec: &str) -> Result<GridAxis> {
        let (key, raw) = spec
            .split_once('=')
            .with_context(|| format!("--grid `{spec}`: expected key.path=v1,v2,..."))?;
        let key = key.trim();
        let plain = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key.split('.').all(plain) {
            bail!("--grid `{spec}`: `{key}` is not a dotted config key such as train.lr_encoder");
        }
        if RESERVED.contains(&key) {
            bail!(
                "--grid `{spec}`: `{key}` cannot vary in a sweep (use --seeds for seeds, --name for the sweep's name)"
            );
        }
        let values = split_top_level(raw);
        if values.iter().any(String::is_empty) {
            bail!("--grid `{spec}`: a value is empty");
        }
        let mut seen: Vec<serde_yaml::Value> = Vec::new();
        for v in &values {
            let parsed: serde_yaml::Value =
                serde_yaml::from_str(v).with_context(|| format!("--grid `{spec}`: `{v}` is not valid YAML"))?;
            // `2e-5` and `0.00002` are one value: duplicates are found on the parsed values
            if seen.contains(&parsed) {
                bail!("--grid `{spec}`: value `{v}` is given twice");
            }
            seen.push(parsed);
        }
        Ok(GridAxis {
            key: key.to_string(),
            values,
        })
    }
}

fn split_top_level(raw: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0i32);
    for c in raw.chars() {
        match c {
            '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out
}

/// One setting of a grid point, as given on the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Setting {
    pub key: String,
    pub value: String,
}

/// One run of a sweep: where it came from (config file, grid point) and the config it runs, which holds
/// its run name (`cfg.name`), `base_name` and seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cell {
    pub index: usize,
    pub config: PathBuf,
    pub grid: Vec<Setting>,
    pub cfg: ExperimentConfig,
}

impl Cell {
    pub(crate) fn run(&self) -> &str {
        &self.cfg.name
    }

    pub(crate) fn run_dir(&self) -> Result<RunDir> {
        RunDir::new(&self.cfg.output_dir, &self.cfg.name)
    }
}

/// Every cell, in index order (see the module contract).
pub(crate) fn plan(configs: &[PathBuf], grid: &[GridAxis], seeds: &[u64], overrides: &[String]) -> Result<Vec<Cell>> {
    check_axes(grid, overrides, seeds)?;
    let labels = short_keys(grid);
    let mut cells = Vec::new();
    for path in configs {
        for point in points(grid) {
            let mut sets = overrides.to_vec();
            sets.extend(point.iter().map(|s| format!("{}={}", s.key, s.value)));
            let base = ExperimentConfig::load(path, &sets)?;
            let tag: Vec<String> = point
                .iter()
                .zip(&labels)
                .map(|(s, label)| format!("{label}_{}", plain_value(&s.value)))
                .collect();
            let with_tag = |n: &str| match tag.is_empty() {
                true => n.to_string(),
                false => format!("{n}-{}", tag.join("-")),
            };
            let base_name = with_tag(base.base_name.as_deref().unwrap_or(&base.name));
            let seeds: Vec<Option<u64>> = match seeds.is_empty() {
                true => vec![None],
                false => seeds.iter().copied().map(Some).collect(),
            };
            for seed in seeds {
                let mut cfg = base.clone();
                cfg.name = with_tag(&base.name);
                if let Some(s) = seed {
                    cfg.seed = s;
                    cfg.name = format!("{}-seed{s}", cfg.name);
                }
                if cfg.name != base_name || base.base_name.is_some() {
                    cfg.base_name = Some(base_name.clone());
                }
                check_name(&cfg.name).with_context(|| format!("{}: the sweep's run name", path.display()))?;
                check_name(&base_name).with_context(|| format!("{}: the sweep's base_name", path.display()))?;
                let index = cells.len();
                cells.push(Cell {
                    index,
                    config: path.clone(),
                    grid: point.clone(),
                    cfg,
                });
            }
        }
    }
    check_unique(&cells)?;
    Ok(cells)
}

fn check_axes(grid: &[GridAxis], overrides: &[String], seeds: &[u64]) -> Result<()> {
    let mut keys = HashSet::new();
    for a in grid {
        if !keys.insert(a.key.as_str()) {
            bail!(
                "--grid: key `{}` is given twice (list all its values in one --grid)",
                a.key
            );
        }
        let set = |o: &String| o.split_once('=').is_some_and(|(k, _)| k.trim() == a.key);
        if overrides.iter().any(set) {
            bail!(
                "--grid `{}`: the key is also given with --set; give it in one place",
                a.key
            );
        }
    }
    let mut seen = HashSet::new();
    if let Some(s) = seeds.iter().find(|s| !seen.insert(**s)) {
        bail!("--seeds: seed {s} is given twice");
    }
    Ok(())
}

/// The cross product of the axes' values, the first axis varying slowest; one empty point without axes.
fn points(grid: &[GridAxis]) -> Vec<Vec<Setting>> {
    let mut out = vec![Vec::new()];
    for a in grid {
        out = out
            .into_iter()
            .flat_map(|p: Vec<Setting>| {
                a.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push(Setting {
                        key: a.key.clone(),
                        value: v.clone(),
                    });
                    q
                })
            })
            .collect();
    }
    out
}

/// For each key, its shortest dotted suffix that no other key ends with: `train.lr_encoder` is `lr_encoder`,
/// `tasks.0.limit_train` beside `tasks.1.limit_train` is `0.limit_train`.
fn short_keys(grid: &[GridAxis]) -> Vec<String> {
    grid.iter()
        .map(|a| {
            let parts: Vec<&str> = a.key.split('.').collect();
            (1..=parts.len())
                .map(|n| parts[parts.len() - n..].join("."))
                .find(|suffix| {
                    grid.iter()
                        .filter(|b| b.key == *suffix || b.key.ends_with(&format!(".{suffix}")))
                        .count()
                        == 1
                })
                .unwrap_or_else(|| a.key.clone())
        })
        .collect()
}

/// A value as part of a folder name: anything but letters, digits, `.`, `-`, `_` becomes `_` (two values
/// that then read the same are caught as duplicate run names).
fn plain_value(v: &str) -> String {
    v.chars()
        .map(|c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
            true => c,
            false => '_',
        })
        .collect()
}

fn check_unique(cells: &[Cell]) -> Result<()> {
    for (i, c) in cells.iter().enumerate() {
        if let Some(d) = cells[..i].iter().find(|d| d.run() == c.run()) {
            bail!(
                "cells {} ({}) and {} ({}) would both be run `{}`: give the configs different names, or grid values that differ as folder names",
                d.index,
                d.config.display(),
                c.index,
                c.config.display(),
                c.run()
            );
        }
    }
    Ok(())
}

/// A sweep's default name: its configs' names (after `--set`) joined, e.g. `full_finetune-unfreeze_top2-sweep`.
pub(crate) fn default_name(configs: &[PathBuf], overrides: &[String]) -> Result<String> {
    let mut names: Vec<String> = Vec::new();
    for path in configs {
        let n = ExperimentConfig::load(path, overrides)?.name;
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let joined = format!("{}-sweep", names.join("-"));
    Ok(match joined.len() <= 80 {
        true => joined,
        false => format!("{}-and-{}-more-sweep", names[0], names.len() - 1),
    })
}

/// The cells of a submitted sweep, fixed (see the module contract); `results/<sweep>/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub format: u32,
    pub sweep: String,
    pub created: String,
    pub cells: Vec<Cell>,
}

pub(crate) const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: u32 = 1;

impl Manifest {
    pub(crate) fn new(sweep: &str, cells: Vec<Cell>) -> Manifest {
        Manifest {
            format: FORMAT,
            sweep: sweep.to_string(),
            created: now_utc(),
            cells,
        }
    }

    /// Reads and checks a manifest (it may have been edited by hand): format, names, indices in order,
    /// every config valid, run names unique.
    pub(crate) fn read(path: &Path) -> Result<Manifest> {
        let text = crate::util::fsx::read_text(path)?;
        let m: Manifest = serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(&text))
            .map_err(|e| anyhow::anyhow!("{}: {}: {}", path.display(), e.path(), e.inner()))?;
        m.check().with_context(|| format!("{}", path.display()))?;
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        if self.format != FORMAT {
            bail!("format {} is not {FORMAT}, the one this harness writes", self.format);
        }
        check_name(&self.sweep).context("sweep")?;
        if self.cells.is_empty() {
            bail!("cells: is empty");
        }
        for (i, c) in self.cells.iter().enumerate() {
            if c.index != i {
                bail!(
                    "cells.{i}.index: is {}, expected {i} (cells are listed in index order)",
                    c.index
                );
            }
            c.cfg.validate().with_context(|| format!("cells.{i}.cfg"))?;
        }
        check_unique(&self.cells)
    }

    /// Writes it whole or not at all (a temporary file renamed into place).
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        crate::util::fsx::write_atomic(path, (serde_json::to_string_pretty(self)? + "\n").as_bytes())
    }

    /// Whether `cells` are exactly this manifest's (same order, same resolved configs).
    pub(crate) fn same_cells(&self, cells: &[Cell]) -> Result<bool> {
        Ok(serde_json::to_value(&self.cells)? == serde_json::to_value(cells)?)
    }
}

/// Which cell `--index` names: a number, or `env` (Slurm's `SLURM_ARRAY_TASK_ID`, else Kubernetes'
/// `JOB_COMPLETION_INDEX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellIndex {
    Env,
    N(usize),
}

impl std::str::FromStr for CellIndex {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "env" => Ok(CellIndex::Env),
            _ => s
                .parse()
                .map(CellIndex::N)
                .map_err(|_| format!("`{s}` is not a cell index (0, 1, ...) or `env`")),
        }
    }
}

pub(crate) const INDEX_VARS: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

impl CellIndex {
    /// The index, checked against the number of cells; `get` reads the environment.
    pub(crate) fn resolve(self, cells: usize, get: impl Fn(&str) -> Option<String>) -> Result<usize> {
        let i = match self {
            CellIndex::N(i) => i,
            CellIndex::Env => {
                let (var, v) = INDEX_VARS
                    .iter()
                    .find_map(|var| get(var).map(|v| (*var, v)))
                    .with_context(|| format!("--index env: neither {} is set", INDEX_VARS.join(" nor ")))?;
                v.trim()
                    .parse()
                    .with_context(|| format!("--index env: {var}=`{v}` is not a cell index"))?
            }
        };
        if i >= cells {
            bail!(
                "--index {i} is out of range: the sweep has {cells} cells (0 to {})",
                cells - 1
            );
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(s: &str) -> Result<GridAxis> {
        GridAxis::parse(s)
    }

    #[test]
    fn grid_values_split_at_top_level_commas_and_duplicates_are_found_by_value() {
        let a = axis("tasks.0.labels=[a,b],[c,d]").unwrap();
        assert_eq!(a.values, ["[a,b]", "[c,d]"]);
        for (spec, needle) in [
            ("train.lr_encoder=2e-5,0.00002", "given twice"),
            ("train.epochs=1,,2", "empty"),
            ("train.epochs", "expected key.path"),
            ("seed=1,2", "cannot vary"),
            ("name=a,b", "cannot vary"),
            ("train..epochs=1", "dotted config key"),
            ("train.epochs=[1", "not valid YAML"),
        ] {
            let e = format!("{:#}", axis(spec).unwrap_err());
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn points_vary_the_first_axis_slowest_and_keys_are_shortened_until_unique() {
        let g = [
            axis("a.x=1,2").unwrap(),
            axis("b.x=3").unwrap(),
            axis("c.y=4,5").unwrap(),
        ];
        let p: Vec<String> = points(&g)
            .iter()
            .map(|p| p.iter().map(|s| s.value.as_str()).collect::<Vec<_>>().join(""))
            .collect();
        assert_eq!(p, ["134", "135", "234", "235"]);
        assert_eq!(short_keys(&g), ["a.x", "b.x", "y"]);
        assert_eq!(plain_value("head:a b"), "head_a_b");
    }

    #[test]
    fn the_index_comes_from_slurm_then_kubernetes_and_is_range_checked() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let both = env(&[("SLURM_ARRAY_TASK_ID", "2"), ("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(CellIndex::Env.resolve(4, both).unwrap(), 2);
        assert_eq!(
            CellIndex::Env
                .resolve(4, env(&[("JOB_COMPLETION_INDEX", "1")]))
                .unwrap(),
            1
        );
        let e = format!("{:#}", CellIndex::Env.resolve(4, env(&[])).unwrap_err());
        assert!(e.contains("SLURM_ARRAY_TASK_ID"), "{e}");
        let e = format!(
            "{:#}",
            CellIndex::Env
                .resolve(4, env(&[("SLURM_ARRAY_TASK_ID", "x")]))
                .unwrap_err()
        );
        assert!(e.contains("not a cell index"), "{e}");
        let e = format!("{:#}", CellIndex::N(4).resolve(4, env(&[])).unwrap_err());
        assert!(e.contains("out of range") && e.contains("0 to 3"), "{e}");
        assert!("-1".parse::<CellIndex>().is_err() && "env".parse::<CellIndex>() == Ok(CellIndex::Env));
    }
}
