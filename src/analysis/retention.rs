//! What `compare` says of retention: for each group of runs (seeds merged), each probe's Spearman before and
//! after training and its change, beside the group's mean eval accuracy over its tasks (`summary.json`'s
//! `probes` and `final`); and the drift plot: CKA to the pretrained encoder per layer at each run's last
//! measurement (drift.csv), mean ± std over seeds, one line per group. Groups without probes or drift are left
//! out of each; with none at all there is no table or plot.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::analysis::plot::{Axes, RunCurve};
use crate::analysis::stat::Stat;
use crate::record::{read_drift, Summary, DRIFT_FILE};

/// The probe metric the table reports (x100, as metrics.csv has it).
const METRIC: &str = "spearman";

/// One group and one probe.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RetentionRow {
    pub scenario: String,
    pub group: String,
    pub seeds: usize,
    /// the mean over the group's tasks of the final eval accuracy, then over seeds
    pub mean_accuracy: Option<Stat>,
    pub probe: String,
    pub before: Option<Stat>,
    pub after: Option<Stat>,
    pub change: Option<Stat>,
}

/// A group of runs as the table and the plot take it: (scenario, group name, its runs' summaries and folders).
pub(crate) type GroupRuns<'a> = (String, String, Vec<(&'a Summary, &'a Path)>);

pub(crate) fn retention_rows(groups: &[GroupRuns]) -> Vec<RetentionRow> {
    let mut rows = Vec::new();
    for (scenario, group, runs) in groups {
        let mut probes: Vec<&String> = runs.iter().flat_map(|(s, _)| s.probes.keys()).collect();
        probes.sort();
        probes.dedup();
        let mean_accuracy = Stat::of(runs.iter().filter_map(|(s, _)| {
            let accs: Vec<f64> = s
                .final_metrics
                .values()
                .map(|m| m.accuracy)
                .filter(|a| a.is_finite())
                .collect();
            (!accs.is_empty()).then(|| accs.iter().sum::<f64>() / accs.len() as f64)
        }));
        for probe in probes {
            let of = |f: fn(&crate::record::ProbeChange) -> &BTreeMap<String, f64>| {
                Stat::of(
                    runs.iter()
                        .filter_map(|(s, _)| s.probes.get(probe).and_then(|p| f(p).get(METRIC).copied())),
                )
            };
            rows.push(RetentionRow {
                scenario: scenario.clone(),
                group: group.clone(),
                seeds: runs.len(),
                mean_accuracy,
                probe: probe.clone(),
                before: of(|p| &p.before),
                after: of(|p| &p.after),
                change: of(|p| &p.change),
            });
        }
    }
    rows
}

