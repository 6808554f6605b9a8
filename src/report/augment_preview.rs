//! `unet-lab augment-preview`: a grid of augmented training samples, to check an `[augment]`
//! table by eye.

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::config::AugmentConfig;
use crate::data::{Sample, augment};
use crate::util::raster::{Canvas, PNG, TRUTH_RGB, fit_panels, panel_scale};

/// A grid for a visual check of an augmentation config: one row per sample, the original then
/// `per_sample` augmented draws, each as the image with its mask tinted on top.
pub(crate) fn preview_png(
    cfg: &AugmentConfig,
    samples: &[&Sample],
    per_sample: usize,
    seed: u64,
) -> anyhow::Result<Vec<u8>> {
    let Some(first) = samples.first() else {
        anyhow::bail!("no samples to preview");
    };
    let (h, w) = (first.height, first.width);
    let gap = 4;
    let (cols, rows) = (per_sample.saturating_add(1), samples.len());
    let frame = |[ph, pw]: [usize; 2]| {
        [
            cols.saturating_mul(pw.saturating_add(gap)),
            rows.saturating_mul(ph.saturating_add(gap)),
        ]
    };
    let panel = fit_panels("the preview", [h, w], panel_scale(w), PNG, frame)?;
    let [ph, pw] = panel;
    let [width, height] = frame(panel);
    let mut canvas = Canvas::new(width, height, 255);
    for (row, s) in samples.iter().enumerate() {
        let top = row * (ph + gap);
        let mask: Vec<f32> = s.mask.iter().map(|&m| m as f32).collect();
        canvas.overlay(&s.image, &mask, TRUTH_RGB, [h, w], [top, 0], panel);
        for k in 0..per_sample {
            let mut rng = StdRng::seed_from_u64(seed ^ ((row as u64) << 16 | k as u64));
            let (img, m) = augment::apply(cfg, &s.image, &s.mask, h, w, &mut rng);
            let m: Vec<f32> = m.iter().map(|&v| v as f32).collect();
            let left = (k + 1) * (pw + gap);
            canvas.overlay(&img, &m, TRUTH_RGB, [h, w], [top, left], panel);
        }
    }
    canvas.to_png()
}
