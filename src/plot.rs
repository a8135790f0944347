//! Eval-accuracy curves, one panel per task, drawn with plotters.
//!
//! Text is rendered with a DejaVu Sans font compiled into the binary (plotters'
//! `ab_glyph` feature) so that neither building nor running needs fontconfig.

use std::path::Path;
use std::sync::OnceLock;

use ab_glyph::FontRef;
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontDesc};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub epoch: u32,
    pub mean: f64,
    /// Spread across seeds, drawn as a band; 0 for a single run.
    pub std: f64,
}

#[derive(Debug, Clone)]
pub struct TaskCurve {
    pub task: String,
    pub points: Vec<CurvePoint>,
}

/// One line per panel: a run group (seeds already averaged).
#[derive(Debug, Clone)]
pub struct RunCurve {
    /// Legend text.
    pub label: String,
    pub tasks: Vec<TaskCurve>,
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

/// DejaVu Sans regular and bold, registered with plotters on first use.
fn fonts() -> &'static [FontRef<'static>; 2] {
    static FONTS: OnceLock<[FontRef<'static>; 2]> = OnceLock::new();
    FONTS.get_or_init(|| {
        let styles = [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ];
        styles.map(|(style, bytes)| {
            // The bytes are a known-good TTF, so failure here is a build defect.
            assert!(
                register_font(FONT, style, bytes).is_ok(),
                "bundled DejaVu Sans is not a valid font"
            );
            FontRef::try_from_slice(bytes).expect("bundled DejaVu Sans is not a valid font")
        })
    })
}

mod png {
    use ab_glyph::{point, Font, ScaleFont};
    use plotters::prelude::{BitMapBackend, DrawingBackend};
    use plotters_backend::text_anchor::{HPos, VPos};
    use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontStyle};

    use super::fonts;

    /// BitMapBackend with its own glyph placement: plotters 0.3.7's ab_glyph
    /// renderer drops each glyph's side bearing and rounds every advance, which
    /// leaves visibly uneven letter spacing. Layout boxes still come from plotters,
    /// so text lands where its layout expects it.
    pub(super) struct Png<'a>(pub BitMapBackend<'a>);

    type PngResult = Result<(), DrawingErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

    impl DrawingBackend for Png<'_> {
        type ErrorType = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

        fn get_size(&self) -> (u32, u32) {
            self.0.get_size()
        }
        fn ensure_prepared(&mut self) -> PngResult {
            self.0.ensure_prepared()
        }
        fn present(&mut self) -> PngResult {
            self.0.present()
        }
        fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> PngResult {
            self.0.draw_pixel(p, c)
        }
        fn draw_line<S: BackendStyle>(&mut self, a: BackendCoord, b: BackendCoord, s: &S) -> PngResult {
            self.0.draw_line(a, b, s)
        }
        fn draw_rect<S: BackendStyle>(&mut self, a: BackendCoord, b: BackendCoord, s: &S, fill: bool) -> PngResult {
            self.0.draw_rect(a, b, s, fill)
        }
        fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(&mut self, p: I, s: &S) -> PngResult {
            self.0.draw_path(p, s)
        }
        fn draw_circle<S: BackendStyle>(&mut self, c: BackendCoord, r: u32, s: &S, fill: bool) -> PngResult {
            self.0.draw_circle(c, r, s, fill)
        }
        fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(&mut self, v: I, s: &S) -> PngResult {
            self.0.fill_polygon(v, s)
        }
        fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> PngResult {
            self.0.blit_bitmap(pos, size, src)
        }

        fn draw_text<S: BackendTextStyle>(&mut self, text: &str, style: &S, pos: BackendCoord) -> PngResult {
            let color = style.color();
            if color.alpha == 0.0 {
                return Ok(());
            }
            let ((x0, y0), (x1, y1)) = style
                .layout_box(text)
                .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
            let dx = match style.anchor().h_pos {
                HPos::Left => 0,
                HPos::Right => x0 - x1,
                HPos::Center => (x0 - x1) / 2,
            } - x0;
            let dy = match style.anchor().v_pos {
                VPos::Top => 0,
                VPos::Center => (y0 - y1) / 2,
                VPos::Bottom => y0 - y1,
            } - y0;
            let font = &fonts()[matches!(style.style(), FontStyle::Bold) as usize];
            let font = font.as_scaled(style.size() as f32);
            let (trans, (w, h)) = (style.transform(), self.get_size());
            // Baseline half a size below the top, as plotters' own renderer puts it.
            let (mut caret, baseline, mut prev) = (0.0, style.size() as f32 / 2.0, None);
            for c in text.chars() {
                let id = font.glyph_id(c);
                caret += prev.map_or(0.0, |p| font.kern(p, id));
                prev = Some(id);
                let glyph = id.with_scale_and_position(font.scale(), point(caret, baseline));
                caret += font.h_advance(id);
                let Some(outline) = font.outline_glyph(glyph) else {
                    continue;
                };
                let min = outline.px_bounds().min;
                let mut result = Ok(());
                outline.draw(|gx, gy, coverage| {
                    let (x, y) = trans.transform(min.x as i32 + gx as i32 + dx, min.y as i32 + gy as i32 + dy);
                    let (x, y) = (pos.0 + x, pos.1 + y);
                    if result.is_ok() && (0..w as i32).contains(&x) && (0..h as i32).contains(&y) {
                        let alpha = color.alpha * f64::from(coverage);
                        result = self.0.draw_pixel((x, y), BackendColor { alpha, rgb: color.rgb });
                    }
                });
                result?;
            }
            Ok(())
        }
    }
}

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Writes the plot as PNG or SVG, chosen by `path`'s extension.
pub fn plot_curves(runs: &[RunCurve], path: &Path) -> Result<()> {
    fonts();
    let mut tasks: Vec<&str> = Vec::new();
    for t in runs.iter().flat_map(|r| &r.tasks).filter(|t| !t.points.is_empty()) {
        if !tasks.contains(&t.task.as_str()) {
            tasks.push(&t.task);
        }
    }
    if tasks.is_empty() {
        bail!("{}: no eval accuracy to plot", path.display());
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
    let drawn = match ext.as_str() {
        "png" => draw(
            png::Png(BitMapBackend::new(path, size)).into_drawing_area(),
            runs,
            &tasks,
            &legend,
        ),
        "svg" => draw(SVGBackend::new(path, size).into_drawing_area(), runs, &tasks, &legend),
        _ => bail!("{}: unsupported plot format, use .png or .svg", path.display()),
    };
    drawn.with_context(|| format!("cannot draw {}", path.display()))
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

fn y_range(runs: &[RunCurve], task: &str) -> (f64, f64) {
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
    let (mut lo, mut hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    if hi - lo < 0.1 {
        let mid = ((lo + hi) / 2.0).clamp(0.05, 0.95);
        (lo, hi) = (mid - 0.05, mid + 0.05);
    }
    (lo, hi)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[RunCurve],
    tasks: &[&str],
    legend: &[LegendEntry],
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
        let (y0, y1) = y_range(runs, task);
        let mut chart = ChartBuilder::on(area)
            .caption(*task, (FONT, 24).into_font().style(FontStyle::Bold))
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0..max_epoch, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("eval accuracy")
            .axis_desc_style((FONT, 18))
            .label_style((FONT, 15))
            .x_labels((max_epoch as usize + 1).min(11))
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
        let (lo, hi) = y_range(&runs, "sst2");
        assert!(
            lo <= 0.80 && hi >= 0.81 && hi - lo >= 0.1 - 1e-12 && lo > 0.5,
            "{lo}..{hi}"
        );
        let (lo, hi) = y_range(&[curve("b", &[0.0, 1.0], 0.0)], "sst2");
        assert_eq!((lo, hi), (0.0, 1.0));
    }
}
