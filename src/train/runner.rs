//! Runs an experiment: every variant × seed, skipping finished runs, resuming interrupted ones,
//! and keeping going when one run diverges or fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::{BackendKind, Experiment};
use crate::data::{self, Dataset};
use crate::progress::make_progress;
use crate::track::checkpoint;
use crate::track::manifest::{git_commit, now_rfc3339};
use crate::track::snapshots;
use crate::track::{DirLock, ExperimentManifest, RunRecord, RunStatus, Tracker, VariantManifest};

use super::backend::{self, CpuBackend};
use super::{Ending, RunSpec, train_run};

pub struct RunOptions {
    pub out: PathBuf,
    pub backend: Option<BackendKind>,
    /// Retrain everything, discarding earlier results of the selected variants.
    pub fresh: bool,
    /// Render the report after the runs.
    pub report: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub completed: usize,
    pub diverged: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Runs found finished and not trained again.
    pub skipped: usize,
}

impl Summary {
    pub fn line(&self) -> String {
        format!(
            "{} completed ({} already done), {} diverged, {} failed, {} interrupted",
            self.completed, self.skipped, self.diverged, self.failed, self.interrupted
        )
    }
}

fn count(summary: &mut Summary, status: RunStatus) {
    match status {
        RunStatus::Completed => summary.completed += 1,
        RunStatus::Diverged => summary.diverged += 1,
        RunStatus::Failed => summary.failed += 1,
        RunStatus::Interrupted | RunStatus::Running => summary.interrupted += 1,
    }
}

/// The directory of an experiment under `out`.
pub fn experiment_dir(out: &Path, experiment: &Experiment) -> PathBuf {
    out.join(&experiment.slug)
}

