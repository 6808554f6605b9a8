//! The end of a study: its runs merged into the study-wide tables and, unless asked not to,
//! the report rendered from them.

use std::path::Path;

use anyhow::Result;

/// How long the end of `run` waits for a merge that another process is doing (a `report`, a
/// worker's live refresh); `UNET_LAB_MERGE_WAIT` (seconds) overrides it.
const MERGE_WAIT_SECONDS: u64 = 300;

fn merge_wait() -> std::time::Duration {
    let seconds = std::env::var("UNET_LAB_MERGE_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(MERGE_WAIT_SECONDS);
    std::time::Duration::from_secs(seconds)
}

/// Merges the runs into the study-wide tables and renders the report (or only merges). The
/// wait for another merge is bounded: the runs are safe in their own directories whatever
/// happens here, and `unet-lab report` merges them later.
pub fn finish(exp_dir: &Path, report: bool, busy: usize) -> Result<()> {
    let limit = merge_wait();
    let merged = if report {
        crate::report::render_experiment_unless_busy(exp_dir, limit)
            .map(|w| w.is_some())
            .unwrap_or_else(|e| {
                eprintln!("warning: the report could not be rendered: {e:#}");
                true
            })
    } else {
        crate::track::merge::merge_unless_busy(exp_dir, limit)?.is_some()
    };
    if !merged {
        eprintln!(
            "warning: another process held {} for {} s, so the study-wide tables{} were not \
             updated; every run is safe in its own directory — `unet-lab report {}` merges them",
            crate::track::layout::merge_lock_path(exp_dir).display(),
            limit.as_secs(),
            if report { " and the report" } else { "" },
            exp_dir.display()
        );
    }
    if busy > 0 {
        eprintln!(
            "note: {busy} task(s) were being trained by other workers; their results join the \
             study-wide tables and the report when they finish (`unet-lab status {}`, then \
             `unet-lab report {}`)",
            exp_dir.display(),
            exp_dir.display()
        );
    }
    Ok(())
}
