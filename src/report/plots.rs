//! Line charts (plotters): per variant `loss.png` and `metrics.png`; per experiment `loss.png`
//! and `dice.png` with every variant overlaid (mean ± sd band over seeds).

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::Renderer;
use super::load::{ExperimentData, RunData, VariantData};
use super::stats::{mean, sd};
use crate::track::write_atomic;
use crate::util::raster::{Canvas, FONT_FAMILY, ensure_font};

pub(crate) struct PlotRenderer;

const W: u32 = 720;
const H: u32 = 420;

/// A qualitative palette (Tableau 10), cycled.
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

/// One line to draw: points, colour, dashed or not, optional band, legend label.
struct Line {
    pub label: Option<String>,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
    pub width: u32,
    pub alpha: f64,
    /// (x, low, high) for a shaded band.
    pub band: Vec<(f64, f64, f64)>,
}

impl Line {
    fn new(label: Option<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Line {
        Line {
            label,
            points: points
                .into_iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect(),
            color,
            dashed: false,
            width: 2,
            alpha: 1.0,
            band: Vec::new(),
        }
    }
}

/// A chart: title, axis names, lines; log-scaled y when the values span two decades.
struct Chart {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub lines: Vec<Line>,
    pub y_range: Option<(f64, f64)>,
}

/// The chart area the lines are drawn in: linear x, linear or logarithmic y.
type Plot<'a, 'b, Y> = ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>;

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("cannot draw chart: {e}")
}

/// The smallest and largest value, widened to one unit when they coincide; (0, 1) for none.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (a, b) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if a.is_finite() {
        (a, if b > a { b } else { a + 1.0 })
    } else {
        (0.0, 1.0)
    }
}

impl Chart {
    /// Every finite point of the lines and their bands.
    fn points(&self) -> Vec<(f64, f64)> {
        self.lines
            .iter()
            .flat_map(|l| {
                l.points
                    .iter()
                    .copied()
                    .chain(l.band.iter().flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]))
            })
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    }

    /// The x and y ranges of the data (y as given, when given), and whether y is log-scaled:
    /// unless given, when the values are positive and span two decades.
    fn ranges(&self) -> ((f64, f64), (f64, f64), bool) {
        let all = self.points();
        let mut x = span(all.iter().map(|p| p.0));
        // Room on the right for the legend, so that it never covers a curve.
        if self.lines.iter().any(|l| l.label.is_some()) {
            x.1 += (x.1 - x.0) * LEGEND_ROOM;
        }
        let y = self
            .y_range
            .unwrap_or_else(|| span(all.iter().map(|p| p.1)));
        let log = self.y_range.is_none() && y.0 > 0.0 && y.1 / y.0 > 100.0;
        (x, y, log)
    }

    /// A line, its band (if any) under it, and its legend entry (if labelled).
    fn draw_line<Y>(&self, chart: &mut Plot<'_, '_, Y>, line: &Line) -> Result<()>
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        if line.band.len() > 1 {
            let mut poly: Vec<(f64, f64)> = line.band.iter().map(|&(x, _, hi)| (x, hi)).collect();
            poly.extend(line.band.iter().rev().map(|&(x, lo, _)| (x, lo)));
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly,
                    line.color.mix(0.15).filled(),
                )))
                .map_err(draw_err)?;
        }
        let style = line.color.mix(line.alpha).stroke_width(line.width);
        let anno = if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(line.points.clone(), 6, 4, style))
                .map_err(draw_err)?
        } else {
            chart
                .draw_series(LineSeries::new(line.points.clone(), style))
                .map_err(draw_err)?
        };
        if let Some(label) = &line.label {
            let (color, dashed) = (line.color, line.dashed);
            anno.label(label.as_str()).legend(move |(x, y)| {
                let pts = if dashed {
                    vec![(x, y), (x + 7, y)]
                } else {
                    vec![(x, y), (x + 18, y)]
                };
                PathElement::new(pts, color.stroke_width(2))
            });
        }
        Ok(())
    }

    /// Grid and axis labels, the lines, and the legend when any line has a label.
    fn draw<'a, 'b: 'a, Y>(&self, mut chart: Plot<'a, 'b, Y>) -> Result<()>
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let last = span(self.points().iter().map(|p| p.0)).1;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            // Epochs are whole numbers: no "1.0", no ticks between them, none in the legend's
            // room past the last epoch.
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-9 && *x <= last + 1e-9 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_desc(self.y_desc.as_str())
            .label_style((FONT_FAMILY, 12))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(draw_err)?;
        for line in &self.lines {
            self.draw_line(&mut chart, line)?;
        }
        if self.lines.iter().any(|l| l.label.is_some()) {
            chart
                .configure_series_labels()
                .label_font((FONT_FAMILY, 12))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(draw_err)?;
        }
        Ok(())
    }

    pub(crate) fn render_png(&self) -> Result<Vec<u8>> {
        render_stacked(std::slice::from_ref(self))
    }

    /// The chart in one panel of a picture.
    fn draw_on(&self, area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<()> {
        let ((x0, x1), (y0, y1), log) = self.ranges();
        let mut builder = ChartBuilder::on(area);
        builder
            .caption(&self.title, (FONT_FAMILY, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60);
        if log {
            let y = (y0 * 0.9..y1 * 1.1).log_scale();
            self.draw(builder.build_cartesian_2d(x0..x1, y).map_err(draw_err)?)
        } else {
            let pad = (y1 - y0) * 0.05;
            let y = (y0 - pad)..(y1 + pad);
            self.draw(builder.build_cartesian_2d(x0..x1, y).map_err(draw_err)?)
        }
    }
}

/// Share of the x span added on the right of a chart with a legend, for the legend.
const LEGEND_ROOM: f64 = 0.45;

/// Charts one above the other in one picture.
fn render_stacked(charts: &[Chart]) -> Result<Vec<u8>> {
    ensure_font();
    let height = H * charts.len().max(1) as u32;
    let mut canvas = Canvas::new(W as usize, height as usize, 255);
    {
        let root = BitMapBackend::with_buffer(&mut canvas.rgb, (W, height)).into_drawing_area();
        for (chart, area) in charts
            .iter()
            .zip(root.split_evenly((charts.len().max(1), 1)))
        {
            chart.draw_on(&area)?;
        }
        root.present().map_err(draw_err)?;
    }
    canvas.to_png()
}

impl Chart {}

fn epoch_points(
    rows: &[crate::track::EpochRow],
    get: impl Fn(&crate::track::EpochRow) -> Option<f64>,
) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| get(r).map(|v| (r.epoch as f64, v)))
        .collect()
}

