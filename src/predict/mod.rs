//! `unet-lab predict`: masks for new images at their original resolution, overlays, a Kaggle
//! submission, and the Kaggle score when the input is labelled.

pub mod rle;

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::backend::Flex;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::config::{Padding, RunConfig, Tta};
use crate::data::files::{self, Grey, image_files, resize_bilinear, stem};
use crate::data::standardize;
use crate::model::infer::{gate_by_presence, probabilities_and_presence};
use crate::model::record::model_from_bytes;
use crate::model::tile;
use crate::model::tta;
use crate::model::{UNet, output_size};
use crate::report::raster::{Canvas, PRED_RGB};
use crate::track::{VariantManifest, checkpoint, write_atomic};
use crate::train::metrics::{Confusion, MetricAccumulator};

/// Which checkpoint `predict` loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The epoch with the best validation Dice.
    Best,
    /// The last epoch.
    Last,
}

pub struct PredictOptions {
    pub run: PathBuf,
    pub input: PathBuf,
    pub out: PathBuf,
    pub submission: Option<PathBuf>,
    pub checkpoint: Which,
    pub min_area: usize,
    pub seed: Option<u64>,
    pub tta: Tta,
}

pub struct PredictSummary {
    pub images: usize,
    pub nonempty: usize,
    /// Mean Kaggle Dice over labelled images, with their count.
    pub score: Option<(f64, usize)>,
    /// The same score without test-time augmentation (when `--tta` was given).
    pub score_without_tta: Option<f64>,
}

/// A trained network ready to predict on the CPU.
pub struct Predictor {
    model: UNet<Flex>,
    config: RunConfig,
    device: burn::backend::flex::FlexDevice,
}

impl Predictor {
    pub fn load(run_dir: &Path, which: Which, seed: Option<u64>) -> Result<(Predictor, u64)> {
        // A study of the single-file layout keeps its checkpoints elsewhere until migrated.
        if let Some(exp_dir) = run_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::track::migrate::migrate_if_legacy(exp_dir)?;
        }
        let manifest = VariantManifest::load(run_dir)?.with_context(|| {
            format!(
                "{} is not a variant directory written by `unet-lab run` (no manifest.json)",
                run_dir.display()
            )
        })?;
        let path_of = |s: u64| match which {
            Which::Best => checkpoint::best_path(run_dir, s),
            Which::Last => checkpoint::last_path(run_dir, s),
        };
        let seed = match seed {
            Some(s) => s,
            None => manifest
                .runs
                .iter()
                .map(|r| r.seed)
                .find(|&s| path_of(s).exists())
                .with_context(|| format!("no {:?} checkpoint in {}", which, run_dir.display()))?,
        };
        let path = path_of(seed);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
        let device = Default::default();
        let model = UNet::<Flex>::new(&manifest.config.model, manifest.config.train.loss, &device);
        let model = model_from_bytes(model, bytes, &device)
            .with_context(|| format!("cannot load {}", path.display()))?;
        Ok((
            Predictor {
                model,
                config: manifest.config,
                device,
            },
            seed,
        ))
    }

    pub fn size(&self) -> [usize; 2] {
        self.config.data.size
    }

    fn forward(&self, tiles: &[Vec<f32>], h: usize, w: usize) -> (Vec<Vec<f32>>, Option<Vec<f32>>) {
        probabilities_and_presence(
            &self.model,
            self.config.train.loss,
            tiles,
            h,
            w,
            &self.device,
        )
    }

    /// Probability map (at the training size) of one standardised image, and with a presence
    /// head its presence probability (with overlap-tile, that of its most confident tile).
    fn whole_image(&self, x: &[f32]) -> (Vec<f32>, Option<f32>) {
        let [h, w] = self.size();
        match self.config.model.padding {
            Padding::Same => {
                let (mut maps, presence) = self.forward(&[x.to_vec()], h, w);
                (maps.remove(0), presence.map(|p| p[0]))
            }
            Padding::Valid => {
                let levels = self.config.model.widths.len();
                let out = [
                    output_size(h, levels, Padding::Valid).expect("validated size"),
                    output_size(w, levels, Padding::Valid).expect("validated size"),
                ];
                let align = 1 << (levels - 1);
                let mut most: Option<f32> = None;
                let map = tile::predict_tiled(x, [h, w], [h, w], out, align, 4, &mut |tiles| {
                    let (maps, presence) = self.forward(tiles, h, w);
                    for p in presence.into_iter().flatten() {
                        most = Some(most.map_or(p, |m| m.max(p)));
                    }
                    maps
                });
                (map, most)
            }
        }
    }

    /// The probability map (at the training size) of one image resized to the training size,
    /// as it is and under `tta` (the same map twice for [`Tta::None`]).
    pub fn probability_with(&self, resized: &[f32], tta: Tta) -> (Vec<f32>, Vec<f32>) {
        let x = standardize(resized);
        let (plain, presence) = self.whole_image(&x);
        let mut predict = |images: &[Vec<f32>]| -> Vec<Vec<f32>> {
            images.iter().map(|i| self.whole_image(i).0).collect()
        };
        let mut maps = tta::apply(tta, vec![plain.clone()], &[x], self.size(), &mut predict);
        maps.insert(0, plain);
        // The presence of the image as it is decides for both maps.
        if let Some(p) = presence {
            gate_by_presence(&mut maps, &[p, p], self.config.model.presence_threshold);
        }
        let with = maps.pop().expect("two maps");
        (maps.pop().expect("two maps"), with)
    }
}

