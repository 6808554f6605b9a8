//! A study: the tasks an experiment file expands to (one per variant × seed × fold), planned
//! once into its directory, trained by any number of workers — this process, the processes of
//! `--jobs`, SLURM array tasks, on any hosts sharing the filesystem — and finished: merged into
//! the study-wide tables and reported. `cli` parses flags and calls it; `train` trains one run.
//!
//! `unet-lab run FILE` reads as: [`Study::load`] (the file read once; every task's variant,
//! config hash and data computed once) → [`Study::run`] (check, plan, then each selected task:
//! claim → train one run → record, here or in worker processes) → [`finish`] (merge, report).
//!
//! A *planner* (`run FILE`, `slurm FILE`) writes the experiment-level files and may re-plan
//! after the file changed; a *worker* (`--task`, `--shard`, the processes of `--jobs`) only
//! checks that its file still gives the planned tasks.

mod command;
mod finish;
mod rounds;
pub mod slurm;
mod task;
mod workers;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::config::{
    self, BackendKind, DataConfig, Experiment, Precision, RunConfig, Task, Variant,
};
use crate::data::{self, Dataset};
use crate::track::layout::{self, RunId};
use crate::track::plan::Planned;
use crate::track::{ExperimentManifest, Plan, PlannedTask};
use crate::train::progress::{LiveEvent, LiveHook};

pub(crate) use command::{Program, Share, WorkerCommand};
pub use finish::finish;
pub(crate) use task::TaskResult;
pub(crate) use workers::check_devices;

/// What the command line changes in every variant of the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--backend`: part of every task's config hash.
    pub backend: Option<BackendKind>,
    /// `--set`, `--grid`, `--epochs`: edits of the file's text (the study is named after them).
    pub edits: Vec<config::Edit>,
}

/// Which of the study's tasks this process trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Every task (of the selected variants).
    All,
    /// One task, by index (`--task I`).
    Task(usize),
    /// Every `count`-th task from `index` (`--shard I/N`).
    Shard { index: usize, count: usize },
}

impl Selection {
    fn includes(self, task: usize) -> bool {
        match self {
            Selection::All => true,
            Selection::Task(i) => task == i,
            Selection::Shard { index, count } => task % count == index,
        }
    }
}

/// How this process takes part in the study.
pub struct RunOptions {
    pub out: PathBuf,
    /// Retrain the selected tasks, discarding their earlier results.
    pub fresh: bool,
    /// Only these variants (names or directory names); empty: all.
    pub variants: Vec<String>,
    pub selection: Selection,
    /// A worker of a planned study (`--task`, `--shard` and `--jobs`' processes imply it).
    pub worker: bool,
    /// Worker processes to start on this machine (1: train in this process).
    pub jobs: usize,
    /// GPUs to hand out to the worker processes, one each (CUDA).
    pub devices: Vec<usize>,
    /// The GPU this process trains on (CUDA).
    pub device: Option<usize>,
    /// Told of every epoch and every finished run (the live report).
    pub live: Option<LiveHook>,
    /// The MLflow sink: told of every run that changed.
    pub tracking: Option<std::sync::Arc<crate::track::mlflow::Sink>>,
    /// `--mlflow URI`, passed on to worker processes.
    pub mlflow: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out: PathBuf::from("reports"),
            fresh: false,
            variants: Vec::new(),
            selection: Selection::All,
            worker: false,
            jobs: 1,
            devices: Vec::new(),
            device: None,
            live: None,
            tracking: None,
            mlflow: None,
        }
    }
}

impl RunOptions {
    /// Whether this process runs the whole (selected) study, rather than a worker's share: it
    /// merges the runs and renders the report afterwards.
    pub(crate) fn whole_study(&self) -> bool {
        !self.worker && self.selection == Selection::All
    }
}

/// How the tasks a process was given ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub completed: usize,
    pub diverged: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Runs stopped by an error of the environment (left interrupted, resumable).
    pub errored: usize,
    /// Runs found finished and not trained again.
    pub skipped: usize,
    /// Tasks another live worker was training.
    pub busy: usize,
}

impl Summary {
    /// Adds another round's counts.
    pub(crate) fn merge(&mut self, other: &Summary) {
        self.completed += other.completed;
        self.diverged += other.diverged;
        self.failed += other.failed;
        self.interrupted += other.interrupted;
        self.errored += other.errored;
        self.skipped += other.skipped;
        self.busy += other.busy;
    }

    pub fn line(&self) -> String {
        let mut line = format!(
            "{} completed ({} already done), {} diverged, {} failed, {} interrupted",
            self.completed, self.skipped, self.diverged, self.failed, self.interrupted
        );
        if self.errored > 0 {
            line.push_str(&format!(
                ", {} stopped by an error (resumable: run the same command again)",
                self.errored
            ));
        }
        if self.busy > 0 {
            line.push_str(&format!(", {} being trained by other workers", self.busy));
        }
        line
    }
}

