//! Runs a study: plans it (the task list, written once), trains the tasks this process may
//! claim — one lock per run, so any number of workers on any hosts can share the directory —
//! and merges the runs' files into the study-wide tables at the end.
//!
//! A study is a list of tasks, one per (variant, seed) in file order. A *planner* (`run FILE`,
//! `slurm FILE`) writes the experiment-level files and may re-plan after the file changed; a
//! *worker* (`--task`, `--shard`, the processes of `--jobs`) only checks that its file still
//! gives the planned tasks. Each task: claim its lock (busy → move on), skip it when it finished
//! with the same config, otherwise train it, resuming from its last epoch checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::progress::{LiveEvent, LiveHook, WithHook, make_progress};
use crate::config::{BackendKind, Experiment, Precision, Task};
use crate::data::{self, Dataset};
use crate::track::layout::{self, RunId};
use crate::track::manifest::{git_commit, now_rfc3339};
use crate::track::plan::Planned;
use crate::track::{
    Claim, ExperimentManifest, Plan, RunLock, RunManifest, RunRecord, RunStatus, TestScore, Tracker,
};

use super::{Ending, RunOutcome, RunSpec};
use crate::device as backend;
use crate::util::panic_message;

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

pub struct RunOptions {
    pub out: PathBuf,
    pub backend: Option<BackendKind>,
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
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            out: PathBuf::from("reports"),
            backend: None,
            fresh: false,
            variants: Vec::new(),
            selection: Selection::All,
            worker: false,
            jobs: 1,
            devices: Vec::new(),
            device: None,
            live: None,
        }
    }
}

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

impl RunOptions {
    /// Whether this process runs the whole (selected) study, rather than a worker's share: it
    /// merges the runs and renders the report afterwards.
    pub fn whole_study(&self) -> bool {
        !self.worker && self.selection == Selection::All
    }
}

