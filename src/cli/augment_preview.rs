//! `unet-lab augment-preview`: a grid of augmented samples, to check `[augment]` by eye.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::exit;
use crate::config;

/// Write a grid of augmented training samples (first column: the original) to check an
/// [augment] table by eye.
#[derive(Args, Debug)]
#[command(
    after_help = "Example: unet-lab augment-preview experiments/paper.toml --out preview.png"
)]
pub struct AugmentPreviewArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// The variant whose data and augmentation to use (default: the first).
    #[arg(long)]
    pub variant: Option<String>,
    /// Output PNG.
    #[arg(long, default_value = "augment-preview.png")]
    pub out: PathBuf,
    /// Samples (rows).
    #[arg(long, default_value_t = 4)]
    pub samples: usize,
    /// Augmented draws of each sample (columns after the original).
    #[arg(long, default_value_t = 5)]
    pub draws: usize,
}

/// The most rows (`--samples`) and augmented columns (`--draws`) of a preview.
const MAX_GRID: usize = 64;

pub(crate) fn execute(args: AugmentPreviewArgs) -> Result<u8> {
    let AugmentPreviewArgs {
        file,
        variant,
        out,
        samples,
        draws,
    } = args;
    // Each row and column is drawn and augmented: more would only shrink the panels.
    if !(1..=MAX_GRID).contains(&samples) || draws > MAX_GRID {
        eprintln!("error: --samples must be 1 to {MAX_GRID} and --draws 0 to {MAX_GRID}");
        return Ok(exit::CONFIG);
    }
    let mut experiment = config::load(&file)?;
    if let Some(v) = &variant
        && let Err(msg) = experiment.select(std::slice::from_ref(v))
    {
        eprintln!("error: {msg}");
        return Ok(exit::CONFIG);
    }
    let v = &experiment.variants[0];
    if !v.config.augment.any() {
        eprintln!(
            "note: variant \"{}\" has no augmentation enabled; the columns repeat the original",
            v.name
        );
    }
    let ds = crate::data::load(&v.config.data)?;
    // Prefer samples with an object: the mask shows whether it moved with the image.
    let mut picked: Vec<&crate::data::Sample> = ds
        .train
        .iter()
        .map(|&i| &ds.samples[i])
        .filter(|s| s.has_object())
        .take(samples)
        .collect();
    if picked.is_empty() {
        picked = ds
            .train
            .iter()
            .take(samples)
            .map(|&i| &ds.samples[i])
            .collect();
    }
    let png = crate::report::augment_preview::preview_png(
        &v.config.augment,
        &picked,
        draws,
        v.config.data.seed,
    )?;
    crate::track::write_atomic(&out, &png)?;
    eprintln!("wrote {}", out.display());
    Ok(0)
}