/// One run's CKA per layer position at its last measurement (`layer.N` at N, `pooled` after the last layer).
fn last_cka(dir: &Path) -> Result<Option<BTreeMap<u32, f64>>> {
    let path = dir.join(DRIFT_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let rows = read_drift(&path)?;
    let Some(last) = rows.iter().map(|r| (r.epoch, r.step)).max() else {
        return Ok(None);
    };
    let layers = rows
        .iter()
        .filter_map(|r| r.layer.strip_prefix("layer.")?.parse::<u32>().ok())
        .max();
    let pooled = layers.map_or(0, |l| l + 1);
    Ok(Some(
        rows.iter()
            .filter(|r| (r.epoch, r.step) == last)
            .filter_map(|r| {
                let x = match r.layer.as_str() {
                    "pooled" => pooled,
                    l => l.strip_prefix("layer.")?.parse().ok()?,
                };
                Some((x, r.cka))
            })
            .collect(),
    ))
}

/// The drift plot's curves (labelled as the groups are) and axes; None when no run measured drift.
pub(crate) fn drift_curves(groups: &[(String, Vec<&Path>)]) -> Result<Option<(Vec<RunCurve>, Axes)>> {
    let (mut curves, mut positions) = (Vec::new(), 0u32);
    for (label, dirs) in groups {
        let mut by_point: BTreeMap<(String, u32), Vec<f64>> = BTreeMap::new();
        for dir in dirs {
            for (x, cka) in last_cka(dir)?.unwrap_or_default() {
                positions = positions.max(x);
                by_point
                    .entry(("CKA to the pretrained encoder, end of training".into(), x))
                    .or_default()
                    .push(cka);
            }
        }
        if !by_point.is_empty() {
            curves.push(RunCurve::from_points(label, by_point));
        }
    }
    if curves.is_empty() {
        return Ok(None);
    }
    let x_names = (0..positions)
        .map(|i| format!("L{i}"))
        .chain(["pooled".to_string()])
        .collect();
    // the panel is drawn tight around the values (`plot::y_range`), so lines near 1 stay apart
    let axes = Axes {
        x: "layer output (bottom up), then the sentence embedding".into(),
        y: "linear CKA".into(),
        bounds: (0.0, 1.0),
        x_names,
    };
    Ok(Some((curves, axes)))
}

/// The drift plot's numbers: per group, CKA at each layer position at the end of training, mean ± sample std
/// over seeds, three decimals; an empty cell where the group has no value.
pub(crate) fn drift_markdown(curves: &[RunCurve], axes: &Axes) -> String {
    let mut md = format!(
        "| run | {} |\n|---|{}\n",
        axes.x_names.join(" | "),
        "---:|".repeat(axes.x_names.len())
    );
    for c in curves {
        let points = c.tasks.first().map_or(&[][..], |t| &t.points[..]);
        let cells: Vec<String> = (0..axes.x_names.len() as u32)
            .map(|x| {
                points
                    .iter()
                    .find(|p| p.epoch == x)
                    .map_or(String::new(), |p| format!("{:.3} ± {:.3}", p.mean, p.std))
            })
            .collect();
        let _ = writeln!(md, "| {} | {} |", c.label.replace('|', "\\|"), cells.join(" | "));
    }
    md + "\nLinear CKA between the pretrained encoder's and the trained encoder's representations of the same sentences (drift.csv, its last measurement): L*i*, layer *i*'s token states mean-pooled; pooled, the sentence embedding. 1 is unchanged up to rotation and scale.\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_with_drift(root: &Path, name: &str, rows: &[(u32, &str, f64)]) -> std::path::PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut csv = String::from("run,scenario,epoch,step,layer,cka\n");
        for (epoch, layer, cka) in rows {
            csv += &format!("{name},none,{epoch},{},{layer},{cka}\n", epoch * 10);
        }
        std::fs::write(dir.join(DRIFT_FILE), csv).unwrap();
        dir
    }

    #[test]
    fn the_drift_table_is_each_groups_last_measurement_merged_over_seeds() {
        let d = tempfile::tempdir().unwrap();
        let epoch0 = [(0, "layer.0", 1.0), (0, "layer.1", 1.0), (0, "pooled", 1.0)];
        // epoch 0, then epoch 1 with these values of layer.0, layer.1 and pooled
        let trained = |l0, l1, pooled| {
            [
                &epoch0[..],
                &[(1, "layer.0", l0), (1, "layer.1", l1), (1, "pooled", pooled)],
            ]
            .concat()
        };
        let a = run_with_drift(d.path(), "a1", &trained(0.9, 0.5, 0.6));
        let b = run_with_drift(d.path(), "a2", &trained(0.8, 0.7, 0.6));
        let frozen = run_with_drift(d.path(), "f1", &epoch0);
        let none = d.path().join("n1");
        std::fs::create_dir_all(&none).unwrap();
        let groups = vec![
            ("a".to_string(), vec![a.as_path(), b.as_path()]),
            ("f".to_string(), vec![frozen.as_path()]),
            ("n".to_string(), vec![none.as_path()]),
        ];
        let (curves, axes) = drift_curves(&groups).unwrap().unwrap();
        assert_eq!(axes.x_names, ["L0", "L1", "pooled"]);
        let md = drift_markdown(&curves, &axes);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[0], "| run | L0 | L1 | pooled |");
        assert_eq!(lines[2], "| a | 0.850 ± 0.071 | 0.600 ± 0.141 | 0.600 ± 0.000 |");
        assert_eq!(lines[3], "| f | 1.000 ± 0.000 | 1.000 ± 0.000 | 1.000 ± 0.000 |");
        assert!(!md.contains("| n |"), "a group without drift.csv has no row: {md}");
    }
}
