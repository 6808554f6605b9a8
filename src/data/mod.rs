//! Datasets: the embedded synthetic default, the Kaggle layout and image/mask folders; the
//! subject-wise split; batches as tensors.

pub mod augment;
pub mod files;
pub mod folder;
pub mod kaggle;
pub mod synthetic;
pub mod weights;

use std::collections::BTreeSet;

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::config::{DataConfig, DataSource};

/// One image with its mask, at the training size.
#[derive(Debug, Clone)]
pub struct Sample {
    /// File stem (`3_17`) or synthetic id.
    pub id: String,
    pub subject: u32,
    pub height: usize,
    pub width: usize,
    /// Grey values in [0, 1], row-major.
    pub image: Vec<f32>,
    /// 0/1, row-major.
    pub mask: Vec<u8>,
}

impl Sample {
    pub(crate) fn has_object(&self) -> bool {
        self.mask.contains(&1)
    }
}

/// A loaded dataset with its split.
#[derive(Debug)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    /// Held out of training and validation; scored once after training (empty: no test split).
    pub test: Vec<usize>,
    pub info: DatasetInfo,
}

/// What the manifest and the report record about the data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatasetInfo {
    pub source: String,
    pub images: usize,
    pub subjects: usize,
    pub empty_mask_share: f64,
    pub train_images: usize,
    pub val_images: usize,
    pub val_subjects: Vec<u32>,
    #[serde(default)]
    pub test_images: usize,
    #[serde(default)]
    pub test_subjects: Vec<u32>,
    /// Validation and test images whose mask is empty: what predicting nothing scores there
    /// (absent in records written before they were counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_empty_masks: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_empty_masks: Option<usize>,
    pub height: usize,
    pub width: usize,
}

/// How many of the images at `indices` have an empty mask.
fn count_empty(samples: &[Sample], indices: &[usize]) -> usize {
    indices
        .iter()
        .filter(|&&i| !samples[i].has_object())
        .count()
}

/// What a dataset holds, found without decoding any image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Survey {
    pub images: usize,
    pub subjects: usize,
}

/// Lists the dataset a run config describes — the checks `load` makes before decoding (the
/// path exists and holds the layout, every image has its mask, the validation subjects exist)
/// at the cost of a directory listing. `validate` and the planner use it.
pub(crate) fn survey(config: &DataConfig) -> anyhow::Result<Survey> {
    let (images, subjects): (usize, BTreeSet<u32>) = match config.source {
        DataSource::Synthetic => {
            let count = config.limit.map_or(config.count, |l| l.min(config.count));
            let per_subject = count.div_ceil(config.subjects.min(count));
            (
                count,
                (0..count).map(|i| (i / per_subject) as u32 + 1).collect(),
            )
        }
        DataSource::Kaggle | DataSource::Folder => {
            let dir = config.path.as_deref().expect("validated: path is set");
            let pairs = match config.source {
                DataSource::Kaggle => kaggle::list(dir)?,
                _ => folder::list(dir)?,
            };
            let n = config.limit.map_or(pairs.len(), |l| l.min(pairs.len()));
            (n, pairs.iter().map(|p| p.subject).collect())
        }
    };
    if subjects.len() < 2 {
        anyhow::bail!(
            "the dataset has {} subject(s); a subject-wise split needs at least 2",
            subjects.len()
        );
    }
    let all: Vec<u32> = subjects.iter().copied().collect();
    if let Some(chosen) = &config.val_subjects {
        check_subjects_exist("data.val_subjects", chosen, &all)?;
    }
    if let Some(chosen) = &config.test_subjects {
        check_subjects_exist("data.test_subjects", chosen, &all)?;
    }
    if let Some(folds) = config.folds {
        fold_subjects(
            &all,
            &choose_test_subjects(&all, config)?,
            folds,
            config.seed,
        )?;
    }
    Ok(Survey {
        images,
        subjects: subjects.len(),
    })
}

