//! Tuned post-processing: the probability threshold, the minimum mask area and (with a
//! presence head) the presence threshold that maximise the Kaggle score on validation.
//!
//! The search is exhaustive over a fixed grid (plus the untuned values, so tuning never
//! scores below them on the images it tunes on). Each image is reduced once per threshold to
//! three counts (predicted, overlapping and true pixels), so the grid costs
//! thresholds × pixels + grid size × images, not grid size × pixels.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::evaluate::{Case, test_score, validation_cases};
use crate::data::Dataset;
use crate::kernels::KernelBackend;
use crate::model::UNet;
use crate::model::postprocess::{self, PostProcess};
use crate::model::record::load_checkpoint;
use crate::track::manifest::{RunManifest, RunStatus, TunedScore};
use crate::track::{Claim, RunId, RunLock, checkpoint, layout};
use crate::util::fs::write_atomic;

/// Candidate probability thresholds: 0.10, 0.15, …, 0.90.
fn thresholds() -> Vec<f32> {
    (2..=18).map(|k| k as f32 * 0.05).collect()
}

/// Candidate minimum areas, as shares of the image (0 to 8%; the Kaggle nerves cover ~1–5%
/// of an image).
const MIN_AREA_SHARES: [f64; 12] = [
    0.0, 0.001, 0.002, 0.004, 0.006, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06, 0.08,
];

/// Candidate presence thresholds: 0.10, 0.15, …, 0.90.
fn presence_thresholds() -> Vec<f64> {
    (2..=18).map(|k| k as f64 * 0.05).collect()
}

/// What a search found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tuning {
    pub post: PostProcess,
    /// The Kaggle score of the untuned values and of the chosen ones, on the tuning images.
    pub before: f64,
    pub after: f64,
}

/// One image at one threshold: pixels predicted, predicted and true, and true.
#[derive(Clone, Copy)]
struct Counts {
    predicted: usize,
    overlap: usize,
    truth: usize,
}

impl Counts {
    fn of(case: &Case, threshold: f32) -> Counts {
        let mut c = Counts {
            predicted: 0,
            overlap: 0,
            truth: 0,
        };
        for (&p, &t) in case.probability.iter().zip(&case.truth) {
            let (p, t) = (p > threshold, t != 0);
            c.predicted += p as usize;
            c.overlap += (p && t) as usize;
            c.truth += t as usize;
        }
        c
    }

    /// Dice of the image when its mask is kept or emptied (empty/empty = 1, as Kaggle).
    fn dice(&self, emptied: bool) -> f64 {
        let (predicted, overlap) = if emptied {
            (0, 0)
        } else {
            (self.predicted, self.overlap)
        };
        if predicted + self.truth == 0 {
            1.0
        } else {
            2.0 * overlap as f64 / (predicted + self.truth) as f64
        }
    }
}

/// The mean Dice of `cases` under `post`: what [`PostProcess::mask`] then scoring would give.
pub fn score(cases: &[Case], post: &PostProcess) -> f64 {
    let counts: Vec<Counts> = cases
        .iter()
        .map(|c| Counts::of(c, post.threshold))
        .collect();
    score_counts(cases, &counts, post)
}

fn score_counts(cases: &[Case], counts: &[Counts], post: &PostProcess) -> f64 {
    let total: f64 = cases
        .iter()
        .zip(counts)
        .map(|(case, c)| {
            let small = c.predicted > 0 && c.predicted < post.min_area(case.probability.len());
            c.dice(small || post.absent(case.presence))
        })
        .sum();
    total / cases.len().max(1) as f64
}

/// Every candidate value of one parameter, the untuned one first.
fn with_start<T: PartialEq + Copy>(start: T, grid: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut values = vec![start];
    values.extend(grid.into_iter().filter(|v| *v != start));
    values
}

/// The values that maximise the mean Dice of `cases`, starting from `start` (the untuned
/// rule): ties keep the earlier candidate, so values change only when that scores higher.
pub(crate) fn search(cases: &[Case], start: PostProcess) -> Tuning {
    let before = score(cases, &start);
    let presence: Vec<Option<f64>> = match start.presence_threshold {
        Some(t) => with_start(t, presence_thresholds())
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None],
    };
    let areas = with_start(start.min_area_share, MIN_AREA_SHARES);
    let mut best = (before, start);
    for threshold in with_start(start.threshold, thresholds()) {
        let counts: Vec<Counts> = cases.iter().map(|c| Counts::of(c, threshold)).collect();
        for &min_area_share in &areas {
            for &presence_threshold in &presence {
                let post = PostProcess {
                    threshold,
                    min_area_share,
                    presence_threshold,
                };
                let s = score_counts(cases, &counts, &post);
                if s > best.0 + 1e-12 {
                    best = (s, post);
                }
            }
        }
    }
    Tuning {
        post: best.1,
        before,
        after: best.0,
    }
}