/// The mean curve `(epoch, mean)` and its band `(epoch, mean − sd, mean + sd)` over seeds.
type MeanBand = (Vec<(f64, f64)>, Vec<(f64, f64, f64)>);

/// One value of a metric row.
type RowValue = fn(&crate::track::EpochRow) -> Option<f64>;

/// Mean and band (± sd) over seeds of a per-epoch value.
fn mean_band(
    runs: &[RunData],
    split_val: bool,
    get: impl Fn(&crate::track::EpochRow) -> Option<f64>,
) -> MeanBand {
    let max_epoch = runs
        .iter()
        .flat_map(|r| if split_val { &r.val } else { &r.train })
        .map(|r| r.epoch)
        .max()
        .unwrap_or(0);
    let mut line = Vec::new();
    let mut band = Vec::new();
    for e in 1..=max_epoch {
        let vals: Vec<f64> = runs
            .iter()
            .filter_map(|r| {
                (if split_val { &r.val } else { &r.train })
                    .iter()
                    .find(|x| x.epoch == e)
            })
            .filter_map(&get)
            .filter(|v| v.is_finite())
            .collect();
        if let Some(m) = mean(&vals) {
            line.push((e as f64, m));
            if let Some(s) = sd(&vals) {
                band.push((e as f64, m - s, m + s));
            }
        }
    }
    (line, band)
}

