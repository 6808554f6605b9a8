//! `interaction-<k>.png`: each two-way table of the interactions as a heat map, one coloured
//! cell per pair of levels with its mean score written in it.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::Renderer;
use super::interactions::Interaction;
use super::load::ExperimentData;
use crate::track::write_atomic;
use crate::util::raster::{Canvas, FONT_FAMILY, ensure_font};

pub(crate) struct HeatmapRenderer;

/// The file of the `k`-th interaction (in [`super::summary::interactions`] order).
pub fn file_name(k: usize) -> String {
    format!("interaction-{k}.png")
}

const CELL_W: u32 = 110;
const CELL_H: u32 = 44;
const LEFT: u32 = 130;
const TOP: u32 = 64;

impl Renderer for HeatmapRenderer {
    fn render(&self, exp: &ExperimentData) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for (k, table) in super::summary::interactions(exp).iter().enumerate() {
            let path = exp.dir.join(file_name(k));
            write_atomic(&path, &render_png(table)?)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// White (the table's lowest mean) to dark blue (its highest).
fn shade(value: f64, lo: f64, hi: f64) -> RGBColor {
    let t = if hi > lo {
        (value - lo) / (hi - lo)
    } else {
        0.5
    };
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 69.0), mix(255.0, 148.0))
}

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow!("cannot draw heat map: {e}")
}

pub(crate) fn render_png(t: &Interaction) -> Result<Vec<u8>> {
    ensure_font();
    let (rows, cols) = (t.first_levels.len() as u32, t.second_levels.len() as u32);
    let (w, h) = (LEFT + cols * CELL_W + 16, TOP + rows * CELL_H + 16);
    let mut canvas = Canvas::new(w as usize, h as usize, 255);
    {
        let root = BitMapBackend::with_buffer(&mut canvas.rgb, (w, h)).into_drawing_area();
        let means: Vec<f64> = t.cells.iter().flatten().flatten().map(|c| c.mean).collect();
        let lo = means.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let text = |size: u32, color: &'static RGBColor, pos: Pos| {
            TextStyle::from((FONT_FAMILY, size).into_font())
                .color(color)
                .pos(pos)
        };
        let centre = Pos::new(HPos::Center, VPos::Center);
        root.draw_text(
            &format!("{} by {} × {}", t.score, t.first, t.second),
            &text(15, &BLACK, Pos::new(HPos::Left, VPos::Top)),
            (8, 6),
        )
        .map_err(draw_err)?;
        for (j, level) in t.second_levels.iter().enumerate() {
            let x = (LEFT + j as u32 * CELL_W + CELL_W / 2) as i32;
            root.draw_text(level, &text(13, &BLACK, centre), (x, TOP as i32 - 14))
                .map_err(draw_err)?;
        }
        for (i, level) in t.first_levels.iter().enumerate() {
            let y = (TOP + i as u32 * CELL_H + CELL_H / 2) as i32;
            root.draw_text(
                level,
                &text(13, &BLACK, Pos::new(HPos::Right, VPos::Center)),
                (LEFT as i32 - 8, y),
            )
            .map_err(draw_err)?;
            for (j, cell) in t.cells[i].iter().enumerate() {
                let (x0, y0) = (
                    (LEFT + j as u32 * CELL_W) as i32,
                    (TOP + i as u32 * CELL_H) as i32,
                );
                let (fill, label) = match cell {
                    Some(c) => (shade(c.mean, lo, hi), format!("{:.3}", c.mean)),
                    None => (RGBColor(230, 230, 230), "—".to_string()),
                };
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + CELL_W as i32 - 2, y0 + CELL_H as i32 - 2)],
                    fill.filled(),
                ))
                .map_err(draw_err)?;
                let dark = cell
                    .as_ref()
                    .is_some_and(|c| hi > lo && (c.mean - lo) / (hi - lo) > 0.55);
                let ink: &'static RGBColor = if dark { &WHITE } else { &BLACK };
                let middle = (x0 + CELL_W as i32 / 2, y0 + CELL_H as i32 / 2);
                root.draw_text(&label, &text(14, ink, centre), middle)
                    .map_err(draw_err)?;
            }
        }
        root.present().map_err(draw_err)?;
    }
    canvas.to_png()
}
