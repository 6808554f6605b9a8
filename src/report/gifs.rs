//! GIFs with a fixed palette: `progress.gif` (one frame per epoch: image, ground truth and
//! predicted probability of every sample, with the epoch and Dice written on the frame) and
//! `results.gif` (cycles the five panels of each sample at the best epoch).

use std::path::PathBuf;

use anyhow::{Context, Result};
use plotters::style::BLACK;
use rayon::prelude::*;

use super::Renderer;
use super::load::{ExperimentData, RunData};
use super::overlay::{FivePanels, GAP, HEADER, draw_titles};
use crate::track::write_atomic;
use crate::util::raster::{Canvas, GIF, Palette, fit_panels, panel_scale};

pub(crate) struct GifRenderer;

/// Frame delays in hundredths of a second.
const PROGRESS_DELAY: u16 = 35;
const LAST_FRAME_DELAY: u16 = 200;
const RESULTS_DELAY: u16 = 150;

fn encode(
    width: usize,
    height: usize,
    frames: &[(Vec<u8>, u16)],
    palette: &Palette,
) -> Result<Vec<u8>> {
    // Callers size their frames with `fit_panels(…, GIF, …)`; a frame past GIF's sides is a bug
    // here, but an error rather than the encoder's panic.
    let side = |v: usize| {
        u16::try_from(v).with_context(|| format!("a {width}×{height} frame is too large for GIF"))
    };
    let (w16, h16) = (side(width)?, side(height)?);
    let mut out = Vec::new();
    {
        let mut enc =
            gif::Encoder::new(&mut out, w16, h16, &palette.rgb).context("cannot start GIF")?;
        enc.set_repeat(gif::Repeat::Infinite)?;
        for (indices, delay) in frames {
            let mut frame = gif::Frame::from_indexed_pixels(w16, h16, indices.clone(), None);
            frame.delay = *delay;
            enc.write_frame(&frame)?;
        }
    }
    Ok(out)
}

/// `progress.gif` of a run, or `None` without snapshots.
fn render_progress(run: &RunData, palette: &Palette) -> Result<Option<Vec<u8>>> {
    let Some(snaps) = run.snapshots.as_ref().filter(|s| !s.epochs.is_empty()) else {
        return Ok(None);
    };
    let (h, w, n) = (snaps.images.h, snaps.images.w, snaps.images.n);
    let frame = |[ph, pw]: [usize; 2]| {
        [
            pw.saturating_mul(3).saturating_add(2 * GAP),
            n.saturating_mul(ph.saturating_add(GAP))
                .saturating_add(2 * HEADER),
        ]
    };
    let panel = fit_panels("progress.gif", [h, w], panel_scale(w), GIF, frame)?;
    let [panel_h, panel_w] = panel;
    let [width, height] = frame(panel);
    let last_epoch = snaps.epochs.last().map(|(e, _)| *e).unwrap_or(0);
    let frames: Vec<(Vec<u8>, u16)> = snaps
        .epochs
        .par_iter()
        .map(|(epoch, strip)| -> Result<(Vec<u8>, u16)> {
            let mut canvas = Canvas::new(width, height, 255);
            let dice = run
                .val_dice_at(*epoch)
                .map(|d| format!("   Dice {d:.3}"))
                .unwrap_or_default();
            canvas.text(
                &format!("epoch {epoch}/{last_epoch}{dice}"),
                4,
                3,
                14.0,
                BLACK,
                false,
            )?;
            for (i, title) in ["image", "ground truth", "prediction"].iter().enumerate() {
                canvas.text(
                    title,
                    (i * (panel_w + GAP) + panel_w / 2) as i32,
                    HEADER as i32 + 4,
                    13.0,
                    BLACK,
                    true,
                )?;
            }
            for k in 0..n {
                let top = 2 * HEADER + k * (panel_h + GAP);
                let step = panel_w + GAP;
                canvas.grey(&snaps.images.panel(k), [h, w], [top, 0], panel);
                canvas.grey(&snaps.truth.panel(k), [h, w], [top, step], panel);
                canvas.grey(&strip.panel(k), [h, w], [top, 2 * step], panel);
            }
            let delay = if *epoch == last_epoch {
                LAST_FRAME_DELAY
            } else {
                PROGRESS_DELAY
            };
            Ok((palette.indices(&canvas), delay))
        })
        .collect::<Result<_>>()?;
    Ok(Some(encode(width, height, &frames, palette)?))
}

/// `results.gif`: one frame per sample with its five panels at the best epoch.
fn render_results(run: &RunData, palette: &Palette) -> Result<Option<Vec<u8>>> {
    let Some(layout) = FivePanels::of(run, "results.gif", 1, GIF)? else {
        return Ok(None);
    };
    let (n, width) = (layout.snaps.images.n, layout.width);
    let height = 2 * HEADER + layout.panel_h;
    let mut frames = Vec::new();
    for k in 0..n {
        let mut canvas = Canvas::new(width, height, 255);
        let title = format!("sample {}/{n}, epoch {} (best)", k + 1, layout.epoch);
        canvas.text(&title, 4, 3, 14.0, BLACK, false)?;
        draw_titles(&mut canvas, HEADER, layout.panel_w, BLACK)?;
        layout.draw_row(&mut canvas, k, 2 * HEADER);
        frames.push((palette.indices(&canvas), RESULTS_DELAY));
    }
    Ok(Some(encode(width, height, &frames, palette)?))
}

impl Renderer for GifRenderer {
    fn render(&self, exp: &ExperimentData) -> Result<Vec<PathBuf>> {
        let palette = Palette::new();
        let per_variant: Vec<Vec<PathBuf>> = exp
            .variants
            .par_iter()
            .map(|v| -> Result<Vec<PathBuf>> {
                let mut written = Vec::new();
                if let Some(run) = v.representative() {
                    if let Some(gif) = render_progress(run, &palette)? {
                        let path = v.dir.join("progress.gif");
                        write_atomic(&path, &gif)?;
                        written.push(path);
                    }
                    if let Some(gif) = render_results(run, &palette)? {
                        let path = v.dir.join("results.gif");
                        write_atomic(&path, &gif)?;
                        written.push(path);
                    }
                }
                Ok(written)
            })
            .collect::<Result<_>>()?;
        Ok(per_variant.into_iter().flatten().collect())
    }
}
