//! Nothing trained is deleted implicitly. A run whose results no longer apply — its config
//! changed, or `run --fresh` asked for it again — is moved, checkpoints and all, to
//! `<exp>/superseded/<UTC time>/<variant>/<seed-…>/` before it is trained again; `status` and
//! the report list what is there, moving a directory back restores it, and only
//! `unet-lab prune` deletes it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::layout::{self, RunId};
use super::manifest::RunManifest;

/// The directory of superseded runs inside an experiment directory.
pub(crate) const DIR: &str = "superseded";

/// One superseded run, as found on disk.
#[derive(Debug, Clone, Serialize)]
pub struct SupersededRun {
    /// When it was set aside (the name of its time directory).
    pub when: String,
    pub variant: String,
    pub run: String,
    pub status: Option<String>,
    pub best_dice: Option<f64>,
    pub config_hash: Option<String>,
    pub dir: PathBuf,
}

/// The time directory of this process: every run one command sets aside goes together.
fn stamp() -> &'static str {
    static STAMP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    // RFC 3339 without colons, which some filesystems and tools do not take in names.
    STAMP.get_or_init(|| crate::util::time::now_rfc3339().replace(':', "-"))
}

/// Moves what a run wrote (all but its lock file, which must stay where it is: see
/// `lock.rs`) to the superseded directory; the caller holds the run's lock. The manifest moves
/// first, so a crash half-way leaves a run without a manifest — missing, retrained — never a
/// finished run without its checkpoints. Returns where it went (`None`: nothing to move).
pub(crate) fn supersede_run(exp_dir: &Path, slug: &str, run: RunId) -> Result<Option<PathBuf>> {
    let run_dir = layout::run_dir(&exp_dir.join(slug), run);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name() != ".lock")
        .map(|e| e.path())
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    entries.sort_by_key(|p| p.file_name() != Some("manifest.json".as_ref()));
    let dest = free_destination(exp_dir, slug, run);
    std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
    for entry in &entries {
        let to = dest.join(entry.file_name().unwrap_or_default());
        std::fs::rename(entry, &to)
            .with_context(|| format!("cannot move {} to {}", entry.display(), to.display()))?;
    }
    Ok(Some(dest))
}

/// `superseded/<time>/<variant>/<seed-…>`, or with `-2`, `-3`, … when a run of that name was
/// set aside in the same second.
fn free_destination(exp_dir: &Path, slug: &str, run: RunId) -> PathBuf {
    let base = exp_dir.join(DIR).join(stamp()).join(slug);
    let mut dest = base.join(run.dir_name());
    let mut n = 2;
    while dest.exists() {
        dest = base.join(format!("{}-{n}", run.dir_name()));
        n += 1;
    }
    dest
}

/// Every superseded run of an experiment directory, oldest first.
pub fn list(exp_dir: &Path) -> Vec<SupersededRun> {
    let mut found = Vec::new();
    for when in sorted_dirs(&exp_dir.join(DIR)) {
        let when_name = file_name(&when);
        for variant_dir in sorted_dirs(&when) {
            for run_dir in sorted_dirs(&variant_dir) {
                let manifest = RunManifest::load(&run_dir).ok().flatten();
                found.push(SupersededRun {
                    when: when_name.clone(),
                    variant: manifest
                        .as_ref()
                        .map_or_else(|| file_name(&variant_dir), |m| m.variant.clone()),
                    run: manifest
                        .as_ref()
                        .map_or_else(|| file_name(&run_dir), |m| m.record.run_id().to_string()),
                    status: manifest
                        .as_ref()
                        .map(|m| m.record.status.as_str().to_string()),
                    best_dice: manifest.as_ref().and_then(|m| m.record.best.dice),
                    config_hash: manifest.as_ref().map(|m| m.record.config_hash.clone()),
                    dir: run_dir,
                });
            }
        }
    }
    found
}

/// Deletes the superseded directory; returns how many runs and bytes went with it.
pub fn prune(exp_dir: &Path) -> Result<(usize, u64)> {
    let dir = exp_dir.join(DIR);
    let runs = list(exp_dir).len();
    if !dir.exists() {
        return Ok((0, 0));
    }
    let bytes = size_of(&dir);
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    Ok((runs, bytes))
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn size_of(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| size_of(&e.path()))
            .sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_superseded_run_moves_with_its_files_and_leaves_its_lock() {
        let exp = std::env::temp_dir().join(format!("unet-lab-supersede-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&exp);
        let run = RunId::new(1, None);
        let run_dir = layout::run_dir(&exp.join("base"), run);
        std::fs::create_dir_all(run_dir.join("checkpoints")).unwrap();
        std::fs::write(run_dir.join("checkpoints/best.mpk"), b"weights").unwrap();
        std::fs::write(run_dir.join("metrics.parquet"), b"rows").unwrap();
        std::fs::write(run_dir.join(".lock"), b"").unwrap();

        let dest = supersede_run(&exp, "base", run).unwrap().unwrap();
        assert!(dest.starts_with(exp.join(DIR)), "{}", dest.display());
        assert!(dest.ends_with("base/seed-1"), "{}", dest.display());
        assert_eq!(
            std::fs::read(dest.join("checkpoints/best.mpk")).unwrap(),
            b"weights"
        );
        assert_eq!(
            std::fs::read(dest.join("metrics.parquet")).unwrap(),
            b"rows"
        );
        let left: Vec<_> = std::fs::read_dir(&run_dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "only the lock stays");
        assert!(run_dir.join(".lock").exists());
        // Nothing left to move: nothing happens.
        assert!(supersede_run(&exp, "base", run).unwrap().is_none());
        // A second one in the same second gets its own name.
        std::fs::write(run_dir.join("metrics.parquet"), b"rows 2").unwrap();
        let second = supersede_run(&exp, "base", run).unwrap().unwrap();
        assert!(second.ends_with("base/seed-1-2"), "{}", second.display());
        assert_eq!(list(&exp).len(), 2);

        let (runs, bytes) = prune(&exp).unwrap();
        assert_eq!((runs, bytes), (2, 7 + 4 + 6));
        assert!(!exp.join(DIR).exists());
        std::fs::remove_dir_all(&exp).unwrap();
    }
}
