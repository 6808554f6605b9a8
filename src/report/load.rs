//! Reads an experiment directory back: manifests, metric rows and prediction snapshots.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::track::manifest::{ExperimentManifest, RunRecord, RunStatus, VariantManifest};
use crate::track::snapshots::{self, Snapshots};
use crate::track::{EpochRow, StepRow, Tracker};

#[derive(Debug)]
pub struct ExperimentData {
    pub dir: PathBuf,
    pub manifest: ExperimentManifest,
    pub variants: Vec<VariantData>,
}

#[derive(Debug)]
pub struct VariantData {
    pub name: String,
    pub slug: String,
    pub dir: PathBuf,
    /// Grid axis → level.
    pub levels: Vec<(String, String)>,
    pub manifest: Option<VariantManifest>,
    pub runs: Vec<RunData>,
}

#[derive(Debug)]
pub struct RunData {
    pub seed: u64,
    pub record: RunRecord,
    /// This run's metric rows, by epoch.
    pub train: Vec<EpochRow>,
    pub val: Vec<EpochRow>,
    pub steps: Vec<StepRow>,
    pub snapshots: Option<Snapshots>,
}

impl RunData {
    pub fn best_dice(&self) -> Option<f64> {
        self.val
            .iter()
            .filter_map(|r| r.dice)
            .filter(|d| d.is_finite())
            .reduce(f64::max)
    }

    pub fn final_dice(&self) -> Option<f64> {
        self.val.last().and_then(|r| r.dice)
    }

    pub fn best_epoch(&self) -> Option<usize> {
        self.val
            .iter()
            .filter(|r| r.dice.is_some_and(f64::is_finite))
            .max_by(|a, b| {
                a.dice
                    .unwrap()
                    .total_cmp(&b.dice.unwrap())
                    .then(b.epoch.cmp(&a.epoch))
            })
            .map(|r| r.epoch)
    }

    pub fn val_dice_at(&self, epoch: usize) -> Option<f64> {
        self.val
            .iter()
            .find(|r| r.epoch == epoch)
            .and_then(|r| r.dice)
    }
}

impl VariantData {
    /// The worst status among the runs (what a badge shows).
    pub fn status(&self) -> RunStatus {
        let order = |s: RunStatus| match s {
            RunStatus::Failed => 0,
            RunStatus::Diverged => 1,
            RunStatus::Interrupted => 2,
            RunStatus::Running => 3,
            RunStatus::Completed => 4,
        };
        self.runs
            .iter()
            .map(|r| r.record.status)
            .min_by_key(|s| order(*s))
            .unwrap_or(RunStatus::Running)
    }

    /// The run whose pictures stand for the variant: the first seed with snapshots.
    pub fn representative(&self) -> Option<&RunData> {
        self.runs
            .iter()
            .find(|r| r.snapshots.as_ref().is_some_and(|s| !s.epochs.is_empty()))
            .or(self.runs.first())
    }
}

impl ExperimentData {
    pub fn load(dir: &Path) -> Result<ExperimentData> {
        let manifest = ExperimentManifest::load(dir)?;
        let tracker = Tracker::open(dir)?;
        let mut variants = Vec::new();
        for (name, slug) in &manifest.variants {
            let vdir = dir.join(slug);
            let vmanifest = VariantManifest::load(&vdir)?;
            let mut runs = Vec::new();
            if let Some(m) = &vmanifest {
                for record in &m.runs {
                    let of_run = |r: &&EpochRow| r.variant == *name && r.seed == record.seed;
                    let mut train: Vec<EpochRow> = tracker
                        .epochs
                        .iter()
                        .filter(of_run)
                        .filter(|r| r.split == "train")
                        .cloned()
                        .collect();
                    let mut val: Vec<EpochRow> = tracker
                        .epochs
                        .iter()
                        .filter(of_run)
                        .filter(|r| r.split == "val")
                        .cloned()
                        .collect();
                    train.sort_by_key(|r| r.epoch);
                    val.sort_by_key(|r| r.epoch);
                    let steps = tracker
                        .steps
                        .iter()
                        .filter(|r| r.variant == *name && r.seed == record.seed)
                        .cloned()
                        .collect();
                    let n = if record.snapshot_samples.is_empty() {
                        m.config.report.samples
                    } else {
                        record.snapshot_samples.len()
                    };
                    // Missing or unreadable snapshots leave the run without pictures, not the report.
                    let snaps =
                        Snapshots::load(&snapshots::dir(&vdir, record.seed), n).unwrap_or(None);
                    runs.push(RunData {
                        seed: record.seed,
                        record: record.clone(),
                        train,
                        val,
                        steps,
                        snapshots: snaps,
                    });
                }
            }
            variants.push(VariantData {
                name: name.clone(),
                slug: slug.clone(),
                dir: vdir,
                levels: vmanifest
                    .as_ref()
                    .map(|m| m.levels.clone())
                    .unwrap_or_default(),
                manifest: vmanifest,
                runs,
            });
        }
        Ok(ExperimentData {
            dir: dir.to_path_buf(),
            manifest,
            variants,
        })
    }
}
