//! `--jobs N` and `--devices`: worker processes of this binary on a planned study, each with
//! its share of the CPU threads (and its own GPU). Workers claim tasks through the run locks,
//! so a long task does not hold up the others' queue.

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::command::{Program, Share, WorkerCommand};
use super::{RunOptions, Study, StudyTask, Summary};
use crate::config::BackendKind;
use crate::track::RunManifest;
use crate::train::progress::{LiveEvent, LiveHook};

/// `--devices` names GPUs: only meaningful when every variant trains on a GPU backend, and
/// each at most once.
pub(crate) fn check_devices(
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

/// CPU threads this machine (or this SLURM allocation) gives the study.
pub(crate) fn available_threads() -> usize {
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

/// Starts the worker processes, waits for them and counts the tasks from their manifests.
pub(super) fn run_processes(
    study: &Study,
    exp_dir: &Path,
    tasks: &[&StudyTask],
    opts: &RunOptions,
) -> Result<Summary> {
    let workers = worker_processes(opts.jobs, tasks.len());
    let threads = available_threads();
    let per_worker = (threads / workers).max(1);
    if workers > threads {
        eprintln!(
            "note: --jobs {workers} on {threads} CPU thread(s): each worker gets 1 thread; more \
             workers than threads only adds contention"
        );
    }
    crate::info!(
        "{} tasks, {workers} worker processes, {per_worker} thread(s) each",
        tasks.len()
    );
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut children = Vec::new();
    for k in 0..workers {
        let worker = WorkerCommand {
            backend: study.overrides.backend,
            edits: study.overrides.edits.clone(),
            mlflow: opts.mlflow.clone(),
            variants: opts.variants.clone(),
            share: Share::Worker,
            no_report: true,
            device: (!opts.devices.is_empty()).then(|| opts.devices[k % opts.devices.len()]),
            ..WorkerCommand::new(Program::Exe(exe.clone()), &study.file, &opts.out)
        };
        crate::detail!("worker {k}: {}", worker.shell());
        let mut cmd = worker.process();
        cmd.env("RAYON_NUM_THREADS", per_worker.to_string())
            .env("UNET_LAB_PROGRESS", "plain")
            .env(crate::util::say::ENV, crate::util::say::name());
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
    let summary = count_recorded(exp_dir, tasks)?;
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

/// How the tasks ended, as their manifests record it (a run of another config, or none, is
/// unfinished).
fn count_recorded(exp_dir: &Path, tasks: &[&StudyTask]) -> Result<Summary> {
    let mut summary = Summary::default();
    for task in tasks {
        match RunManifest::load(&task.run_dir(exp_dir))? {
            Some(m) if m.record.config_hash == task.config_hash => summary.count(m.record.status),
            _ => summary.interrupted += 1,
        }
    }
    Ok(summary)
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
