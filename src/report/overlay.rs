//! `overlay.png`: one row per stored sample, the blog's five panels at the best epoch —
//! image | ground truth | prediction | truth over image | prediction over image.

use std::path::PathBuf;

use anyhow::Result;
use plotters::style::{BLACK, RGBColor};

use super::Renderer;
use super::load::{ExperimentData, RunData};
use crate::track::snapshots::{Snapshots, Strip};
use crate::track::write_atomic;
use crate::util::raster::{Canvas, Format, PNG, PRED_RGB, TRUTH_RGB, fit_panels, panel_scale};

pub(crate) struct OverlayRenderer;

pub(crate) const GAP: usize = 4;
pub(crate) const HEADER: usize = 22;
const PANEL_TITLES: [&str; 5] = [
    "image",
    "ground truth",
    "prediction",
    "truth overlay",
    "prediction overlay",
];

/// The prediction strip of the run's best epoch (or its last stored one).
fn best_strip(run: &RunData) -> Option<(usize, &Strip)> {
    let snaps = run.snapshots.as_ref()?;
    let best = run.best_epoch();
    snaps
        .epochs
        .iter()
        .find(|(e, _)| Some(*e) == best)
        .or(snaps.epochs.last())
        .map(|(e, s)| (*e, s))
}

/// Draws sample `k`'s five panels in a row at (top, 0), each `panel` = `[ph, pw]` pixels.
fn draw_five(
    canvas: &mut Canvas,
    snaps: &Snapshots,
    pred: &Strip,
    k: usize,
    top: usize,
    panel: [usize; 2],
) {
    let hw = [snaps.images.h, snaps.images.w];
    let image = snaps.images.panel(k);
    let truth = snaps.truth.panel(k);
    let prob = pred.panel(k);
    let mask: Vec<f32> = prob
        .iter()
        .map(|&p| if p > 0.5 { 1.0 } else { 0.0 })
        .collect();
    let step = panel[1] + GAP;
    canvas.grey(&image, hw, [top, 0], panel);
    canvas.grey(&truth, hw, [top, step], panel);
    canvas.grey(&mask, hw, [top, 2 * step], panel);
    canvas.overlay(&image, &truth, TRUTH_RGB, hw, [top, 3 * step], panel);
    canvas.overlay(&image, &mask, PRED_RGB, hw, [top, 4 * step], panel);
}

/// Column titles over five panels.
pub(crate) fn draw_titles(
    canvas: &mut Canvas,
    top: usize,
    panel_w: usize,
    color: RGBColor,
) -> Result<()> {
    for (i, title) in PANEL_TITLES.iter().enumerate() {
        let x = (i * (panel_w + GAP) + panel_w / 2) as i32;
        canvas.text(title, x, top as i32 + 4, 13.0, color, true)?;
    }
    Ok(())
}

/// A run's best epoch laid out as rows of five panels.
pub(crate) struct FivePanels<'a> {
    pub snaps: &'a Snapshots,
    pub pred: &'a Strip,
    pub epoch: usize,
    pub panel_w: usize,
    pub panel_h: usize,
    /// Width of a row of five panels with their gaps.
    pub width: usize,
}

impl<'a> FivePanels<'a> {
    /// `None` when the run stored no predictions. The panels are sized so that a picture of
    /// `rows` rows under a two-line header fits `format` (`what` names it in the note).
    pub fn of(
        run: &'a RunData,
        what: &str,
        rows: usize,
        format: Format,
    ) -> Result<Option<FivePanels<'a>>> {
        let (Some(snaps), Some((epoch, pred))) = (run.snapshots.as_ref(), best_strip(run)) else {
            return Ok(None);
        };
        let (h, w) = (snaps.images.h, snaps.images.w);
        let [panel_h, panel_w] = fit_panels(what, [h, w], panel_scale(w), format, |[ph, pw]| {
            [
                pw.saturating_mul(5).saturating_add(4 * GAP),
                rows.saturating_mul(ph.saturating_add(GAP))
                    .saturating_add(2 * HEADER),
            ]
        })?;
        Ok(Some(FivePanels {
            snaps,
            pred,
            epoch,
            panel_w,
            panel_h,
            width: 5 * panel_w + 4 * GAP,
        }))
    }

    /// Draws sample `k`'s row at `top`.
    pub(crate) fn draw_row(&self, canvas: &mut Canvas, k: usize, top: usize) {
        let panel = [self.panel_h, self.panel_w];
        draw_five(canvas, self.snaps, self.pred, k, top, panel);
    }
}

fn render_overlay(run: &RunData) -> Result<Option<Vec<u8>>> {
    let rows = run.snapshots.as_ref().map_or(0, |s| s.images.n);
    let Some(layout) = FivePanels::of(run, "overlay.png", rows, PNG)? else {
        return Ok(None);
    };
    let (n, epoch, width) = (layout.snaps.images.n, layout.epoch, layout.width);
    let height = 2 * HEADER + n * (layout.panel_h + GAP);
    let mut canvas = Canvas::new(width, height, 255);
    let dice = run
        .val_dice_at(epoch)
        .map(|d| format!(", validation Dice {d:.4}"))
        .unwrap_or_default();
    canvas.text(
        &format!("epoch {epoch} (best){dice}"),
        4,
        3,
        14.0,
        BLACK,
        false,
    )?;
    draw_titles(&mut canvas, HEADER, layout.panel_w, BLACK)?;
    for k in 0..n {
        layout.draw_row(&mut canvas, k, 2 * HEADER + k * (layout.panel_h + GAP));
    }
    Ok(Some(canvas.to_png()?))
}

impl Renderer for OverlayRenderer {
    fn render(&self, exp: &ExperimentData) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for v in &exp.variants {
            if let Some(run) = v.representative()
                && let Some(png) = render_overlay(run)?
            {
                let path = v.dir.join("overlay.png");
                write_atomic(&path, &png)?;
                written.push(path);
            }
        }
        Ok(written)
    }
}
