//! Where a planned study stands, read from its plan, its runs' manifests and their locks.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;

use super::checkpoint::ResumeState;
use super::lock::{Holder, RunLock};
use super::manifest::{RunManifest, RunStatus};
use super::plan::{Plan, PlannedTask};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskState {
    Done,
    Running,
    Failed,
    Diverged,
    /// Started and stopped before the end (Ctrl-C, kill, a lost node): resumable.
    Interrupted,
    /// Never started, or its results are of a config the plan no longer has.
    Missing,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Done => "done",
            TaskState::Running => "running",
            TaskState::Failed => "failed",
            TaskState::Diverged => "diverged",
            TaskState::Interrupted => "interrupted",
            TaskState::Missing => "missing",
        }
    }

    /// Whether running the task again would change anything.
    fn needs_work(self) -> bool {
        matches!(self, TaskState::Interrupted | TaskState::Missing)
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct TaskStatus {
    pub index: usize,
    pub variant: String,
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    pub state: TaskState,
    /// Who holds the run's lock, when running.
    pub holder: Option<Holder>,
    /// Epochs finished (the last checkpoint's, while running) and planned.
    pub epochs_done: usize,
    pub epochs: usize,
    pub best_dice: Option<f64>,
    pub message: Option<String>,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct StudyStatus {
    pub experiment: String,
    pub dir: PathBuf,
    pub source_file: String,
    pub out: String,
    /// The `--backend` the study was planned with, if any.
    pub backend: Option<String>,
    /// The `--set`, `--grid`, `--epochs` it was planned with.
    pub edits: Vec<crate::config::Edit>,
    pub tasks: Vec<TaskStatus>,
}

impl StudyStatus {
    pub fn read(exp_dir: &Path) -> Result<StudyStatus> {
        super::migrate::migrate_if_legacy(exp_dir)?;
        let Some(plan) = Plan::load(exp_dir)? else {
            if !exp_dir.is_dir() {
                bail!("{} does not exist", exp_dir.display());
            }
            bail!(
                "{} has no plan.json: it is not a study directory, or it was written before studies \
                 were planned; plan it by running its experiment file once more with `unet-lab run \
                 FILE --out {}` (finished runs are kept, not retrained)",
                exp_dir.display(),
                exp_dir.parent().unwrap_or(Path::new(".")).display()
            );
        };
        let tasks = plan
            .tasks
            .iter()
            .map(|t| task_status(exp_dir, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(StudyStatus {
            experiment: plan.experiment,
            dir: exp_dir.to_path_buf(),
            source_file: plan.source_file,
            out: plan.out,
            backend: plan.backend,
            edits: plan.edits,
            tasks,
        })
    }

    pub fn count(&self, state: TaskState) -> usize {
        self.tasks.iter().filter(|t| t.state == state).count()
    }

    /// Every task finished: done, or failed/diverged for good (a rerun gives the same result).
    pub fn complete(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| !t.state.needs_work() && t.state != TaskState::Running)
    }

    /// The tasks a finishing command must train.
    pub fn unfinished(&self) -> Vec<usize> {
        self.tasks
            .iter()
            .filter(|t| t.state.needs_work())
            .map(|t| t.index)
            .collect()
    }
}

fn task_status(exp_dir: &Path, task: &PlannedTask) -> Result<TaskStatus> {
    let dir = exp_dir.join(task.dir());
    let manifest = RunManifest::load(&dir).unwrap_or(None);
    let current = manifest
        .as_ref()
        .filter(|m| m.record.config_hash == task.config_hash);
    let holder = RunLock::probe(&dir)?;
    let state = match (&holder, current.map(|m| m.record.status)) {
        (Some(_), _) => TaskState::Running,
        (None, None) => TaskState::Missing,
        (None, Some(RunStatus::Completed)) => TaskState::Done,
        (None, Some(RunStatus::Failed)) => TaskState::Failed,
        (None, Some(RunStatus::Diverged)) => TaskState::Diverged,
        (None, Some(RunStatus::Interrupted | RunStatus::Running)) => TaskState::Interrupted,
    };
    // resume.json alone: the checkpoint files it names can be hundreds of megabytes.
    let resumed_epoch = std::fs::read(dir.join("checkpoints").join("resume.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<ResumeState>(&b).ok())
        .map(|s| s.best.epochs_done);
    Ok(TaskStatus {
        index: task.index,
        variant: task.variant.clone(),
        seed: task.seed,
        fold: task.fold,
        state,
        holder: holder.flatten(),
        epochs_done: current
            .map(|m| m.record.best.epochs_done)
            .unwrap_or(0)
            .max(resumed_epoch.unwrap_or(0)),
        epochs: manifest.as_ref().map_or(0, |m| m.config.train.epochs),
        best_dice: current.and_then(|m| m.record.best.dice),
        message: current.and_then(|m| m.record.message.clone()),
        dir,
    })
}

/// `0,1,2,5,7,8` → `0-2,5,7-8` (SLURM's `--array` syntax).
pub(crate) fn index_ranges(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(index_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(index_ranges(&[3]), "3");
        assert_eq!(index_ranges(&[]), "");
    }
}