/// One task with the facts every step asks of it, computed once per study.
pub struct StudyTask {
    pub task: Task,
    /// The task's variant, resolved for its fold.
    pub variant: Variant,
    pub config_hash: String,
    /// Index into the study's distinct data configs.
    data: usize,
}

impl StudyTask {
    pub fn run(&self) -> RunId {
        RunId::of(&self.task)
    }

    pub fn variant_dir(&self, exp_dir: &Path) -> PathBuf {
        exp_dir.join(&self.variant.slug)
    }

    pub(crate) fn run_dir(&self, exp_dir: &Path) -> PathBuf {
        layout::run_dir(&self.variant_dir(exp_dir), self.run())
    }

    fn planned(&self) -> PlannedTask {
        PlannedTask {
            index: self.task.index,
            variant: self.variant.name.clone(),
            slug: self.variant.slug.clone(),
            seed: self.task.seed,
            fold: self.task.fold,
            config_hash: self.config_hash.clone(),
        }
    }
}

/// An experiment file, expanded into its tasks.
pub struct Study {
    pub file: PathBuf,
    /// The file's bytes, as parsed (`experiment.toml` keeps them).
    source: Vec<u8>,
    pub experiment: Experiment,
    pub overrides: Overrides,
    pub tasks: Vec<StudyTask>,
    /// The distinct data configs of the tasks ([`StudyTask::data`] indexes them).
    data: Vec<DataConfig>,
}

impl Study {
    /// Reads, checks and expands the experiment file, with the command line's overrides.
    pub fn load(file: &Path, overrides: Overrides) -> Result<Study> {
        let (mut experiment, source) = config::load_with_source(file, &overrides.edits)?;
        if let Some(b) = overrides.backend {
            for v in &mut experiment.variants {
                v.config.train.backend = b;
            }
        }
        let mut data: Vec<DataConfig> = Vec::new();
        let tasks = experiment
            .tasks()
            .into_iter()
            .map(|task| {
                let variant = experiment.task_variant(&task);
                let index = match data.iter().position(|d| *d == variant.config.data) {
                    Some(i) => i,
                    None => {
                        data.push(variant.config.data.clone());
                        data.len() - 1
                    }
                };
                StudyTask {
                    config_hash: variant.config_hash(task.seed),
                    variant,
                    data: index,
                    task,
                }
            })
            .collect();
        Ok(Study {
            file: file.to_path_buf(),
            source,
            experiment,
            overrides,
            tasks,
            data,
        })
    }

    /// The study's directory under `out`.
    pub fn dir(&self, out: &Path) -> PathBuf {
        out.join(&self.experiment.slug)
    }

    /// The tasks of the selected variants in `selection`, after checking both.
    pub fn select(&self, variants: &[String], selection: Selection) -> Result<Vec<&StudyTask>> {
        let n = self.tasks.len();
        match selection {
            Selection::Task(i) if i >= n => bail!(
                "--task {i}: the study has {n} task(s), numbered 0 to {} (see `unet-lab tasks {}`)",
                n.saturating_sub(1),
                self.file.display()
            ),
            Selection::Shard { count: 0, .. } => bail!("--shard I/N: N must be at least 1"),
            Selection::Shard { index, count } if index >= count => {
                bail!(
                    "--shard {index}/{count}: I must be below N (0 to {})",
                    count - 1
                )
            }
            _ => {}
        }
        let chosen = self
            .experiment
            .variant_indices(variants)
            .map_err(anyhow::Error::msg)?;
        Ok(self
            .tasks
            .iter()
            .filter(|t| selection.includes(t.task.index) && chosen.contains(&t.task.variant))
            .collect())
    }

    /// Backends must be usable, and `--devices`/`--device` must fit them, before anything
    /// starts.
    pub(crate) fn check_backends(&self, devices: &[usize], device: Option<usize>) -> Result<()> {
        let mut placements: Vec<(BackendKind, Option<usize>, Precision)> = self
            .experiment
            .variants
            .iter()
            .map(|v| {
                let t = &v.config.train;
                (t.backend, device.or(t.device), t.precision)
            })
            .collect();
        placements.sort_by_key(|(b, d, p)| (b.name(), *d, p.name()));
        placements.dedup();
        let backends: Vec<BackendKind> = placements.iter().map(|p| p.0).collect();
        check_devices(&backends, devices, device)?;
        if let Some(w) = placements
            .windows(2)
            .find(|w| w[0].0.is_gpu() && (w[0].0, w[0].1) == (w[1].0, w[1].1))
        {
            bail!(
                "train.precision: variants train on {} in both {} and {}, but Burn fixes a device's \
                 float type once per process; train them separately (--variant NAME) or as workers \
                 (--jobs N)",
                w[0].0.name(),
                w[0].2.name(),
                w[1].2.name()
            );
        }
        for (backend, device, precision) in placements {
            crate::device::check_available(backend, device, precision)?;
        }
        Ok(())
    }