/// Writes the chosen values beside a run's checkpoints, where `predict` finds them.
pub fn save(checkpoint_dir: &Path, post: &PostProcess) -> Result<()> {
    std::fs::create_dir_all(checkpoint_dir)?;
    write_atomic(
        &checkpoint_dir.join(postprocess::FILE_NAME),
        &serde_json::to_vec_pretty(post)?,
    )
}

/// What `unet-lab tune` did for one seed of a variant (its folds tuned together).
#[derive(Debug, Clone)]
pub(crate) struct SeedTuning {
    pub seed: u64,
    pub runs: Vec<RunId>,
    pub tuned: Vec<TunedScore>,
}

/// One completed run, loaded to tune: its manifest, data and best network.
struct Loaded<B: KernelBackend> {
    dir: std::path::PathBuf,
    manifest: RunManifest,
    dataset: std::rc::Rc<Dataset>,
    model: UNet<B>,
    _lock: RunLock,
}

/// `unet-lab tune`: for each seed of a variant (or only `seed`), grid-searches the
/// post-processing on the validation images of its best checkpoint — a cross-validated
/// seed on the out-of-fold images of all its folds together — and writes the values beside
/// every checkpoint it used, with the validation and test scores before and after in the run's
/// manifest. The test split is scored, never tuned on.
pub(crate) fn tune_variant(variant_dir: &Path, seed: Option<u64>) -> Result<Vec<SeedTuning>> {
    let manifest = crate::track::open_variant(variant_dir)?;
    let mut seeds: Vec<u64> = manifest.runs.iter().map(|r| r.seed).collect();
    seeds.dedup();
    if let Some(s) = seed {
        if !seeds.contains(&s) {
            bail!(
                "--seed {s}: {} has no run of seed {s} (seeds: {})",
                variant_dir.display(),
                seeds
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        seeds = vec![s];
    }
    // Without --seed, a seed with a run that did not complete (a dead ReLU head, say) is left
    // out, saying so; with it, that is an error (below, naming the run).
    if seed.is_none() {
        let complete = |s: &u64| {
            manifest
                .runs
                .iter()
                .filter(|r| r.seed == *s)
                .all(|r| r.status == RunStatus::Completed)
        };
        for s in seeds.iter().filter(|s| !complete(s)) {
            eprintln!("note: seed {s} is left out: not all of its runs completed");
        }
        seeds.retain(complete);
        if seeds.is_empty() {
            bail!(
                "{}: no seed has completed runs to tune (see `unet-lab status`)",
                variant_dir.display()
            );
        }
    }
    let seeds = seeds
        .into_iter()
        .map(|s| {
            let runs = manifest.runs.iter().filter(|r| r.seed == s);
            (s, runs.map(|r| r.run_id()).collect())
        })
        .collect();
    let work = TuneSeeds { variant_dir, seeds };
    crate::device::dispatch(crate::config::BackendKind::Cpu, None, work)
}

/// The seeds to tune, each with its runs (its folds).
struct TuneSeeds<'a> {
    variant_dir: &'a Path,
    seeds: Vec<(u64, Vec<RunId>)>,
}

impl crate::device::OnDevice for TuneSeeds<'_> {
    type Output = Vec<SeedTuning>;

    fn run<B>(self, device: &B::Device) -> Result<Vec<SeedTuning>>
    where
        B: burn::tensor::backend::AutodiffBackend + KernelBackend,
        B::InnerBackend: KernelBackend,
    {
        let mut datasets = Datasets::default();
        self.seeds
            .iter()
            .map(|(seed, runs)| {
                tune_seed::<B::InnerBackend>(self.variant_dir, *seed, runs, &mut datasets, device)
            })
            .collect()
    }
}

