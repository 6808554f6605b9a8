//! `unet-lab predict`: masks for new images at their original resolution, overlays, a Kaggle
//! submission, and the Kaggle score when the input is labelled.

pub mod rle;

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::prelude::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::config::{BackendKind, Padding, RunConfig, Tta};
use crate::data::files::{self, Grey, image_files, resize_bilinear, stem};
use crate::data::standardize;
use crate::metrics::{Confusion, MetricAccumulator};
use crate::model::infer::{Probabilities, probabilities_and_presence};
use crate::model::postprocess::PostProcess;
use crate::model::record::load_checkpoint;
use crate::model::tile;
use crate::model::tta;
use crate::model::{UNet, output_size};
use crate::track::{RunId, VariantManifest, checkpoint, write_atomic};
use crate::util::owned::Claim;
use crate::util::raster::{Canvas, PRED_RGB};

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
    pub post: PostOptions,
    pub choice: RunChoice,
    pub tta: Tta,
    /// Where the networks run (the CPU by default) and on which GPU or adapter.
    pub backend: BackendKind,
    pub device: Option<usize>,
}

pub struct PredictSummary {
    pub images: usize,
    pub nonempty: usize,
    /// Mean Kaggle Dice over labelled images, with their count.
    pub score: Option<(f64, usize)>,
    /// The same score without test-time augmentation (when `--tta` was given).
    pub score_without_tta: Option<f64>,
}

/// A trained network (or the fold networks of a cross-validated variant, whose probabilities
/// are averaged) ready to predict, on the CPU or a GPU backend.
pub struct Predictor {
    networks: Box<dyn Networks>,
    config: RunConfig,
    /// The runs' tuned post-processing (their mean for an ensemble of folds), if tuned.
    pub tuned: Option<PostProcess>,
}

/// Which runs of a variant `predict` uses.
#[derive(Debug, Clone, Default)]
pub struct RunChoice {
    /// The seed (default: the first with a checkpoint).
    pub seed: Option<u64>,
    /// One fold of a cross-validated variant (default: all its folds, averaged).
    pub fold: Option<usize>,
}

/// The networks, on the backend they run on.
trait Networks {
    /// Each network's probability maps and presence probabilities.
    fn outputs(
        &self,
        config: &RunConfig,
        tiles: &[Vec<f32>],
        h: usize,
        w: usize,
    ) -> Vec<Probabilities>;
}

struct Ensemble<B: Backend> {
    models: Vec<UNet<B>>,
    device: B::Device,
}

impl<B: crate::kernels::KernelBackend> Networks for Ensemble<B> {
    fn outputs(
        &self,
        config: &RunConfig,
        tiles: &[Vec<f32>],
        h: usize,
        w: usize,
    ) -> Vec<Probabilities> {
        self.models
            .iter()
            .map(|model| {
                probabilities_and_presence(model, config.train.loss, tiles, h, w, &self.device)
            })
            .collect()
    }
}

/// Loads the checkpoints `paths` onto the inference side of the backend `dispatch` picks.
struct LoadNetworks<'a> {
    paths: &'a [PathBuf],
    config: &'a RunConfig,
}

impl crate::device::OnDevice for LoadNetworks<'_> {
    type Output = Box<dyn Networks>;

    fn run<B>(self, device: &B::Device) -> Result<Box<dyn Networks>>
    where
        B: burn::tensor::backend::AutodiffBackend + crate::kernels::KernelBackend,
        B::InnerBackend: crate::kernels::KernelBackend,
    {
        let models = self
            .paths
            .iter()
            .map(|path| load_checkpoint::<B::InnerBackend>(path, self.config, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Box::new(Ensemble::<B::InnerBackend> {
            models,
            device: device.clone(),
        }))
    }
}

/// The networks of `paths` on `backend`. Checkpoints hold f32 parameters whatever the run
/// trained in; predicting is f32.
fn load_networks(
    paths: &[PathBuf],
    config: &RunConfig,
    backend: BackendKind,
    device: Option<usize>,
) -> Result<Box<dyn Networks>> {
    crate::device::check_available(backend, device, crate::config::Precision::F32)?;
    crate::device::dispatch(backend, device, LoadNetworks { paths, config })
}

