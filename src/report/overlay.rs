//! `overlay.png`: one row per stored sample, the blog's five panels at the best epoch —
//! image | ground truth | prediction | truth over image | prediction over image.

use std::path::PathBuf;

use anyhow::Result;
use plotters::style::{BLACK, RGBColor};

use super::Renderer;
use super::load::{ExperimentData, RunData};
use super::raster::{Canvas, PRED_RGB, TRUTH_RGB, panel_scale};
use crate::track::snapshots::{Snapshots, Strip};
use crate::track::write_atomic;

pub struct OverlayRenderer;

pub const GAP: usize = 4;
pub const HEADER: usize = 22;
pub const PANEL_TITLES: [&str; 5] = [
    "image",
    "ground truth",
    "prediction",
    "truth overlay",
    "prediction overlay",
];

/// The prediction strip of the run's best epoch (or its last stored one).
pub fn best_strip(run: &RunData) -> Option<(usize, &Strip)> {
    let snaps = run.snapshots.as_ref()?;
    let best = run.best_epoch();
    snaps
        .epochs
        .iter()
        .find(|(e, _)| Some(*e) == best)
        .or(snaps.epochs.last())
        .map(|(e, s)| (*e, s))
}

/// Draws sample `k`'s five panels in a row at (top, 0).
pub fn draw_five(
    canvas: &mut Canvas,
    snaps: &Snapshots,
    pred: &Strip,
    k: usize,
    top: usize,
    scale: usize,
) {
    let (h, w) = (snaps.images.h, snaps.images.w);
    let image = snaps.images.panel(k);
    let truth = snaps.truth.panel(k);
    let prob = pred.panel(k);
    let mask: Vec<f32> = prob
        .iter()
        .map(|&p| if p > 0.5 { 1.0 } else { 0.0 })
        .collect();
    let step = w * scale + GAP;
    canvas.grey(&image, h, w, top, 0, scale);
    canvas.grey(&truth, h, w, top, step, scale);
    canvas.grey(&mask, h, w, top, 2 * step, scale);
    canvas.overlay(&image, &truth, TRUTH_RGB, [h, w], [top, 3 * step], scale);
    canvas.overlay(&image, &mask, PRED_RGB, [h, w], [top, 4 * step], scale);
}

/// Column titles over five panels.
pub fn draw_titles(canvas: &mut Canvas, top: usize, panel_w: usize, color: RGBColor) -> Result<()> {
    for (i, title) in PANEL_TITLES.iter().enumerate() {
        let x = (i * (panel_w + GAP) + panel_w / 2) as i32;
        canvas.text(title, x, top as i32 + 4, 13.0, color, true)?;
    }
    Ok(())
}

/// A run's best epoch laid out as rows of five panels.
pub struct FivePanels<'a> {
    pub snaps: &'a Snapshots,
    pub pred: &'a Strip,
    pub epoch: usize,
    pub scale: usize,
    pub panel_w: usize,
    pub panel_h: usize,
    /// Width of a row of five panels with their gaps.
    pub width: usize,
}

impl<'a> FivePanels<'a> {
    /// `None` when the run stored no predictions.
    pub fn of(run: &'a RunData) -> Option<FivePanels<'a>> {
        let snaps = run.snapshots.as_ref()?;
        let (epoch, pred) = best_strip(run)?;
        let scale = panel_scale(snaps.images.w);
        let panel_w = snaps.images.w * scale;
        Some(FivePanels {
            snaps,
            pred,
            epoch,
            scale,
            panel_w,
            panel_h: snaps.images.h * scale,
            width: 5 * panel_w + 4 * GAP,
        })
    }

    /// Draws sample `k`'s row at `top`.
    pub fn draw_row(&self, canvas: &mut Canvas, k: usize, top: usize) {
        draw_five(canvas, self.snaps, self.pred, k, top, self.scale);
    }
}

pub fn render_overlay(run: &RunData) -> Result<Option<Vec<u8>>> {
    let Some(layout) = FivePanels::of(run) else {
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
    fn name(&self) -> &'static str {
        "overlay"
    }

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