    /// Checks that every data source is there, without loading it (cheap): a missing path
    /// fails before anything is written.
    pub(crate) fn survey_data(&self) -> Result<()> {
        for d in &self.data {
            data::survey(d)?;
        }
        Ok(())
    }

    /// Loads (and thereby checks) the data of `tasks`, each distinct config once.
    fn load_data(&self, tasks: &[&StudyTask]) -> Result<Vec<Option<Dataset>>> {
        let mut loaded: Vec<Option<Dataset>> = self.data.iter().map(|_| None).collect();
        for t in tasks {
            if loaded[t.data].is_none() {
                loaded[t.data] = Some(data::load(&self.data[t.data])?);
            }
        }
        Ok(loaded)
    }

    /// Writes `plan.json`, `experiment.json` and `experiment.toml` under `out` when the study
    /// is new (or, for a `planner`, changed); a worker whose file no longer gives the planned
    /// tasks is refused. Returns the study's directory.
    pub fn plan(&self, out: &Path, planner: bool) -> Result<PathBuf> {
        let exp_dir = self.dir(out);
        std::fs::create_dir_all(&exp_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the output directory {}: {e}",
                exp_dir.display()
            )
        })?;
        // A directory of the single-file layout is moved to per-run storage before any run of it.
        crate::track::migrate::migrate_if_legacy(&exp_dir)?;
        let tasks = self.tasks.iter().map(StudyTask::planned).collect();
        let mut plan = Plan::new(&self.experiment.name, tasks, &self.file, &self.source, out);
        plan.backend = self.overrides.backend.map(|b| b.name().to_string());
        plan.edits = self.overrides.edits.clone();
        let planned = plan.establish(&exp_dir, planner, || {
            ExperimentManifest::new(&self.experiment, &self.file).save_merged(&exp_dir)?;
            crate::track::write_atomic(&exp_dir.join("experiment.toml"), &self.source)
        })?;
        if let Planned::Replanned(old) = planned {
            let configs: Vec<&RunConfig> = self.tasks.iter().map(|t| &t.variant.config).collect();
            eprint!("{}", plan.changes(&old, &exp_dir, &configs));
        }
        Ok(exp_dir)
    }

    /// Checks, plans and trains the tasks `opts` selects — in this process, or in `opts.jobs`
    /// worker processes — and counts how they ended. A study with a seed plan trains in
    /// rounds until its contrasts are decided (see [`rounds`]).
    pub fn run(&self, opts: &RunOptions) -> Result<Summary> {
        let mut tasks = self.select(&opts.variants, opts.selection)?;
        if self.sequential() {
            if opts.whole_study() {
                return rounds::run_until_decided(self, &tasks, opts);
            }
            // A worker trains the current round's share; `--task I` trains what it names.
            if !matches!(opts.selection, Selection::Task(_)) {
                tasks = rounds::Round::read(self, &self.dir(&opts.out))?.tasks(self, &tasks);
            }
        }
        self.run_tasks(&tasks, opts)
    }

    /// Seeds are added until decided.
    pub(crate) fn sequential(&self) -> bool {
        self.experiment
            .decide
            .sequential(self.experiment.seeds.len())
    }

    /// Checks, plans and trains `tasks`.
    fn run_tasks(&self, tasks: &[&StudyTask], opts: &RunOptions) -> Result<Summary> {
        let tasks = tasks.to_vec();
        self.check_backends(&opts.devices, opts.device)?;
        let datasets = if opts.jobs > 1 {
            // The worker processes load the data; here it is only surveyed.
            self.survey_data()?;
            Vec::new()
        } else {
            self.load_data(&tasks)?
        };
        let exp_dir = self.plan(&opts.out, !opts.worker)?;
        if opts.fresh {
            task::set_aside(&exp_dir, &tasks)?;
        }
        if opts.jobs > 1 {
            return workers::run_processes(self, &exp_dir, &tasks, opts);
        }
        let commit = crate::track::manifest::git_commit(&self.file);
        let mut summary = Summary::default();
        for (k, t) in tasks.iter().enumerate() {
            let label = format!("[{}/{}]", k + 1, tasks.len());
            let dataset = datasets[t.data].as_ref().expect("loaded above");
            let here = task::Here {
                experiment: &self.experiment,
                exp_dir: &exp_dir,
                commit: &commit,
                label: &label,
            };
            let result = task::train_task(&here, t, dataset, opts)?;
            if let (TaskResult::Trained(_), Some(live)) = (result, &opts.live) {
                live(LiveEvent::RunEnded);
            }
            summary.add(result);
            if crate::train::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
        }
        Ok(summary)
    }
}