impl Predictor {
    /// Loads the chosen checkpoint(s) of a variant directory onto `backend`; returns the runs
    /// it loaded.
    pub fn load(
        variant_dir: &Path,
        which: Which,
        choice: &RunChoice,
        backend: BackendKind,
        device: Option<usize>,
    ) -> Result<(Predictor, Vec<RunId>)> {
        let manifest = crate::track::open_variant(variant_dir)?;
        crate::config::geometry::check_network(&manifest.config).map_err(|msg| {
            anyhow::anyhow!(
                "{}: the config its manifest.json records does not describe a U-Net: {msg}",
                variant_dir.display()
            )
        })?;
        let runs = choose_runs(variant_dir, &manifest, which, choice)?;
        let paths: Vec<PathBuf> = runs
            .iter()
            .map(|&run| checkpoint_path(variant_dir, which, run))
            .collect();
        let networks = load_networks(&paths, &manifest.config, backend, device)?;
        let tuned: Option<Vec<PostProcess>> = runs
            .iter()
            .map(|&run| PostProcess::load(&checkpoint::dir(variant_dir, run)).transpose())
            .collect::<Option<Result<Vec<_>>>>()
            .transpose()?;
        Ok((
            Predictor {
                networks,
                config: manifest.config,
                tuned: tuned.and_then(|all| PostProcess::mean(&all)),
            },
            runs,
        ))
    }

    pub fn size(&self) -> [usize; 2] {
        self.config.data.size
    }

    /// The probability maps (and presence probabilities) of `tiles`: with several networks,
    /// the mean of theirs.
    fn forward(&self, tiles: &[Vec<f32>], h: usize, w: usize) -> Probabilities {
        let mut outputs = self.networks.outputs(&self.config, tiles, h, w).into_iter();
        let n = outputs.len() as f32;
        let (mut maps, mut presence) = outputs.next().expect("at least one network");
        for (more_maps, more_presence) in outputs {
            for (sum, more) in maps.iter_mut().zip(more_maps) {
                sum.iter_mut().zip(more).for_each(|(s, m)| *s += m);
            }
            if let (Some(sum), Some(more)) = (presence.as_mut(), more_presence) {
                sum.iter_mut().zip(more).for_each(|(s, m)| *s += m);
            }
        }
        if n > 1.0 {
            maps.iter_mut().flatten().for_each(|v| *v /= n);
            presence
                .iter_mut()
                .flatten()
                .for_each(|v| *v /= f64::from(n));
        }
        (maps, presence)
    }

    /// Probability map (at the training size) of one standardised image, and with a presence
    /// head its presence probability (with overlap-tile, that of its most confident tile).
    fn whole_image(&self, x: &[f32]) -> (Vec<f32>, Option<f64>) {
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
                let mut most: Option<f64> = None;
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

    /// The rule before tuning (threshold 0.5, no minimum area, the configured presence
    /// threshold).
    pub fn untuned(&self) -> PostProcess {
        PostProcess::untuned(&self.config.model)
    }

    /// The probability map (at the training size) of one image resized to the training size,
    /// as it is and under `tta` (the same map twice for [`Tta::None`]), and its presence
    /// probability with a presence head (that of the image as it is decides for both maps).
    fn probability_with(&self, resized: &[f32], tta: Tta) -> (Vec<f32>, Vec<f32>, Option<f64>) {
        let x = standardize(resized);
        let (plain, presence) = self.whole_image(&x);
        let mut predict = |images: &[Vec<f32>]| -> Vec<Vec<f32>> {
            images.iter().map(|i| self.whole_image(i).0).collect()
        };
        let with = tta::apply(tta, vec![plain.clone()], &[x], self.size(), &mut predict)
            .pop()
            .expect("one map");
        (plain, with, presence)
    }
}

fn checkpoint_path(variant_dir: &Path, which: Which, run: RunId) -> PathBuf {
    match which {
        Which::Best => checkpoint::best_path(variant_dir, run),
        Which::Last => checkpoint::last_path(variant_dir, run),
    }
}

/// The runs `choice` names among those with a checkpoint: one run, or every fold of the seed
/// of a cross-validated variant.
fn choose_runs(
    variant_dir: &Path,
    manifest: &VariantManifest,
    which: Which,
    choice: &RunChoice,
) -> Result<Vec<RunId>> {
    let with_checkpoint: Vec<RunId> = manifest
        .runs
        .iter()
        .map(|r| r.run_id())
        .filter(|&r| checkpoint_path(variant_dir, which, r).exists())
        .collect();
    let cross_validated = manifest.runs.iter().any(|r| r.fold.is_some());
    if choice.fold.is_some() && !cross_validated {
        bail!(
            "--fold: {} is not cross-validated (no data.folds); leave --fold out",
            variant_dir.display()
        );
    }
    let seed = match choice.seed {
        Some(s) => s,
        None => with_checkpoint
            .first()
            .map(|r| r.seed)
            .with_context(|| format!("no {which:?} checkpoint in {}", variant_dir.display()))?,
    };
    let of_seed: Vec<RunId> = with_checkpoint
        .iter()
        .copied()
        .filter(|r| r.seed == seed && (choice.fold.is_none() || r.fold == choice.fold))
        .collect();
    if of_seed.is_empty() {
        let have: Vec<String> = with_checkpoint.iter().map(|r| r.to_string()).collect();
        bail!(
            "no {which:?} checkpoint for {} in {} (runs with one: {})",
            RunId::new(seed, choice.fold),
            variant_dir.display(),
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        );
    }
    Ok(of_seed)
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
fn apply_min_area(mask: &mut [u8], min_area: usize) {
    if min_area > 0 && mask.iter().filter(|&&m| m != 0).count() < min_area {
        mask.iter_mut().for_each(|m| *m = 0);
    }
}

fn png_grey(mask: &[u8], h: usize, w: usize) -> Result<Vec<u8>> {
    let pixels: Vec<u8> = mask.iter().map(|&m| m * 255).collect();
    crate::util::png::encode(&pixels, w, h, false)
}

/// The images of `--input` (not their `_mask` files). Only the folder itself is listed, not
/// its subfolders: an `--out` inside `--input` is never read back.
pub(crate) fn input_images(input: &Path) -> Result<Vec<PathBuf>> {
    let images: Vec<PathBuf> = image_files(input)?
        .into_iter()
        .filter(|p| !stem(p).ends_with("_mask"))
        .collect();
    if images.is_empty() {
        bail!("no images (PNG or TIFF) found in {}", input.display());
    }
    Ok(images)
}

/// The record of the files `predict` wrote into an `--out` folder: a rerun replaces those and
/// nothing else.
pub(crate) const OUT_RECORD: &str = ".unet-lab-predict.json";

/// Whether two paths name one folder (or file): by their canonical paths when both exist.
fn same_place(a: &Path, b: &Path) -> bool {
    let dot = |p: &Path| {
        if p.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            p.to_path_buf()
        }
    };
    let (a, b) = (dot(a), dot(b));
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => std::path::absolute(&a).ok() == std::path::absolute(&b).ok(),
    }
}

