//! Manifests: what was run, with what, and how it ended. `experiment.json` describes the
//! experiment; each run directory holds its own `manifest.json` (written only by the worker
//! that holds the run's lock); a variant's `manifest.json`, one entry per seed, is derived
//! from those.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::{Experiment, RunConfig, Variant};
use crate::data::DatasetInfo;

use super::layout::RunId;
use crate::model::postprocess::PostProcess;
use crate::util::fs::write_atomic;

pub(crate) use crate::metrics::ScoreBreakdown;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    Diverged,
    Failed,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Diverged => "diverged",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// Where a run diverged.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    pub epoch: usize,
    pub step: usize,
    /// The loss that stopped the run, as text: JSON has no NaN or infinity.
    pub loss: String,
}

/// One seed of one variant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub seed: u64,
    /// The cross-validation fold this run trained (absent in plain studies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    pub config_hash: String,
    pub status: RunStatus,
    pub started: String,
    pub ended: Option<String>,
    pub backend: String,
    pub device: String,
    /// Epochs done and the best validation epoch.
    #[serde(flatten)]
    pub best: BestSoFar,
    pub final_dice: Option<f64>,
    /// The test split's scores of the checkpoint chosen on validation (`data.test_fraction` or
    /// `data.test_subjects`); absent without a test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestScore>,
    /// Post-processing tuned on validation (`train.tune` or `unet-lab tune`), with the
    /// scores before and after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<TunedScore>,
    pub divergence: Option<Divergence>,
    /// Why a run failed or stopped early.
    pub message: Option<String>,
    /// Validation sample ids whose predictions are stored every epoch.
    pub snapshot_samples: Vec<String>,
    pub dataset: Option<DatasetInfo>,
    pub parameters: usize,
}

impl RunRecord {
    pub(crate) fn run_id(&self) -> RunId {
        RunId::new(self.seed, self.fold)
    }

    /// The record of a run that starts now: `running`, nothing trained or scored yet.
    pub fn new(seed: u64, config_hash: &str, backend: String, device: String) -> Self {
        Self {
            seed,
            fold: None,
            config_hash: config_hash.to_string(),
            status: RunStatus::Running,
            started: now_rfc3339(),
            ended: None,
            backend,
            device,
            best: BestSoFar::default(),
            final_dice: None,
            test: None,
            tuned: None,
            divergence: None,
            message: None,
            snapshot_samples: Vec::new(),
            dataset: None,
            parameters: 0,
        }
    }
}

/// Post-processing chosen on validation, and what it changed. The validation scores are
/// those of the images it was tuned on (a cross-validated seed's out-of-fold images, pooled);
/// the test scores are this run's, on its held-out test split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TunedScore {
    pub post: PostProcess,
    pub tuned_on_images: usize,
    pub val_before: f64,
    pub val_after: f64,
    pub test_before: Option<f64>,
    pub test_after: Option<f64>,
    /// What the tuned test score is made of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_breakdown: Option<ScoreBreakdown>,
}

impl TunedScore {
    /// "tuned on 120 validation images: threshold 0.45, …; validation Dice 0.61 → 0.66, test
    /// Dice 0.58 → 0.63".
    pub fn describe(&self) -> String {
        let mut s = format!(
            "tuned on {} validation images: {}; validation Dice {:.4} → {:.4}",
            self.tuned_on_images,
            self.post.describe(),
            self.val_before,
            self.val_after
        );
        if let (Some(before), Some(after)) = (self.test_before, self.test_after) {
            s.push_str(&format!(", test Dice {before:.4} → {after:.4}"));
        }
        s
    }
}

/// A run's scores on the test split, scored once with the checkpoint of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestScore {
    pub epoch: usize,
    pub dice: f64,
    pub iou: f64,
    pub presence_accuracy: f64,
    #[serde(default)]
    pub breakdown: Option<ScoreBreakdown>,
}