/// Datasets loaded once for all the runs that share a data config.
#[derive(Default)]
struct Datasets(Vec<(crate::config::DataConfig, std::rc::Rc<Dataset>)>);

impl Datasets {
    fn get(&mut self, config: &crate::config::DataConfig) -> Result<std::rc::Rc<Dataset>> {
        if let Some((_, ds)) = self.0.iter().find(|(c, _)| c == config) {
            return Ok(ds.clone());
        }
        let ds = std::rc::Rc::new(crate::data::load(config)?);
        self.0.push((config.clone(), ds.clone()));
        Ok(ds)
    }
}

/// Loads a completed run under its lock (a run being trained is not touched).
fn load_run<B: KernelBackend>(
    variant_dir: &Path,
    run: RunId,
    datasets: &mut Datasets,
    device: &B::Device,
) -> Result<Loaded<B>> {
    let dir = layout::run_dir(variant_dir, run);
    let lock = match RunLock::claim(&dir)? {
        Claim::Acquired(lock) => lock,
        Claim::Busy(holder) => bail!(
            "{run} of {} is being trained by {}; tune it when it has finished",
            variant_dir.display(),
            holder.map_or("another worker".to_string(), |h| h.describe())
        ),
    };
    let manifest = RunManifest::load(&dir)?
        .with_context(|| format!("{} has no manifest.json", dir.display()))?;
    crate::config::geometry::check_network(&manifest.config).map_err(|msg| {
        anyhow::anyhow!(
            "{}: the config its manifest.json records does not describe a U-Net: {msg}",
            dir.display()
        )
    })?;
    if manifest.record.status != RunStatus::Completed {
        bail!(
            "{run} of {} is {}, not completed: only a finished run's best checkpoint is tuned",
            variant_dir.display(),
            manifest.record.status.as_str()
        );
    }
    let dataset = datasets.get(&manifest.config.data)?;
    let path = checkpoint::best_path(variant_dir, run);
    let model = load_checkpoint::<B>(&path, &manifest.config, device)?;
    Ok(Loaded {
        dir,
        manifest,
        dataset,
        model,
        _lock: lock,
    })
}

