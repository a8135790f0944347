//! What `compare` says of retention: for each group of runs (seeds merged), each probe's Spearman before and
//! after training and its change, beside the group's mean eval accuracy over its tasks (`summary.json`'s
//! `probes` and `final`); and the drift plot: CKA to the pretrained encoder per layer at each run's last
//! measurement (drift.csv), mean ± std over seeds, one line per group. Groups without probes or drift are left
//! out of each; with none at all there is no table or plot.

use std::collections::BTreeMap;
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