/// Loads the dataset a run config describes.
pub fn load(config: &DataConfig) -> anyhow::Result<Dataset> {
    let [h, w] = config.size;
    let mut samples = match config.source {
        DataSource::Synthetic => {
            let count = config.limit.map_or(config.count, |l| l.min(config.count));
            let subjects = config.subjects.min(count);
            synthetic::generate_preset(config.difficulty, count, subjects, h, w, config.seed)
        }
        DataSource::Kaggle | DataSource::Folder => {
            let dir = config.path.as_deref().expect("validated: path is set");
            let mut pairs = match config.source {
                DataSource::Kaggle => kaggle::list(dir)?,
                _ => folder::list(dir)?,
            };
            // Cap before decoding: a limit should also save the decoding time.
            if let Some(limit) = config.limit.filter(|&l| l < pairs.len()) {
                pairs.shuffle(&mut StdRng::seed_from_u64(config.seed ^ LIMIT_SALT));
                pairs.truncate(limit);
                pairs.sort_by_key(|a| natural_key(&a.id));
            }
            let stats = files::LoadStats::default();
            let cache = files::cache_dir();
            let samples = files::load_pairs(&pairs, [h, w], &cache, &stats)?;
            let (decoded, cached) = (
                stats.decoded.load(std::sync::atomic::Ordering::Relaxed),
                stats.cached.load(std::sync::atomic::Ordering::Relaxed),
            );
            crate::info!(
                "data: {} images from {} ({decoded} decoded, {cached} from the cache in {})",
                samples.len(),
                dir.display(),
                cache.display()
            );
            samples
        }
    };
    if let Some(limit) = config.limit
        && samples.len() > limit
    {
        let mut rng = StdRng::seed_from_u64(config.seed ^ LIMIT_SALT);
        samples.shuffle(&mut rng);
        samples.truncate(limit);
        samples.sort_by_key(|a| natural_key(&a.id));
    }
    let Split {
        train,
        val,
        test,
        val_subjects,
        test_subjects,
    } = split(&samples, config)?;
    let subjects: BTreeSet<u32> = samples.iter().map(|s| s.subject).collect();
    let empty = samples.iter().filter(|s| !s.has_object()).count();
    let info = DatasetInfo {
        source: config.source_label(),
        images: samples.len(),
        subjects: subjects.len(),
        empty_mask_share: empty as f64 / samples.len().max(1) as f64,
        train_images: train.len(),
        val_images: val.len(),
        val_subjects,
        test_images: test.len(),
        test_subjects,
        val_empty_masks: Some(count_empty(&samples, &val)),
        test_empty_masks: Some(count_empty(&samples, &test)),
        height: h,
        width: w,
    };
    Ok(Dataset {
        samples,
        train,
        val,
        test,
        info,
    })
}

/// Sort key that orders `2_10` after `2_9`.
fn natural_key(id: &str) -> Vec<(u64, String)> {
    id.split('_')
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (u64::MAX, part.to_string()),
        })
        .collect()
}

/// Sample indices and subjects of each side of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    pub val_subjects: Vec<u32>,
    pub test_subjects: Vec<u32>,
}

/// Splits by subject into training, validation and (optionally) test: no subject has images
/// on two sides. Explicit subject lists are taken as given; the test subjects are drawn first
/// (from those not named for validation), then the validation subjects from the rest, so a
/// study without a test split keeps the validation subjects it always had.
pub fn split(samples: &[Sample], config: &DataConfig) -> anyhow::Result<Split> {
    let subjects: Vec<u32> = samples
        .iter()
        .map(|s| s.subject)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if subjects.len() < 2 {
        anyhow::bail!(
            "the dataset has {} subject(s); a subject-wise split needs at least 2",
            subjects.len()
        );
    }
    let test_subjects = choose_test_subjects(&subjects, config)?;
    let val_subjects = choose_val_subjects(&subjects, &test_subjects, config)?;
    let side = |chosen: &[u32]| -> Vec<usize> {
        (0..samples.len())
            .filter(|&i| chosen.contains(&samples[i].subject))
            .collect()
    };
    let (val, test) = (side(&val_subjects), side(&test_subjects));
    let train: Vec<usize> = (0..samples.len())
        .filter(|&i| {
            let s = samples[i].subject;
            !val_subjects.contains(&s) && !test_subjects.contains(&s)
        })
        .collect();
    if val.is_empty() || train.is_empty() {
        anyhow::bail!(
            "the split is empty ({} training and {} validation images)",
            train.len(),
            val.len()
        );
    }
    Ok(Split {
        train,
        val,
        test,
        val_subjects,
        test_subjects,
    })
}

