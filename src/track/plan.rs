//! `plan.json`: the study's task list, written once when the study is planned and never by a
//! worker. Workers compare it with the tasks their own copy of the experiment file expands to,
//! and refuse to train when they differ — two hosts with different files must not write into
//! one study.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::Experiment;
use crate::util::hash::fnv1a64;

use super::layout::{self, RunId};
use super::lock::Exclusive;
use crate::util::fs::write_atomic;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTask {
    pub index: usize,
    pub variant: String,
    /// The variant's directory name.
    pub slug: String,
    pub seed: u64,
    /// Absent in plans of plain studies (and of earlier builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    pub config_hash: String,
}

impl PlannedTask {
    pub fn run_id(&self) -> RunId {
        RunId::new(self.seed, self.fold)
    }

    /// Relative to the experiment directory.
    pub fn dir(&self) -> PathBuf {
        layout::run_dir(Path::new(&self.slug), self.run_id())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub experiment: String,
    /// The experiment file, as an absolute path when it could be resolved.
    pub source_file: String,
    /// FNV-1a of the file's bytes when planned.
    pub file_hash: String,
    /// The `--out` directory (parent of the experiment directory), absolute when possible.
    pub out: String,
    pub planned_at: String,
    /// `--backend` given when planning, if any (it is part of every task's config hash).
    pub backend: Option<String>,
    pub tasks: Vec<PlannedTask>,
}

/// What planning did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    /// No plan existed: written now.
    New,
    /// The plan on disk has the same tasks.
    Same,
    /// The tasks changed and this caller may re-plan: rewritten.
    Replanned,
}

fn absolute(p: &Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

impl Plan {
    pub fn new(experiment: &Experiment, file: &Path, source: &[u8], out: &Path) -> Plan {
        let tasks = experiment
            .tasks()
            .into_iter()
            .map(|t| {
                let v = experiment.task_variant(&t);
                PlannedTask {
                    index: t.index,
                    config_hash: v.config_hash(t.seed),
                    variant: v.name,
                    slug: v.slug,
                    seed: t.seed,
                    fold: t.fold,
                }
            })
            .collect();
        Plan {
            experiment: experiment.name.clone(),
            source_file: absolute(file),
            file_hash: format!("{:016x}", fnv1a64(source)),
            out: absolute(out),
            planned_at: crate::util::time::now_rfc3339(),
            backend: None,
            tasks,
        }
    }

    pub fn load(exp_dir: &Path) -> Result<Option<Plan>> {
        let path = layout::plan_path(exp_dir);
        if !path.exists() {
            return Ok(None);
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let plan = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid plan", path.display()))?;
        Ok(Some(plan))
    }

    /// The first task that differs from `other`'s, described for an error message.
    fn difference(&self, other: &Plan) -> Option<String> {
        if self.tasks.len() != other.tasks.len() {
            return Some(format!(
                "the plan has {} tasks, the file now gives {}",
                other.tasks.len(),
                self.tasks.len()
            ));
        }
        self.tasks
            .iter()
            .zip(&other.tasks)
            .find(|(a, b)| a != b)
            .map(|(now, planned)| {
                format!(
                    "task {} was \"{}\" {} (config {}), the file now gives \"{}\" {} (config {})",
                    planned.index,
                    planned.variant,
                    planned.run_id(),
                    planned.config_hash,
                    now.variant,
                    now.run_id(),
                    now.config_hash
                )
            })
    }

    /// Writes this plan unless an equal one is there. With a different plan on disk, a planner
    /// (`may_replan`) rewrites it; a worker refuses. `write_files` runs, under the same lock,
    /// whenever the plan is (re)written, for the other experiment-level files.
    pub fn establish(
        &self,
        exp_dir: &Path,
        may_replan: bool,
        write_files: impl FnOnce() -> Result<()>,
    ) -> Result<Planned> {
        std::fs::create_dir_all(exp_dir)
            .with_context(|| format!("cannot create the output directory {}", exp_dir.display()))?;
        let _planning = Exclusive::wait(&layout::plan_lock_path(exp_dir))?;
        let planned = match Plan::load(exp_dir)? {
            None => Planned::New,
            Some(old) => match self.difference(&old) {
                None => Planned::Same,
                Some(_) if may_replan => Planned::Replanned,
                Some(diff) => bail!(
                    "the experiment file {} no longer matches the plan of {} ({diff}); it was planned \
                     from {} (hash {}, now {}) at {}. Restore that file, or plan the study again with \
                     `unet-lab run {}` (no --task/--shard) once no worker is running",
                    self.source_file,
                    exp_dir.display(),
                    old.source_file,
                    old.file_hash,
                    self.file_hash,
                    old.planned_at,
                    self.source_file
                ),
            },
        };
        if planned != Planned::Same {
            write_files()?;
            write_atomic(
                &layout::plan_path(exp_dir),
                &serde_json::to_vec_pretty(self)?,
            )?;
        }
        Ok(planned)
    }
}