/// How far a run got and its best validation epoch so far: what the training loop keeps, the
/// resume state saves, the outcome returns and the run's record reports — one struct, so none
/// of them copies the others field by field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BestSoFar {
    /// Epochs finished (the last one checkpointed).
    #[serde(alias = "epoch")]
    pub epochs_done: usize,
    #[serde(rename = "best_epoch")]
    pub epoch: Option<usize>,
    #[serde(rename = "best_dice")]
    pub dice: Option<f64>,
    /// The score breakdown at the best epoch.
    #[serde(
        rename = "best_breakdown",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub breakdown: Option<ScoreBreakdown>,
}

impl BestSoFar {
    /// Takes a finished epoch's validation Dice; true when it is the best so far (ties keep
    /// the earlier epoch). The breakdown is computed only for a new best.
    pub(crate) fn improve(
        &mut self,
        epoch: usize,
        dice: f64,
        breakdown: impl FnOnce() -> ScoreBreakdown,
    ) -> bool {
        let better = self.dice.is_none_or(|b| dice > b);
        if better {
            *self = BestSoFar {
                epochs_done: self.epochs_done,
                epoch: Some(epoch),
                dice: Some(dice),
                breakdown: Some(breakdown()),
            };
        }
        better
    }
}

/// `<variant>/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantManifest {
    pub experiment: String,
    pub variant: String,
    pub slug: String,
    /// Grid axis → level label.
    pub levels: Vec<(String, String)>,
    pub config: RunConfig,
    pub unet_lab_version: String,
    pub burn_version: String,
    pub git_commit: Option<String>,
    pub runs: Vec<RunRecord>,
}

impl VariantManifest {
    pub fn new(experiment: &Experiment, variant: &Variant, git_commit: Option<String>) -> Self {
        Self {
            experiment: experiment.name.clone(),
            variant: variant.name.clone(),
            slug: variant.slug.clone(),
            levels: variant.levels.clone(),
            config: variant.config.clone(),
            unet_lab_version: env!("CARGO_PKG_VERSION").to_string(),
            burn_version: BURN_VERSION.to_string(),
            git_commit,
            runs: Vec::new(),
        }
    }

    pub fn path(variant_dir: &Path) -> PathBuf {
        variant_dir.join("manifest.json")
    }

    /// The variant's manifest: assembled from its runs' manifests, or (for directories written
    /// before per-run storage, not yet migrated) read from `<variant>/manifest.json`.
    pub fn load(variant_dir: &Path) -> Result<Option<Self>> {
        let mut runs = Vec::new();
        for (_, dir) in super::layout::run_dirs(variant_dir) {
            if let Some(run) = RunManifest::load(&dir)? {
                runs.push(run);
            }
        }
        if !runs.is_empty() {
            return Ok(Some(Self::from_runs(runs)));
        }
        // Elsewhere `<variant>/manifest.json` is derived: runs that are gone are gone.
        match variant_dir.parent() {
            Some(exp_dir) if super::layout::is_legacy(exp_dir) => Self::load_file(variant_dir),
            _ => Ok(None),
        }
    }

    /// Builds a variant manifest from its runs' (the last seed's settings stand for all).
    pub(crate) fn from_runs(mut runs: Vec<RunManifest>) -> Self {
        runs.sort_by_key(|r| r.record.run_id());
        let last = runs.last().expect("at least one run").clone();
        Self {
            experiment: last.experiment,
            variant: last.variant,
            slug: last.slug,
            levels: last.levels,
            config: last.config,
            unet_lab_version: last.unet_lab_version,
            burn_version: last.burn_version,
            git_commit: last.git_commit,
            runs: runs.into_iter().map(|r| r.record).collect(),
        }
    }

    /// Reads `<variant>/manifest.json` itself.
    pub(crate) fn load_file(variant_dir: &Path) -> Result<Option<Self>> {
        read_json(&Self::path(variant_dir), "manifest")
    }

    pub fn save(&self, variant_dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self)?;
        write_atomic(&Self::path(variant_dir), &json)
    }

    pub fn run(&self, seed: u64) -> Option<&RunRecord> {
        self.runs.iter().find(|r| r.seed == seed)
    }
}

