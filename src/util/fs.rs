//! Crash-safe file writes: every file unet-lab writes goes through [`write_atomic`].

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over the target. A crash leaves either the old file or the new one.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(cause) = injected_failure(path) {
        bail!("cannot write {}: {cause}", path.display());
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

/// Fault injection for tests, from the environment:
/// - `UNET_LAB_FAIL_WRITES_AFTER=N`: every atomic write after the first N fails (a full disk);
/// - `UNET_LAB_FAIL_WRITE_ONCE=TEXT`: the first write to a path containing TEXT fails, the
///   later ones succeed (a flaky network filesystem).
fn injected_failure(path: &Path) -> Option<&'static str> {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    static ONCE: OnceLock<Option<String>> = OnceLock::new();
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    static FAILED_ONCE: AtomicBool = AtomicBool::new(false);
    let limit = LIMIT.get_or_init(|| {
        std::env::var("UNET_LAB_FAIL_WRITES_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if limit.is_some_and(|limit| WRITES.fetch_add(1, Ordering::SeqCst) >= limit) {
        return Some("No space left on device (simulated by UNET_LAB_FAIL_WRITES_AFTER)");
    }
    let once = ONCE.get_or_init(|| std::env::var("UNET_LAB_FAIL_WRITE_ONCE").ok());
    match once {
        Some(text)
            if path.to_string_lossy().contains(text.as_str())
                && !FAILED_ONCE.swap(true, Ordering::SeqCst) =>
        {
            Some("Input/output error (simulated once by UNET_LAB_FAIL_WRITE_ONCE)")
        }
        _ => None,
    }
}

/// A hidden sibling temp name, unique per host, process and write: writers on several hosts
/// that share the filesystem, and threads of one process (training, the MLflow sink, the live
/// page), never write into, or clean up, each other's temp file.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static HOST: OnceLock<String> = OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let host = HOST.get_or_init(|| super::host::hostname().replace(['/', '.'], "_"));
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(
        "{}{host}-{}-{n}",
        temp_prefix(path),
        std::process::id()
    ))
}

/// What every temp name of `path` starts with (`.metrics.parquet.tmp-`), whoever wrote it.
pub(crate) fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp-")
}

/// Removes the temp files a crash left beside `path`, whichever host or process wrote them.
/// Only for a caller that is the file's sole writer (it holds the lock of its directory).
pub(crate) fn remove_stale_temp_files(path: &Path) {
    let prefix = temp_prefix(path);
    let Some(entries) = path.parent().and_then(|dir| fs::read_dir(dir).ok()) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(entry.path());
        }
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
        let names: Vec<_> = fs::read_dir(dir.join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["b.txt"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn threads_writing_one_file_never_take_each_others_temp_file() {
        let dir = std::env::temp_dir().join(format!("unet-lab-fsthreads-{}", std::process::id()));
        let path = dir.join("shared.txt");
        let writers: Vec<_> = (0..4u8)
            .map(|k| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomic(&path, &[k; 4096]).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.len() == 4096 && bytes.iter().all(|&b| b == bytes[0]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temp_files_of_any_writer_are_removed_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("unet-lab-fsstale-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("metrics.parquet");
        for name in [
            "metrics.parquet",
            ".metrics.parquet.tmp-otherhost-17-3",
            ".metrics.parquet.tmp-host-99",
            ".steps.parquet.tmp-otherhost-17-4",
        ] {
            fs::write(dir.join(name), b"x").unwrap();
        }
        remove_stale_temp_files(&path);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".steps.parquet.tmp-otherhost-17-4", "metrics.parquet"]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
