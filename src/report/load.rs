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
    /// The cross-validation fold (none in plain studies).
    pub fold: Option<usize>,
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
        if let Some(tuned) = self.record.tuned.and_then(|t| t.test_breakdown) {
            return Some(tuned);
        }
        match self.record.test {
            Some(t) => t.breakdown,
            None => self.record.best.breakdown,
        }
    }

    /// Test Dice of the checkpoint chosen on validation (runs with a test split), with the
    /// post-processing tuned on validation when the run was tuned.
    pub fn test_dice(&self) -> Option<f64> {
        self.record
            .tuned
            .and_then(|t| t.test_after)
            .or(self.record.test.map(|t| t.dice))
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

    /// "seed 3", "seed 3 fold 1".
    pub fn label(&self) -> String {
        crate::track::RunId::new(self.seed, self.fold).to_string()
    }

    /// Validation images this run was scored on (its fold's share under cross-validation).
    fn val_images(&self) -> f64 {
        self.record
            .dataset
            .as_ref()
            .map_or(1.0, |d| d.val_images.max(1) as f64)
    }

    /// A result of its recipe that may lack scores: it failed or diverged.
    fn failed(&self) -> bool {
        matches!(self.record.status, RunStatus::Failed | RunStatus::Diverged)
    }

    /// The score of predicting every mask empty on this run's validation images: the share of
    /// empty masks there (per-image Dice, empty/empty = 1).
    pub(crate) fn baseline_val(&self) -> Option<f64> {
        let d = self.record.dataset.as_ref()?;
        match d.val_empty_masks {
            Some(k) => Some(k as f64 / d.val_images.max(1) as f64),
            None if d.test_images == 0 => self.breakdown().and_then(|b| b.empty_share()),
            None => None,
        }
    }

    /// The score of predicting every mask empty on the test images (none without a test split).
    pub(crate) fn baseline_test(&self) -> Option<f64> {
        let d = self.record.dataset.as_ref()?;
        if d.test_images == 0 {
            return None;
        }
        match d.test_empty_masks {
            Some(k) => Some(k as f64 / d.test_images as f64),
            None => self.breakdown().and_then(|b| b.empty_share()),
        }
    }

    /// Best validation Dice counting a failed run as a result (intention to treat): its best
    /// epoch's score, or predicting nothing when it never finished an epoch.
    fn itt_best_dice(&self) -> Option<f64> {
        self.best_dice()
            .or_else(|| self.failed().then(|| self.baseline_val()).flatten())
    }

    /// Test Dice counting a failed run as a result: its best checkpoint's, or predicting nothing
    /// when it has none.
    fn itt_test_dice(&self) -> Option<f64> {
        self.test_dice()
            .or_else(|| self.failed().then(|| self.baseline_test()).flatten())
    }

    pub(crate) fn val_dice_at(&self, epoch: usize) -> Option<f64> {
        self.val
            .iter()
            .find(|r| r.epoch == epoch)
            .and_then(|r| r.dice)
    }
}

/// One seed of a variant, its folds combined. Cross-validated, the validation score is the
/// out-of-fold score: the folds' best validation Dice weighted by their validation images —
/// the mean per-image Dice over every non-test image, each scored by the fold that did not
/// train on it. The test score and the breakdown are means over the folds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeedResult {
    pub seed: u64,
    /// Runs behind it (its folds; 1 without cross-validation).
    pub folds: usize,
    /// Every run of the seed completed.
    pub completed: bool,
    /// A run of the seed failed or diverged: a result of the recipe, scored (intention to treat).
    pub failed: bool,
    /// A run of the seed is still running or was interrupted: unfinished work, not a result.
    pub unfinished: bool,
    /// A failed run had no checkpoint: it is scored as predicting nothing.
    pub scored_as_nothing: bool,
    pub best_dice: Option<f64>,
    pub final_dice: Option<f64>,
    pub test_dice: Option<f64>,
    /// Predicting nothing on the same validation and test images.
    pub baseline_val: Option<f64>,
    pub baseline_test: Option<f64>,
    /// The mean of the folds' best epochs, rounded; the run's own without folds.
    pub best_epoch: Option<usize>,
    pub breakdown: Option<ScoreBreakdown>,
}

