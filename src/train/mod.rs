//! Training one run (a variant with one seed).
//!
//! A plain loop over Burn's optimizer API rather than burn-train's `SupervisedTraining`: every
//! epoch must also store prediction snapshots, append Parquet rows, write a resumable
//! checkpoint (model + optimizer + counters) and react to divergence and Ctrl-C, all in a fixed
//! order that keeps a `kill -9` at any instant recoverable. See docs/design.md.

pub mod evaluate;
pub mod loss;
pub mod optim;
pub mod progress;
pub mod tune;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::config::{LossKind, RunConfig};
use crate::data::augment;
use crate::data::{self, Dataset, make_batch};
use crate::kernels::KernelBackend;
use crate::metrics::{self, ScoreBreakdown, SegMetrics};
use crate::model::postprocess::PostProcess;
use crate::model::tta::Tta;
use crate::model::{UNet, center_crop};
use crate::track::checkpoint::{self, ResumeState};
use crate::track::manifest::{Divergence, TunedScore};
use crate::track::snapshots::{self, Snapshots};
use crate::track::tables::{PassTime, RowOf};
use crate::track::{BestSoFar, EpochRow, RunId, StepRow, Tracker, write_atomic};

use evaluate::{EvalSet, Validation, WeightMaps, evaluate, output_shape, score_as_test};
use loss::with_presence;
use optim::{AnyOptimizer, learning_rate, model_from_bytes, model_to_bytes};

/// Set by the Ctrl-C handler; the loop stops after the current step.
pub(crate) static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Reports progress to the terminal (or a log).
pub trait Progress {
    fn start(&mut self, run: &str, epochs: usize, steps_per_epoch: usize, first_epoch: usize);
    fn step(&mut self, epoch: usize, loss: f64, images_per_sec: f64);
    fn epoch(&mut self, summary: &EpochSummary);
    fn finish(&mut self, message: &str);
}

/// What one epoch produced, for progress output.
#[derive(Debug, Clone)]
pub struct EpochSummary {
    pub run: String,
    pub epoch: usize,
    pub epochs: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val: SegMetrics,
    pub images_per_sec: f64,
    pub seconds: f64,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum Ending {
    Completed,
    Diverged(Divergence),
    /// Stopped for a reason that is not divergence (e.g. a dead ReLU head).
    Failed(String),
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub ending: Ending,
    pub best: BestSoFar,
    pub final_dice: Option<f64>,
    /// The test split's scores of the checkpoint chosen on validation (a completed run with a
    /// test split only).
    pub test: Option<SegMetrics>,
    pub test_breakdown: Option<ScoreBreakdown>,
    /// Post-processing tuned after training (`train.tune`).
    pub tuned: Option<TunedScore>,
    pub snapshot_samples: Vec<String>,
    pub parameters: usize,
}

/// One run to train.
pub struct RunSpec<'a> {
    pub variant_name: &'a str,
    pub variant_dir: &'a Path,
    pub seed: u64,
    pub fold: Option<usize>,
    pub config: &'a RunConfig,
    pub config_hash: &'a str,
    pub dataset: &'a Dataset,
}

impl RunSpec<'_> {
    pub(crate) fn run_id(&self) -> RunId {
        RunId::new(self.seed, self.fold)
    }
}

/// Epochs in a row with an all-zero output after which an MSE/ReLU run is stopped.
const DEAD_HEAD_EPOCHS: usize = 3;

fn mix(seed: u64, salt: u64) -> u64 {
    // SplitMix64 finaliser: distinct, well-spread seeds per (run seed, epoch, ...).
    let mut z = seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Validation samples whose predictions are kept every epoch: a seeded pick, half with an
/// object and half without where the split allows.
fn pick_snapshot_samples(dataset: &Dataset, n: usize, seed: u64) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(mix(seed, 0x5a3b));
    let (mut with, mut without): (Vec<usize>, Vec<usize>) = dataset
        .val
        .iter()
        .partition(|&&i| dataset.samples[i].has_object());
    with.shuffle(&mut rng);
    without.shuffle(&mut rng);
    let want_with = n.div_ceil(2).min(with.len());
    let want_without = (n - want_with).min(without.len());
    let mut picked: Vec<usize> = with[..want_with].to_vec();
    picked.extend(&without[..want_without]);
    // Top up from either side if one was short.
    for &i in with[want_with..].iter().chain(&without[want_without..]) {
        if picked.len() >= n {
            break;
        }
        picked.push(i);
    }
    picked.sort();
    picked
}

