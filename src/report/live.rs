//! The live page: while a study trains, `index.html` is refreshed as epochs are recorded,
//! lists the runs in progress (epoch k of n, an ETA) and reloads itself every few seconds;
//! once no run is in progress it is a plain static page again.
//!
//! Whether a run is in progress is read from the study itself — its plan and the runs' locks
//! (`unet-lab status`) — so any worker, or `report`, renders the same page from the same files.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::load::ExperimentData;
use crate::track::RunId;
use crate::track::status::{StudyStatus, TaskState};

/// Seconds between the page's own reloads while the study runs.
pub(crate) const RELOAD_SECONDS: u32 = 5;

/// One run being trained.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunningRun {
    pub variant: String,
    pub run: RunId,
    pub epoch: usize,
    pub epochs: usize,
    /// Seconds left at the pace of its epochs so far (none before its first epoch).
    pub eta_seconds: Option<f64>,
    /// Host and PID (and SLURM job) of the worker.
    pub holder: String,
}

/// Where a study in progress stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Live {
    pub done: usize,
    pub total: usize,
    pub running: Vec<RunningRun>,
}

/// The study's progress, when some run of it is being trained (none otherwise, and for a
/// directory without a plan).
pub(crate) fn live_status(exp: &ExperimentData) -> Option<Live> {
    let status = StudyStatus::read(&exp.dir).ok()?;
    let running: Vec<RunningRun> = status
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .map(|t| {
            let run = RunId::new(t.seed, t.fold);
            RunningRun {
                variant: t.variant.clone(),
                run,
                epoch: t.epochs_done,
                epochs: t.epochs,
                eta_seconds: eta(exp, &t.variant, run, t.epochs_done, t.epochs),
                holder: t
                    .holder
                    .as_ref()
                    .map_or("holder unknown".into(), |h| h.describe()),
            }
        })
        .collect();
    (!running.is_empty()).then(|| Live {
        done: status.count(TaskState::Done),
        total: status.tasks.len(),
        running,
    })
}

/// Remaining epochs times the mean wall time of the run's recorded epochs.
fn eta(exp: &ExperimentData, variant: &str, run: RunId, done: usize, epochs: usize) -> Option<f64> {
    let data = exp
        .variants
        .iter()
        .find(|v| v.name == variant)?
        .runs
        .iter()
        .find(|r| r.seed == run.seed && r.fold == run.fold)?;
    let recorded = data.val.len();
    if recorded == 0 {
        return None;
    }
    let seconds: f64 = data
        .train
        .iter()
        .chain(&data.val)
        .map(|r| r.seconds)
        .filter(|s| s.is_finite())
        .sum();
    Some(seconds / recorded as f64 * epochs.saturating_sub(done.max(recorded)) as f64)
}

/// "1:05" or "2:03:10".
pub(crate) fn fmt_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

/// Refreshes the report of a study in progress at most every `interval`: after an epoch the
/// tables, curves and pages (cheap); after a run everything, GIFs too. Errors are reported once
/// and never stop the training.
pub(crate) struct LiveReport {
    dir: std::path::PathBuf,
    interval: Duration,
    last: Mutex<Option<Instant>>,
    warned: std::sync::atomic::AtomicBool,
}

impl LiveReport {
    pub fn new(dir: &Path, interval: Duration) -> LiveReport {
        LiveReport {
            dir: dir.to_path_buf(),
            interval,
            last: Mutex::new(None),
            warned: Default::default(),
        }
    }

    pub fn refresh(&self, full: bool) {
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if !full && last.is_some_and(|t| t.elapsed() < self.interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        // Never wait for another merge (a `report`, another worker's refresh): training goes
        // on and the next refresh catches up.
        let result: Result<_> = if full {
            super::render_experiment_unless_busy(&self.dir, Duration::ZERO)
        } else {
            super::render_tables_and_curves(&self.dir)
        };
        if let Err(e) = result
            && !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            eprintln!("warning: the live report could not be refreshed: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_clock_times() {
        assert_eq!(fmt_duration(0.4), "0:00");
        assert_eq!(fmt_duration(65.0), "1:05");
        assert_eq!(fmt_duration(7390.0), "2:03:10");
    }
}
