//! `unet-lab augment-preview`: a grid of augmented training samples, to check an `[augment]`
//! table by eye.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::raster::{Canvas, TRUTH_RGB, panel_scale};
use crate::config::AugmentConfig;
use crate::data::{Sample, augment};

/// A grid for a visual check of an augmentation config: one row per sample, the original then
/// `per_sample` augmented draws, each as the image with its mask tinted on top.
pub fn preview_png(
    cfg: &AugmentConfig,
    samples: &[&Sample],
    per_sample: usize,
    seed: u64,
) -> anyhow::Result<Vec<u8>> {
    let (h, w) = (samples[0].height, samples[0].width);
    let scale = panel_scale(w);
    let gap = 4;
    let (pw, ph) = (w * scale, h * scale);
    let mut canvas = Canvas::new(
        (per_sample + 1) * (pw + gap),
        samples.len() * (ph + gap),
        255,
    );
    for (row, s) in samples.iter().enumerate() {
        let top = row * (ph + gap);
        let mask: Vec<f32> = s.mask.iter().map(|&m| m as f32).collect();
        canvas.overlay(&s.image, &mask, TRUTH_RGB, [h, w], [top, 0], scale);
        for k in 0..per_sample {
            let mut rng = StdRng::seed_from_u64(seed ^ ((row as u64) << 16 | k as u64));
            let (img, m) = augment::apply(cfg, &s.image, &s.mask, h, w, &mut rng);
            let m: Vec<f32> = m.iter().map(|&v| v as f32).collect();
            canvas.overlay(
                &img,
                &m,
                TRUTH_RGB,
                [h, w],
                [top, (k + 1) * (pw + gap)],
                scale,
            );
        }
    }
    canvas.to_png()
}