/// Tunes one seed on the validation images of all its runs together and records the result
/// in each.
fn tune_seed<B: KernelBackend>(
    variant_dir: &Path,
    seed: u64,
    runs: &[RunId],
    datasets: &mut Datasets,
    device: &B::Device,
) -> Result<SeedTuning> {
    let mut loaded = Vec::new();
    let mut cases = Vec::new();
    for &run in runs {
        let l = load_run::<B>(variant_dir, run, datasets, device)?;
        cases.extend(validation_cases(
            &l.model,
            &l.manifest.config,
            &l.dataset,
            device,
        )?);
        loaded.push(l);
    }
    let start = PostProcess::untuned(&loaded[0].manifest.config.model);
    let found = search(&cases, start);
    let mut tuned = Vec::new();
    for l in &mut loaded {
        let cfg = &l.manifest.config;
        save(&l.dir.join("checkpoints"), &found.post)?;
        let tested = test_score(&l.model, cfg, &l.dataset, found.post, device)?;
        let score = TunedScore {
            post: found.post,
            tuned_on_images: cases.len(),
            val_before: found.before,
            val_after: found.after,
            test_before: l.manifest.record.test.map(|t| t.dice),
            test_after: tested.map(|t| t.0),
            test_breakdown: tested.map(|t| t.1),
        };
        l.manifest.record.tuned = Some(score);
        l.manifest.save(&l.dir)?;
        tuned.push(score);
    }
    Ok(SeedTuning {
        seed,
        runs: runs.to_vec(),
        tuned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 10×10 image: `truth` pixels (the first ones) are the nerve; `probability` gives each
    /// pixel its value by index.
    fn case(truth: usize, presence: Option<f64>, probability: impl Fn(usize) -> f32) -> Case {
        Case {
            probability: (0..100).map(probability).collect(),
            presence,
            truth: (0..100).map(|i| (i < truth) as u8).collect(),
        }
    }

    fn hand_made(presence: bool) -> Vec<Case> {
        let p = |v: f64| presence.then_some(v);
        let mut cases = vec![
            // Empty, with a 3-pixel speck at 0.7: only a minimum area of 4+ pixels clears it.
            case(0, p(0.9), |i| if i < 3 { 0.7 } else { 0.0 }),
            // A faint nerve of 20 pixels at 0.35: the threshold must stay below 0.35.
            case(20, p(0.9), |i| if i < 20 { 0.35 } else { 0.05 }),
            // A 10-pixel nerve at 0.8 with a 0.2 halo of 10 pixels: the threshold must be ≥ 0.2.
            case(10, p(0.9), |i| match i {
                0..10 => 0.8,
                10..20 => 0.2,
                _ => 0.0,
            }),
        ];
        if presence {
            // Empty, with a large confident blob the presence head doubts (0.3) ...
            cases.push(case(0, p(0.3), |i| if i < 30 { 0.9 } else { 0.0 }));
            // ... and a real nerve it is less sure of (0.45): 0.3 < presence threshold ≤ 0.45.
            cases.push(case(15, p(0.45), |i| if i < 15 { 0.9 } else { 0.0 }));
        }
        cases
    }

    #[test]
    fn search_finds_the_optimum_of_a_hand_made_set() {
        let start = PostProcess {
            threshold: 0.5,
            min_area_share: 0.0,
            presence_threshold: None,
        };
        let cases = hand_made(false);
        // Untuned: the speck scores 0, the faint nerve 0, the haloed one 1 → 1/3.
        let t = search(&cases, start);
        assert!((t.before - 1.0 / 3.0).abs() < 1e-12, "{t:?}");
        assert_eq!(t.after, 1.0, "{t:?}");
        // The first threshold (in grid order after the untuned 0.5) that keeps both nerves
        // whole, and the first minimum area above 3 of 100 pixels.
        assert!((t.post.threshold - 0.2).abs() < 1e-6, "{t:?}");
        assert_eq!(t.post.min_area_share, 0.04);
        assert_eq!(t.post.presence_threshold, None);
        assert_eq!(score(&cases, &t.post), t.after);
    }

    #[test]
    fn search_tunes_the_presence_threshold_with_a_presence_head() {
        let start = PostProcess {
            threshold: 0.5,
            min_area_share: 0.0,
            presence_threshold: Some(0.5),
        };
        let cases = hand_made(true);
        let t = search(&cases, start);
        // Untuned, the real nerve at presence 0.45 is emptied and the doubted blob too:
        // speck 0, faint 0, haloed 1, blob 1, doubted nerve 0 → 2/5.
        assert!((t.before - 0.4).abs() < 1e-12, "{t:?}");
        assert_eq!(t.after, 1.0, "{t:?}");
        let p = t.post.presence_threshold.unwrap();
        assert!(p > 0.3 && p <= 0.45, "{t:?}");
        // Exhaustive: no candidate of the grid scores higher.
        for threshold in thresholds() {
            for &min_area_share in &MIN_AREA_SHARES {
                for presence_threshold in presence_thresholds() {
                    let post = PostProcess {
                        threshold,
                        min_area_share,
                        presence_threshold: Some(presence_threshold),
                    };
                    assert!(score(&cases, &post) <= t.after);
                }
            }
        }
    }

    #[test]
    fn ties_keep_the_untuned_values_and_score_matches_the_mask_rule() {
        let start = PostProcess {
            threshold: 0.5,
            min_area_share: 0.0,
            presence_threshold: None,
        };
        // Already perfect: nothing to gain, nothing changes.
        let cases = vec![case(10, None, |i| if i < 10 { 0.9 } else { 0.1 })];
        let t = search(&cases, start);
        assert_eq!((t.before, t.after, t.post), (1.0, 1.0, start));
        // `score` agrees with masking by `PostProcess::mask` and counting Dice by hand.
        let post = PostProcess {
            threshold: 0.3,
            min_area_share: 0.04,
            presence_threshold: Some(0.5),
        };
        let cases = hand_made(true);
        let by_hand: f64 = cases
            .iter()
            .map(|c| {
                let m = post.mask(&c.probability, c.presence);
                let (p, t, o) = m
                    .iter()
                    .zip(&c.truth)
                    .fold((0, 0, 0), |(p, t, o), (&m, &g)| {
                        (p + m as usize, t + g as usize, o + (m & g) as usize)
                    });
                if p + t == 0 {
                    1.0
                } else {
                    2.0 * o as f64 / (p + t) as f64
                }
            })
            .sum::<f64>()
            / cases.len() as f64;
        assert!((score(&cases, &post) - by_hand).abs() < 1e-12);
    }
}
