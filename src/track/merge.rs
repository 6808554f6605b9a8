//! The experiment-level tables are derived: `metrics.parquet`, `steps.parquet`, `runs.parquet`
//! and each variant's `manifest.json` are built by merging the runs' own files. No worker ever
//! writes them while training, so recording an epoch costs the same in any study, and any
//! number of workers can share one experiment directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use polars::prelude::*;

use super::layout::{self, RunId};
use super::lock::Exclusive;
use super::manifest::{ExperimentManifest, RunManifest, RunRecord, VariantManifest};
use super::tables::{
    EpochRow, StepRow, Tracker, epoch_rows_to_frame, step_rows_to_frame, write_parquet,
};

/// One run as stored in its own directory.
#[derive(Debug, Clone)]
pub struct StoredRun {
    pub dir: PathBuf,
    pub manifest: RunManifest,
    pub epochs: Vec<EpochRow>,
    pub steps: Vec<StepRow>,
}

impl StoredRun {
    /// Wall time spent in its epochs (training and validation).
    pub fn seconds(&self) -> f64 {
        self.epochs
            .iter()
            .map(|r| r.seconds)
            .filter(|s| s.is_finite())
            .sum()
    }
}

/// Every run of an experiment directory, in the order of `experiment.json`'s variants and then
/// by seed. Migrates a directory of the single-file layout first.
pub fn read(exp_dir: &Path) -> Result<(ExperimentManifest, Vec<StoredRun>)> {
    super::migrate::migrate_if_legacy(exp_dir)?;
    let manifest = ExperimentManifest::load(exp_dir)?;
    let runs = read_runs(exp_dir, &manifest)?;
    Ok((manifest, runs))
}

/// Reads every run and rewrites the derived files from them (atomically, one merge at a time).
pub fn merge(exp_dir: &Path) -> Result<(ExperimentManifest, Vec<StoredRun>)> {
    check_study_dir(exp_dir)?;
    super::migrate::migrate_if_legacy(exp_dir)?;
    let _merging = Exclusive::wait(&layout::merge_lock_path(exp_dir))?;
    merge_holding_the_lock(exp_dir)
}

/// [`merge`], unless another merge holds the lock: then `None` at once (`limit` zero: the
/// live refresh inside training skips a turn rather than stall it) or after waiting at most
/// `limit`, saying so (the merge at the end of `run`).
pub(crate) fn merge_unless_busy(
    exp_dir: &Path,
    limit: std::time::Duration,
) -> Result<Option<(ExperimentManifest, Vec<StoredRun>)>> {
    check_study_dir(exp_dir)?;
    super::migrate::migrate_if_legacy(exp_dir)?;
    let path = layout::merge_lock_path(exp_dir);
    let Some(_merging) = Exclusive::wait_at_most(&path, limit, "a merge")? else {
        return Ok(None);
    };
    merge_holding_the_lock(exp_dir).map(Some)
}

/// A merge writes into the directory (its lock, the tables): only into a study's. A file, a
/// missing path or a folder that holds no study is refused before anything is written there.
pub fn check_study_dir(exp_dir: &Path) -> Result<()> {
    if exp_dir.is_file() {
        anyhow::bail!(
            "{} is a file, not an experiment directory; to train an experiment file: unet-lab run {}",
            exp_dir.display(),
            exp_dir.display()
        );
    }
    if !exp_dir.is_dir() {
        anyhow::bail!("{} does not exist", exp_dir.display());
    }
    if !exp_dir.join("experiment.json").exists() {
        anyhow::bail!(
            "{} holds no study (no experiment.json): give the directory `unet-lab run` wrote, \
             <out>/<experiment name>",
            exp_dir.display()
        );
    }
    Ok(())
}

fn merge_holding_the_lock(exp_dir: &Path) -> Result<(ExperimentManifest, Vec<StoredRun>)> {
    let manifest = ExperimentManifest::load(exp_dir)?;
    let runs = read_runs(exp_dir, &manifest)?;
    write_derived(exp_dir, &manifest, &runs)?;
    Ok((manifest, runs))
}

fn read_runs(exp_dir: &Path, manifest: &ExperimentManifest) -> Result<Vec<StoredRun>> {
    let mut runs = Vec::new();
    type EpochKey = (String, u64, Option<usize>, usize, String);
    let mut epoch_keys: HashMap<EpochKey, PathBuf> = HashMap::new();
    let mut step_keys: HashMap<(String, u64, Option<usize>, usize), PathBuf> = HashMap::new();
    for (_, slug) in &manifest.variants {
        for (_, dir) in layout::run_dirs(&exp_dir.join(slug)) {
            let Some(run) = RunManifest::load(&dir)? else {
                continue;
            };
            let rows = Tracker::open(&dir)?;
            let metrics = Tracker::metrics_path(&dir);
            for r in &rows.epochs {
                let key = (r.variant.clone(), r.seed, r.fold, r.epoch, r.split.clone());
                if let Some(first) = epoch_keys.insert(key, metrics.clone()) {
                    bail!(
                        "the row (variant \"{}\", {}, epoch {}, split {}) is in both {} and {}; \
                         one of them was copied or moved by hand — remove the wrong one and merge again",
                        r.variant,
                        RunId::new(r.seed, r.fold),
                        r.epoch,
                        r.split,
                        first.display(),
                        metrics.display()
                    );
                }
            }
            let steps = Tracker::steps_path(&dir);
            for r in &rows.steps {
                if let Some(first) = step_keys.insert(
                    (r.variant.clone(), r.seed, r.fold, r.global_step),
                    steps.clone(),
                ) {
                    bail!(
                        "the step row (variant \"{}\", {}, step {}) is in both {} and {}; \
                         remove the wrong one and merge again",
                        r.variant,
                        RunId::new(r.seed, r.fold),
                        r.global_step,
                        first.display(),
                        steps.display()
                    );
                }
            }
            runs.push(StoredRun {
                dir,
                manifest: run,
                epochs: rows.epochs,
                steps: rows.steps,
            });
        }
    }
    Ok(runs)
}

