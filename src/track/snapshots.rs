//! Prediction snapshots: for a fixed set of validation samples, the predicted foreground
//! probability after every epoch, stored as one 8-bit PNG strip per epoch
//! (`<variant>/seed-<s>/snapshots/epoch-0001.png`) next to `images.png` and `truth.png`.
//! Every picture of the report is rebuilt from these, without the model.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::util::fs::write_atomic;

pub fn dir(variant_dir: &Path, run: super::layout::RunId) -> PathBuf {
    super::layout::run_dir(variant_dir, run).join("snapshots")
}

/// Panels of `n` samples of `h × w`, as 8-bit values.
#[derive(Debug, Clone, PartialEq)]
pub struct Strip {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    /// Row-major `h × (n·w)`.
    pub pixels: Vec<u8>,
}

impl Strip {
    /// Lays out `panels` (each `h × w`, values in [0, 1]) side by side.
    fn from_panels(panels: &[Vec<f32>], h: usize, w: usize) -> Strip {
        let n = panels.len();
        let mut pixels = vec![0u8; h * n * w];
        for (k, panel) in panels.iter().enumerate() {
            for y in 0..h {
                for x in 0..w {
                    pixels[y * n * w + k * w + x] =
                        (panel[y * w + x].clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
        }
        Strip { n, h, w, pixels }
    }

    /// The `k`-th panel as values in [0, 1].
    pub(crate) fn panel(&self, k: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.h * self.w);
        for y in 0..self.h {
            let row = y * self.n * self.w + k * self.w;
            out.extend(
                self.pixels[row..row + self.w]
                    .iter()
                    .map(|&p| p as f32 / 255.0),
            );
        }
        out
    }

    pub(crate) fn to_png(&self) -> Result<Vec<u8>> {
        crate::util::png::encode(&self.pixels, self.n * self.w, self.h, false)
    }

    pub fn read(path: &Path, n: usize) -> Result<Strip> {
        let img = image::open(path)
            .with_context(|| format!("cannot read snapshot {}", path.display()))?
            .into_luma8();
        let (width, h) = (img.width() as usize, img.height() as usize);
        if n == 0 || width % n != 0 {
            bail!("{} is not a strip of {n} panels", path.display());
        }
        Ok(Strip {
            n,
            h,
            w: width / n,
            pixels: img.into_raw(),
        })
    }
}

/// Stores the samples' images and masks once per run.
pub(crate) fn write_samples(
    dir: &Path,
    images: &[Vec<f32>],
    truth: &[Vec<f32>],
    h: usize,
    w: usize,
) -> Result<()> {
    write_atomic(
        &dir.join("images.png"),
        &Strip::from_panels(images, h, w).to_png()?,
    )?;
    write_atomic(
        &dir.join("truth.png"),
        &Strip::from_panels(truth, h, w).to_png()?,
    )
}

pub(crate) fn write_epoch(
    dir: &Path,
    epoch: usize,
    probabilities: &[Vec<f32>],
    h: usize,
    w: usize,
) -> Result<()> {
    write_atomic(
        &dir.join(format!("epoch-{epoch:04}.png")),
        &Strip::from_panels(probabilities, h, w).to_png()?,
    )
}

/// Everything stored for one run.
#[derive(Debug, Clone)]
pub struct Snapshots {
    pub images: Strip,
    pub truth: Strip,
    /// (epoch, predicted probabilities), by epoch.
    pub epochs: Vec<(usize, Strip)>,
}

impl Snapshots {
    /// Reads the snapshots of a run; `None` when the run stored none (samples = 0).
    pub fn load(dir: &Path, n: usize) -> Result<Option<Snapshots>> {
        if n == 0 || !dir.join("images.png").exists() {
            return Ok(None);
        }
        let images = Strip::read(&dir.join("images.png"), n)?;
        let truth = Strip::read(&dir.join("truth.png"), n)?;
        let mut epochs = Vec::new();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(num) = name
                .strip_prefix("epoch-")
                .and_then(|s| s.strip_suffix(".png"))
                && let Ok(epoch) = num.parse::<usize>()
            {
                epochs.push((epoch, Strip::read(&entry.path(), n)?));
            }
        }
        epochs.sort_by_key(|(e, _)| *e);
        // The pictures index every strip by the images' panel size.
        let strips = std::iter::once(("truth.png".to_string(), &truth))
            .chain(epochs.iter().map(|(e, s)| (format!("epoch-{e:04}.png"), s)));
        for (name, strip) in strips {
            if (strip.h, strip.w) != (images.h, images.w) {
                bail!(
                    "{} holds panels of {}×{}, but images.png of {}×{}: the snapshots of this run \
                     do not belong together",
                    dir.join(name).display(),
                    strip.w,
                    strip.h,
                    images.w,
                    images.h
                );
            }
        }
        Ok(Some(Snapshots {
            images,
            truth,
            epochs,
        }))
    }

    /// Removes epoch strips after `last_epoch` (a resumed run writes them again).
    pub fn truncate(dir: &Path, last_epoch: usize) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(num) = name
                    .strip_prefix("epoch-")
                    .and_then(|s| s.strip_suffix(".png"))
                    && num.parse::<usize>().is_ok_and(|e| e > last_epoch)
                {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_round_trip() {
        let a = vec![0.0, 0.5, 1.0, 0.25];
        let b = vec![1.0, 1.0, 0.0, 0.0];
        let strip = Strip::from_panels(&[a, b.clone()], 2, 2);
        let dir = std::env::temp_dir().join(format!("unet-lab-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.png"), strip.to_png().unwrap()).unwrap();
        let back = Strip::read(&dir.join("s.png"), 2).unwrap();
        assert_eq!(back, strip);
        assert_eq!(back.panel(1), b);
        assert!((back.panel(0)[1] - 128.0 / 255.0).abs() < 1e-6);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
