//! Checkpoints: `best` and `last` model parameters for later commands, and the resume state
//! (model, optimizer, epoch counter, best score) written after every epoch.
//!
//! The resume state is three files: `epoch-N.model.mpk`, `epoch-N.optim.mpk` and `resume.json`
//! naming them. `resume.json` is renamed into place last, so a crash at any instant leaves a
//! consistent state: the previous epoch's, or this one's.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::layout::RunId;
use super::manifest::BestSoFar;
use crate::util::fs::write_atomic;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ResumeState {
    pub config_hash: String,
    pub global_step: usize,
    /// The last completed epoch (`epochs_done`) and the best so far.
    #[serde(flatten)]
    pub best: BestSoFar,
    /// Consecutive epochs whose output was all zero (dead ReLU head detection).
    pub dead_epochs: usize,
    pub model_file: String,
    pub optim_file: String,
}

/// The checkpoint directory of one run: `<variant>/seed-<s>/checkpoints/`.
pub fn dir(variant_dir: &Path, run: RunId) -> PathBuf {
    super::layout::run_dir(variant_dir, run).join("checkpoints")
}

pub(crate) fn best_path(variant_dir: &Path, run: RunId) -> PathBuf {
    dir(variant_dir, run).join("best.mpk")
}

pub(crate) fn last_path(variant_dir: &Path, run: RunId) -> PathBuf {
    dir(variant_dir, run).join("last.mpk")
}

/// A resume state with the model and optimizer bytes it names.
type Resumable = (ResumeState, Vec<u8>, Vec<u8>);

impl ResumeState {
    pub fn load(dir: &Path) -> Result<Option<Resumable>> {
        let path = dir.join("resume.json");
        if !path.exists() {
            return Ok(None);
        }
        let state: ResumeState = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is corrupt", path.display()))?;
        let model = std::fs::read(dir.join(&state.model_file))
            .with_context(|| format!("cannot read the checkpoint {}", state.model_file))?;
        let optim = std::fs::read(dir.join(&state.optim_file))
            .with_context(|| format!("cannot read the checkpoint {}", state.optim_file))?;
        Ok(Some((state, model, optim)))
    }

    /// Writes the epoch's files, then the state naming them, then removes older epochs.
    pub fn save(mut self, dir: &Path, model: &[u8], optim: &[u8]) -> Result<()> {
        self.model_file = format!("epoch-{:04}.model.mpk", self.best.epochs_done);
        self.optim_file = format!("epoch-{:04}.optim.mpk", self.best.epochs_done);
        write_atomic(&dir.join(&self.model_file), model)?;
        write_atomic(&dir.join(&self.optim_file), optim)?;
        write_atomic(&dir.join("resume.json"), &serde_json::to_vec_pretty(&self)?)?;
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("epoch-") && name != self.model_file && name != self.optim_file {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Removes the resume state (a finished run keeps only best and last).
    pub fn clear(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("epoch-") || name == "resume.json" {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}
