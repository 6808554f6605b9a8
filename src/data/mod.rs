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
    pub fn has_object(&self) -> bool {
        self.mask.contains(&1)
    }
}

/// A loaded dataset with its split.
#[derive(Debug)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
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
    pub height: usize,
    pub width: usize,
}

/// What a dataset holds, found without decoding any image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    pub images: usize,
    pub subjects: usize,
}

/// Lists the dataset a run config describes — the checks `load` makes before decoding (the
/// path exists and holds the layout, every image has its mask, the validation subjects exist)
/// at the cost of a directory listing. `validate` and the planner use it.
pub fn survey(config: &DataConfig) -> anyhow::Result<Survey> {
    let (images, subjects): (usize, BTreeSet<u32>) = match config.source {
        DataSource::Synthetic => {
            let count = config.limit.map_or(config.count, |l| l.min(config.count));
            let subjects = config.subjects.min(count) as u32;
            return Ok(Survey {
                images: count,
                subjects: subjects as usize,
            });
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
    if let Some(chosen) = &config.val_subjects {
        let all: Vec<u32> = subjects.iter().copied().collect();
        check_subjects_exist(chosen, &all)?;
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
            synthetic::generate(count, subjects, h, w, config.seed)
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
            eprintln!(
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
    let (train, val, val_subjects) = split(&samples, config)?;
    let subjects: BTreeSet<u32> = samples.iter().map(|s| s.subject).collect();
    let empty = samples.iter().filter(|s| !s.has_object()).count();
    let info = DatasetInfo {
        source: format!("{:?}", config.source).to_lowercase(),
        images: samples.len(),
        subjects: subjects.len(),
        empty_mask_share: empty as f64 / samples.len().max(1) as f64,
        train_images: train.len(),
        val_images: val.len(),
        val_subjects,
        height: h,
        width: w,
    };
    Ok(Dataset {
        samples,
        train,
        val,
        info,
    })
}

/// Sort key that orders `2_10` after `2_9`.
pub fn natural_key(id: &str) -> Vec<(u64, String)> {
    id.split('_')
        .map(|part| match part.parse::<u64>() {
            Ok(n) => (n, String::new()),
            Err(_) => (u64::MAX, part.to_string()),
        })
        .collect()
}

/// Splits by subject: no subject has images on both sides.
pub fn split(
    samples: &[Sample],
    config: &DataConfig,
) -> anyhow::Result<(Vec<usize>, Vec<usize>, Vec<u32>)> {
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
    let val_subjects: Vec<u32> = match &config.val_subjects {
        Some(chosen) => {
            check_subjects_exist(chosen, &subjects)?;
            if chosen.iter().collect::<BTreeSet<_>>().len() >= subjects.len() {
                anyhow::bail!(
                    "data.val_subjects takes every subject: the training split would be empty"
                );
            }
            chosen.clone()
        }
        None => {
            let mut shuffled = subjects.clone();
            let mut rng = StdRng::seed_from_u64(config.seed ^ SPLIT_SALT);
            shuffled.shuffle(&mut rng);
            let n = ((subjects.len() as f64 * config.val_fraction).round() as usize)
                .clamp(1, subjects.len() - 1);
            let mut chosen = shuffled[..n].to_vec();
            chosen.sort();
            chosen
        }
    };
    let (val, train): (Vec<usize>, Vec<usize>) =
        (0..samples.len()).partition(|&i| val_subjects.contains(&samples[i].subject));
    if val.is_empty() || train.is_empty() {
        anyhow::bail!(
            "the split is empty ({} training and {} validation images)",
            train.len(),
            val.len()
        );
    }
    Ok((train, val, val_subjects))
}

/// `data.val_subjects` must name subjects that have images.
fn check_subjects_exist(chosen: &[u32], subjects: &[u32]) -> anyhow::Result<()> {
    let missing: Vec<String> = chosen
        .iter()
        .filter(|s| !subjects.contains(s))
        .map(|s| s.to_string())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "data.val_subjects names subject(s) {} that have no images (subjects present: {})",
            missing.join(", "),
            summarize_ids(subjects)
        );
    }
    Ok(())
}

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
pub fn standardize(image: &[f32]) -> Vec<f32> {
    let n = image.len().max(1) as f32;
    let mean = image.iter().sum::<f32>() / n;
    let var = image.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
    let std = var.sqrt().max(1e-6);
    image.iter().map(|v| (v - mean) / std).collect()
}

/// A batch on the device.
pub struct Batch<B: Backend> {
    pub images: Tensor<B, 4>, // [b, 1, h, w], standardized
    pub masks: Tensor<B, 4>,  // [b, 1, h, w], 0/1
}

/// Builds a batch from `(image, mask)` pairs of equal size.
pub fn make_batch<B: Backend>(
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
            val_subjects: None,
            limit: None,
            seed: 3,
            count: 80,
            subjects: 8,
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

    #[test]
    fn standardize_gives_zero_mean_unit_variance() {
        let s = standardize(&[0.0, 1.0, 2.0, 3.0]);
        let mean: f32 = s.iter().sum::<f32>() / 4.0;
        let var: f32 = s.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    }
}
