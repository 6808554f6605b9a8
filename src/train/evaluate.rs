//! Evaluation: a network's predictions of the validation or test images, scored as Kaggle
//! scored them (mean per-image Dice, empty/empty = 1) under a post-processing rule — every
//! epoch's validation, the test score of the chosen checkpoint, and the cases tuning searches.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use burn::prelude::*;

use super::loss::{self, with_presence};
use crate::config::{LossKind, Padding, RunConfig};
use crate::data::{self, Dataset, weights};
use crate::kernels::KernelBackend;
use crate::metrics::{Confusion, MetricAccumulator, ScoreBreakdown, SegMetrics};
use crate::model::infer::{
    Probabilities, presence_probabilities, probabilities, probabilities_and_presence,
};
use crate::model::postprocess::PostProcess;
use crate::model::tile;
use crate::model::tta::{self, Tta};
use crate::model::{UNet, center_crop, output_size};

/// One validation image: the network's probability map, its presence probability (with a
/// presence head) and the true mask, at the same size.
#[derive(Debug, Clone)]
pub struct Case {
    pub probability: Vec<f32>,
    pub presence: Option<f64>,
    pub truth: Vec<u8>,
}

/// Border weight maps of a dataset's images for `weighted_ce`, kept per image index.
pub(super) struct WeightMaps {
    class_weights: [f32; 2],
    w0: f32,
    sigma: f32,
    cache: HashMap<usize, Vec<f32>>,
}

impl WeightMaps {
    /// Class weights come from the foreground share of the training masks.
    pub(super) fn new(ds: &Dataset, train: &crate::config::TrainConfig) -> Self {
        let (mut fg, mut total) = (0usize, 0usize);
        for &i in &ds.train {
            fg += ds.samples[i].mask.iter().filter(|&&m| m != 0).count();
            total += ds.samples[i].mask.len();
        }
        WeightMaps {
            class_weights: weights::class_weights(fg as f64 / total.max(1) as f64),
            w0: train.border_w0 as f32,
            sigma: train.border_sigma as f32,
            cache: HashMap::new(),
        }
    }

    /// The `[b, 1, oh, ow]` weights of a batch of `(image index, mask)`; `reuse` keeps maps of
    /// unaugmented masks for the next epoch.
    pub(super) fn batch<B: Backend>(
        &mut self,
        masks: &[(usize, &[u8])],
        reuse: bool,
        [h, w]: [usize; 2],
        [oh, ow]: [usize; 2],
        device: &B::Device,
    ) -> Tensor<B, 4> {
        let mut data = Vec::with_capacity(masks.len() * oh * ow);
        for &(index, mask) in masks {
            let compute =
                || weights::border_weight_map(mask, h, w, self.class_weights, self.w0, self.sigma);
            let map = if reuse {
                self.cache.entry(index).or_insert_with(compute).clone()
            } else {
                compute()
            };
            data.extend(crate::util::crop::centre(&map, [h, w], [oh, ow]));
        }
        Tensor::<B, 4>::from_data(TensorData::new(data, [masks.len(), 1, oh, ow]), device) // [b, 1, oh, ow]
    }
}

/// The result of one pass over the validation set.
pub(crate) struct Validation {
    pub loss: f64,
    pub metrics: SegMetrics,
    pub per_image: Vec<Confusion>,
    /// Foreground probabilities of the snapshot samples (whole images, `h × w` each).
    pub snapshot_probabilities: Vec<Vec<f32>>,
    /// True when every output value was exactly 0 (a dead ReLU head).
    pub all_zero_output: bool,
    pub load_seconds: f64,
    /// Every image's probabilities and presence, ungated ([`EvalSet::keep_cases`]).
    pub cases: Vec<Case>,
}