/// `<variant>/seed-<s>/manifest.json`: one run, written only by the worker holding its lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub experiment: String,
    pub variant: String,
    pub slug: String,
    /// The task's index in the plan.
    pub task: Option<usize>,
    /// Grid axis → level label.
    pub levels: Vec<(String, String)>,
    pub config: RunConfig,
    pub unet_lab_version: String,
    pub burn_version: String,
    pub git_commit: Option<String>,
    /// Where it ran (the last worker that trained it).
    pub host: String,
    pub pid: u32,
    pub slurm_job: Option<String>,
    pub record: RunRecord,
}

impl RunManifest {
    pub fn new(
        experiment: &Experiment,
        variant: &Variant,
        task: Option<usize>,
        git_commit: Option<String>,
        record: RunRecord,
    ) -> Self {
        let me = super::lock::Holder::me();
        Self {
            experiment: experiment.name.clone(),
            variant: variant.name.clone(),
            slug: variant.slug.clone(),
            task,
            levels: variant.levels.clone(),
            config: variant.config.clone(),
            unet_lab_version: env!("CARGO_PKG_VERSION").to_string(),
            burn_version: BURN_VERSION.to_string(),
            git_commit,
            host: me.host,
            pid: me.pid,
            slurm_job: me.slurm_job,
            record,
        }
    }

    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("manifest.json")
    }

    pub fn load(run_dir: &Path) -> Result<Option<Self>> {
        read_json(&Self::path(run_dir), "run manifest")
    }

    pub fn save(&self, run_dir: &Path) -> Result<()> {
        write_atomic(&Self::path(run_dir), &serde_json::to_vec_pretty(self)?)
    }
}

/// `<experiment>/experiment.json`: enough for `report` to rebuild everything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentManifest {
    pub name: String,
    pub description: String,
    pub seeds: Vec<u64>,
    pub axes: Vec<String>,
    /// (display name, directory) of each variant, in file order.
    pub variants: Vec<(String, String)>,
    pub source_file: String,
    /// The directory layout ([`super::layout::LAYOUT_VERSION`]); absent in directories written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<u32>,
    /// The study's decision rules (absent in directories written before verdicts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decide: Option<crate::config::DecideRules>,
    /// `[track]`: where the study is logged besides its directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<crate::config::TrackSettings>,
}

impl ExperimentManifest {
    /// The decision rules, the defaults (every seed in one look) for older directories.
    pub(crate) fn rules(&self) -> crate::config::DecideRules {
        self.decide.clone().unwrap_or(crate::config::DecideRules {
            first_seeds: self.seeds.len(),
            ..Default::default()
        })
    }

    pub fn new(experiment: &Experiment, source_file: &Path) -> Self {
        Self {
            name: experiment.name.clone(),
            description: experiment.description.clone(),
            seeds: experiment.seeds.clone(),
            axes: experiment.axes.clone(),
            variants: experiment
                .variants
                .iter()
                .map(|v| (v.name.clone(), v.slug.clone()))
                .collect(),
            source_file: source_file.display().to_string(),
            layout: Some(super::layout::LAYOUT_VERSION),
            decide: Some(experiment.decide.clone()),
            track: (experiment.track != Default::default()).then(|| experiment.track.clone()),
        }
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("experiment.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (is {} an experiment directory written by `unet-lab run`?)",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
    }

    /// Merges with an existing manifest: variants run earlier (e.g. with `--variant`) stay listed.
    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join("experiment.json"),
            &serde_json::to_vec_pretty(self)?,
        )
    }

    pub(crate) fn save_merged(mut self, dir: &Path) -> Result<()> {
        if let Ok(old) = Self::load(dir) {
            for v in old.variants {
                if !self.variants.iter().any(|(_, slug)| *slug == v.1) {
                    self.variants.push(v);
                }
            }
            for a in old.axes {
                if !self.axes.contains(&a) {
                    self.axes.push(a);
                }
            }
        }
        self.save(dir)
    }
}

/// A JSON file, `None` when it does not exist; unreadable or invalid is an error naming it.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid {what}", path.display()))?;
    Ok(Some(value))
}

const BURN_VERSION: &str = "0.21.0";

pub(crate) use crate::util::time::now_rfc3339;

/// The git commit of the directory holding `file`, if it is in a repository.
pub(crate) fn git_commit(file: &Path) -> Option<String> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}