pub fn run_experiment(
    file: &Path,
    mut experiment: Experiment,
    opts: &RunOptions,
) -> Result<Summary> {
    if let Some(b) = opts.backend {
        for v in &mut experiment.variants {
            v.config.train.backend = b;
        }
    }
    let mut backends: Vec<BackendKind> = experiment
        .variants
        .iter()
        .map(|v| v.config.train.backend)
        .collect();
    backends.dedup();
    for b in backends {
        backend::check_available(b)?;
    }

    // Load (and thereby check) every dataset before anything is trained or written.
    let mut datasets: HashMap<String, Dataset> = HashMap::new();
    for v in &experiment.variants {
        let key = serde_json::to_string(&v.config.data)?;
        if !datasets.contains_key(&key) {
            let ds = data::load(&v.config.data)?;
            datasets.insert(key, ds);
        }
    }

    let exp_dir = experiment_dir(&opts.out, &experiment);
    std::fs::create_dir_all(&exp_dir)
        .with_context(|| format!("cannot create the output directory {}", exp_dir.display()))?;
    let _lock = DirLock::acquire(&exp_dir)?;
    let commit = git_commit(file);

    let mut tracker = Tracker::open(&exp_dir)?;
    if opts.fresh {
        for v in &experiment.variants {
            for seed in &experiment.seeds {
                tracker.truncate_run(&v.name, *seed, 0);
            }
            let dir = exp_dir.join(&v.slug);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {} for --fresh", dir.display()))?;
            }
        }
        tracker.flush()?;
    }
    ExperimentManifest::new(&experiment, file).save_merged(&exp_dir)?;
    let source = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    crate::track::write_atomic(&exp_dir.join("experiment.toml"), &source)?;

    let mut summary = Summary::default();
    let total_runs = experiment.variants.len() * experiment.seeds.len();
    let mut run_no = 0;
    'variants: for variant in &experiment.variants {
        let variant_dir = exp_dir.join(&variant.slug);
        let mut manifest = match VariantManifest::load(&variant_dir) {
            Ok(Some(m)) => m,
            _ => VariantManifest::new(&experiment, variant, commit.clone()),
        };
        manifest.config = variant.config.clone();
        manifest.levels = variant.levels.clone();
        manifest.variant = variant.name.clone();
        manifest.git_commit = commit.clone();
        let ds = &datasets[&serde_json::to_string(&variant.config.data)?];

        for &seed in &experiment.seeds {
            run_no += 1;
            let hash = variant.config_hash(seed);
            if let Some(prev) = manifest.run(seed) {
                if prev.config_hash == hash
                    && matches!(
                        prev.status,
                        RunStatus::Completed | RunStatus::Diverged | RunStatus::Failed
                    )
                {
                    eprintln!(
                        "[{run_no}/{total_runs}] {} seed {seed}: already {} (same config), skipped",
                        variant.name,
                        prev.status.as_str()
                    );
                    count(&mut summary, prev.status);
                    summary.skipped += (prev.status == RunStatus::Completed) as usize;
                    continue;
                }
                if prev.config_hash != hash {
                    // The config changed: earlier results of this seed no longer apply.
                    tracker.truncate_run(&variant.name, seed, 0);
                    let _ = std::fs::remove_dir_all(checkpoint::dir(&variant_dir, seed));
                    let _ = std::fs::remove_dir_all(snapshots::dir(&variant_dir, seed));
                }
            }
            let (backend_name, device_name) = backend::describe(variant.config.train.backend);
            let mut record = RunRecord {
                seed,
                config_hash: hash.clone(),
                status: RunStatus::Running,
                started: now_rfc3339(),
                ended: None,
                backend: backend_name,
                device: device_name,
                epochs_done: 0,
                best_epoch: None,
                best_dice: None,
                final_dice: None,
                divergence: None,
                message: None,
                snapshot_samples: Vec::new(),
                dataset: Some(ds.info.clone()),
                parameters: 0,
            };
            manifest.upsert(record.clone());
            manifest.save(&variant_dir)?;

            eprintln!("[{run_no}/{total_runs}] {} seed {seed}", variant.name);
            let spec = RunSpec {
                variant_name: &variant.name,
                variant_dir: &variant_dir,
                seed,
                config: &variant.config,
                config_hash: &hash,
                dataset: ds,
            };
            let mut progress = make_progress();
            let result = match variant.config.train.backend {
                BackendKind::Cpu => train_run::<CpuBackend>(
                    &spec,
                    &mut tracker,
                    &Default::default(),
                    progress.as_mut(),
                ),
                #[cfg(feature = "cuda")]
                BackendKind::Cuda => train_run::<backend::CudaBackend>(
                    &spec,
                    &mut tracker,
                    &Default::default(),
                    progress.as_mut(),
                ),
                #[cfg(not(feature = "cuda"))]
                BackendKind::Cuda => unreachable!("checked by check_available"),
            };
            record.ended = Some(now_rfc3339());
            match result {
                Ok(outcome) => {
                    record.epochs_done = outcome.epochs_done;
                    record.best_epoch = outcome.best_epoch;
                    record.best_dice = outcome.best_dice;
                    record.final_dice = outcome.final_dice;
                    record.snapshot_samples = outcome.snapshot_samples;
                    record.parameters = outcome.parameters;
                    record.status = match outcome.ending {
                        Ending::Completed => RunStatus::Completed,
                        Ending::Diverged(d) => {
                            record.message = Some(format!(
                                "loss {} at epoch {}, step {}",
                                d.loss, d.epoch, d.step
                            ));
                            record.divergence = Some(d);
                            RunStatus::Diverged
                        }
                        Ending::Failed(message) => {
                            record.message = Some(message);
                            RunStatus::Failed
                        }
                        Ending::Interrupted => RunStatus::Interrupted,
                    };
                }
                Err(e) => {
                    eprintln!("{} seed {seed}: failed: {e:#}", variant.name);
                    record.status = RunStatus::Failed;
                    record.message = Some(format!("{e:#}"));
                }
            }
            // Rows of a stopped run are already flushed up to its last finished epoch.
            tracker.flush()?;
            let status = record.status;
            manifest.upsert(record);
            manifest.save(&variant_dir)?;
            count(&mut summary, status);
            if status == RunStatus::Interrupted {
                break 'variants;
            }
        }
    }

    if opts.report {
        if let Err(e) = crate::report::render_experiment(&exp_dir) {
            eprintln!("warning: the report could not be rendered: {e:#}");
        }
    }
    Ok(summary)
}