/// `data.test_subjects`, or a seeded `data.test_fraction` of the subjects not named for
/// validation (none when it is 0); at least two subjects stay for training and validation.
fn choose_test_subjects(subjects: &[u32], config: &DataConfig) -> anyhow::Result<Vec<u32>> {
    if let Some(chosen) = &config.test_subjects {
        check_subjects_exist("data.test_subjects", chosen, subjects)?;
        if let Some(val) = &config.val_subjects {
            let shared: Vec<String> = chosen
                .iter()
                .filter(|s| val.contains(s))
                .map(|s| s.to_string())
                .collect();
            if !shared.is_empty() {
                anyhow::bail!(
                    "data.val_subjects and data.test_subjects share subject(s) {}",
                    shared.join(", ")
                );
            }
        }
        let mut chosen = chosen.clone();
        chosen.sort_unstable();
        chosen.dedup();
        if chosen.len() + 2 > subjects.len() {
            anyhow::bail!(
                "data.test_subjects takes {} of {} subjects: training and validation need at least one each",
                chosen.len(),
                subjects.len()
            );
        }
        return Ok(chosen);
    }
    let Some(fraction) = config.test_fraction else {
        return Ok(Vec::new());
    };
    let mut free: Vec<u32> = subjects
        .iter()
        .copied()
        .filter(|s| config.val_subjects.as_ref().is_none_or(|v| !v.contains(s)))
        .collect();
    free.shuffle(&mut StdRng::seed_from_u64(config.seed ^ TEST_SALT));
    // Room for one training subject, and one validation subject unless they are named.
    let keep = if config.val_subjects.is_some() { 1 } else { 2 };
    if free.len() <= keep {
        anyhow::bail!(
            "data.test_fraction = {fraction} leaves no subject for the test split ({} subjects)",
            subjects.len()
        );
    }
    let n = ((subjects.len() as f64 * fraction).round() as usize).clamp(1, free.len() - keep);
    let mut chosen = free[..n].to_vec();
    chosen.sort_unstable();
    Ok(chosen)
}

/// The subjects each fold of a `folds`-fold cross-validation validates on: the subjects
/// outside the test split, shuffled with the data seed (so every training seed sees the same
/// folds) and dealt out in turn — every subject lands in exactly one fold, and fold sizes
/// differ by at most one subject.
fn fold_subjects(
    subjects: &[u32],
    test: &[u32],
    folds: usize,
    data_seed: u64,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let mut free: Vec<u32> = subjects
        .iter()
        .copied()
        .filter(|s| !test.contains(s))
        .collect();
    if free.len() < folds {
        anyhow::bail!(
            "data.folds = {folds} needs at least {folds} subjects outside the test split, one per \
             fold; the dataset has {} ({} held out for testing)",
            free.len(),
            test.len()
        );
    }
    free.shuffle(&mut StdRng::seed_from_u64(data_seed ^ FOLD_SALT));
    let mut groups = vec![Vec::new(); folds];
    for (i, s) in free.into_iter().enumerate() {
        groups[i % folds].push(s);
    }
    groups.iter_mut().for_each(|g| g.sort_unstable());
    Ok(groups)
}

/// `data.val_subjects`, the fold's share under cross-validation, or a seeded
/// `data.val_fraction` of the subjects outside the test split.
fn choose_val_subjects(
    subjects: &[u32],
    test: &[u32],
    config: &DataConfig,
) -> anyhow::Result<Vec<u32>> {
    if let Some(folds) = config.folds {
        let mut groups = fold_subjects(subjects, test, folds, config.seed)?;
        return Ok(groups.swap_remove(config.fold.unwrap_or(0)));
    }
    if let Some(chosen) = &config.val_subjects {
        check_subjects_exist("data.val_subjects", chosen, subjects)?;
        if chosen.iter().collect::<BTreeSet<_>>().len() + test.len() >= subjects.len() {
            anyhow::bail!(
                "data.val_subjects takes every subject: the training split would be empty"
            );
        }
        return Ok(chosen.clone());
    }
    let mut shuffled: Vec<u32> = subjects
        .iter()
        .copied()
        .filter(|s| !test.contains(s))
        .collect();
    shuffled.shuffle(&mut StdRng::seed_from_u64(config.seed ^ SPLIT_SALT));
    let n = ((subjects.len() as f64 * config.val_fraction).round() as usize)
        .clamp(1, shuffled.len() - 1);
    let mut chosen = shuffled[..n].to_vec();
    chosen.sort();
    Ok(chosen)
}

/// A subject list of the config (`key`) must name subjects that have images.
fn check_subjects_exist(key: &str, chosen: &[u32], subjects: &[u32]) -> anyhow::Result<()> {
    let missing: Vec<String> = chosen
        .iter()
        .filter(|s| !subjects.contains(s))
        .map(|s| s.to_string())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{key} names subject(s) {} that have no images (subjects present: {})",
            missing.join(", "),
            summarize_ids(subjects)
        );
    }
    Ok(())
}

/// Keeps the folds' random stream distinct from the validation split's.
const FOLD_SALT: u64 = 0xf0_1d5;

/// Keeps the test split's random stream distinct from the validation split's.
const TEST_SALT: u64 = 0x7e_5701;