/// The names `predict` writes into `--out` for `images` (and the submission when it goes
/// there); two images of one stem would write one mask, and are refused.
fn planned_outputs(
    images: &[PathBuf],
    out: &Path,
    submission: Option<&Path>,
) -> Result<Vec<String>, String> {
    let mut planned: Vec<String> = Vec::with_capacity(2 * images.len() + 1);
    let mut by_stem = std::collections::HashMap::new();
    for image in images {
        let s = stem(image);
        if let Some(other) = by_stem.insert(s.clone(), image) {
            return Err(format!(
                "--input: {} and {} would both be predicted into {s}_mask.png in --out; rename \
                 one of them",
                other.display(),
                image.display()
            ));
        }
        planned.push(format!("{s}_mask.png"));
        planned.push(format!("{s}_overlay.png"));
    }
    if let Some(sub) = submission
        && let (Some(dir), Some(name)) = (sub.parent(), sub.file_name())
        && same_place(dir, out)
    {
        planned.push(name.to_string_lossy().into_owned());
    }
    Ok(planned)
}

/// Checks `--out` (and `--submission`) before anything is written: `--out` must not be the
/// input folder (its `<stem>_mask.png` labels would be overwritten, and the next run would
/// predict on the overlays), no output may replace an input, and no file in `--out` that an
/// earlier `predict` did not write is overwritten. The error is the message for the person.
pub(crate) fn check_out(
    input: &Path,
    out: &Path,
    images: &[PathBuf],
    submission: Option<&Path>,
) -> Result<Claim, String> {
    if same_place(out, input) {
        return Err(format!(
            "--out {} is the input folder (--input): the predicted <stem>_mask.png files would \
             overwrite its labels; choose another folder",
            out.display()
        ));
    }
    if let Some(sub) = submission
        && images
            .iter()
            .flat_map(|i| [Some(i.clone()), label_of(i)])
            .flatten()
            .any(|p| same_place(sub, &p))
    {
        return Err(format!(
            "--submission {} is one of the input images or labels; choose another file",
            sub.display()
        ));
    }
    let planned = planned_outputs(images, out, submission)?;
    crate::util::owned::claim(out, OUT_RECORD, "predict", "--out", &planned)
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
/// network's size: resized back, then `post` (threshold, presence, minimum area as a share of
/// this image).
fn to_mask(
    prob: Vec<f32>,
    [th, tw]: [usize; 2],
    img: &Grey,
    presence: Option<f64>,
    post: &PostProcess,
) -> Vec<u8> {
    let back = resize_bilinear(
        &Grey {
            height: th,
            width: tw,
            pixels: prob,
        },
        img.height,
        img.width,
    );
    post.mask(&back, presence)
}

/// The masks of one image under `tta`, and without it when `tta` is on (to score both).
fn predict_masks(
    predictor: &Predictor,
    img: &Grey,
    post: &PostProcess,
    tta: Tta,
) -> (Vec<u8>, Option<Vec<u8>>) {
    let size = predictor.size();
    let resized = resize_bilinear(img, size[0], size[1]);
    let (plain, with, presence) = predictor.probability_with(&resized, tta);
    let mask = to_mask(with, size, img, presence, post);
    let plain = (tta != Tta::None).then(|| to_mask(plain, size, img, presence, post));
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
        [img.height, img.width],
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

/// "seed 0", or "seed 0, mean of folds 0, 1, 2".
fn describe_networks(runs: &[RunId]) -> String {
    match runs {
        [one] => one.to_string(),
        folds => format!(
            "seed {}, mean of folds {}",
            folds[0].seed,
            folds
                .iter()
                .filter_map(|r| r.fold.map(|f| f.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// How `predict` turns probabilities into masks: the tuned values unless told otherwise,
/// each overridable.
#[derive(Debug, Clone, Default)]
pub struct PostOptions {
    /// Ignore the tuned values (`--untuned`).
    pub untuned: bool,
    pub threshold: Option<f32>,
    /// A minimum area in pixels of the original image (instead of the tuned share).
    pub min_area: Option<usize>,
    pub presence_threshold: Option<f64>,
}

impl PostOptions {
    /// The rule to apply and where it came from, for the log.
    pub(crate) fn resolve(&self, predictor: &Predictor) -> (PostProcess, String) {
        let (mut post, mut origin) = match (predictor.tuned, self.untuned) {
            (Some(tuned), false) => (tuned, "tuned on validation".to_string()),
            (Some(_), true) => (predictor.untuned(), "untuned (--untuned)".to_string()),
            (None, _) => (
                predictor.untuned(),
                "untuned (see `unet-lab tune`)".to_string(),
            ),
        };
        let mut overridden = Vec::new();
        if let Some(t) = self.threshold {
            post.threshold = t;
            overridden.push("--threshold");
        }
        if self.min_area.is_some() {
            post.min_area_share = 0.0;
            overridden.push("--min-area");
        }
        if let (Some(t), Some(_)) = (self.presence_threshold, post.presence_threshold) {
            post.presence_threshold = Some(t);
            overridden.push("--presence-threshold");
        }
        if !overridden.is_empty() {
            origin.push_str(&format!(", overridden by {}", overridden.join(", ")));
        }
        let rule = match self.min_area {
            Some(px) => post.describe_with_area(&format!("{px} pixels")),
            None => post.describe(),
        };
        (post, format!("post-processing: {rule} ({origin})"))
    }
}

/// Masks, overlays and (with `--submission`) a Kaggle submission for every input image; the
/// Kaggle score when the images are labelled.
pub fn predict(opts: &PredictOptions) -> Result<PredictSummary> {
    let images = input_images(&opts.input)?;
    let claim = check_out(&opts.input, &opts.out, &images, opts.submission.as_deref())
        .map_err(anyhow::Error::msg)?;
    let (predictor, runs) = Predictor::load(
        &opts.run,
        opts.checkpoint,
        &opts.choice,
        opts.backend,
        opts.device,
    )?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    claim.commit()?;
    let post = opts.post.resolve(&predictor);
    eprintln!(
        "predicting {} images with {} ({}, {:?} checkpoint); {}",
        images.len(),
        opts.run.display(),
        describe_networks(&runs),
        opts.checkpoint,
        post.1
    );
    let post = post.0;
    let bar = progress_bar(images.len());
    let mut rows = Vec::with_capacity(images.len());
    let mut acc = MetricAccumulator::default();
    let mut acc_plain = MetricAccumulator::default();
    let mut nonempty = 0;
    // Decoding and resizing in parallel; the network itself is parallel inside.
    for chunk in images.chunks(16) {
        for (path, (img, label)) in chunk.iter().zip(decode_chunk(chunk)?) {
            let (mut mask, mut plain) = predict_masks(&predictor, &img, &post, opts.tta);
            if let Some(min_area) = opts.post.min_area {
                apply_min_area(&mut mask, min_area);
                plain.iter_mut().for_each(|p| apply_min_area(p, min_area));
            }
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