/// The whole-image probability maps of one chunk of standardised images under `tta`, from the
/// chunk's network outputs (`heads`), and with a presence head each image's presence
/// probability. With valid padding the network sees only the centre of each image: the whole
/// image is predicted by overlap-tile, as `predict` does, and its presence is that of its most
/// confident tile.
fn chunk_probabilities<B: KernelBackend>(
    model: &UNet<B>,
    cfg: &RunConfig,
    (output, presence): (Tensor<B, 4>, Option<Tensor<B, 2>>),
    standardized: &[Vec<f32>],
    tta: Tta,
    device: &B::Device,
    (oh, ow): (usize, usize),
) -> Result<Probabilities> {
    let ([h, w], kind) = (cfg.data.size, cfg.train.loss);
    let tile_presence = std::cell::RefCell::new(Vec::new());
    let mut tiled = |images: &[Vec<f32>]| -> Vec<Vec<f32>> {
        let align = 1 << (cfg.model.widths.len() - 1);
        let maps = images.iter().map(|x| {
            let mut most = 0f64;
            let map = tile::predict_tiled(x, [h, w], [h, w], [oh, ow], align, 4, &mut |tiles| {
                let (maps, p) = probabilities_and_presence(model, kind, tiles, h, w, device);
                most = p.into_iter().flatten().fold(most, f64::max);
                maps
            });
            tile_presence.borrow_mut().push(most);
            map
        });
        maps.collect()
    };
    let to_vec = |t: Tensor<B, 4>| {
        t.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read predictions: {e:?}"))
    };
    let (plain, presence): Probabilities = match cfg.model.padding {
        Padding::Same => {
            let prob = to_vec(loss::foreground_probability(kind, output))?; // [b, 1, h, w]
            let presence = presence.map(presence_probabilities).transpose()?; // [b]
            (prob.chunks(h * w).map(|c| c.to_vec()).collect(), presence)
        }
        Padding::Valid => {
            let plain = tiled(standardized);
            (plain, presence.map(|_| tile_presence.take()))
        }
    };
    let maps = match cfg.model.padding {
        Padding::Same => tta::apply(tta, plain, standardized, [h, w], &mut |images| {
            probabilities(model, kind, images, h, w, device)
        }),
        Padding::Valid => tta::apply(tta, plain, standardized, [h, w], &mut tiled),
    };
    Ok((maps, presence))
}

/// The network's output size for the configured input size (`[h, w]` itself with same
/// padding).
pub(crate) fn output_shape(cfg: &RunConfig) -> Result<(usize, usize)> {
    let ([h, w], levels) = (cfg.data.size, cfg.model.widths.len());
    Ok((
        output_size(h, levels, cfg.model.padding).map_err(anyhow::Error::msg)?,
        output_size(w, levels, cfg.model.padding).map_err(anyhow::Error::msg)?,
    ))
}

/// Scores `indices` of `ds` as the test score is scored — with `train.test_tta`, whole images,
/// no snapshots — under `post`; with `keep_cases`, every image's probabilities are returned
/// too. The test row, tuning and the tuned test score all go through it.
pub(crate) fn score_as_test<B: KernelBackend>(
    model: &UNet<B>,
    cfg: &RunConfig,
    ds: &Dataset,
    indices: &[usize],
    (post, keep_cases): (PostProcess, bool),
    device: &B::Device,
) -> Result<Validation> {
    evaluate(
        model,
        cfg,
        ds,
        EvalSet {
            indices,
            tta: cfg.train.test_tta,
            snapshot_idx: &[],
            post,
            keep_cases,
        },
        device,
        output_shape(cfg)?,
    )
}

/// Which images of a dataset to score, how, and whose probabilities to keep.
#[derive(Clone, Copy)]
pub(crate) struct EvalSet<'a> {
    /// The validation or the test split.
    pub indices: &'a [usize],
    pub tta: Tta,
    /// Images whose probability maps are returned (the snapshot samples).
    pub snapshot_idx: &'a [usize],
    /// How probabilities become masks.
    pub post: PostProcess,
    /// Return every image's probabilities (what tuning searches over).
    pub keep_cases: bool,
}

