//! `plan.json`: the study's task list, written once when the study is planned and never by a
//! worker. Workers compare it with the tasks their own copy of the experiment file expands to,
//! and refuse to train when they differ — two hosts with different files must not write into
//! one study.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::util::hash::fnv1a64;

use super::layout::{self, RunId};
use super::lock::Exclusive;
use crate::util::fs::write_atomic;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlannedTask {
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
    pub(crate) fn run_id(&self) -> RunId {
        RunId::new(self.seed, self.fold)
    }

    /// Relative to the experiment directory.
    pub fn dir(&self) -> PathBuf {
        layout::run_dir(Path::new(&self.slug), self.run_id())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub experiment: String,
    /// The experiment file, as an absolute path when it could be resolved.
    pub source_file: String,
    /// FNV-1a of the file's bytes when planned.
    pub file_hash: String,
    /// FNV-1a of the expanded study (every task's variant, run and config hash): equal for two
    /// files that describe the same study in other words.
    #[serde(default)]
    pub study_hash: String,
    /// The `--out` directory (parent of the experiment directory), absolute when possible.
    pub out: String,
    pub planned_at: String,
    /// `--backend` given when planning, if any (it is part of every task's config hash).
    pub backend: Option<String>,
    /// `--set`, `--grid`, `--epochs` given when planning: every worker and script repeats them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edits: Vec<crate::config::Edit>,
    pub tasks: Vec<PlannedTask>,
}

/// What planning did.
#[derive(Debug, Clone)]
pub(crate) enum Planned {
    /// No plan existed: written now.
    New,
    /// The plan on disk has the same tasks.
    Same,
    /// The same file's tasks changed and this caller may re-plan: rewritten (the old plan).
    Replanned(Box<Plan>),
}

/// The canonical path when the file exists (symbolic links and `..` resolved), else absolute.
fn absolute(p: &Path) -> String {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
        .display()
        .to_string()
}

/// Whether two recorded source paths name the same file.
fn same_file(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

impl Plan {
    /// The plan of the study `experiment` (its name) whose tasks are `tasks`, from `file`
    /// (its bytes: `source`), written under `out`.
    pub fn new(
        experiment: &str,
        tasks: Vec<PlannedTask>,
        file: &Path,
        source: &[u8],
        out: &Path,
    ) -> Plan {
        let study = serde_json::to_string(&tasks).unwrap_or_default();
        Plan {
            experiment: experiment.to_string(),
            source_file: absolute(file),
            file_hash: format!("{:016x}", fnv1a64(source)),
            study_hash: format!("{:016x}", fnv1a64(study.as_bytes())),
            out: absolute(out),
            planned_at: crate::util::time::now_rfc3339(),
            backend: None,
            edits: Vec::new(),
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
    pub(crate) fn establish(
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
                Some(diff) if may_replan && !same_file(&old.source_file, &self.source_file) => {
                    return Err(self.refusal(&old, exp_dir, &diff));
                }
                Some(_) if may_replan => Planned::Replanned(Box::new(old)),
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
        if !matches!(planned, Planned::Same) {
            write_files()?;
            write_atomic(
                &layout::plan_path(exp_dir),
                &serde_json::to_vec_pretty(self)?,
            )?;
        }
        Ok(planned)
    }
}

impl Plan {
    /// Another file maps to a directory that belongs to a different study: refused before
    /// anything is written, with the ways out.
    fn refusal(&self, old: &Plan, exp_dir: &Path, diff: &str) -> anyhow::Error {
        crate::util::Refusal(format!(
            "{} belongs to the study planned from {} ({} tasks, planned at {}), but {} is a \
             different file and expands to a different study ({diff}). Nothing was written and \
             nothing was deleted. To run it beside the other, give it a directory of its own: \
             `--out OTHER_DIR`, or a different `name = \"…\"` at the top of {}",
            exp_dir.display(),
            old.source_file,
            old.tasks.len(),
            old.planned_at,
            self.source_file,
            self.source_file
        ))
        .into()
    }

    /// What re-planning the same file changes, run by run, with the keys that differ
    /// (`configs`: each task's config, by task index).
    pub fn changes(&self, old: &Plan, exp_dir: &Path, configs: &[&RunConfig]) -> String {
        let mut changed = Vec::new();
        for task in &self.tasks {
            let before = old
                .tasks
                .iter()
                .find(|t| t.slug == task.slug && t.run_id() == task.run_id());
            match before {
                Some(b) if b.config_hash == task.config_hash => {}
                Some(_) => changed.push(format!(
                    "  {} {}: {}",
                    task.variant,
                    task.run_id(),
                    configs
                        .get(task.index)
                        .map_or("config changed".into(), |c| {
                            changed_keys(exp_dir, task, c)
                        })
                )),
                None => changed.push(format!("  {} {}: new", task.variant, task.run_id())),
            }
        }
        let kept: Vec<String> = old
            .tasks
            .iter()
            .filter(|o| {
                !self
                    .tasks
                    .iter()
                    .any(|t| t.slug == o.slug && t.run_id() == o.run_id())
            })
            .map(|o| {
                format!(
                    "  {} {}: no longer in the file (kept as it is)",
                    o.variant,
                    o.run_id()
                )
            })
            .collect();
        let mut text = format!(
            "{} changed since {} was planned ({}): {} of {} runs change; changed runs are trained \
             again and their earlier results move to {}/\n",
            self.source_file,
            exp_dir.display(),
            old.planned_at,
            changed.len(),
            self.tasks.len(),
            exp_dir.join(super::supersede::DIR).display()
        );
        for line in changed.iter().chain(&kept) {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// "train.lr 0.001 → 0.0001, train.epochs 5 → 8": the keys in which a run's recorded config
/// differs from the planned one (or why that cannot be told).
fn changed_keys(exp_dir: &Path, task: &PlannedTask, config: &RunConfig) -> String {
    let Ok(Some(run)) = super::manifest::RunManifest::load(&exp_dir.join(task.dir())) else {
        return "config changed (the run has no record to compare with)".into();
    };
    let now = serde_json::to_value(config).unwrap_or_default();
    let before = crate::util::flatten_json(&serde_json::to_value(&run.config).unwrap_or_default());
    let diffs: Vec<String> = crate::util::flatten_json(&now)
        .into_iter()
        .filter_map(|(key, value)| {
            let old = before
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone());
            (old.as_ref() != Some(&value)).then(|| {
                format!(
                    "{key} {} → {value}",
                    old.map_or("(absent)".to_string(), |v| v.to_string())
                )
            })
        })
        .collect();
    if diffs.is_empty() {
        "config changed".into()
    } else {
        diffs.join(", ")
    }
}
