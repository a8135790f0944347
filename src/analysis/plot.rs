//! Eval-accuracy curves, one panel per task, drawn with plotters.
//!
//! The plot is drawn once as SVG; the PNG is that SVG rasterised by resvg. Text uses DejaVu Sans compiled
//! into the binary (plotters' `ab_glyph` feature lays it out, resvg draws it), so neither building nor
//! running needs fontconfig or system fonts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontDesc};

use crate::analysis::stat::Stat;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CurvePoint {
    pub epoch: u32,
    pub mean: f64,
    /// Spread across seeds, drawn as a band; 0 for a single run.
    pub std: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct TaskCurve {
    pub task: String,
    pub points: Vec<CurvePoint>,
}

/// One line per panel: a run group (seeds already averaged).
#[derive(Debug, Clone)]
pub(crate) struct RunCurve {
    /// Legend text.
    pub label: String,
    pub tasks: Vec<TaskCurve>,
}

impl RunCurve {
    /// One line per panel from values by (panel, x position), merged as mean ± sample std (0 for one value).
    pub(crate) fn from_points(label: &str, by_point: BTreeMap<(String, u32), Vec<f64>>) -> RunCurve {
        let mut tasks: BTreeMap<String, Vec<CurvePoint>> = BTreeMap::new();
        for ((panel, x), vs) in by_point {
            if let Some(s) = Stat::of(vs) {
                tasks.entry(panel).or_default().push(CurvePoint {
                    epoch: x,
                    mean: s.mean,
                    std: s.std.unwrap_or(0.0),
                });
            }
        }
        RunCurve {
            label: label.to_string(),
            tasks: tasks
                .into_iter()
                .map(|(task, points)| TaskCurve { task, points })
                .collect(),
        }
    }
}

const PANEL: (u32, u32) = (560, 440);
const LEGEND_ROW: u32 = 30;
const FONT: &str = "sans-serif";
// Tableau 10: distinguishable, and still readable for common colour blindness.
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// DejaVu Sans regular and bold: registered with plotters on first use (it lays text out with them), and
/// given to the SVG rasteriser as its only fonts.
fn fonts() -> [&'static [u8]; 2] {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    let fonts = [dejavu::sans::regular(), dejavu::sans::bold()];
    REGISTERED.get_or_init(|| {
        for (style, bytes) in [(FontStyle::Normal, fonts[0]), (FontStyle::Bold, fonts[1])] {
            // The bytes are a known-good TTF, so failure here is a build defect.
            assert!(
                register_font(FONT, style, bytes).is_ok(),
                "bundled DejaVu Sans is not a valid font"
            );
        }
    });
    fonts
}

/// The PNG is the SVG rasterised by resvg: plotters' own bitmap text drops glyph side bearings and rounds
/// advances (uneven letter spacing), while resvg shapes text properly.
fn svg_to_png(svg: &str, path: &Path) -> Result<()> {
    let mut opt = resvg::usvg::Options::default();
    let db = opt.fontdb_mut();
    for bytes in fonts() {
        db.load_font_data(bytes.to_vec());
    }
    db.set_sans_serif_family("DejaVu Sans");
    let tree = resvg::usvg::Tree::from_str(svg, &opt).context("plot SVG does not parse")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("empty plot")?;
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap
        .save_png(path)
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Writes the plot as PNG or SVG, chosen by `path`'s extension.
pub(crate) fn plot_curves(runs: &[RunCurve], path: &Path) -> Result<()> {
    plot_on(runs, path, &Axes::accuracy())
}

/// What the axes show: their descriptions, the y values' bounds, and names for the x positions (none: the
/// numbers, as epochs are).
#[derive(Debug, Clone)]
pub(crate) struct Axes {
    pub x: String,
    pub y: String,
    pub bounds: (f64, f64),
    pub x_names: Vec<String>,
}

impl Axes {
    fn accuracy() -> Axes {
        Axes {
            x: "epoch".into(),
            y: "eval accuracy".into(),
            bounds: (0.0, 1.0),
            x_names: Vec::new(),
        }
    }
}

/// One panel per task (the points' `epoch` is the x position), one line per run, on `axes`.
pub(crate) fn plot_on(runs: &[RunCurve], path: &Path, axes: &Axes) -> Result<()> {
    fonts();
    let mut tasks: Vec<&str> = Vec::new();
    for t in runs.iter().flat_map(|r| &r.tasks).filter(|t| !t.points.is_empty()) {
        if !tasks.contains(&t.task.as_str()) {
            tasks.push(&t.task);
        }
    }
    if tasks.is_empty() {
        bail!("{}: no {} to plot", path.display(), axes.y);
    }
    let width = PANEL.0 * tasks.len() as u32;
    let legend = legend_layout(runs, width)?;
    let rows = legend.iter().map(|e| e.row + 1).max().unwrap_or(0);
    let size = (width, PANEL.1 + rows * LEGEND_ROW + 10);

    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, size).into_drawing_area(),
        runs,
        &tasks,
        &legend,
        axes,
    )
    .with_context(|| format!("cannot draw {}", path.display()))?;
    match ext.as_str() {
        "png" => svg_to_png(&svg, path),
        "svg" => std::fs::write(path, svg).with_context(|| format!("{}: cannot write", path.display())),
        _ => bail!("{}: unsupported plot format, use .png or .svg", path.display()),
    }
}