/// The label of `image`, if the input is labelled: `<stem>_mask.<ext>` beside it, or
/// `../masks/<stem>.<ext>` when the input is an `images/` folder.
fn label_of(image: &Path) -> Option<PathBuf> {
    let s = stem(image);
    let ext = image.extension()?.to_str()?;
    let beside = image.with_file_name(format!("{s}_mask.{ext}"));
    if beside.exists() {
        return Some(beside);
    }
    let dir = image.parent()?;
    if dir.file_name()? == "images" {
        for e in ["png", "tif", "tiff"] {
            let p = dir.parent()?.join("masks").join(format!("{s}.{e}"));
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

/// Zeroes a mask with fewer than `min_area` pixels.
pub fn apply_min_area(mask: &mut [u8], min_area: usize) {
    if min_area > 0 && mask.iter().filter(|&&m| m != 0).count() < min_area {
        mask.iter_mut().for_each(|m| *m = 0);
    }
}

fn png_grey(mask: &[u8], h: usize, w: usize) -> Result<Vec<u8>> {
    let pixels: Vec<u8> = mask.iter().map(|&m| m * 255).collect();
    crate::util::png::encode(&pixels, w, h, false)
}

/// The images of `--input` (not their `_mask` files).
fn input_images(input: &Path) -> Result<Vec<PathBuf>> {
    let images: Vec<PathBuf> = image_files(input)?
        .into_iter()
        .filter(|p| !stem(p).ends_with("_mask"))
        .collect();
    if images.is_empty() {
        bail!("no images (PNG or TIFF) found in {}", input.display());
    }
    Ok(images)
}

fn progress_bar(images: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(images as u64);
    bar.set_style(
        ProgressStyle::with_template("predict [{bar:30}] {pos}/{len} · {per_sec} · ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// A chunk of images and their labels (when present), decoded in parallel.
fn decode_chunk(chunk: &[PathBuf]) -> Result<Vec<(Grey, Option<Grey>)>> {
    chunk
        .par_iter()
        .map(|p| -> Result<_> {
            let label = label_of(p).map(|l| files::decode(&l)).transpose()?;
            Ok((files::decode(p)?, label))
        })
        .collect()
}

/// The binary mask of one image at its own resolution from its probability map at the
/// network's size: resized back, thresholded at 0.5, small masks cleared.
fn to_mask(prob: Vec<f32>, [th, tw]: [usize; 2], img: &Grey, min_area: usize) -> Vec<u8> {
    let back = resize_bilinear(
        &Grey {
            height: th,
            width: tw,
            pixels: prob,
        },
        img.height,
        img.width,
    );
    let mut mask: Vec<u8> = back.iter().map(|&p| (p > 0.5) as u8).collect();
    apply_min_area(&mut mask, min_area);
    mask
}

/// The masks of one image under `tta`, and without it when `tta` is on (to score both).
fn predict_masks(
    predictor: &Predictor,
    img: &Grey,
    min_area: usize,
    tta: Tta,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let size = predictor.size();
    let resized = resize_bilinear(img, size[0], size[1]);
    let (plain, with) = predictor.probability_with(&resized, tta);
    let mask = to_mask(with, size, img, min_area);
    let plain = (tta != Tta::None).then(|| to_mask(plain, size, img, min_area));
    (mask, plain)
}

/// `{stem}_mask.png` and `{stem}_overlay.png` in `out`.
fn write_mask_and_overlay(out: &Path, s: &str, img: &Grey, mask: &[u8]) -> Result<()> {
    write_atomic(
        &out.join(format!("{s}_mask.png")),
        &png_grey(mask, img.height, img.width)?,
    )?;
    let mut canvas = Canvas::new(img.width, img.height, 0);
    let m: Vec<f32> = mask.iter().map(|&v| v as f32).collect();
    canvas.overlay(
        &img.pixels,
        &m,
        PRED_RGB,
        [img.height, img.width],
        [0, 0],
        1,
    );
    write_atomic(&out.join(format!("{s}_overlay.png")), &canvas.to_png()?)
}

/// Scores a predicted mask against its label.
fn score_against(path: &Path, img: &Grey, label: &Grey, mask: &[u8]) -> Result<Confusion> {
    if (label.height, label.width) != (img.height, img.width) {
        bail!("{} and its mask differ in size", path.display());
    }
    let truth: Vec<u8> = label.pixels.iter().map(|&v| (v > 0.0) as u8).collect();
    let pred: Vec<bool> = mask.iter().map(|&v| v != 0).collect();
    Ok(Confusion::of(&pred, &truth))
}

/// The Kaggle submission: one `img,pixels` row per image, run-length encoded.
fn write_submission(path: &Path, rows: &[(String, String)]) -> Result<()> {
    let mut csv = String::from("img,pixels\n");
    for (s, r) in rows {
        let _ = writeln!(csv, "{s},{r}");
    }
    write_atomic(path, csv.as_bytes())
}

/// Masks, overlays and (with `--submission`) a Kaggle submission for every input image; the
/// Kaggle score when the images are labelled.
pub fn predict(opts: &PredictOptions) -> Result<PredictSummary> {
    let (predictor, seed) = Predictor::load(&opts.run, opts.checkpoint, opts.seed)?;
    let images = input_images(&opts.input)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    eprintln!(
        "predicting {} images with {} (seed {seed}, {:?} checkpoint)",
        images.len(),
        opts.run.display(),
        opts.checkpoint
    );
    let bar = progress_bar(images.len());
    let mut rows = Vec::with_capacity(images.len());
    let mut acc = MetricAccumulator::default();
    let mut acc_plain = MetricAccumulator::default();
    let mut nonempty = 0;
    // Decoding and resizing in parallel; the network itself is parallel inside.
    for chunk in images.chunks(16) {
        for (path, (img, label)) in chunk.iter().zip(decode_chunk(chunk)?) {
            let (mask, plain) = predict_masks(&predictor, &img, opts.min_area, opts.tta);
            let s = stem(path);
            write_mask_and_overlay(&opts.out, &s, &img, &mask)?;
            if let Some(label) = label {
                acc.push(score_against(path, &img, &label, &mask)?);
                if let Some(plain) = &plain {
                    acc_plain.push(score_against(path, &img, &label, plain)?);
                }
            }
            nonempty += mask.contains(&1) as usize;
            rows.push((s, rle::encode(&mask, img.height, img.width)));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if let Some(sub) = &opts.submission {
        write_submission(sub, &rows)?;
    }
    let labelled = acc.per_image().len();
    Ok(PredictSummary {
        images: images.len(),
        nonempty,
        score: (labelled > 0).then(|| (acc.finish().dice, labelled)),
        score_without_tta: (labelled > 0 && opts.tta != Tta::None).then(|| acc_plain.finish().dice),
    })
}
