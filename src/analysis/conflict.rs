//! The conflict plot of `compare`: for each group of runs (seeds merged), the mean cosine of the tasks'
//! gradients per encoder parameter group (embeddings, then layers bottom up), averaged over the logged steps
//! of each run, then mean ± std over the seeds; one panel per task pair. Runs without a conflict.csv are left
//! out; with none at all there is no plot.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::analysis::plot::{Axes, RunCurve};
use crate::record::{read_conflicts, CONFLICT_FILE};

/// Where a parameter group goes on the x axis: embeddings first, then layers in order (`encoder`, the
/// whole, is not a position).
fn position(group: &str) -> Option<u32> {
    match group {
        "embeddings" => Some(0),
        _ => group.strip_prefix("layer.")?.parse::<u32>().ok().map(|n| n + 1),
    }
}

/// One run's mean cosine per (task pair, position), over its logged steps.
fn run_means(dir: &Path) -> Result<Option<BTreeMap<(String, u32), f64>>> {
    let path = dir.join(CONFLICT_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let mut sums: BTreeMap<(String, u32), (f64, usize)> = BTreeMap::new();
    for r in read_conflicts(&path)? {
        if let (Some(x), Some(c)) = (position(&r.group), r.cosine) {
            let e = sums.entry((format!("{} – {}", r.task_a, r.task_b), x)).or_default();
            (e.0, e.1) = (e.0 + c, e.1 + 1);
        }
    }
    Ok(Some(sums.into_iter().map(|(k, (s, n))| (k, s / n as f64)).collect()))
}

/// The curves for run groups given as (label, run folders), and the axes they are drawn on; empty when no
/// run logged conflicts.
pub(crate) fn conflict_curves(groups: &[(String, Vec<&Path>)]) -> Result<(Vec<RunCurve>, Axes)> {
    let mut curves = Vec::new();
    let mut layers = 0;
    for (label, dirs) in groups {
        let mut by_point: BTreeMap<(String, u32), Vec<f64>> = BTreeMap::new();
        for dir in dirs {
            for (k, v) in run_means(dir)?.unwrap_or_default() {
                by_point.entry(k).or_default().push(v);
            }
        }
        if by_point.is_empty() {
            continue;
        }
        layers = layers.max(by_point.keys().map(|k| k.1).max().unwrap_or(0));
        curves.push(RunCurve::from_points(label, by_point));
    }
    let x_names = std::iter::once("emb".to_string())
        .chain((0..layers).map(|i| format!("L{i}")))
        .collect();
    let axes = Axes {
        x: "encoder group (embeddings, layers bottom up)".into(),
        y: "mean gradient cosine".into(),
        bounds: (-1.0, 1.0),
        x_names,
    };
    Ok((curves, axes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ConflictRow;

    fn write(dir: &Path, rows: &[(&str, Option<f64>)]) {
        std::fs::create_dir_all(dir).unwrap();
        let mut w = csv::Writer::from_path(dir.join(CONFLICT_FILE)).unwrap();
        for (step, (group, cosine)) in rows.iter().enumerate() {
            let row = ConflictRow {
                step: step + 1,
                epoch: 1,
                group: group.to_string(),
                task_a: "a".into(),
                task_b: "b".into(),
                cosine: *cosine,
                norm_ratio: None,
            };
            w.serialize(row).unwrap();
        }
        w.flush().unwrap();
    }

    #[test]
    fn means_over_steps_then_seeds_per_group() {
        let d = tempfile::tempdir().unwrap();
        let (s1, s2, none) = (d.path().join("s1"), d.path().join("s2"), d.path().join("none"));
        write(
            &s1,
            &[
                ("embeddings", Some(0.2)),
                ("layer.0", Some(-0.4)),
                ("layer.0", Some(0.0)),
                ("encoder", Some(0.9)),
            ],
        );
        write(
            &s2,
            &[("embeddings", Some(0.4)), ("layer.0", None), ("layer.0", Some(-0.6))],
        );
        std::fs::create_dir_all(&none).unwrap();
        let groups = vec![
            ("m".to_string(), vec![s1.as_path(), s2.as_path()]),
            ("no log".to_string(), vec![none.as_path()]),
        ];
        let (curves, axes) = conflict_curves(&groups).unwrap();
        assert_eq!(curves.len(), 1, "a group without conflict.csv has no curve");
        let pts = &curves[0].tasks[0].points;
        assert_eq!(curves[0].tasks[0].task, "a – b");
        assert_eq!(pts.iter().map(|p| p.epoch).collect::<Vec<_>>(), [0, 1]);
        assert!((pts[0].mean - 0.3).abs() < 1e-12);
        // layer.0: run 1 mean -0.2, run 2 -0.6 (the empty cell skipped): mean -0.4, std sqrt(0.08)
        assert!((pts[1].mean + 0.4).abs() < 1e-12);
        assert!((pts[1].std - 0.08f64.sqrt()).abs() < 1e-12);
        assert_eq!(axes.x_names, ["emb", "L0"]);
    }
}
