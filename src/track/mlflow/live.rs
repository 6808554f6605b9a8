//! Live logging off the training loop: training only says which run changed; a thread of its
//! own syncs that run with the server. A server that is down, slow or failing costs training
//! nothing — one warning per run, and what was not delivered stays pending in the run's
//! `mlflow.json` for a later sync or `unet-lab mlflow-sync`.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::MlflowError;
use super::sync::{Target, sync_run};

/// After the server could not be reached, runs wait this long before the next try.
const RETRY_AFTER: Duration = Duration::from_secs(20);

pub struct Sink {
    uri: String,
    sender: Mutex<Option<Sender<PathBuf>>>,
    worker: Mutex<Option<JoinHandle<Target>>>,
}

impl Sink {
    /// Starts the sync thread of `target`.
    pub fn start(target: Target) -> Sink {
        let (sender, receiver) = mpsc::channel();
        let uri = target.client.uri().to_string();
        let worker = std::thread::spawn(move || Syncer::new(target).serve(receiver));
        Sink {
            uri,
            sender: Mutex::new(Some(sender)),
            worker: Mutex::new(Some(worker)),
        }
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// A run's files changed (an epoch was recorded, the run ended, or it was found done).
    pub fn run_changed(&self, run_dir: &Path) {
        if let Some(sender) = self
            .sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = sender.send(run_dir.to_path_buf());
        }
    }

    /// Lets the thread deliver what it was told of, waiting at most `limit`; the target back,
    /// for the study-wide sync after it, unless the wait ran out.
    pub fn finish(&self, limit: Duration) -> Option<Target> {
        drop(self.sender.lock().unwrap_or_else(|e| e.into_inner()).take());
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let deadline = Instant::now() + limit;
        while !worker.is_finished() {
            if Instant::now() >= deadline {
                eprintln!(
                    "warning: MLflow at {} is slow: stopped waiting after {} s; what it has not \
                     taken is pending (`unet-lab mlflow-sync DIR` delivers it)",
                    self.uri,
                    limit.as_secs()
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        worker.join().ok()
    }
}

/// The sync thread's own state.
struct Syncer {
    target: Target,
    experiment_id: Option<String>,
    /// Runs already warned about (one warning per run).
    warned: HashSet<PathBuf>,
    /// While the server is unreachable: when to try again.
    resting_until: Option<Instant>,
}

impl Syncer {
    fn new(target: Target) -> Syncer {
        Syncer {
            target,
            experiment_id: None,
            warned: HashSet::new(),
            resting_until: None,
        }
    }

    /// Syncs the runs it is told of (each once per batch of news) until the sink finishes;
    /// then once more every run still pending.
    fn serve(mut self, receiver: Receiver<PathBuf>) -> Target {
        let mut pending: BTreeSet<PathBuf> = BTreeSet::new();
        while let Ok(first) = receiver.recv() {
            pending.insert(first);
            pending.extend(receiver.try_iter());
            if self.resting_until.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            pending.retain(|dir| !self.sync(dir));
        }
        self.resting_until = None;
        let mut unreachable = false;
        for dir in std::mem::take(&mut pending) {
            // Unreachable now: the rest stay pending rather than each wait for a timeout.
            if unreachable {
                self.record_pending(&dir, "not delivered: the server could not be reached");
            } else if !self.sync(&dir) && self.resting_until.is_some() {
                unreachable = true;
            }
        }
        self.target
    }

    /// One run; whether it is delivered (false: try again with the next news).
    fn sync(&mut self, run_dir: &Path) -> bool {
        let result = self
            .experiment_id()
            .and_then(|id| sync_run(&self.target, &id, run_dir).map(|_| ()));
        let Err(e) = result else {
            return true;
        };
        self.record_pending(run_dir, &format!("{e:#}"));
        if e.downcast_ref::<MlflowError>()
            .is_some_and(|m| matches!(m, MlflowError::Unreachable { .. }))
        {
            self.resting_until = Some(Instant::now() + RETRY_AFTER);
        }
        if self.warned.insert(run_dir.to_path_buf()) {
            eprintln!(
                "warning: MLflow: {e:#}; {} is logged when the server answers again \
                 (`unet-lab mlflow-sync` delivers what is pending); training goes on",
                run_dir.display()
            );
        }
        false
    }

    /// The run's own record that something is pending (a sync that began wrote it already).
    fn record_pending(&self, run_dir: &Path, why: &str) {
        let mut state = super::sync::RunState::load(run_dir, &self.target);
        if state.pending.is_none() {
            state.pending = Some(why.to_string());
            let _ = state.save(run_dir);
        }
    }

    fn experiment_id(&mut self) -> anyhow::Result<String> {
        if let Some(id) = &self.experiment_id {
            return Ok(id.clone());
        }
        let id = self.target.client.experiment_id(&self.target.experiment)?;
        self.experiment_id = Some(id.clone());
        Ok(id)
    }
}