fn variant_charts(v: &VariantData) -> (Chart, Chart) {
    let mut loss_lines = Vec::new();
    let several = v.runs.len() > 1;
    for (k, run) in v.runs.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let seed = if several {
            format!(" ({})", run.label())
        } else {
            String::new()
        };
        // Per-step loss, faint, at fractional epochs.
        let steps_per_epoch = run.steps.iter().map(|s| s.step).max().unwrap_or(1).max(1) as f64;
        let mut steps = Line::new(
            None,
            run.steps
                .iter()
                .map(|s| {
                    (
                        s.epoch as f64 - 1.0 + s.step as f64 / steps_per_epoch,
                        s.loss,
                    )
                })
                .collect(),
            color,
        );
        steps.alpha = 0.25;
        steps.width = 1;
        loss_lines.push(steps);
        loss_lines.push(Line::new(
            Some(format!("train{seed}")),
            epoch_points(&run.train, |r| Some(r.loss)),
            color,
        ));
        let mut val = Line::new(
            Some(format!("validation{seed}")),
            epoch_points(&run.val, |r| Some(r.loss)),
            color,
        );
        val.dashed = true;
        loss_lines.push(val);
    }
    let loss = Chart {
        title: format!("{} — loss", v.name),
        x_desc: "epoch".into(),
        y_desc: "loss".into(),
        lines: loss_lines,
        y_range: None,
    };
    let metric_defs: [(&str, RowValue); 3] = [
        ("Dice", |r| r.dice),
        ("IoU", |r| r.iou),
        ("presence accuracy", |r| r.presence_accuracy),
    ];
    let lines = metric_defs
        .iter()
        .enumerate()
        .map(|(k, (name, get))| {
            let (points, band) = mean_band(&v.runs, true, get);
            let mut l = Line::new(Some(name.to_string()), points, COLORS[k]);
            l.band = band;
            l
        })
        .collect();
    let metrics = Chart {
        title: format!(
            "{} — validation metrics{}",
            v.name,
            if several {
                " (mean ± sd over seeds)"
            } else {
                ""
            }
        ),
        x_desc: "epoch".into(),
        y_desc: "score".into(),
        lines,
        y_range: Some((0.0, 1.0)),
    };
    (loss, metrics)
}

/// The loss function a variant trains with ("" when its manifest is missing).
fn loss_name(v: &VariantData) -> &'static str {
    v.manifest
        .as_ref()
        .map_or("", |m| m.config.train.loss.name())
}

/// The experiment's loss panels — one per loss function, since losses of different functions
/// have different scales — and its Dice chart.
fn experiment_charts(exp: &ExperimentData) -> (Vec<Chart>, Chart) {
    let mut losses: Vec<&'static str> = Vec::new();
    for v in &exp.variants {
        if !losses.contains(&loss_name(v)) {
            losses.push(loss_name(v));
        }
    }
    let mut loss_panels: Vec<Chart> = losses
        .iter()
        .map(|loss| Chart {
            title: match (losses.len(), *loss) {
                (1, _) | (_, "") => format!(
                    "{} — loss (solid: train, dashed: validation)",
                    exp.manifest.name
                ),
                _ => format!("{loss} loss (solid: train, dashed: validation)"),
            },
            x_desc: "epoch".into(),
            y_desc: "loss".into(),
            lines: Vec::new(),
            y_range: None,
        })
        .collect();
    let mut dice_lines = Vec::new();
    for (k, v) in exp.variants.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let panel = &mut loss_panels[losses.iter().position(|l| *l == loss_name(v)).unwrap_or(0)];
        let (train, train_band) = mean_band(&v.runs, false, |r| Some(r.loss));
        let (val, val_band) = mean_band(&v.runs, true, |r| Some(r.loss));
        let mut l = Line::new(Some(format!("{} train", v.name)), train, color);
        l.band = train_band;
        panel.lines.push(l);
        let mut l = Line::new(Some(format!("{} val", v.name)), val, color);
        l.band = val_band;
        l.dashed = true;
        panel.lines.push(l);
        let (dice, dice_band) = mean_band(&v.runs, true, |r| r.dice);
        let mut l = Line::new(Some(v.name.clone()), dice, color);
        l.band = dice_band;
        dice_lines.push(l);
    }
    (
        loss_panels,
        Chart {
            title: format!(
                "{} — validation Dice (mean ± sd over seeds)",
                exp.manifest.name
            ),
            x_desc: "epoch".into(),
            y_desc: "Dice".into(),
            lines: dice_lines,
            y_range: Some((0.0, 1.0)),
        },
    )
}

impl Renderer for PlotRenderer {
    fn render(&self, exp: &ExperimentData) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for v in &exp.variants {
            if v.runs.is_empty() {
                continue;
            }
            let (loss, metrics) = variant_charts(v);
            for (chart, name) in [(loss, "loss.png"), (metrics, "metrics.png")] {
                let path = v.dir.join(name);
                write_atomic(&path, &chart.render_png()?)?;
                written.push(path);
            }
        }
        let (loss_panels, dice) = experiment_charts(exp);
        for (png, name) in [
            (render_stacked(&loss_panels)?, "loss.png"),
            (dice.render_png()?, "dice.png"),
        ] {
            let path = exp.dir.join(name);
            write_atomic(&path, &png)?;
            written.push(path);
        }
        Ok(written)
    }
}
