//! Logging a study to an MLflow tracking server over its REST API: one MLflow experiment per
//! study, a parent run per variant and a child run per (seed, fold) — params (the resolved
//! config, flattened, and its hash), tags, each epoch's metrics (step = epoch), the test
//! scores, the status, and pictures as artifacts.
//!
//! The study's directory stays the record: each run's `mlflow.json` says what the server holds
//! of it, so a sync sends only the rest (a resumed or re-merged run logs into the same MLflow
//! run, no metric point twice), and `mlflow-sync` delivers whatever a live sink could not.

mod client;
mod live;
mod sync;

use std::path::Path;

use anyhow::Result;

pub use client::{Client, MlflowError};
pub use live::Sink;
pub use sync::{RunState, STATE_FILE, Target};

use crate::config::{TrackSettings, check_tracking_uri};
use crate::track::layout;

/// The tracking target of a study: `--mlflow URI`, else `[track] mlflow`, else the environment's
/// `MLFLOW_TRACKING_URI`; none of them: no tracking. The MLflow experiment is
/// `MLFLOW_EXPERIMENT_NAME`, else the study's name. The error names where the bad URI came from.
pub fn target(
    flag: Option<&str>,
    track: &TrackSettings,
    study_name: &str,
) -> std::result::Result<Option<Target>, String> {
    let env = std::env::var("MLFLOW_TRACKING_URI")
        .ok()
        .filter(|v| !v.is_empty());
    let (uri, from) = match (flag, &track.mlflow, env) {
        (Some(uri), _, _) => (uri.to_string(), "--mlflow".to_string()),
        (None, Some(uri), _) => (uri.clone(), "[track] mlflow".to_string()),
        (None, None, Some(uri)) => (uri, "MLFLOW_TRACKING_URI".to_string()),
        (None, None, None) => return Ok(None),
    };
    check_tracking_uri(&uri).map_err(|m| format!("{from}: {m}"))?;
    let experiment = std::env::var("MLFLOW_EXPERIMENT_NAME")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| study_name.to_string());
    Ok(Some(Target {
        client: Client::new(&uri),
        experiment,
        checkpoints: track.mlflow_checkpoints,
    }))
}

/// How a whole-study sync went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncSummary {
    pub runs: usize,
    /// Runs (and parent runs) with something the server did not take.
    pub pending: usize,
}

/// Syncs every run of a study, then each variant's parent run (pictures, the page, status).
/// Stops trying at the first run the server cannot be reached for: the rest stay pending.
pub fn sync_study(target: &Target, exp_dir: &Path) -> Result<SyncSummary> {
    let manifest = crate::track::ExperimentManifest::load(exp_dir)?;
    let experiment_id = target
        .client
        .experiment_id(&target.experiment)
        .map_err(anyhow::Error::from)?;
    let mut summary = SyncSummary::default();
    let mut unreachable = None;
    for (name, slug) in &manifest.variants {
        for (_, run_dir) in layout::run_dirs(&exp_dir.join(slug)) {
            if unreachable.is_some() {
                summary.pending += 1;
                continue;
            }
            match sync::sync_run(target, &experiment_id, &run_dir) {
                Ok(true) => summary.runs += 1,
                Ok(false) => {}
                Err(e) => {
                    summary.pending += 1;
                    if e.downcast_ref::<MlflowError>()
                        .is_some_and(|m| matches!(m, MlflowError::Unreachable { .. }))
                    {
                        unreachable = Some(e);
                    } else {
                        eprintln!("warning: MLflow: {}: {e:#}", run_dir.display());
                    }
                }
            }
        }
        if unreachable.is_none()
            && let Err(e) = sync::sync_parent(target, &experiment_id, exp_dir, slug, name)
        {
            summary.pending += 1;
            eprintln!("warning: MLflow: the parent run of {name}: {e:#}");
        }
    }
    if let Some(e) = unreachable {
        eprintln!("warning: MLflow: {e:#}");
    }
    Ok(summary)
}
