//! `unet-lab report`: merge the runs and rebuild every picture and page from files.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Rebuild every picture and page of an experiment directory from its metrics and stored
/// predictions (no model is loaded, nothing is trained).
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// An experiment directory written by `run` (e.g. reports/mse_adam).
    pub dir: PathBuf,
}

pub fn execute(args: ReportArgs) -> Result<u8> {
    let ReportArgs { dir } = args;
    let started = std::time::Instant::now();
    let written = crate::report::render_experiment(&dir)?;
    eprintln!(
        "rebuilt {} files in {} ({:.2} s)",
        written.len(),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}
