//! One lock per run, so that any number of workers — on this host or on any other that shares
//! the filesystem — can work on one experiment directory at once.
//!
//! The lock is an OS advisory lock (`flock`, through `File::try_lock`) on `<run>/.lock`: the
//! kernel (or the NFS lock manager) releases it when its holder exits, however it exits, and a
//! live holder can never lose it. Nothing is ever judged stale by a PID, so a lock held on
//! another host is safe. The file's contents (host, PID, SLURM job) only say who holds it.
//! The file itself is never deleted: removing a locked file and creating it again would let two
//! processes hold "the" lock on different inodes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::util::host::{hostname, slurm_job_id};

/// Who holds (or last held) a run's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// `SLURM_JOB_ID` (or `<array job>_<task>`) when the holder runs under SLURM.
    pub slurm_job: Option<String>,
    pub since: String,
}

impl Holder {
    pub(crate) fn me() -> Holder {
        Holder {
            host: hostname(),
            pid: std::process::id(),
            slurm_job: slurm_job_id(),
            since: crate::util::time::now_rfc3339(),
        }
    }

    pub fn describe(&self) -> String {
        let mut s = format!("host {}, PID {}", self.host, self.pid);
        if let Some(job) = &self.slurm_job {
            s.push_str(&format!(", SLURM job {job}"));
        }
        s
    }
}

/// The lock of one run, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

/// What happened when a lock was asked for.
#[derive(Debug)]
pub(crate) enum Claim {
    Acquired(RunLock),
    /// Another live process holds it (its description, when it could be read).
    Busy(Option<Holder>),
}

/// How often, and how far apart, a busy lock is tried again before giving up. A `status` call
/// holds each lock for microseconds to see whether it is free; retrying keeps a worker from
/// skipping a task at that instant.
const ATTEMPTS: usize = 5;
const RETRY: Duration = Duration::from_millis(100);

fn lock_path(run_dir: &Path) -> PathBuf {
    run_dir.join(".lock")
}

impl RunLock {
    /// Takes the run's lock, or says who holds it.
    pub(crate) fn claim(run_dir: &Path) -> Result<Claim> {
        Self::claim_with(run_dir, ATTEMPTS)
    }

    fn claim_with(run_dir: &Path, attempts: usize) -> Result<Claim> {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("cannot create directory {}", run_dir.display()))?;
        let path = lock_path(run_dir);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        for attempt in 0..attempts.max(1) {
            match file.try_lock() {
                Ok(()) => {
                    let json = serde_json::to_vec(&Holder::me())?;
                    // Contents are informative only; a failure to write them keeps the lock.
                    let _ = file
                        .set_len(0)
                        .and_then(|_| file.rewind())
                        .and_then(|_| file.write_all(&json))
                        .and_then(|_| file.sync_data());
                    return Ok(Claim::Acquired(RunLock { file, path }));
                }
                Err(TryLockError::WouldBlock) => {
                    if attempt + 1 < attempts {
                        std::thread::sleep(RETRY);
                    }
                }
                Err(TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
        Ok(Claim::Busy(read_holder(&path)))
    }

    /// Whether a live process holds the run's lock right now, and who. Takes the lock for an
    /// instant when it is free (workers retry, so they do not mistake that for a holder).
    pub fn probe(run_dir: &Path) -> Result<Option<Option<Holder>>> {
        if !lock_path(run_dir).exists() {
            return Ok(None);
        }
        Ok(match Self::claim_with(run_dir, 1)? {
            Claim::Acquired(lock) => {
                drop(lock);
                None
            }
            Claim::Busy(holder) => Some(holder),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Leave the file (see the module note) but not a holder that is gone.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// A short exclusive section between processes (planning, merging): blocks until `path`'s lock
/// is free, holds it until dropped.
#[derive(Debug)]
pub(crate) struct Exclusive(File);

/// The file of a short exclusive section, created when missing (and never truncated: its
/// lock may be held).
fn open_section_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

impl Exclusive {
    pub fn wait(path: &Path) -> Result<Exclusive> {
        let file = open_section_file(path)?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Exclusive(file))
    }
}

impl Exclusive {
    /// The lock if it is free now, `None` if another process holds it.
    fn try_now(path: &Path) -> Result<Option<Exclusive>> {
        let file = open_section_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Exclusive(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }

    /// Waits at most `limit` for the lock, saying once (after a second) that it waits;
    /// `None` when it is still held then.
    pub(crate) fn wait_at_most(
        path: &Path,
        limit: Duration,
        what: &str,
    ) -> Result<Option<Exclusive>> {
        let start = std::time::Instant::now();
        let mut said = false;
        loop {
            if let Some(lock) = Exclusive::try_now(path)? {
                return Ok(Some(lock));
            }
            let waited = start.elapsed();
            if waited >= limit {
                return Ok(None);
            }
            if !said && waited >= Duration::from_secs(1) {
                eprintln!(
                    "note: waiting up to {} s for {} ({what} is in progress elsewhere)",
                    limit.as_secs(),
                    path.display()
                );
                said = true;
            }
            std::thread::sleep(Duration::from_millis(100).min(limit - waited));
        }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn read_holder(path: &Path) -> Option<Holder> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_busy_and_names_its_holder_then_frees_on_drop() {
        let dir = std::env::temp_dir().join(format!("unet-lab-runlock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let Claim::Acquired(lock) = RunLock::claim(&dir).unwrap() else {
            panic!("a fresh lock is free");
        };
        // A second open file description on the same file conflicts, as another process would.
        match RunLock::claim_with(&dir, 2).unwrap() {
            Claim::Busy(Some(holder)) => {
                assert_eq!(holder.pid, std::process::id());
                assert_eq!(holder.host, hostname());
            }
            other => panic!("expected busy with a holder, got {other:?}"),
        }
        assert!(RunLock::probe(&dir).unwrap().is_some());
        drop(lock);
        assert!(RunLock::probe(&dir).unwrap().is_none());
        assert!(matches!(RunLock::claim(&dir).unwrap(), Claim::Acquired(_)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