impl Summary {
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

fn count(summary: &mut Summary, status: RunStatus) {
    match status {
        RunStatus::Completed => summary.completed += 1,
        RunStatus::Diverged => summary.diverged += 1,
        RunStatus::Failed => summary.failed += 1,
        RunStatus::Interrupted | RunStatus::Running => summary.interrupted += 1,
    }
}

/// The directory of an experiment under `out`.
pub fn experiment_dir(out: &Path, experiment: &Experiment) -> PathBuf {
    out.join(&experiment.slug)
}

/// Checks the options against the study; returns the tasks this process is to train.
pub fn selected_tasks(experiment: &Experiment, opts: &RunOptions) -> Result<Vec<Task>> {
    let tasks = experiment.tasks();
    match opts.selection {
        Selection::Task(i) if i >= tasks.len() => bail!(
            "--task {i}: the study has {} task(s), numbered 0 to {} (see `unet-lab tasks FILE`)",
            tasks.len(),
            tasks.len().saturating_sub(1)
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
    let variants = experiment
        .variant_indices(&opts.variants)
        .map_err(anyhow::Error::msg)?;
    Ok(tasks
        .into_iter()
        .filter(|t| opts.selection.includes(t.index) && variants.contains(&t.variant))
        .collect())
}

pub fn run_experiment(
    file: &Path,
    mut experiment: Experiment,
    opts: &RunOptions,
) -> Result<Summary> {
    if let Some(b) = opts.backend {
        for v in &mut experiment.variants {
            v.config.train.backend = b;
        }
    }
    let tasks = selected_tasks(&experiment, opts)?;
    check_backends(&experiment, opts)?;
    let datasets = if opts.jobs > 1 {
        // The worker processes load the data; here it is only surveyed (cheap), so a missing
        // path still fails before anything is written.
        for v in &experiment.variants {
            data::survey(&v.config.data)?;
        }
        HashMap::new()
    } else {
        load_datasets(&experiment, &tasks)?
    };

    let exp_dir = experiment_dir(&opts.out, &experiment);
    let source = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    plan_study(file, &source, &experiment, &exp_dir, opts)?;
    if opts.fresh {
        clear_tasks(&experiment, &exp_dir, &tasks)?;
    }

    let summary = if opts.jobs > 1 {
        let workers = worker_processes(opts.jobs, tasks.len());
        run_worker_processes(file, &experiment, &exp_dir, &tasks, workers, opts)?
    } else {
        let commit = git_commit(file);
        let mut summary = Summary::default();
        for (k, task) in tasks.iter().enumerate() {
            let label = format!("[{}/{}]", k + 1, tasks.len());
            let ds = &datasets[&data_key(&experiment, task)?];
            let status = train_task(&experiment, &exp_dir, task, ds, &commit, &label, opts)?;
            if let (TaskResult::Trained(_), Some(live)) = (status, &opts.live) {
                live(LiveEvent::RunEnded);
            }
            match status {
                TaskResult::Busy => summary.busy += 1,
                TaskResult::Errored => summary.errored += 1,
                TaskResult::AlreadyDone(s) => {
                    count(&mut summary, s);
                    summary.skipped += (s == RunStatus::Completed) as usize;
                }
                TaskResult::Trained(s) => count(&mut summary, s),
            }
            if super::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
        }
        summary
    };

    Ok(summary)
}

/// Backends must be usable, and `--devices`/`--device` must fit them, before anything starts.
pub fn check_backends(experiment: &Experiment, opts: &RunOptions) -> Result<()> {
    let mut placements: Vec<(BackendKind, Option<usize>, Precision)> = experiment
        .variants
        .iter()
        .map(|v| {
            let t = &v.config.train;
            (t.backend, opts.device.or(t.device), t.precision)
        })
        .collect();
    placements.sort_by_key(|(b, d, p)| (b.name(), *d, p.name()));
    placements.dedup();
    let backends: Vec<BackendKind> = placements.iter().map(|p| p.0).collect();
    check_devices(&backends, &opts.devices, opts.device)?;
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
        backend::check_available(backend, device, precision)?;
    }
    Ok(())
}

/// `--devices` names GPUs: only meaningful when every variant trains on a GPU backend, and
/// each at most once.
pub fn check_devices(
    backends: &[BackendKind],
    devices: &[usize],
    device: Option<usize>,
) -> Result<()> {
    if devices.is_empty() && device.is_none() {
        return Ok(());
    }
    if backends.iter().any(|b| !b.is_gpu()) {
        bail!(
            "--devices: GPUs are handed out only to GPU training (cuda, wgpu), but the study trains \
             on the CPU (train.backend, or --backend cuda|wgpu); to run several CPU workers use \
             --jobs N"
        );
    }
    let mut seen = devices.to_vec();
    seen.sort();
    if let Some(d) = seen.windows(2).find(|w| w[0] == w[1]) {
        bail!(
            "--devices: GPU {} is listed twice; each worker gets its own GPU",
            d[0]
        );
    }
    Ok(())
}

fn data_key(experiment: &Experiment, task: &Task) -> Result<String> {
    Ok(serde_json::to_string(
        &experiment.task_variant(task).config.data,
    )?)
}

/// Loads (and thereby checks) the dataset of every selected task before anything is trained.
fn load_datasets(experiment: &Experiment, tasks: &[Task]) -> Result<HashMap<String, Dataset>> {
    let mut datasets = HashMap::new();
    for task in tasks {
        let key = data_key(experiment, task)?;
        if let std::collections::hash_map::Entry::Vacant(e) = datasets.entry(key) {
            let ds = data::load(&experiment.task_variant(task).config.data)?;
            e.insert(ds);
        }
    }
    Ok(datasets)
}

/// Writes `plan.json`, `experiment.json` and `experiment.toml` when the study is new (or, for a
/// planner, changed); a worker whose file no longer gives the planned tasks is refused.
pub fn plan_study(
    file: &Path,
    source: &[u8],
    experiment: &Experiment,
    exp_dir: &Path,
    opts: &RunOptions,
) -> Result<()> {
    std::fs::create_dir_all(exp_dir)
        .with_context(|| format!("cannot create the output directory {}", exp_dir.display()))?;
    // A directory of the single-file layout is moved to per-run storage before any run of it.
    crate::track::migrate::migrate_if_legacy(exp_dir)?;
    let mut plan = Plan::new(experiment, file, source, &opts.out);
    plan.backend = opts.backend.map(|b| b.name().to_string());
    let planned = plan.establish(exp_dir, !opts.worker, || {
        ExperimentManifest::new(experiment, file).save_merged(exp_dir)?;
        crate::track::write_atomic(&exp_dir.join("experiment.toml"), source)
    })?;
    if let Planned::Replanned(old) = planned {
        eprint!("{}", plan.changes(&old, exp_dir, experiment));
    }
    Ok(())
}

/// Moves a run's earlier results to `superseded/` (the caller holds its lock), saying where.
fn supersede(exp_dir: &Path, slug: &str, name: &str, run: RunId, why: &str) -> Result<()> {
    if let Some(dest) = crate::track::supersede::supersede_run(exp_dir, slug, run)? {
        eprintln!(
            "{name} {run}: {why}; its earlier results were moved to {} (`unet-lab prune {}` \
             deletes them)",
            dest.display(),
            exp_dir.display()
        );
    }
    Ok(())
}

/// `--fresh`: sets each selected run aside under its lock; a run another worker is training
/// is an error rather than a file pulled from under it.
fn clear_tasks(experiment: &Experiment, exp_dir: &Path, tasks: &[Task]) -> Result<()> {
    for task in tasks {
        let variant = &experiment.variants[task.variant];
        let run = RunId::of(task);
        let run_dir = layout::run_dir(&exp_dir.join(&variant.slug), run);
        match RunLock::claim(&run_dir)? {
            Claim::Acquired(_lock) => supersede(
                exp_dir,
                &variant.slug,
                &variant.name,
                run,
                "--fresh trains it again",
            )?,
            Claim::Busy(holder) => bail!(
                "--fresh: task {} ({} {}) is being trained by {}; wait for it, or stop that worker",
                task.index,
                variant.name,
                RunId::of(task),
                holder.map_or("another worker".to_string(), |h| h.describe())
            ),
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TaskResult {
    /// Another live worker holds the run's lock.
    Busy,
    /// Stopped by an error of the environment: left `interrupted`, to be resumed.
    Errored,
    /// Finished earlier with the same config: not trained again.
    AlreadyDone(RunStatus),
    Trained(RunStatus),
}

/// Claims, (re)trains and records one task.
fn train_task(
    experiment: &Experiment,
    exp_dir: &Path,
    task: &Task,
    ds: &Dataset,
    commit: &Option<String>,
    label: &str,
    opts: &RunOptions,
) -> Result<TaskResult> {
    let variant = &experiment.task_variant(task);
    let seed = task.seed;
    let run = RunId::of(task);
    let variant_dir = exp_dir.join(&variant.slug);
    let run_dir = layout::run_dir(&variant_dir, run);
    let _lock = match RunLock::claim(&run_dir)? {
        Claim::Acquired(lock) => lock,
        Claim::Busy(holder) => {
            eprintln!(
                "{label} task {} ({} {run}): being trained by {}; moving on",
                task.index,
                variant.name,
                holder.map_or("another worker".to_string(), |h| h.describe())
            );
            return Ok(TaskResult::Busy);
        }
    };
    let hash = variant.config_hash(seed);
    if let Some(done) = earlier_result(exp_dir, variant, run, &hash, label)? {
        return Ok(done);
    }
    let device = opts.device.or(variant.config.train.device);
    let record = started_record(variant, run, &hash, ds, device);
    let mut manifest = RunManifest::new(
        experiment,
        variant,
        Some(task.index),
        commit.clone(),
        record,
    );
    manifest.save(&run_dir)?;

    eprintln!("{label} {} {run}", variant.name);
    let spec = RunSpec {
        variant_name: &variant.name,
        variant_dir: &variant_dir,
        seed,
        fold: task.fold,
        config: &variant.config,
        config_hash: &hash,
        dataset: ds,
    };
    let mut tracker = Tracker::open(&run_dir)?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_on_backend(&spec, &mut tracker, device, opts.live.clone())
    }));
    let record = &mut manifest.record;
    record.ended = Some(now_rfc3339());
    let errored = match result {
        Ok(Ok(outcome)) => {
            record_outcome(record, outcome);
            false
        }
        // What the environment did (an I/O error, a full disk, a panic) is not a result of
        // the recipe: the run stays unfinished and the next `run` resumes it.
        Ok(Err(e)) => record_error(record, &variant.name, run, &format!("{e:#}")),
        Err(panic) => record_error(record, &variant.name, run, &panic_message(&*panic)),
    };
    // Rows of a stopped run are already flushed up to its last finished epoch.
    tracker.flush()?;
    manifest.save(&run_dir)?;
    Ok(if errored {
        TaskResult::Errored
    } else {
        TaskResult::Trained(manifest.record.status)
    })
}

/// Marks a run stopped by an error `interrupted`, with the error as its message.
fn record_error(record: &mut RunRecord, variant: &str, run: RunId, error: &str) -> bool {
    eprintln!(
        "{variant} {run}: stopped by an error: {error}\n  not a result of the recipe: the run is \
         left interrupted, and the next `unet-lab run` resumes it from its last finished epoch"
    );
    record.status = RunStatus::Interrupted;
    record.message = Some(format!("stopped by an error: {error}"));
    true
}

/// What an earlier attempt left in the run's directory (the caller holds its lock): a final
/// result of the same config is kept and skipped; results of another config are set aside.
fn earlier_result(
    exp_dir: &Path,
    variant: &crate::config::Variant,
    run: RunId,
    hash: &str,
    label: &str,
) -> Result<Option<TaskResult>> {
    let run_dir = layout::run_dir(&exp_dir.join(&variant.slug), run);
    let Some(prev) = RunManifest::load(&run_dir)? else {
        return Ok(None);
    };
    if prev.record.config_hash != hash {
        supersede(
            exp_dir,
            &variant.slug,
            &variant.name,
            run,
            "its config changed, so it is trained again",
        )?;
        return Ok(None);
    }
    let status = prev.record.status;
    if !matches!(
        status,
        RunStatus::Completed | RunStatus::Diverged | RunStatus::Failed
    ) {
        return Ok(None);
    }
    eprintln!(
        "{label} {} {run}: already {} (same config), skipped",
        variant.name,
        status.as_str()
    );
    Ok(Some(TaskResult::AlreadyDone(status)))
}

/// The record of a run that starts now (status `running`).
fn started_record(
    variant: &crate::config::Variant,
    run: RunId,
    hash: &str,
    ds: &Dataset,
    device: Option<usize>,
) -> RunRecord {
    let train = &variant.config.train;
    let (mut backend_name, device_name) = backend::describe(train.backend, device);
    if train.precision != Precision::F32 {
        backend_name.push_str(&format!(" · {}", train.precision.name()));
    }
    RunRecord {
        fold: run.fold,
        dataset: Some(ds.info.clone()),
        ..RunRecord::new(run.seed, hash, backend_name, device_name)
    }
}

fn train_on_backend(
    spec: &RunSpec,
    tracker: &mut Tracker,
    device: Option<usize>,
    live: Option<LiveHook>,
) -> Result<RunOutcome> {
    let mut progress = match live {
        Some(hook) => Box::new(WithHook {
            inner: make_progress(),
            hook,
        }),
        None => make_progress(),
    };
    super::train(spec, tracker, device, progress.as_mut())
}

fn record_outcome(record: &mut RunRecord, outcome: RunOutcome) {
    record.best = outcome.best;
    record.final_dice = outcome.final_dice;
    record.test = outcome
        .test
        .zip(outcome.best.epoch)
        .map(|(m, epoch)| TestScore {
            epoch,
            dice: m.dice,
            iou: m.iou,
            presence_accuracy: m.presence_accuracy,
            breakdown: outcome.test_breakdown,
        });
    record.tuned = outcome.tuned;
    record.snapshot_samples = outcome.snapshot_samples;
    record.parameters = outcome.parameters;
    record.status = match outcome.ending {
        Ending::Completed => RunStatus::Completed,
        Ending::Diverged(d) => {
            record.message = Some(format!(
                "loss {} at epoch {}, step {}",
                d.loss, d.epoch, d.step
            ));
            record.divergence = Some(d);
            RunStatus::Diverged
        }
        Ending::Failed(message) => {
            record.message = Some(message);
            RunStatus::Failed
        }
        Ending::Interrupted => RunStatus::Interrupted,
    };
}

/// Waits for the worker processes, telling the live view every second meanwhile (the
/// workers themselves do not render).
fn wait_refreshing(children: &mut [std::process::Child], live: Option<&LiveHook>) -> Result<()> {
    let Some(live) = live else {
        return Ok(());
    };
    loop {
        let mut running = false;
        for child in children.iter_mut() {
            running |= child
                .try_wait()
                .context("cannot wait for a worker")?
                .is_none();
        }
        if !running {
            return Ok(());
        }
        live(LiveEvent::Epoch);
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// CPU threads this machine (or this SLURM allocation) gives the study.
pub fn available_threads() -> usize {
    let from_env = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
    };
    from_env("SLURM_CPUS_PER_TASK")
        .or_else(|| from_env("RAYON_NUM_THREADS"))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Worker processes for `--jobs N` and `tasks` tasks: a worker trains one task at a time, so
/// more workers than tasks would only start, find nothing to claim and stop.
fn worker_processes(jobs: usize, tasks: usize) -> usize {
    let workers = jobs.min(tasks).max(1);
    if workers < jobs {
        eprintln!(
            "note: --jobs {jobs} for {tasks} task(s): starting {workers} worker process(es), one \
             per task"
        );
    }
    workers
}

/// `--jobs N`: N worker processes of this binary on the planned study, each with its share of
/// the CPU threads (and its own GPU with `--devices`). Workers claim tasks through the run
/// locks, so a long task does not hold up the others' queue.
fn run_worker_processes(
    file: &Path,
    experiment: &Experiment,
    exp_dir: &Path,
    tasks: &[Task],
    workers: usize,
    opts: &RunOptions,
) -> Result<Summary> {
    let threads = available_threads();
    let per_worker = (threads / workers).max(1);
    if workers > threads {
        eprintln!(
            "note: --jobs {workers} on {threads} CPU thread(s): each worker gets 1 thread; more \
             workers than threads only adds contention"
        );
    }
    eprintln!(
        "{} tasks, {workers} worker processes, {per_worker} thread(s) each",
        tasks.len()
    );
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut children = Vec::new();
    for k in 0..workers {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("run")
            .arg(file)
            .arg("--out")
            .arg(&opts.out)
            .arg("--worker")
            .arg("--no-report")
            .env("RAYON_NUM_THREADS", per_worker.to_string())
            .env("UNET_LAB_PROGRESS", "plain");
        for v in &opts.variants {
            cmd.arg("--variant").arg(v);
        }
        if let Some(b) = opts.backend {
            cmd.arg("--backend").arg(b.name());
        }
        if !opts.devices.is_empty() {
            cmd.arg("--device")
                .arg(opts.devices[k % opts.devices.len()].to_string());
        }
        children.push(
            cmd.spawn()
                .with_context(|| format!("cannot start worker {k} ({})", exe.display()))?,
        );
    }
    let mut failed_workers = Vec::new();
    wait_refreshing(&mut children, opts.live.as_ref())?;
    for (k, mut child) in children.into_iter().enumerate() {
        let status = child.wait().context("cannot wait for a worker")?;
        // 3 (some runs diverged or failed) and 130 (interrupted) are read from the manifests.
        if !matches!(status.code(), Some(0 | 3 | 130)) {
            failed_workers.push(format!("worker {k}: {status}"));
        }
    }
    let mut summary = Summary::default();
    for task in tasks {
        let variant = experiment.task_variant(task);
        let run_dir = layout::run_dir(&exp_dir.join(&variant.slug), RunId::of(task));
        match RunManifest::load(&run_dir)? {
            Some(m) if m.record.config_hash == variant.config_hash(task.seed) => {
                count(&mut summary, m.record.status)
            }
            _ => summary.interrupted += 1,
        }
    }
    if !failed_workers.is_empty() {
        bail!(
            "{} worker process(es) stopped with an error ({}); finished runs are kept — run the same \
             command again to finish the rest",
            failed_workers.len(),
            failed_workers.join(", ")
        );
    }
    Ok(summary)
}