/// Trains one run on the backend its config names (on GPU or adapter `device`), resuming from
/// its checkpoint when one exists.
pub fn train(
    spec: &RunSpec,
    tracker: &mut Tracker,
    device: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<RunOutcome> {
    let work = TrainOn {
        spec,
        tracker,
        progress,
    };
    crate::device::dispatch(spec.config.train.backend, device, work)
}

struct TrainOn<'a, 'b> {
    spec: &'a RunSpec<'b>,
    tracker: &'a mut Tracker,
    progress: &'a mut dyn Progress,
}

impl crate::device::OnDevice for TrainOn<'_, '_> {
    type Output = RunOutcome;

    fn run<B>(self, device: &B::Device) -> Result<RunOutcome>
    where
        B: AutodiffBackend + KernelBackend,
        B::InnerBackend: KernelBackend,
    {
        train_run::<B>(self.spec, self.tracker, device, self.progress)
    }
}

/// Trains one run on the autodiff backend `B`, resuming from its checkpoint when one exists.
///
/// Each epoch is train → validate → record → checkpoint → decide. Rows are flushed before the
/// checkpoint that marks the epoch done, so a crash in between redoes the epoch and never loses
/// or duplicates a row.
fn train_run<B: AutodiffBackend + KernelBackend>(
    spec: &RunSpec,
    tracker: &mut Tracker,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<RunOutcome>
where
    B::InnerBackend: KernelBackend,
{
    let (mut run, mut model) = Training::<B>::start(spec, tracker, device)?;
    let epochs = spec.config.train.epochs;
    progress.start(&run.name, epochs, run.steps_per_epoch, run.first_epoch);
    for epoch in run.first_epoch..=epochs {
        let epoch_start = Instant::now();
        let (trained_model, end) = run.train_epoch(model, spec, epoch, device, progress)?;
        model = trained_model;
        let trained = match end {
            EpochEnd::Trained(t) => t,
            EpochEnd::Stopped(ending) => {
                if matches!(ending, Ending::Diverged(_)) {
                    tracker.truncate_run(spec.variant_name, spec.seed, epoch - 1);
                }
                return run.stop(ending, &model, spec, tracker, device, progress);
            }
        };
        let t_val = Instant::now();
        let validation = evaluate::<B::InnerBackend>(
            &model.valid(),
            spec.config,
            spec.dataset,
            EvalSet {
                indices: &spec.dataset.val,
                tta: Tta::None,
                snapshot_idx: &run.snapshot_idx,
                post: PostProcess::untuned(&spec.config.model),
                keep_cases: false,
            },
            device,
            run.out_size,
        )?;
        let val_seconds = t_val.elapsed().as_secs_f64();
        run.record(spec, tracker, epoch, &trained, &validation, val_seconds)?;
        let model_bytes = run.checkpoint(&model, spec, tracker, epoch, &validation)?;
        progress.epoch(&EpochSummary {
            run: run.name.clone(),
            epoch,
            epochs,
            train_loss: trained.loss,
            val_loss: validation.loss,
            val: validation.metrics,
            images_per_sec: trained.images as f64 / trained.seconds.max(1e-9),
            seconds: epoch_start.elapsed().as_secs_f64(),
        });
        if let Some(ending) = run.decide(spec, epoch, &model_bytes, progress)? {
            return run.stop(ending, &model, spec, tracker, device, progress);
        }
    }
    run.finish(&model, spec, tracker, device, progress)
}

/// What one epoch's training produced.
struct Trained {
    loss: f64,
    images: usize,
    seconds: f64,
    load_seconds: f64,
    step_seconds: f64,
    steps: Vec<StepRow>,
}

enum EpochEnd {
    Trained(Trained),
    /// Diverged or interrupted in the middle of the epoch.
    Stopped(Ending),
}

/// A run in progress: its optimizer and the counters a checkpoint keeps. The model itself is
/// passed by value from step to step, so the optimizer can update its parameters in place.
struct Training<'a, B: AutodiffBackend + KernelBackend> {
    name: String,
    optim: AnyOptimizer<UNet<B>, B>,
    first_epoch: usize,
    global_step: usize,
    steps_per_epoch: usize,
    best: BestSoFar,
    final_dice: Option<f64>,
    test: Option<SegMetrics>,
    test_breakdown: Option<ScoreBreakdown>,
    tuned: Option<TunedScore>,
    dead_epochs: usize,
    parameters: usize,
    snapshot_idx: Vec<usize>,
    snapshot_ids: Vec<String>,
    weight_maps: WeightMaps,
    out_size: (usize, usize),
    ckpt_dir: std::path::PathBuf,
    snap_dir: std::path::PathBuf,
    dataset: &'a Dataset,
}

impl<'a, B: AutodiffBackend + KernelBackend> Training<'a, B>
where
    B::InnerBackend: KernelBackend,
{
    /// A fresh model, or the one of the last finished epoch; rows and snapshots after it
    /// (a half-finished epoch) are dropped, and the snapshot samples are stored.
    fn start(
        spec: &RunSpec<'a>,
        tracker: &mut Tracker,
        device: &B::Device,
    ) -> Result<(Self, UNet<B>)> {
        let cfg = spec.config;
        let [h, w] = cfg.data.size;
        let out_size = output_shape(cfg)?;
        B::seed(device, spec.seed);
        let model: UNet<B> = UNet::seeded(&cfg.model, cfg.train.loss, spec.seed, device)?;
        let parameters = model.num_params();
        let ds = spec.dataset;
        let snapshot_idx = pick_snapshot_samples(ds, cfg.report.samples, cfg.data.seed);
        let mut run = Training {
            name: format!("{} ({})", spec.variant_name, spec.run_id()),
            optim: AnyOptimizer::<UNet<B>, B>::new(&cfg.train),
            first_epoch: 1,
            global_step: 0,
            steps_per_epoch: ds.train.len().div_ceil(cfg.train.batch_size),
            best: BestSoFar::default(),
            final_dice: None,
            test: None,
            test_breakdown: None,
            tuned: None,
            dead_epochs: 0,
            parameters,
            snapshot_ids: snapshot_idx
                .iter()
                .map(|&i| ds.samples[i].id.clone())
                .collect(),
            snapshot_idx,
            weight_maps: WeightMaps::new(ds, &cfg.train),
            out_size,
            ckpt_dir: checkpoint::dir(spec.variant_dir, spec.run_id()),
            snap_dir: snapshots::dir(spec.variant_dir, spec.run_id()),
            dataset: ds,
        };
        let model = run.resume(model, spec, device)?;
        // Rows and snapshots after the checkpoint are from a half-finished epoch: redo them.
        tracker.truncate_run(spec.variant_name, spec.seed, run.first_epoch - 1);
        Snapshots::truncate(&run.snap_dir, run.first_epoch - 1);
        if run.first_epoch == 1 {
            let _ = std::fs::remove_file(checkpoint::best_path(spec.variant_dir, spec.run_id()));
        }
        run.store_snapshot_samples(h, w)?;
        Ok((run, model))
    }

    /// The model of the last finished epoch, with the optimizer state and counters, when a
    /// resume state of this config exists. A resume state that cannot be read or loaded (truncated, corrupt, of another network)
    /// is set aside with a warning and the run restarts from its first epoch: a damaged
    /// checkpoint never makes a run fail for good.
    fn resume(&mut self, model: UNet<B>, spec: &RunSpec, device: &B::Device) -> Result<UNet<B>> {
        let load = || {
            ResumeState::load(&self.ckpt_dir).and_then(|found| match found {
                Some((state, model_bytes, optim_bytes)) => {
                    if state.config_hash != spec.config_hash
                        || state.best.epochs_done > spec.config.train.epochs
                    {
                        return Ok(None);
                    }
                    let resumed = model_from_bytes(model.clone(), model_bytes, device)
                        .with_context(|| {
                            format!(
                                "cannot load {}",
                                self.ckpt_dir.join(&state.model_file).display()
                            )
                        })?;
                    let optim = AnyOptimizer::<UNet<B>, B>::new(&spec.config.train)
                        .load_bytes(optim_bytes, device)?;
                    Ok(Some((state, resumed, optim)))
                }
                None => Ok(None),
            })
        };
        // A damaged file can make the decoder panic rather than fail.
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(load))
            .unwrap_or_else(|panic| Err(anyhow::anyhow!(crate::util::panic_message(&*panic))));
        let (state, resumed, optim) = match loaded {
            Ok(Some(found)) => found,
            Ok(None) => {
                ResumeState::clear(&self.ckpt_dir);
                return Ok(model);
            }
            Err(e) => {
                eprintln!(
                    "warning: {}: the resume checkpoint in {} cannot be loaded ({e:#}); training \
                     this run again from its first epoch",
                    self.name,
                    self.ckpt_dir.display()
                );
                ResumeState::clear(&self.ckpt_dir);
                return Ok(model);
            }
        };
        let model = resumed;
        self.optim = optim;
        self.first_epoch = state.best.epochs_done + 1;
        self.global_step = state.global_step;
        self.best = state.best;
        self.dead_epochs = state.dead_epochs;
        Ok(model)
    }

    fn store_snapshot_samples(&self, h: usize, w: usize) -> Result<()> {
        if self.snapshot_idx.is_empty() {
            return Ok(());
        }
        let ds = self.dataset;
        let images: Vec<Vec<f32>> = self
            .snapshot_idx
            .iter()
            .map(|&i| ds.samples[i].image.clone())
            .collect();
        let truth: Vec<Vec<f32>> = self
            .snapshot_idx
            .iter()
            .map(|&i| ds.samples[i].mask.iter().map(|&m| m as f32).collect())
            .collect();
        snapshots::write_samples(&self.snap_dir, &images, &truth, h, w)
    }

    fn outcome(&self, ending: Ending) -> RunOutcome {
        RunOutcome {
            ending,
            best: self.best,
            final_dice: self.final_dice,
            test: self.test,
            test_breakdown: self.test_breakdown,
            tuned: self.tuned,
            snapshot_samples: self.snapshot_ids.clone(),
            parameters: self.parameters,
        }
    }

    /// The training items of one batch: augmented (seeded per seed, epoch and image) or as is.
    fn batch_items(
        &self,
        spec: &RunSpec,
        epoch: usize,
        batch_idx: &[usize],
    ) -> Vec<(Vec<f32>, Vec<u8>)> {
        let cfg = spec.config;
        let [h, w] = cfg.data.size;
        batch_idx
            .iter()
            .map(|&i| {
                let s = &self.dataset.samples[i];
                if cfg.augment.any() {
                    let mut rng =
                        StdRng::seed_from_u64(mix(spec.seed, (epoch as u64) << 32 | i as u64));
                    augment::apply(&cfg.augment, &s.image, &s.mask, h, w, &mut rng)
                } else {
                    (s.image.clone(), s.mask.clone())
                }
            })
            .collect()
    }

    /// A training batch, augmented as configured, with its border weights for `weighted_ce`.
    fn prepare_batch(
        &mut self,
        spec: &RunSpec,
        epoch: usize,
        batch_idx: &[usize],
        device: &B::Device,
    ) -> (data::Batch<B>, Option<Tensor<B, 4>>) {
        let cfg = spec.config;
        let [h, w] = cfg.data.size;
        let (oh, ow) = self.out_size;
        let items = self.batch_items(spec, epoch, batch_idx);
        let batch = make_batch::<B>(&items, h, w, device);
        let weights = (cfg.train.loss == LossKind::WeightedCe).then(|| {
            let masks: Vec<(usize, &[u8])> = batch_idx
                .iter()
                .zip(&items)
                .map(|(&i, (_, m))| (i, m.as_slice()))
                .collect();
            self.weight_maps
                .batch::<B>(&masks, !cfg.augment.any(), [h, w], [oh, ow], device)
        });
        (batch, weights)
    }

    /// One pass over the training split, in a seeded order; stops early on divergence or
    /// Ctrl-C.
    fn train_epoch(
        &mut self,
        mut model: UNet<B>,
        spec: &RunSpec,
        epoch: usize,
        device: &B::Device,
        progress: &mut dyn Progress,
    ) -> Result<(UNet<B>, EpochEnd)> {
        let cfg = spec.config;
        let train_cfg = &cfg.train;
        let (oh, ow) = self.out_size;
        let total_steps = self.steps_per_epoch * train_cfg.epochs;
        let epoch_start = Instant::now();
        B::seed(device, mix(spec.seed, epoch as u64));
        let mut order = self.dataset.train.clone();
        order.shuffle(&mut StdRng::seed_from_u64(mix(
            spec.seed,
            1_000_000 + epoch as u64,
        )));
        let mut t = Trained {
            loss: 0.0,
            images: 0,
            seconds: 0.0,
            load_seconds: 0.0,
            step_seconds: 0.0,
            steps: Vec::with_capacity(self.steps_per_epoch),
        };
        let mut loss_sum = 0.0;
        for (step_in_epoch, batch_idx) in order.chunks(train_cfg.batch_size).enumerate() {
            let t_load = Instant::now();
            let (batch, weights) = self.prepare_batch(spec, epoch, batch_idx, device);
            t.load_seconds += t_load.elapsed().as_secs_f64();

            let t_step = Instant::now();
            self.global_step += 1;
            let lr = learning_rate(train_cfg, epoch, self.global_step - 1, total_steps);
            let (output, presence) = model.forward_heads(batch.images); // [b, classes, oh, ow]
            let target = center_crop(batch.masks.clone(), oh, ow); // [b, 1, oh, ow]
            let seg = loss::loss(train_cfg.loss, output, target, weights);
            let loss = with_presence(seg, presence, batch.masks, train_cfg.presence_weight); // [1]
            let loss_value = loss.clone().into_scalar().elem::<f64>();
            if !loss_value.is_finite() || loss_value > train_cfg.divergence_threshold {
                progress.finish(&format!(
                    "{}: diverged at epoch {epoch}, step {} (loss {loss_value})",
                    self.name,
                    step_in_epoch + 1
                ));
                let d = Divergence {
                    epoch,
                    step: step_in_epoch + 1,
                    loss: loss_value.to_string(),
                };
                return Ok((model, EpochEnd::Stopped(Ending::Diverged(d))));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = self.optim.step(lr, model, grads);
            t.step_seconds += t_step.elapsed().as_secs_f64();

            loss_sum += loss_value * batch_idx.len() as f64;
            t.images += batch_idx.len();
            t.steps.push(StepRow {
                variant: spec.variant_name.to_string(),
                seed: spec.seed,
                fold: spec.fold,
                epoch,
                step: step_in_epoch + 1,
                global_step: self.global_step,
                loss: loss_value,
                lr,
            });
            progress.step(
                epoch,
                loss_value,
                t.images as f64 / epoch_start.elapsed().as_secs_f64(),
            );
            if INTERRUPTED.load(Ordering::SeqCst) {
                progress.finish(&format!(
                    "{}: interrupted in epoch {epoch}; the last finished epoch ({}) is saved",
                    self.name,
                    epoch - 1
                ));
                return Ok((model, EpochEnd::Stopped(Ending::Interrupted)));
            }
        }
        t.seconds = epoch_start.elapsed().as_secs_f64();
        t.loss = loss_sum / t.images.max(1) as f64;
        Ok((model, EpochEnd::Trained(t)))
    }

    /// The epoch's rows (training and validation) and prediction snapshots.
    fn record(
        &mut self,
        spec: &RunSpec,
        tracker: &mut Tracker,
        epoch: usize,
        trained: &Trained,
        validation: &Validation,
        val_seconds: f64,
    ) -> Result<()> {
        let cfg = spec.config;
        let total_steps = self.steps_per_epoch * cfg.train.epochs;
        let lr = learning_rate(
            &cfg.train,
            epoch,
            self.global_step.saturating_sub(1),
            total_steps,
        );
        let of = RowOf {
            variant: spec.variant_name,
            seed: spec.seed,
            fold: spec.fold,
            epoch,
        };
        let train_time = PassTime {
            seconds: trained.seconds,
            images: trained.images,
            load_seconds: trained.load_seconds,
        };
        tracker.epochs.push(EpochRow {
            // The training pass's step time is measured (the rest of it is bookkeeping).
            step_seconds: trained.step_seconds,
            ..EpochRow::from_metrics(of, "train", trained.loss, None, lr, train_time)
        });
        let val_time = PassTime {
            seconds: val_seconds,
            images: self.dataset.val.len(),
            load_seconds: validation.load_seconds,
        };
        let val = Some(validation.metrics);
        let val_row = EpochRow::from_metrics(of, "val", validation.loss, val, lr, val_time);
        tracker.epochs.push(val_row);
        tracker.steps.extend(trained.steps.iter().cloned());
        if !self.snapshot_idx.is_empty() {
            let [h, w] = cfg.data.size;
            snapshots::write_epoch(
                &self.snap_dir,
                epoch,
                &validation.snapshot_probabilities,
                h,
                w,
            )?;
        }
        Ok(())
    }

    /// The best checkpoint when the epoch is the best so far, the rows flushed, then the resume
    /// state that marks the epoch done. Returns the model's bytes.
    fn checkpoint(
        &mut self,
        model: &UNet<B>,
        spec: &RunSpec,
        tracker: &Tracker,
        epoch: usize,
        validation: &Validation,
    ) -> Result<Vec<u8>> {
        let dice = validation.metrics.dice;
        self.final_dice = Some(dice);
        let model_bytes = model_to_bytes::<B, _>(model)?;
        if (self.best).improve(epoch, dice, || metrics::breakdown(&validation.per_image)) {
            write_atomic(
                &checkpoint::best_path(spec.variant_dir, spec.run_id()),
                &model_bytes,
            )?;
        }
        self.dead_epochs = if validation.all_zero_output {
            self.dead_epochs + 1
        } else {
            0
        };
        // Rows first, then the checkpoint: a crash in between redoes this epoch, never loses it.
        tracker.flush()?;
        ResumeState {
            config_hash: spec.config_hash.to_string(),
            global_step: self.global_step,
            best: BestSoFar {
                epochs_done: epoch,
                ..self.best
            },
            dead_epochs: self.dead_epochs,
            model_file: String::new(),
            optim_file: String::new(),
        }
        .save(&self.ckpt_dir, &model_bytes, &self.optim.to_bytes()?)?;
        self.best.epochs_done = epoch;
        Ok(model_bytes)
    }

    /// Stop (a dead ReLU head) or go on; the last epoch also writes `last`.
    fn decide(
        &self,
        spec: &RunSpec,
        epoch: usize,
        model_bytes: &[u8],
        progress: &mut dyn Progress,
    ) -> Result<Option<Ending>> {
        let last = checkpoint::last_path(spec.variant_dir, spec.run_id());
        if spec.config.train.loss == LossKind::Mse && self.dead_epochs >= DEAD_HEAD_EPOCHS {
            let message = format!(
                "the ReLU output head is dead: every validation output was exactly 0 for {} epochs \
                 in a row, so the MSE gradient is zero and training cannot recover; try another seed, a lower \
                 learning rate, or train.loss = \"bce\"",
                self.dead_epochs
            );
            progress.finish(&format!("{}: stopped: {message}", self.name));
            write_atomic(&last, model_bytes)?;
            return Ok(Some(Ending::Failed(message)));
        }
        if epoch == spec.config.train.epochs {
            write_atomic(&last, model_bytes)?;
        }
        Ok(None)
    }

    /// A run that stopped early. One that failed or diverged is still a result of its recipe
    /// (intention to treat), so its best checkpoint, when it has one, is scored on the test split
    /// like a completed run's (untuned); an interrupted one is unfinished work.
    fn stop(
        mut self,
        ending: Ending,
        model: &UNet<B>,
        spec: &RunSpec,
        tracker: &mut Tracker,
        device: &B::Device,
        progress: &mut dyn Progress,
    ) -> Result<RunOutcome> {
        if matches!(ending, Ending::Diverged(_) | Ending::Failed(_)) {
            self.score_test(model, spec, tracker, device, progress, false)?;
        }
        Ok(self.outcome(ending))
    }

    /// The checkpoint chosen on validation, scored once on the test split: a `test` row at the
    /// best epoch (replacing one a crash may have left), flushed before the run is marked done;
    /// then tuned when `tune` and the config ask for it.
    fn score_test(
        &mut self,
        model: &UNet<B>,
        spec: &RunSpec,
        tracker: &mut Tracker,
        device: &B::Device,
        progress: &mut dyn Progress,
        tune: bool,
    ) -> Result<()> {
        let Some(best_epoch) = self.best.epoch else {
            return Ok(());
        };
        let tune = tune && spec.config.train.tune;
        if self.dataset.test.is_empty() && !tune {
            return Ok(());
        }
        let path = checkpoint::best_path(spec.variant_dir, spec.run_id());
        let bytes = std::fs::read(&path).context("the best checkpoint, to score the test split")?;
        let best = model_from_bytes::<B::InnerBackend, _>(model.valid(), bytes, device)
            .with_context(|| format!("cannot load {}", path.display()))?;
        if !self.dataset.test.is_empty() {
            self.test_row(&best, best_epoch, spec, tracker, device, progress)?;
        }
        if tune {
            self.tuned = Some(self.tune(&best, spec, device, progress)?);
        }
        Ok(())
    }

    /// Tunes the post-processing of the best checkpoint on validation; writes it beside the
    /// checkpoints and scores the test split with it.
    fn tune(
        &self,
        best: &UNet<B::InnerBackend>,
        spec: &RunSpec,
        device: &B::Device,
        progress: &mut dyn Progress,
    ) -> Result<TunedScore> {
        let cases = evaluate::validation_cases(best, spec.config, self.dataset, device)?;
        let found = tune::search(&cases, PostProcess::untuned(&spec.config.model));
        tune::save(&self.ckpt_dir, &found.post)?;
        let tested = evaluate::test_score(best, spec.config, self.dataset, found.post, device)?;
        let tuned = TunedScore {
            post: found.post,
            tuned_on_images: cases.len(),
            val_before: found.before,
            val_after: found.after,
            test_before: self.test.map(|m| m.dice),
            test_after: tested.map(|t| t.0),
            test_breakdown: tested.map(|t| t.1),
        };
        progress.finish(&format!("{}: {}", self.name, tuned.describe()));
        Ok(tuned)
    }

    /// The test row of the best checkpoint with the untuned rule.
    fn test_row(
        &mut self,
        best: &UNet<B::InnerBackend>,
        best_epoch: usize,
        spec: &RunSpec,
        tracker: &mut Tracker,
        device: &B::Device,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let start = Instant::now();
        let untuned = (PostProcess::untuned(&spec.config.model), false);
        let scored = score_as_test(
            best,
            spec.config,
            self.dataset,
            &self.dataset.test,
            untuned,
            device,
        )?;
        let seconds = start.elapsed().as_secs_f64();
        tracker.epochs.retain(|r| {
            !(r.variant == spec.variant_name && r.seed == spec.seed && r.split == "test")
        });
        let m = scored.metrics;
        let of = RowOf {
            variant: spec.variant_name,
            seed: spec.seed,
            fold: spec.fold,
            epoch: best_epoch,
        };
        let time = PassTime {
            seconds,
            images: self.dataset.test.len(),
            load_seconds: scored.load_seconds,
        };
        let row = EpochRow::from_metrics(of, "test", scored.loss, Some(m), 0.0, time);
        tracker.epochs.push(row);
        tracker.flush()?;
        progress.finish(&format!(
            "{}: test Dice {:.4} (IoU {:.4}, presence {:.3}) on {} images, checkpoint of epoch {best_epoch}",
            self.name,
            m.dice,
            m.iou,
            m.presence_accuracy,
            self.dataset.test.len()
        ));
        self.test = Some(m);
        self.test_breakdown = Some(metrics::breakdown(&scored.per_image));
        Ok(())
    }

    /// Every epoch done. A crash after the last epoch's checkpoint but before `last` was
    /// written resumes here with nothing left to train: the bookkeeping is finished from disk.
    fn finish(
        mut self,
        model: &UNet<B>,
        spec: &RunSpec,
        tracker: &mut Tracker,
        device: &B::Device,
        progress: &mut dyn Progress,
    ) -> Result<RunOutcome> {
        self.score_test(model, spec, tracker, device, progress, true)?;
        let last = checkpoint::last_path(spec.variant_dir, spec.run_id());
        if !last.exists() {
            write_atomic(&last, &model_to_bytes::<B, _>(model)?)?;
        }
        if self.final_dice.is_none() {
            self.final_dice = tracker
                .epochs
                .iter()
                .filter(|r| {
                    r.variant == spec.variant_name && r.seed == spec.seed && r.split == "val"
                })
                .max_by_key(|r| r.epoch)
                .and_then(|r| r.dice);
        }
        ResumeState::clear(&self.ckpt_dir);
        progress.finish(&format!(
            "{}: done, best validation Dice {:.4} at epoch {}",
            self.name,
            self.best.dice.unwrap_or(f64::NAN),
            self.best.epoch.unwrap_or(0)
        ));
        Ok(self.outcome(Ending::Completed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Activation, ModelConfig, Norm, TrainConfig};
    use crate::kernels::ConvPath;

    /// BatchNorm + ELU trained on the fused kernels follows Burn's modules
    /// (`ConvPath::Generic`) step by step: the same losses, and after the steps the same
    /// predictions at inference (which run on the running statistics the steps moved). SGD,
    /// not Adam: a convolution's bias before BatchNorm has a gradient of pure rounding noise,
    /// which Adam's normalisation turns into full-size steps in directions that differ between
    /// any two implementations.
    #[test]
    fn batch_norm_and_elu_train_the_same_on_the_fused_kernels() {
        type Ad = burn::backend::Autodiff<burn::backend::Flex>;
        let device = Default::default();
        let cfg = ModelConfig {
            widths: vec![3, 6, 12],
            norm: Norm::Batch,
            activation: Activation::Elu,
            dropout: 0.0,
            ..ModelConfig::default()
        };
        let train = TrainConfig {
            optimizer: crate::config::OptimizerKind::Sgd,
            momentum: 0.9,
            ..TrainConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(5);
        let n = 4 * 32 * 40;
        let image: Vec<f32> = (0..n)
            .map(|_| crate::util::noise::standard_normal(&mut rng))
            .collect();
        let mask: Vec<f32> = image.iter().map(|&v| (v > 0.3) as u8 as f32).collect();
        let x = Tensor::<Ad, 4>::from_data(TensorData::new(image, [4, 1, 32, 40]), &device);
        let y = Tensor::<Ad, 4>::from_data(TensorData::new(mask, [4, 1, 32, 40]), &device);
        let run = |path: ConvPath| {
            let mut model = UNet::<Ad>::seeded(&cfg, LossKind::Mse, 3, &device)
                .unwrap()
                .with_kernels(path);
            let mut optim = AnyOptimizer::<UNet<Ad>, Ad>::new(&train);
            let mut losses = Vec::new();
            for _ in 0..5 {
                let l = loss::loss(LossKind::Mse, model.forward(x.clone()), y.clone(), None);
                losses.push(l.clone().into_scalar().elem::<f64>());
                let grads = GradientsParams::from_grads(l.backward(), &model);
                model = optim.step(1e-2, model, grads);
            }
            let inferred = model.valid().forward(x.clone().inner());
            (losses, inferred.into_data().to_vec::<f32>().unwrap())
        };
        let (generic, generic_out) = run(ConvPath::Generic);
        let (fused, fused_out) = run(ConvPath::Auto);
        for (step, (a, b)) in fused.iter().zip(&generic).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "step {step}: loss {a} against {b}"
            );
        }
        let err = fused_out
            .iter()
            .zip(&generic_out)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let scale = generic_out.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(
            err < 1e-4 * scale,
            "inference after training differs by {err} (outputs up to {scale})"
        );
    }
}
