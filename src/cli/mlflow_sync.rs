//! `unet-lab mlflow-sync`: push a study to an MLflow tracking server after the fact.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::exit;
use crate::track::mlflow;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  unet-lab mlflow-sync reports/ablation --uri http://mlflow.lab:5000\n  MLFLOW_TRACKING_URI=http://127.0.0.1:5000 unet-lab mlflow-sync reports/kaggle_tricks"
)]
pub struct MlflowSyncArgs {
    /// A study directory written by `run` (finished, partial, or trained without a server).
    pub dir: PathBuf,
    /// The tracking server (http://HOST:PORT); else the study's [track] mlflow, else
    /// MLFLOW_TRACKING_URI.
    #[arg(long, value_name = "URI")]
    pub uri: Option<String>,
}

pub(crate) fn execute(args: MlflowSyncArgs) -> Result<u8> {
    if let Err(e) = crate::track::merge::check_study_dir(&args.dir) {
        eprintln!("error: {e:#}");
        return Ok(exit::CONFIG);
    }
    let manifest = crate::track::ExperimentManifest::load(&args.dir)?;
    let track = manifest.track.clone().unwrap_or_default();
    let target = match mlflow::target(args.uri.as_deref(), &track, &manifest.name) {
        Ok(Some(target)) => target,
        Ok(None) => {
            eprintln!(
                "error: no tracking server: give --uri http://HOST:PORT, or set MLFLOW_TRACKING_URI"
            );
            return Ok(exit::CONFIG);
        }
        Err(msg) => {
            eprintln!("error: {}", msg.replace("--mlflow", "--uri"));
            return Ok(exit::CONFIG);
        }
    };
    let summary = mlflow::sync_study(&target, &args.dir)?;
    println!(
        "MLflow: {} run(s) of {} synced to {}, experiment \"{}\"{}",
        summary.runs,
        args.dir.display(),
        target.client.uri(),
        target.experiment,
        if summary.pending > 0 {
            format!(
                "; {} not delivered (run mlflow-sync again)",
                summary.pending
            )
        } else {
            String::new()
        }
    );
    Ok(if summary.pending > 0 { exit::ERROR } else { 0 })
}