struct LegendEntry {
    row: u32,
    x: i32,
}

fn legend_font() -> FontDesc<'static> {
    (FONT, 17).into_font()
}

/// Places legend entries left to right, wrapping rows at `width`.
fn legend_layout(runs: &[RunCurve], width: u32) -> Result<Vec<LegendEntry>> {
    let (mut row, mut x) = (0, 20);
    let mut entries = Vec::new();
    for r in runs {
        let (w, _) = legend_font().box_size(&r.label).map_err(|e| anyhow!("font: {e:?}"))?;
        let w = 40 + w as i32 + 28;
        if x > 20 && x + w > width as i32 {
            row += 1;
            x = 20;
        }
        entries.push(LegendEntry { row, x });
        x += w;
    }
    Ok(entries)
}

fn y_range(runs: &[RunCurve], task: &str, (min, max): (f64, f64)) -> (f64, f64) {
    let pts = runs
        .iter()
        .flat_map(|r| &r.tasks)
        .filter(|t| t.task == task)
        .flat_map(|t| &t.points);
    let (lo, hi) = pts.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.mean - p.std), hi.max(p.mean + p.std))
    });
    // Tight, so small differences between scenarios are visible, but at least
    // 0.1 tall so that noise is not blown up to fill the panel.
    let pad = ((hi - lo) * 0.08).max(0.02);
    let (mut lo, mut hi) = ((lo - pad).max(min), (hi + pad).min(max));
    if hi - lo < 0.1 {
        let mid = ((lo + hi) / 2.0).clamp(min + 0.05, max - 0.05);
        (lo, hi) = (mid - 0.05, mid + 0.05);
    }
    (lo, hi)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[RunCurve],
    tasks: &[&str],
    legend: &[LegendEntry],
    axes: &Axes,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(PANEL.1);
    for (area, task) in top.split_evenly((1, tasks.len())).iter().zip(tasks) {
        let max_epoch = runs
            .iter()
            .flat_map(|r| &r.tasks)
            .filter(|t| t.task == *task)
            .flat_map(|t| t.points.iter().map(|p| p.epoch))
            .max()
            .unwrap_or(0)
            .max(1);
        let (y0, y1) = y_range(runs, task, axes.bounds);
        let mut chart = ChartBuilder::on(area)
            .caption(*task, (FONT, 24).into_font().style(FontStyle::Bold))
            .margin(14)
            // a named last position (`pooled`) is centred on the axis's end, and would be cut at the edge
            .margin_right(if axes.x_names.is_empty() { 14 } else { 40 })
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0..max_epoch, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(axes.x.as_str())
            .y_desc(axes.y.as_str())
            .axis_desc_style((FONT, 18))
            .label_style((FONT, 15))
            .x_labels((max_epoch as usize + 1).min(if axes.x_names.is_empty() { 11 } else { 40 }))
            .x_label_formatter(&|x| match axes.x_names.get(*x as usize) {
                Some(name) => name.clone(),
                None => x.to_string(),
            })
            .y_labels(8)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(220, 220, 220))
            .draw()?;
        for (i, run) in runs.iter().enumerate() {
            let Some(curve) = run.tasks.iter().find(|t| t.task == *task) else {
                continue;
            };
            let c = color(i);
            if curve.points.iter().any(|p| p.std > 0.0) {
                let band = curve
                    .points
                    .iter()
                    .map(|p| (p.epoch, (p.mean + p.std).min(y1)))
                    .chain(curve.points.iter().rev().map(|p| (p.epoch, (p.mean - p.std).max(y0))));
                chart.draw_series(std::iter::once(Polygon::new(band.collect::<Vec<_>>(), c.mix(0.15))))?;
            }
            let pts = curve.points.iter().map(|p| (p.epoch, p.mean));
            if let [only] = curve.points[..] {
                // An untrained run is a single point at epoch 0: extend it as a reference level.
                let level = [(0, only.mean), (max_epoch, only.mean)];
                chart.draw_series(DashedLineSeries::new(level, 10, 6, c.stroke_width(2)))?;
            }
            chart.draw_series(LineSeries::new(pts.clone(), c.stroke_width(3)))?;
            chart.draw_series(pts.map(|p| Circle::new(p, 4, c.filled())))?;
        }
    }
    for (i, (run, e)) in runs.iter().zip(legend).enumerate() {
        let y = 10 + (e.row * LEGEND_ROW) as i32 + LEGEND_ROW as i32 / 2;
        bottom.draw(&PathElement::new(
            vec![(e.x, y), (e.x + 32, y)],
            color(i).stroke_width(4),
        ))?;
        let style = legend_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        bottom.draw(&Text::new(run.label.as_str(), (e.x + 40, y), style))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(label: &str, accs: &[f64], std: f64) -> RunCurve {
        let points = accs
            .iter()
            .enumerate()
            .map(|(e, &mean)| CurvePoint {
                epoch: e as u32,
                mean,
                std,
            })
            .collect();
        let other = vec![CurvePoint {
            epoch: 0,
            mean: 0.4,
            std: 0.0,
        }];
        RunCurve {
            label: label.into(),
            tasks: vec![
                TaskCurve {
                    task: "sst2".into(),
                    points,
                },
                TaskCurve {
                    task: "nli".into(),
                    points: other,
                },
            ],
        }
    }

    #[test]
    fn writes_png_and_svg() {
        let tmp = tempfile::tempdir().unwrap();
        let runs = [
            curve("frozen (2 seeds)", &[0.5, 0.7, 0.8], 0.03),
            curve("zero-shot", &[0.6], 0.0),
        ];
        for name in ["c.png", "c.svg"] {
            let path = tmp.path().join(name);
            plot_curves(&runs, &path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.len() > 1000, "{name}: {} bytes", bytes.len());
        }
        let svg = std::fs::read_to_string(tmp.path().join("c.svg")).unwrap();
        assert!(svg.contains("eval accuracy") && svg.contains("zero-shot") && svg.contains("nli"));
        assert!(std::fs::read(tmp.path().join("c.png")).unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn rejects_unknown_extension_and_empty_input() {
        let tmp = tempfile::tempdir().unwrap();
        let err = plot_curves(&[curve("a", &[0.5], 0.0)], &tmp.path().join("c.jpg")).unwrap_err();
        assert!(err.to_string().contains("c.jpg"), "{err}");
        assert!(plot_curves(&[], &tmp.path().join("c.png")).is_err());
    }

    #[test]
    fn y_range_is_tight_but_not_degenerate() {
        let runs = [curve("a", &[0.80, 0.81], 0.0)];
        let (lo, hi) = y_range(&runs, "sst2", (0.0, 1.0));
        assert!(
            lo <= 0.80 && hi >= 0.81 && hi - lo >= 0.1 - 1e-12 && lo > 0.5,
            "{lo}..{hi}"
        );
        let (lo, hi) = y_range(&[curve("b", &[0.0, 1.0], 0.0)], "sst2", (0.0, 1.0));
        assert_eq!((lo, hi), (0.0, 1.0));
    }
}
