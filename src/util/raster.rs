//! Picture building blocks shared by the overlay grid and the GIFs: an RGB canvas, grey and
//! overlay panels, text in the embedded font, PNG encoding and a fixed GIF palette.

use std::sync::Once;

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// DejaVu Sans (free licence, see assets/DejaVuSans-LICENSE.txt), so no system fonts are
/// needed at run time.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

pub(crate) const FONT_FAMILY: &str = "sans-serif";

/// Registers the embedded font with plotters (once per process).
pub(crate) fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are compiled in, so this cannot fail on a valid build.
        let _ = plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT);
    });
}

/// Overlay colours (alpha-blended over the grey image).
pub(crate) const TRUTH_RGB: [u8; 3] = [0, 255, 0];
pub(crate) const PRED_RGB: [u8; 3] = [255, 0, 0];
const OVERLAY_ALPHA: f32 = 0.45;

/// An RGB image being composed.
pub(crate) struct Canvas {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, fill: u8) -> Canvas {
        Canvas {
            width,
            height,
            rgb: vec![fill; width * height * 3],
        }
    }

    /// Copies an `h × w` grey panel (values in [0, 1]) to (top, left), drawn `ph × pw` (nearest
    /// pixel: enlarged by whole factors, or shrunk to fit a picture's limits).
    pub fn grey(
        &mut self,
        panel: &[f32],
        [h, w]: [usize; 2],
        [top, left]: [usize; 2],
        drawn: [usize; 2],
    ) {
        self.blit([h, w], [top, left], drawn, |i| {
            let v = (panel[i].clamp(0.0, 1.0) * 255.0).round() as u8;
            [v, v, v]
        });
    }

    /// The grey `[h, w]` image with `mask > 0.5` tinted in `color`, its top-left corner at
    /// `[top, left]`, drawn `drawn` = `[ph, pw]` pixels.
    pub fn overlay(
        &mut self,
        image: &[f32],
        mask: &[f32],
        color: [u8; 3],
        [h, w]: [usize; 2],
        [top, left]: [usize; 2],
        drawn: [usize; 2],
    ) {
        self.blit([h, w], [top, left], drawn, |i| {
            let v = (image[i].clamp(0.0, 1.0) * 255.0).round() as u8;
            if mask[i] > 0.5 {
                blend(v, color)
            } else {
                [v, v, v]
            }
        });
    }

    fn blit(
        &mut self,
        [h, w]: [usize; 2],
        [top, left]: [usize; 2],
        [ph, pw]: [usize; 2],
        px: impl Fn(usize) -> [u8; 3],
    ) {
        for y in 0..ph {
            let cy = top + y;
            if cy >= self.height {
                break;
            }
            let sy = y * h / ph;
            for x in 0..pw {
                let cx = left + x;
                if cx >= self.width {
                    break;
                }
                let c = px(sy * w + x * w / pw);
                let o = (cy * self.width + cx) * 3;
                self.rgb[o..o + 3].copy_from_slice(&c);
            }
        }
    }

    /// Draws text with its top-left corner (or centre, when `centered`) at (x, y).
    pub fn text(
        &mut self,
        s: &str,
        x: i32,
        y: i32,
        size: f64,
        color: RGBColor,
        centered: bool,
    ) -> Result<()> {
        ensure_font();
        let (w, h) = (self.width as u32, self.height as u32);
        let root = BitMapBackend::with_buffer(&mut self.rgb, (w, h)).into_drawing_area();
        let pos = if centered {
            Pos::new(HPos::Center, VPos::Top)
        } else {
            Pos::new(HPos::Left, VPos::Top)
        };
        let style = TextStyle::from((FONT_FAMILY, size).into_font())
            .color(&color)
            .pos(pos);
        root.draw_text(s, &style, (x, y))
            .map_err(|e| anyhow::anyhow!("cannot draw text: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("cannot draw text: {e}"))?;
        Ok(())
    }

    pub(crate) fn to_png(&self) -> Result<Vec<u8>> {
        crate::util::png::encode(&self.rgb, self.width, self.height, true)
    }
}

fn blend(v: u8, color: [u8; 3]) -> [u8; 3] {
    let mix = |c: u8| ((1.0 - OVERLAY_ALPHA) * v as f32 + OVERLAY_ALPHA * c as f32).round() as u8;
    [mix(color[0]), mix(color[1]), mix(color[2])]
}

/// Integer upscaling so small training images stay legible (panels at least ~128 px wide).
pub(crate) fn panel_scale(w: usize) -> usize {
    128usize.div_ceil(w.max(1)).clamp(1, 4)
}

/// What a picture format allows, and how large we let its pictures be in memory.
#[derive(Debug, Clone, Copy)]
pub struct Format {
    pub name: &'static str,
    /// The largest width or height.
    pub max_side: usize,
    /// The most pixels of one picture (or frame): it is composed in memory as RGB.
    pub max_pixels: usize,
}

/// GIF stores a picture's width and height as 16-bit numbers; a GIF's frames are all held at
/// once, so a frame gets 16 megapixels.
pub const GIF: Format = Format {
    name: "GIF",
    max_side: u16::MAX as usize,
    max_pixels: 1 << 24,
};

/// PNG allows 2^31 − 1 pixels a side; 64 megapixels is 192 MB of RGB.
pub const PNG: Format = Format {
    name: "PNG",
    max_side: i32::MAX as usize,
    max_pixels: 1 << 26,
};

/// The size `[ph, pw]` to draw the panels of `h × w` images at in a picture whose `[width,
/// height]` for a panel size is `frame(panel)`: `scale` times the images, or — when that picture
/// would exceed `format`'s sides or pixels — smaller, keeping the aspect ratio, with a
/// note on stderr (once per process). Titles and gaps keep their size.
pub(crate) fn fit_panels(
    what: &str,
    [h, w]: [usize; 2],
    scale: usize,
    format: Format,
    frame: impl Fn([usize; 2]) -> [usize; 2],
) -> Result<[usize; 2]> {
    let fits = |[fw, fh]: [usize; 2]| {
        fw <= format.max_side
            && fh <= format.max_side
            && fw.checked_mul(fh).is_some_and(|px| px <= format.max_pixels)
    };
    let natural = [h.saturating_mul(scale), w.saturating_mul(scale)];
    let [fw, fh] = frame(natural);
    if fits([fw, fh]) {
        return Ok(natural);
    }
    // Shrink by the ratio the picture is over its limits, then a pixel of the longer side at a
    // time (the titles and gaps do not shrink) until it fits.
    let (fw, fh) = (fw as f64, fh as f64);
    let factor = (format.max_side as f64 / fw.max(fh))
        .min((format.max_pixels as f64 / (fw * fh)).sqrt())
        .min(1.0);
    let long = natural[0].max(natural[1]).max(1);
    let start = ((long as f64 * factor).floor() as usize).max(1);
    for side in (1..=start).rev() {
        let share = side as f64 / long as f64;
        let panel = natural.map(|n| ((n as f64 * share).round() as usize).max(1));
        if fits(frame(panel)) {
            note_scaled_down(what, [fw as usize, fh as usize], format, natural, panel);
            return Ok(panel);
        }
    }
    anyhow::bail!(
        "{what} cannot be drawn: even with 1-pixel panels it exceeds {} pixels a side or {} \
         pixels ({})",
        format.max_side,
        format.max_pixels,
        format.name
    )
}

/// Says once per process that report pictures were drawn smaller than their images.
fn note_scaled_down(
    what: &str,
    [fw, fh]: [usize; 2],
    format: Format,
    [nh, nw]: [usize; 2],
    [ph, pw]: [usize; 2],
) {
    static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    eprintln!(
        "note: {what} would be {fw}×{fh} pixels, more than a {} picture may be here ({} a \
         side, {} megapixels): its panels are drawn at {pw}×{ph} instead of {nw}×{nh} (aspect \
         ratio kept), as are those of any other picture too large",
        format.name,
        format.max_side,
        format.max_pixels >> 20
    );
}

/// The fixed GIF palette: 128 greys, then 64 levels of the truth tint and 64 of the
/// prediction tint, so every colour the report draws maps to an index without per-frame
/// quantisation.
pub(crate) struct Palette {
    pub rgb: Vec<u8>,
}

const GREYS: usize = 128;
const TINT_LEVELS: usize = 64;

impl Palette {
    pub fn new() -> Palette {
        let mut rgb = Vec::with_capacity(768);
        for i in 0..GREYS {
            let v = (i * 255 / (GREYS - 1)) as u8;
            rgb.extend_from_slice(&[v, v, v]);
        }
        for color in [TRUTH_RGB, PRED_RGB] {
            for i in 0..TINT_LEVELS {
                let v = (i * 255 / (TINT_LEVELS - 1)) as u8;
                rgb.extend_from_slice(&blend(v, color));
            }
        }
        Palette { rgb }
    }

    /// The palette index of an RGB pixel drawn by the report.
    pub fn index(&self, [r, g, b]: [u8; 3]) -> u8 {
        let grey = |v: u8| (v as usize * (GREYS - 1) + 127) / 255;
        if r.abs_diff(g) <= 2 && g.abs_diff(b) <= 2 {
            return grey(g) as u8;
        }
        // A tinted pixel: recover the grey it was blended from through the untinted channel.
        let (base, offset) = if g > r {
            (r, GREYS)
        } else {
            (g, GREYS + TINT_LEVELS)
        };
        let v = (base as f32 / (1.0 - OVERLAY_ALPHA)).clamp(0.0, 255.0);
        (offset + (v as usize * (TINT_LEVELS - 1) + 127) / 255) as u8
    }

    pub(crate) fn indices(&self, canvas: &Canvas) -> Vec<u8> {
        canvas
            .rgb
            .chunks_exact(3)
            .map(|p| self.index([p[0], p[1], p[2]]))
            .collect()
    }
}

impl Default for Palette {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_shrink_to_fit_a_format_keeping_their_aspect_ratio() {
        let frame = |n: usize| move |[ph, pw]: [usize; 2]| [3 * pw + 8, 44 + n * (ph + 4)];
        // Small pictures keep their enlarged panels.
        assert_eq!(
            fit_panels("t", [96, 128], 1, GIF, frame(4)).unwrap(),
            [96, 128]
        );
        // 32 panels of 8192 × 8192: past both GIF's side and its pixels.
        let [ph, pw] = fit_panels("t", [8192, 8192], 1, GIF, frame(32)).unwrap();
        let [fw, fh] = frame(32)([ph, pw]);
        assert!(fw <= GIF.max_side && fh <= GIF.max_side && fw * fh <= GIF.max_pixels);
        assert_eq!(ph, pw);
        // Tall panels stay tall.
        let [ph, pw] = fit_panels("t", [8192, 8], 4, GIF, frame(2)).unwrap();
        assert_eq!([ph, pw], [32741, 32]);
        // A picture that cannot fit is an error, not a panic.
        let never = |_: [usize; 2]| [usize::MAX, 1];
        assert!(fit_panels("t", [8, 8], 1, PNG, never).is_err());
    }

    #[test]
    fn palette_maps_greys_and_tints_exactly_enough() {
        let p = Palette::new();
        assert_eq!(p.rgb.len(), 768);
        for v in [0u8, 37, 128, 255] {
            let i = p.index([v, v, v]) as usize;
            assert!((p.rgb[i * 3] as i32 - v as i32).abs() <= 2);
        }
        for v in [0u8, 100, 255] {
            let c = blend(v, TRUTH_RGB);
            let i = p.index(c) as usize;
            assert!((128..192).contains(&i));
            assert!((p.rgb[i * 3 + 1] as i32 - c[1] as i32).abs() <= 4);
            let c = blend(v, PRED_RGB);
            let i = p.index(c) as usize;
            assert!(i >= 192);
            assert!((p.rgb[i * 3] as i32 - c[0] as i32).abs() <= 4);
        }
    }
}
