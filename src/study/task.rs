//! One task of a study: claim its lock (busy → move on), skip it when it finished with the same
//! config, otherwise train it — resuming from its last epoch checkpoint — and record how it
//! ended. One lock per run, so any number of workers on any hosts can share the directory.

use std::path::Path;

use anyhow::{Result, bail};

use super::{RunOptions, StudyTask, Summary};
use crate::config::{Experiment, Precision};
use crate::data::Dataset;
use crate::track::manifest::now_rfc3339;
use crate::track::{Claim, RunId, RunLock, RunManifest, RunRecord, RunStatus, TestScore, Tracker};
use crate::train::progress::{LiveHook, WithHook, make_progress};
use crate::train::{Ending, RunOutcome, RunSpec};
use crate::util::panic_message;

/// How one task went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskResult {
    /// Another live worker holds the run's lock.
    Busy,
    /// Stopped by an error of the environment: left `interrupted`, to be resumed.
    Errored,
    /// Finished earlier with the same config: not trained again.
    AlreadyDone(RunStatus),
    Trained(RunStatus),
}

impl Summary {
    pub(super) fn add(&mut self, result: TaskResult) {
        match result {
            TaskResult::Busy => self.busy += 1,
            TaskResult::Errored => self.errored += 1,
            TaskResult::AlreadyDone(s) => {
                self.count(s);
                self.skipped += (s == RunStatus::Completed) as usize;
            }
            TaskResult::Trained(s) => self.count(s),
        }
    }

    pub(super) fn count(&mut self, status: RunStatus) {
        match status {
            RunStatus::Completed => self.completed += 1,
            RunStatus::Diverged => self.diverged += 1,
            RunStatus::Failed => self.failed += 1,
            RunStatus::Interrupted | RunStatus::Running => self.interrupted += 1,
        }
    }
}

/// Where the tasks of this process are trained.
pub(super) struct Here<'a> {
    pub experiment: &'a Experiment,
    pub exp_dir: &'a Path,
    pub commit: &'a Option<String>,
    /// "[k/n]": the task's place in this process's queue.
    pub label: &'a str,
}

/// Claims, (re)trains and records one task.
pub(super) fn train_task(
    here: &Here,
    task: &StudyTask,
    dataset: &Dataset,
    opts: &RunOptions,
) -> Result<TaskResult> {
    let (variant, run, label) = (&task.variant, task.run(), here.label);
    let run_dir = task.run_dir(here.exp_dir);
    let _lock = match RunLock::claim(&run_dir)? {
        Claim::Acquired(lock) => lock,
        Claim::Busy(holder) => {
            crate::info!(
                "{label} task {} ({} {run}): being trained by {}; moving on",
                task.task.index,
                variant.name,
                holder.map_or("another worker".to_string(), |h| h.describe())
            );
            return Ok(TaskResult::Busy);
        }
    };
    if let Some(done) = earlier_result(here, task)? {
        // A run finished earlier may still owe the tracking server something.
        if let Some(sink) = &opts.tracking {
            sink.run_changed(&run_dir);
        }
        return Ok(done);
    }
    let device = opts.device.or(variant.config.train.device);
    let record = started_record(task, dataset, device);
    let index = Some(task.task.index);
    let mut manifest =
        RunManifest::new(here.experiment, variant, index, here.commit.clone(), record);
    manifest.save(&run_dir)?;

    crate::info!("{label} {} {run}", variant.name);
    let variant_dir = task.variant_dir(here.exp_dir);
    let spec = RunSpec {
        variant_name: &variant.name,
        variant_dir: &variant_dir,
        seed: task.task.seed,
        fold: task.task.fold,
        config: &variant.config,
        config_hash: &task.config_hash,
        dataset,
    };
    Tracker::remove_stale_temp_files(&run_dir);
    let mut tracker = Tracker::open(&run_dir)?;
    let hook = with_tracking(opts.live.clone(), opts.tracking.clone(), &run_dir);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        train_with_progress(&spec, &mut tracker, device, hook)
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
    if let Some(sink) = &opts.tracking {
        sink.run_changed(&run_dir);
    }
    Ok(if errored {
        TaskResult::Errored
    } else {
        TaskResult::Trained(manifest.record.status)
    })
}

/// The live hook, also telling the tracking sink that this run changed.
fn with_tracking(
    live: Option<LiveHook>,
    tracking: Option<std::sync::Arc<crate::track::mlflow::Sink>>,
    run_dir: &Path,
) -> Option<LiveHook> {
    let Some(sink) = tracking else {
        return live;
    };
    let run_dir = run_dir.to_path_buf();
    Some(std::sync::Arc::new(move |event| {
        if let Some(live) = &live {
            live(event);
        }
        sink.run_changed(&run_dir);
    }))
}

fn train_with_progress(
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
    crate::train::train(spec, tracker, device, progress.as_mut())
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

/// Moves a run's earlier results to `superseded/` (the caller holds its lock), saying where.
fn supersede(exp_dir: &Path, task: &StudyTask, why: &str) -> Result<()> {
    let (slug, run) = (&task.variant.slug, task.run());
    if let Some(dest) = crate::track::supersede::supersede_run(exp_dir, slug, run)? {
        eprintln!(
            "{} {run}: {why}; its earlier results were moved to {} (`unet-lab prune {}` \
             deletes them)",
            task.variant.name,
            dest.display(),
            exp_dir.display()
        );
    }
    Ok(())
}

/// `--fresh`: sets each selected run aside under its lock; a run another worker is training
/// is an error rather than a file pulled from under it.
pub(super) fn set_aside(exp_dir: &Path, tasks: &[&StudyTask]) -> Result<()> {
    for task in tasks {
        match RunLock::claim(&task.run_dir(exp_dir))? {
            Claim::Acquired(_lock) => supersede(exp_dir, task, "--fresh trains it again")?,
            Claim::Busy(holder) => bail!(
                "--fresh: task {} ({} {}) is being trained by {}; wait for it, or stop that worker",
                task.task.index,
                task.variant.name,
                task.run(),
                holder.map_or("another worker".to_string(), |h| h.describe())
            ),
        }
    }
    Ok(())
}

/// What an earlier attempt left in the run's directory (the caller holds its lock): a final
/// result of the same config is kept and skipped; results of another config are set aside.
fn earlier_result(here: &Here, task: &StudyTask) -> Result<Option<TaskResult>> {
    let Some(prev) = RunManifest::load(&task.run_dir(here.exp_dir))? else {
        return Ok(None);
    };
    if prev.record.config_hash != task.config_hash {
        supersede(
            here.exp_dir,
            task,
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
    crate::info!(
        "{} {} {}: already {} (same config), skipped",
        here.label,
        task.variant.name,
        task.run(),
        status.as_str()
    );
    Ok(Some(TaskResult::AlreadyDone(status)))
}

/// The record of a run that starts now (status `running`).
fn started_record(task: &StudyTask, ds: &Dataset, device: Option<usize>) -> RunRecord {
    let train = &task.variant.config.train;
    let (mut backend_name, device_name) = crate::device::describe(train.backend, device);
    if train.precision != Precision::F32 {
        backend_name.push_str(&format!(" · {}", train.precision.name()));
    }
    RunRecord {
        fold: task.task.fold,
        dataset: Some(ds.info.clone()),
        ..RunRecord::new(task.task.seed, &task.config_hash, backend_name, device_name)
    }
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
