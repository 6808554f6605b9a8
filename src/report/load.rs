//! Reads an experiment directory back: manifests, metric rows and prediction snapshots.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::track::manifest::{
    ExperimentManifest, RunRecord, RunStatus, ScoreBreakdown, VariantManifest,
};
use crate::track::merge::{self, StoredRun};
use crate::track::snapshots::{self, Snapshots};
use crate::track::{EpochRow, StepRow};

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

    /// What the reported score is made of: on the test split when there is one, else at the
    /// best validation epoch.
    pub fn breakdown(&self) -> Option<ScoreBreakdown> {
        match self.record.test {
            Some(t) => t.breakdown,
            None => self.record.best_breakdown,
        }
    }

    /// Test Dice of the checkpoint chosen on validation (runs with a test split).
    pub fn test_dice(&self) -> Option<f64> {
        self.record.test.map(|t| t.dice)
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
    /// Reads an experiment directory (without rewriting its derived files).
    pub fn load(dir: &Path) -> Result<ExperimentData> {
        let (manifest, runs) = merge::read(dir)?;
        Ok(Self::from_stored(dir, manifest, runs))
    }

    /// Groups stored runs by variant, in the manifest's order; variants with no run yet (not
    /// selected, or not started) are left out.
    pub fn from_stored(
        dir: &Path,
        manifest: ExperimentManifest,
        runs: Vec<StoredRun>,
    ) -> ExperimentData {
        let mut variants = Vec::new();
        for (name, slug) in &manifest.variants {
            let vdir = dir.join(slug);
            let stored: Vec<&StoredRun> =
                runs.iter().filter(|r| r.manifest.slug == *slug).collect();
            if stored.is_empty() {
                continue;
            }
            let vmanifest =
                VariantManifest::from_runs(stored.iter().map(|r| r.manifest.clone()).collect());
            let runs = stored
                .into_iter()
                .map(|run| {
                    let record = run.manifest.record.clone();
                    let split = |name: &str| {
                        let mut rows: Vec<EpochRow> = run
                            .epochs
                            .iter()
                            .filter(|r| r.split == name)
                            .cloned()
                            .collect();
                        rows.sort_by_key(|r| r.epoch);
                        rows
                    };
                    let n = if record.snapshot_samples.is_empty() {
                        run.manifest.config.report.samples
                    } else {
                        record.snapshot_samples.len()
                    };
                    // Missing or unreadable snapshots leave the run without pictures, not the report.
                    let snaps =
                        Snapshots::load(&snapshots::dir(&vdir, record.seed), n).unwrap_or(None);
                    RunData {
                        seed: record.seed,
                        train: split("train"),
                        val: split("val"),
                        steps: run.steps.clone(),
                        snapshots: snaps,
                        record,
                    }
                })
                .collect();
            variants.push(VariantData {
                name: name.clone(),
                slug: slug.clone(),
                dir: vdir,
                levels: vmanifest.levels.clone(),
                manifest: Some(vmanifest),
                runs,
            });
        }
        ExperimentData {
            dir: dir.to_path_buf(),
            manifest,
            variants,
        }
    }
}
