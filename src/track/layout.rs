//! Where things live in an experiment directory.
//!
//! ```text
//! <exp>/plan.json, experiment.json, experiment.toml   written once, when the study is planned
//! <exp>/metrics.parquet, steps.parquet, runs.parquet  derived: merged from the runs' own files
//! <exp>/<variant>/seed-<s>/                           everything one run writes, and only it
//!     (seed-<s>-fold-<k>/ for a fold of a cross-validation)
//!     manifest.json, metrics.parquet, steps.parquet, checkpoints/, snapshots/, .lock
//! ```

use std::path::{Path, PathBuf};

/// The layout above, recorded in `experiment.json` (`layout`). Directories without it and
/// without a `plan.json` have the single-file layout of the first builds (`migrate.rs`).
pub(crate) const LAYOUT_VERSION: u32 = 2;

/// Which run of a variant: a seed and, cross-validated, a fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId {
    pub seed: u64,
    pub fold: Option<usize>,
}

impl RunId {
    pub fn new(seed: u64, fold: Option<usize>) -> RunId {
        RunId { seed, fold }
    }

    pub fn of(task: &crate::config::Task) -> RunId {
        RunId::new(task.seed, task.fold)
    }

    /// `seed-3`, or `seed-3-fold-1` for a fold of a cross-validation.
    pub(crate) fn dir_name(&self) -> String {
        match self.fold {
            Some(k) => format!("seed-{}-fold-{k}", self.seed),
            None => format!("seed-{}", self.seed),
        }
    }

    /// The run a directory name stands for (`seed-3` → seed 3; `seed-3-fold-1` → fold 1).
    fn from_dir_name(name: &str) -> Option<RunId> {
        let rest = name.strip_prefix("seed-")?;
        match rest.split_once("-fold-") {
            Some((seed, fold)) => Some(RunId::new(seed.parse().ok()?, Some(fold.parse().ok()?))),
            None => Some(RunId::new(rest.parse().ok()?, None)),
        }
    }
}

/// "seed 3", "seed 3 fold 1": how messages and the report name a run.
impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.fold {
            Some(k) => write!(f, "seed {} fold {k}", self.seed),
            None => write!(f, "seed {}", self.seed),
        }
    }
}

/// The directory of one run (variant × seed, × fold when cross-validated).
pub(crate) fn run_dir(variant_dir: &Path, run: RunId) -> PathBuf {
    variant_dir.join(run.dir_name())
}

/// The run directories under a variant directory, by seed and fold.
pub(crate) fn run_dirs(variant_dir: &Path) -> Vec<(RunId, PathBuf)> {
    let mut found: Vec<(RunId, PathBuf)> = std::fs::read_dir(variant_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            Some((
                RunId::from_dir_name(&e.file_name().to_string_lossy())?,
                e.path(),
            ))
        })
        .collect();
    found.sort();
    found
}

pub(crate) fn plan_path(exp_dir: &Path) -> PathBuf {
    exp_dir.join("plan.json")
}

pub(crate) fn runs_table_path(exp_dir: &Path) -> PathBuf {
    exp_dir.join("runs.parquet")
}

/// Serialises planning (writing the experiment-level files) between processes.
pub(crate) fn plan_lock_path(exp_dir: &Path) -> PathBuf {
    exp_dir.join(".plan.lock")
}

/// Serialises merges, so the last merge to finish is also the last to have read.
pub(crate) fn merge_lock_path(exp_dir: &Path) -> PathBuf {
    exp_dir.join(".merge.lock")
}

/// Whether `exp_dir` has the single-file layout: an `experiment.json` without a layout
/// version, and no `plan.json` (which came with per-run storage). Every later directory has
/// a derived `<variant>/manifest.json` too, so that file alone says nothing.
pub(crate) fn is_legacy(exp_dir: &Path) -> bool {
    if plan_path(exp_dir).exists() {
        return false;
    }
    std::fs::read(exp_dir.join("experiment.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.is_object() && v.get("layout").is_none())
}
