//! Crash-safe file writes and the experiment lock.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over the target. A crash leaves either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if injected_failure() {
        bail!(
            "cannot write {}: No space left on device (simulated by UNET_LAB_FAIL_WRITES_AFTER)",
            path.display()
        );
    }
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create directory {}", dir.display()))?;
    let tmp = temp_path(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Fault injection for tests of a full disk: with `UNET_LAB_FAIL_WRITES_AFTER=N` in the
/// environment, every atomic write after the first N fails.
fn injected_failure() -> bool {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    match LIMIT.get_or_init(|| {
        std::env::var("UNET_LAB_FAIL_WRITES_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    }) {
        Some(limit) => WRITES.fetch_add(1, Ordering::SeqCst) >= *limit,
        None => false,
    }
}

/// A hidden sibling temp name, unique per process.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Holds `<dir>/.lock` (containing our PID) while alive; removes it on drop.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
}

impl DirLock {
    /// Takes the lock, refusing while another live process holds it; a stale lock (its PID is
    /// no longer running) is taken over.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
        let path = dir.join(".lock");
        for _ in 0..3 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    writeln!(f, "{}", std::process::id())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    f.sync_all().ok();
                    return Ok(DirLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let pid: Option<u32> = holder.trim().parse().ok();
                    match pid {
                        Some(pid) if pid != std::process::id() && process_alive(pid) => {
                            bail!(
                                "another unet-lab run (PID {pid}) is working in {}; wait for it to finish \
                                 (or, if that process is gone, delete {})",
                                dir.display(),
                                path.display()
                            );
                        }
                        _ => {
                            // Stale (dead holder, or unreadable half-written lock): take over.
                            let _ = fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot create lock file {}", path.display()));
                }
            }
        }
        bail!("could not take the lock {}", path.display())
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        // Without /proc, assume the holder lives: refusing is the safe side.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = std::env::temp_dir().join(format!("unet-lab-fsutil-{}", std::process::id()));
        let path = dir.join("a/b.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert!(!temp_path(&path).exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lock_refuses_live_holder_and_takes_stale() {
        let dir = std::env::temp_dir().join(format!("unet-lab-lock-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // PID 1 is alive on Linux.
        fs::write(dir.join(".lock"), "1\n").unwrap();
        let err = DirLock::acquire(&dir).unwrap_err().to_string();
        assert!(err.contains("PID 1"), "{err}");
        // A PID far above pid_max is dead.
        fs::write(dir.join(".lock"), "4194999\n").unwrap();
        let lock = DirLock::acquire(&dir).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(".lock")).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!dir.join(".lock").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
