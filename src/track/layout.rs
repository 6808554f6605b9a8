//! Where things live in an experiment directory.
//!
//! ```text
//! <exp>/plan.json, experiment.json, experiment.toml   written once, when the study is planned
//! <exp>/metrics.parquet, steps.parquet, runs.parquet  derived: merged from the runs' own files
//! <exp>/<variant>/seed-<s>/                           everything one run writes, and only it
//!     manifest.json, metrics.parquet, steps.parquet, checkpoints/, snapshots/, .lock
//! ```

use std::path::{Path, PathBuf};

/// The directory of one run (variant × seed).
pub fn run_dir(variant_dir: &Path, seed: u64) -> PathBuf {
    variant_dir.join(format!("seed-{seed}"))
}

/// The seed a run directory's name stands for (`seed-3` → 3).
pub fn seed_of_dir_name(name: &str) -> Option<u64> {
    name.strip_prefix("seed-")?.parse().ok()
}

/// The run directories under a variant directory, by seed.
pub fn run_dirs(variant_dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(variant_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            Some((
                seed_of_dir_name(&e.file_name().to_string_lossy())?,
                e.path(),
            ))
        })
        .collect();
    found.sort();
    found
}

pub fn plan_path(exp_dir: &Path) -> PathBuf {
    exp_dir.join("plan.json")
}

pub fn runs_table_path(exp_dir: &Path) -> PathBuf {
    exp_dir.join("runs.parquet")
}

/// Serialises planning (writing the experiment-level files) between processes.
pub fn plan_lock_path(exp_dir: &Path) -> PathBuf {
    exp_dir.join(".plan.lock")
}

/// Serialises merges, so the last merge to finish is also the last to have read.
pub fn merge_lock_path(exp_dir: &Path) -> PathBuf {
    exp_dir.join(".merge.lock")
}
