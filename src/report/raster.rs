//! Picture building blocks shared by the overlay grid and the GIFs: an RGB canvas, grey and
//! overlay panels, text in the embedded font, PNG encoding and a fixed GIF palette.

use std::sync::Once;

use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// DejaVu Sans (free licence, see assets/DejaVuSans-LICENSE.txt), so no system fonts are
/// needed at run time.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

pub const FONT_FAMILY: &str = "sans-serif";

/// Registers the embedded font with plotters (once per process).
pub fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are compiled in, so this cannot fail on a valid build.
        let _ = plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT);
    });
}

/// Overlay colours (alpha-blended over the grey image).
pub const TRUTH_RGB: [u8; 3] = [0, 255, 0];
pub const PRED_RGB: [u8; 3] = [255, 0, 0];
pub const OVERLAY_ALPHA: f32 = 0.45;

/// An RGB image being composed.
pub struct Canvas {
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

    /// Copies an `h × w` grey panel (values in [0, 1]) to (top, left), scaled by `scale`.
    pub fn grey(
        &mut self,
        panel: &[f32],
        h: usize,
        w: usize,
        top: usize,
        left: usize,
        scale: usize,
    ) {
        self.blit(h, w, top, left, scale, |i| {
            let v = (panel[i].clamp(0.0, 1.0) * 255.0).round() as u8;
            [v, v, v]
        });
    }

    /// The grey `[h, w]` image with `mask > 0.5` tinted in `color`, its top-left corner at
    /// `[top, left]`, each pixel drawn `scale` × `scale`.
    pub fn overlay(
        &mut self,
        image: &[f32],
        mask: &[f32],
        color: [u8; 3],
        [h, w]: [usize; 2],
        [top, left]: [usize; 2],
        scale: usize,
    ) {
        self.blit(h, w, top, left, scale, |i| {
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
        h: usize,
        w: usize,
        top: usize,
        left: usize,
        scale: usize,
        px: impl Fn(usize) -> [u8; 3],
    ) {
        for y in 0..h * scale {
            let cy = top + y;
            if cy >= self.height {
                break;
            }
            for x in 0..w * scale {
                let cx = left + x;
                if cx >= self.width {
                    break;
                }
                let c = px((y / scale) * w + x / scale);
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

    pub fn to_png(&self) -> Result<Vec<u8>> {
        crate::util::png::encode(&self.rgb, self.width, self.height, true)
    }
}

pub fn blend(v: u8, color: [u8; 3]) -> [u8; 3] {
    let mix = |c: u8| ((1.0 - OVERLAY_ALPHA) * v as f32 + OVERLAY_ALPHA * c as f32).round() as u8;
    [mix(color[0]), mix(color[1]), mix(color[2])]
}

/// Integer upscaling so small training images stay legible (panels at least ~128 px wide).
pub fn panel_scale(w: usize) -> usize {
    128usize.div_ceil(w.max(1)).clamp(1, 4)
}

/// The fixed GIF palette: 128 greys, then 64 levels of the truth tint and 64 of the
/// prediction tint, so every colour the report draws maps to an index without per-frame
/// quantisation.
pub struct Palette {
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

    pub fn indices(&self, canvas: &Canvas) -> Vec<u8> {
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