/// Predicts the images `indices` of `ds` (the validation or the test split) and scores them.
pub(crate) fn evaluate<B: KernelBackend>(
    model: &UNet<B>,
    cfg: &RunConfig,
    ds: &Dataset,
    EvalSet {
        indices,
        tta,
        snapshot_idx,
        post,
        keep_cases,
    }: EvalSet,
    device: &B::Device,
    (oh, ow): (usize, usize),
) -> Result<Validation> {
    let [h, w] = cfg.data.size;
    let kind = cfg.train.loss;
    let mut acc = MetricAccumulator::default();
    let mut loss_sum = 0.0;
    let mut snapshot = vec![Vec::new(); snapshot_idx.len()];
    let mut all_zero = true;
    let mut load_seconds = 0.0;
    let mut cases = Vec::new();
    let mut weight_maps = WeightMaps::new(ds, &cfg.train);
    for chunk in indices.chunks(cfg.train.batch_size.max(8)) {
        let t_load = Instant::now();
        let items: Vec<(Vec<f32>, Vec<u8>)> = chunk
            .iter()
            .map(|&i| (ds.samples[i].image.clone(), ds.samples[i].mask.clone()))
            .collect();
        let batch = data::make_batch::<B>(&items, h, w, device);
        let weights = (kind == LossKind::WeightedCe).then(|| {
            let masks: Vec<(usize, &[u8])> = chunk
                .iter()
                .zip(&items)
                .map(|(&i, (_, m))| (i, m.as_slice()))
                .collect();
            weight_maps.batch::<B>(&masks, true, [h, w], [oh, ow], device)
        });
        load_seconds += t_load.elapsed().as_secs_f64();
        let (output, presence) = model.forward_heads(batch.images); // [b, classes, oh, ow]
        if kind == LossKind::Mse && all_zero {
            all_zero = output.clone().abs().max().into_scalar().elem::<f32>() == 0.0;
        }
        let target = center_crop(batch.masks.clone(), oh, ow); // [b, 1, oh, ow]
        let seg = loss::loss(kind, output.clone(), target, weights);
        let l = with_presence(
            seg,
            presence.clone(),
            batch.masks,
            cfg.train.presence_weight,
        )
        .into_scalar()
        .elem::<f64>();
        loss_sum += l * chunk.len() as f64;
        let standardized: Vec<Vec<f32>> = items.iter().map(|(x, _)| data::standardize(x)).collect();
        let (probabilities, presence) = chunk_probabilities(
            model,
            cfg,
            (output, presence),
            &standardized,
            tta,
            device,
            (oh, ow),
        )?;
        for ((k, &i), p) in chunk.iter().enumerate().zip(probabilities) {
            let presence = presence.as_ref().map(|all| all[k]);
            let pred: Vec<bool> = post.mask(&p, presence).iter().map(|&m| m != 0).collect();
            acc.push(Confusion::of(&pred, &items[k].1));
            if let Some(pos) = snapshot_idx.iter().position(|&s| s == i) {
                // The picture shows what the presence head leaves of the map.
                snapshot[pos] = if post.absent(presence) {
                    vec![0.0; p.len()]
                } else {
                    p.clone()
                };
            }
            if keep_cases {
                cases.push(Case {
                    probability: p,
                    presence,
                    truth: items[k].1.clone(),
                });
            }
        }
    }
    Ok(Validation {
        loss: loss_sum / indices.len().max(1) as f64,
        metrics: acc.finish(),
        per_image: acc.per_image().to_vec(),
        snapshot_probabilities: snapshot,
        all_zero_output: kind == LossKind::Mse && all_zero,
        load_seconds,
        cases,
    })
}

/// The validation images' probabilities under `model`, with the test split's augmentation
/// (`train.test_tta`): tuned as it will be scored.
pub(crate) fn validation_cases<B: KernelBackend>(
    model: &UNet<B>,
    cfg: &RunConfig,
    ds: &Dataset,
    device: &B::Device,
) -> Result<Vec<Case>> {
    let untuned = (PostProcess::untuned(&cfg.model), true);
    Ok(score_as_test(model, cfg, ds, &ds.val, untuned, device)?.cases)
}

/// The Kaggle score of the test split under `post`, and what it is made of (none without a
/// test split).
pub(crate) fn test_score<B: KernelBackend>(
    model: &UNet<B>,
    cfg: &RunConfig,
    ds: &Dataset,
    post: PostProcess,
    device: &B::Device,
) -> Result<Option<(f64, ScoreBreakdown)>> {
    if ds.test.is_empty() {
        return Ok(None);
    }
    let scored = score_as_test(model, cfg, ds, &ds.test, (post, false), device)?;
    Ok(Some((
        scored.metrics.dice,
        crate::metrics::breakdown(&scored.per_image),
    )))
}
