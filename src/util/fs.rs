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

/// A hidden sibling temp name, unique per host and process: writers on several hosts that
/// share the filesystem never write into each other's temp file.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    use std::sync::OnceLock;
    static HOST: OnceLock<String> = OnceLock::new();
    let host = HOST.get_or_init(|| super::host::hostname().replace(['/', '.'], "_"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{host}-{}", std::process::id()))
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
}