/// Keeps the limit's random stream distinct from the split's and the generator's.
const LIMIT_SALT: u64 = 0x11_3177;

/// Keeps the split's random stream distinct from the generator's.
const SPLIT_SALT: u64 = 0x5_0117;

fn summarize_ids(ids: &[u32]) -> String {
    let shown: Vec<String> = ids.iter().take(12).map(|s| s.to_string()).collect();
    if ids.len() > 12 {
        format!("{} … ({} in all)", shown.join(", "), ids.len())
    } else {
        shown.join(", ")
    }
}

/// Per-image standardisation (zero mean, unit variance): needs no dataset statistics, so a
/// checkpoint predicts on new images without them.
pub(crate) fn standardize(image: &[f32]) -> Vec<f32> {
    let n = image.len().max(1) as f32;
    let mean = image.iter().sum::<f32>() / n;
    let var = image.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
    let std = var.sqrt().max(1e-6);
    image.iter().map(|v| (v - mean) / std).collect()
}

/// A batch on the device.
pub(crate) struct Batch<B: Backend> {
    pub images: Tensor<B, 4>, // [b, 1, h, w], standardized
    pub masks: Tensor<B, 4>,  // [b, 1, h, w], 0/1
}

/// Builds a batch from `(image, mask)` pairs of equal size.
pub(crate) fn make_batch<B: Backend>(
    items: &[(Vec<f32>, Vec<u8>)],
    height: usize,
    width: usize,
    device: &B::Device,
) -> Batch<B> {
    let b = items.len();
    let mut images = Vec::with_capacity(b * height * width);
    let mut masks = Vec::with_capacity(b * height * width);
    for (image, mask) in items {
        images.extend(standardize(image));
        masks.extend(mask.iter().map(|&m| m as f32));
    }
    let images = Tensor::<B, 4>::from_data(TensorData::new(images, [b, 1, height, width]), device);
    let masks = Tensor::<B, 4>::from_data(TensorData::new(masks, [b, 1, height, width]), device);
    Batch { images, masks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DataSource;

    fn config() -> DataConfig {
        DataConfig {
            source: DataSource::Synthetic,
            path: None,
            size: [32, 32],
            val_fraction: 0.25,
            seed: 3,
            count: 80,
            subjects: 8,
            ..DataConfig::default()
        }
    }

    #[test]
    fn split_has_no_subject_on_both_sides() {
        let ds = load(&config()).unwrap();
        let train: BTreeSet<u32> = ds.train.iter().map(|&i| ds.samples[i].subject).collect();
        let val: BTreeSet<u32> = ds.val.iter().map(|&i| ds.samples[i].subject).collect();
        assert!(train.is_disjoint(&val));
        assert_eq!(val.len(), 2);
        assert_eq!(ds.train.len() + ds.val.len(), 80);
    }

    #[test]
    fn explicit_val_subjects_and_errors() {
        let mut c = config();
        c.val_subjects = Some(vec![3, 5]);
        let ds = load(&c).unwrap();
        assert_eq!(ds.info.val_subjects, vec![3, 5]);
        assert!(
            ds.val
                .iter()
                .all(|&i| [3, 5].contains(&ds.samples[i].subject))
        );
        c.val_subjects = Some(vec![99]);
        let err = load(&c).unwrap_err().to_string();
        assert!(err.contains("99"), "{err}");
        c.val_subjects = Some((1..=8).collect());
        assert!(load(&c).unwrap_err().to_string().contains("empty"));
    }

    fn subjects_of(ds: &Dataset, side: &[usize]) -> BTreeSet<u32> {
        side.iter().map(|&i| ds.samples[i].subject).collect()
    }

    #[test]
    fn a_test_split_shares_no_subject_and_keeps_the_split_without_one() {
        let mut c = config();
        let plain = load(&c).unwrap();
        assert!(plain.test.is_empty() && plain.info.test_subjects.is_empty());
        c.test_fraction = Some(0.25);
        let ds = load(&c).unwrap();
        let (train, val, test) = (
            subjects_of(&ds, &ds.train),
            subjects_of(&ds, &ds.val),
            subjects_of(&ds, &ds.test),
        );
        // 8 subjects: round(8 · 0.25) = 2 for test, then 2 for validation, 4 for training.
        assert_eq!((train.len(), val.len(), test.len()), (4, 2, 2));
        assert!(train.is_disjoint(&val) && train.is_disjoint(&test) && val.is_disjoint(&test));
        assert_eq!(ds.train.len() + ds.val.len() + ds.test.len(), 80);
        assert_eq!(
            ds.info.test_subjects,
            test.iter().copied().collect::<Vec<_>>()
        );
        assert_eq!(ds.info.test_images, ds.test.len());
        // Seeded: the same file gives the same split.
        assert_eq!(load(&c).unwrap().info.test_subjects, ds.info.test_subjects);
        // Named validation subjects are never drawn for the test split.
        c.val_subjects = Some(ds.info.test_subjects.clone());
        let named = load(&c).unwrap();
        assert!(
            named
                .info
                .test_subjects
                .iter()
                .all(|s| !named.info.val_subjects.contains(s))
        );
        assert_eq!(named.info.val_subjects, ds.info.test_subjects);
    }

    #[test]
    fn folds_validate_every_subject_once_and_hold_the_test_split_out_of_all() {
        for (folds, test_fraction) in [(3, Some(0.25)), (4, None), (2, Some(0.4))] {
            let mut c = config();
            c.folds = Some(folds);
            c.test_fraction = test_fraction;
            let all: BTreeSet<u32> = (1..=8).collect();
            let mut validated: Vec<u32> = Vec::new();
            let mut tests = BTreeSet::new();
            for fold in 0..folds {
                c.fold = Some(fold);
                let ds = load(&c).unwrap();
                let (train, val, test) = (
                    subjects_of(&ds, &ds.train),
                    subjects_of(&ds, &ds.val),
                    subjects_of(&ds, &ds.test),
                );
                assert!(train.is_disjoint(&val) && train.is_disjoint(&test));
                assert!(val.is_disjoint(&test));
                let union: BTreeSet<u32> = train.union(&val).chain(&test).copied().collect();
                assert_eq!(union, all, "fold {fold} of {folds}");
                assert_eq!(
                    ds.info.val_subjects,
                    val.iter().copied().collect::<Vec<_>>()
                );
                validated.extend(val);
                tests.insert(ds.info.test_subjects.clone());
            }
            // One test split for every fold, and each other subject validated exactly once.
            assert_eq!(tests.len(), 1);
            let test: Vec<u32> = tests.into_iter().next().unwrap();
            validated.sort_unstable();
            let others: Vec<u32> = all.iter().copied().filter(|s| !test.contains(s)).collect();
            assert_eq!(validated, others, "{folds} folds");
        }
    }

    #[test]
    fn fold_sizes_differ_by_at_most_one_and_too_many_folds_is_an_error() {
        let subjects: Vec<u32> = (0..10).collect();
        let groups = fold_subjects(&subjects, &[4], 4, 7).unwrap();
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 2, 2, 2]);
        assert!(groups.iter().all(|g| !g.contains(&4)));
        // The folds follow the data seed, not the training seed.
        assert_eq!(groups, fold_subjects(&subjects, &[4], 4, 7).unwrap());
        assert_ne!(groups, fold_subjects(&subjects, &[4], 4, 8).unwrap());
        let mut c = config();
        c.folds = Some(7);
        c.fold = Some(0);
        c.test_fraction = Some(0.25);
        let message = "data.folds = 7 needs at least 7 subjects outside the test split, one per \
                       fold; the dataset has 6 (2 held out for testing)";
        assert_eq!(load(&c).unwrap_err().to_string(), message);
        assert_eq!(survey(&c).unwrap_err().to_string(), message);
    }

    #[test]
    fn explicit_test_subjects_and_errors() {
        let mut c = config();
        c.test_subjects = Some(vec![2, 7]);
        let ds = load(&c).unwrap();
        assert_eq!(subjects_of(&ds, &ds.test), BTreeSet::from([2, 7]));
        assert!(!ds.info.val_subjects.contains(&2) && !ds.info.val_subjects.contains(&7));
        c.val_subjects = Some(vec![7, 3]);
        assert_eq!(
            load(&c).unwrap_err().to_string(),
            "data.val_subjects and data.test_subjects share subject(s) 7"
        );
        c.val_subjects = None;
        c.test_subjects = Some(vec![42]);
        let err = load(&c).unwrap_err().to_string();
        assert!(
            err.starts_with("data.test_subjects names subject(s) 42 that have no images"),
            "{err}"
        );
        c.test_subjects = Some((1..=7).collect());
        assert_eq!(
            load(&c).unwrap_err().to_string(),
            "data.test_subjects takes 7 of 8 subjects: training and validation need at least one each"
        );
    }

    #[test]
    fn standardize_gives_zero_mean_unit_variance() {
        let s = standardize(&[0.0, 1.0, 2.0, 3.0]);
        let mean: f32 = s.iter().sum::<f32>() / 4.0;
        let var: f32 = s.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
}