fn write_derived(exp_dir: &Path, manifest: &ExperimentManifest, runs: &[StoredRun]) -> Result<()> {
    let epochs: Vec<EpochRow> = runs.iter().flat_map(|r| r.epochs.iter().cloned()).collect();
    let steps: Vec<StepRow> = runs.iter().flat_map(|r| r.steps.iter().cloned()).collect();
    write_parquet(
        &Tracker::metrics_path(exp_dir),
        &mut epoch_rows_to_frame(&epochs)?,
    )?;
    write_parquet(
        &Tracker::steps_path(exp_dir),
        &mut step_rows_to_frame(&steps)?,
    )?;
    write_parquet(
        &layout::runs_table_path(exp_dir),
        &mut runs_frame(&manifest.axes, runs)?,
    )?;
    for (_, slug) in &manifest.variants {
        let of_variant: Vec<RunManifest> = runs
            .iter()
            .filter(|r| r.manifest.slug == *slug)
            .map(|r| r.manifest.clone())
            .collect();
        if !of_variant.is_empty() {
            VariantManifest::from_runs(of_variant).save(&exp_dir.join(slug))?;
        }
    }
    Ok(())
}

/// `runs.parquet`: one row per run, with one column per grid axis holding its level label.
fn runs_frame(axes: &[String], runs: &[StoredRun]) -> Result<DataFrame> {
    let text = |get: &dyn Fn(&StoredRun) -> String| runs.iter().map(get).collect::<Vec<String>>();
    let mut columns = vec![
        Column::new("variant".into(), text(&|r| r.manifest.variant.clone())),
        Column::new(
            "seed".into(),
            runs.iter()
                .map(|r| r.manifest.record.seed as i64)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "fold".into(),
            runs.iter()
                .map(|r| r.manifest.record.fold.map(|f| f as i64))
                .collect::<Vec<_>>(),
        ),
    ];
    for axis in axes {
        let levels: Vec<Option<String>> = runs
            .iter()
            .map(|r| {
                r.manifest
                    .levels
                    .iter()
                    .find(|(a, _)| a == axis)
                    .map(|(_, l)| l.clone())
            })
            .collect();
        columns.push(Column::new(axis.as_str().into(), levels));
    }
    let record = |r: &StoredRun| r.manifest.record.clone();
    let float = |name: &str, get: &dyn Fn(&RunRecord) -> Option<f64>| {
        let values: Vec<Option<f64>> = runs.iter().map(|r| get(&r.manifest.record)).collect();
        Column::new(name.into(), values)
    };
    let count = |name: &str, get: &dyn Fn(&RunRecord) -> Option<usize>| {
        let values: Vec<Option<i64>> = runs
            .iter()
            .map(|r| get(&r.manifest.record).map(|v| v as i64))
            .collect();
        Column::new(name.into(), values)
    };
    columns.extend([
        Column::new(
            "status".into(),
            text(&|r| record(r).status.as_str().to_string()),
        ),
        float("best_dice", &|r| r.best.dice),
        float("final_dice", &|r| r.final_dice),
        float("test_dice", &|r| r.test.map(|t| t.dice)),
        float("test_iou", &|r| r.test.map(|t| t.iou)),
        float("test_presence_accuracy", &|r| {
            r.test.map(|t| t.presence_accuracy)
        }),
        float("tuned_val_dice", &|r| r.tuned.map(|t| t.val_after)),
        float("tuned_test_dice", &|r| r.tuned.and_then(|t| t.test_after)),
        count("best_epoch", &|r| r.best.epoch),
        Column::new(
            "epochs_done".into(),
            runs.iter()
                .map(|r| r.manifest.record.best.epochs_done as i64)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "seconds".into(),
            runs.iter().map(StoredRun::seconds).collect::<Vec<_>>(),
        ),
        Column::new("config_hash".into(), text(&|r| record(r).config_hash)),
        Column::new("host".into(), text(&|r| r.manifest.host.clone())),
        Column::new("backend".into(), text(&|r| record(r).backend)),
        Column::new("device".into(), text(&|r| record(r).device)),
    ]);
    Ok(DataFrame::new(runs.len(), columns)?)
}
