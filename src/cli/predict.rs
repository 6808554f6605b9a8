//! `unet-lab predict`: masks, overlays and a Kaggle submission for new images.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Predict masks for a folder of images with a trained variant, at each image's original
/// resolution; optionally a Kaggle submission. A labelled input is also scored.
#[derive(Args, Debug)]
#[command(
    after_help = "Example: unet-lab predict --run reports/mse_adam/base --input scans/ --out masks/ --submission submission.csv"
)]
pub struct PredictArgs {
    /// The variant directory (<out>/<experiment>/<variant>).
    #[arg(long)]
    pub run: PathBuf,
    /// A folder of images (PNG or TIFF). `<stem>_mask.<ext>` files beside them are labels.
    #[arg(long)]
    pub input: PathBuf,
    /// Where `<stem>_mask.png` and `<stem>_overlay.png` go.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a Kaggle submission CSV (img,pixels; column-major 1-based RLE).
    #[arg(long)]
    pub submission: Option<PathBuf>,
    /// Which checkpoint to load.
    #[arg(long, value_enum, default_value = "best")]
    pub checkpoint: crate::predict::Which,
    /// Zero predicted masks smaller than this many pixels (default: the tuned minimum area,
    /// else none).
    #[arg(long)]
    pub min_area: Option<usize>,
    /// The probability above which a pixel is foreground (default: the tuned value, else 0.5).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// With a presence head: empty masks whose presence probability is below this (default:
    /// the tuned value, else model.presence_threshold).
    #[arg(long)]
    pub presence_threshold: Option<f64>,
    /// Ignore the values `unet-lab tune` chose (threshold 0.5, no minimum area).
    #[arg(long)]
    pub untuned: bool,
    /// The seed whose checkpoint to use (default: the first with one).
    #[arg(long)]
    pub seed: Option<u64>,
    /// One fold of a cross-validated variant (default: the mean of all its folds'
    /// probabilities).
    #[arg(long)]
    pub fold: Option<usize>,
    /// Test-time augmentation: `flips` averages the probabilities of each image and its
    /// horizontal and vertical flips (a labelled input is then scored with and without it).
    #[arg(long, value_enum, default_value = "none")]
    pub tta: crate::config::Tta,
    /// Where the networks run.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: crate::config::BackendKind,
    /// The GPU (CUDA index) or wgpu adapter (the backend's default without it).
    #[arg(long, value_name = "N")]
    pub device: Option<usize>,
}

pub(crate) fn execute(args: PredictArgs) -> Result<u8> {
    let PredictArgs {
        run,
        input,
        out,
        submission,
        checkpoint,
        min_area,
        threshold,
        presence_threshold,
        untuned,
        seed,
        fold,
        tta,
        backend,
        device,
    } = args;
    // What predict would overwrite is a usage error, found before a model is loaded.
    let images = crate::predict::input_images(&input)?;
    if let Err(msg) = crate::predict::check_out(&input, &out, &images, submission.as_deref()) {
        eprintln!("error: {msg}");
        return Ok(super::exit::CONFIG);
    }
    crate::track::migrate::migrate_study_of(&run)?;
    let summary = crate::predict::predict(&crate::predict::PredictOptions {
        run,
        input,
        out: out.clone(),
        submission: submission.clone(),
        checkpoint,
        post: crate::predict::PostOptions {
            untuned,
            threshold,
            min_area,
            presence_threshold,
        },
        choice: crate::predict::RunChoice { seed, fold },
        tta,
        backend,
        device,
    })?;
    println!(
        "{} images, {} with a predicted nerve; masks and overlays in {}",
        summary.images,
        summary.nonempty,
        out.display()
    );
    if let Some(sub) = submission {
        println!("submission: {}", sub.display());
    }
    if let Some((dice, n)) = summary.score {
        let without = summary
            .score_without_tta
            .map_or_else(String::new, |d| format!(" ({d:.4} without TTA)"));
        println!(
            "Kaggle score (mean Dice, empty/empty = 1) over {n} labelled images: {dice:.4}{without}"
        );
    }
    Ok(0)
}