impl SeedResult {
    fn of(seed: u64, runs: &[&RunData]) -> SeedResult {
        // A value of the seed only when every fold has one: an out-of-fold score missing a
        // fold is not one.
        let all = |get: &dyn Fn(&RunData) -> Option<f64>| -> Option<Vec<f64>> {
            runs.iter().map(|r| get(r)).collect()
        };
        let weights: Vec<f64> = runs.iter().map(|r| r.val_images()).collect();
        let weighted = |values: Vec<f64>| {
            values.iter().zip(&weights).map(|(v, w)| v * w).sum::<f64>()
                / weights.iter().sum::<f64>()
        };
        let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len() as f64;
        let epochs: Option<Vec<f64>> = runs
            .iter()
            .map(|r| r.best_epoch().map(|e| e as f64))
            .collect();
        let unfinished = runs
            .iter()
            .any(|r| matches!(r.record.status, RunStatus::Running | RunStatus::Interrupted));
        let failed = !unfinished && runs.iter().any(|r| r.failed());
        // Unfinished work has no score yet; a failed seed is scored like any other.
        let scored =
            |get: &dyn Fn(&RunData) -> Option<f64>| (!unfinished).then(|| all(get)).flatten();
        SeedResult {
            seed,
            folds: runs.len(),
            completed: runs.iter().all(|r| r.record.status == RunStatus::Completed),
            failed,
            unfinished,
            scored_as_nothing: failed && runs.iter().any(|r| r.failed() && r.best_dice().is_none()),
            best_dice: scored(&|r| r.itt_best_dice()).map(weighted),
            final_dice: scored(&|r| r.final_dice()).map(weighted),
            test_dice: scored(&|r| r.itt_test_dice()).map(mean),
            baseline_val: all(&|r| r.baseline_val()).map(weighted),
            baseline_test: all(&|r| r.baseline_test()).map(mean),
            best_epoch: epochs.map(|e| mean(e).round() as usize),
            breakdown: runs
                .iter()
                .map(|r| r.breakdown())
                .collect::<Option<Vec<_>>>()
                .map(|parts| ScoreBreakdown::pooled(&parts)),
        }
    }
}

impl VariantData {
    /// Whether the variant's runs are folds of a cross-validation.
    pub(crate) fn cross_validated(&self) -> bool {
        self.runs.iter().any(|r| r.fold.is_some())
    }

    /// One result per seed, its folds combined (see [`SeedResult`]).
    pub(crate) fn seed_results(&self) -> Vec<SeedResult> {
        let mut seeds: Vec<u64> = self.runs.iter().map(|r| r.seed).collect();
        seeds.dedup();
        seeds
            .into_iter()
            .map(|s| {
                let runs: Vec<&RunData> = self.runs.iter().filter(|r| r.seed == s).collect();
                SeedResult::of(s, &runs)
            })
            .collect()
    }

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
    pub(crate) fn representative(&self) -> Option<&RunData> {
        self.runs
            .iter()
            .find(|r| r.snapshots.as_ref().is_some_and(|s| !s.epochs.is_empty()))
            .or(self.runs.first())
    }
}

impl ExperimentData {
    /// Whether the study has a test split (a run was scored on one, or holds one).
    pub(crate) fn has_test_split(&self) -> bool {
        self.variants.iter().flat_map(|v| &v.runs).any(|r| {
            r.test_dice().is_some() || r.record.dataset.as_ref().is_some_and(|d| d.test_images > 0)
        })
    }

    /// Reads an experiment directory (without rewriting its derived files).
    pub fn load(dir: &Path) -> Result<ExperimentData> {
        let (manifest, runs) = merge::read(dir)?;
        Ok(Self::from_stored(dir, manifest, runs))
    }

    /// Groups stored runs by variant, in the manifest's order; variants with no run yet (not
    /// selected, or not started) are left out.
    pub(crate) fn from_stored(
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
                    // Missing or unreadable snapshots leave the run without pictures, not the
                    // report; unreadable ones are said.
                    let snaps = Snapshots::load(&snapshots::dir(&vdir, record.run_id()), n)
                        .unwrap_or_else(|e| {
                            eprintln!("warning: {e:#}; the run's pictures are left out");
                            None
                        });
                    RunData {
                        seed: record.seed,
                        fold: record.fold,
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
