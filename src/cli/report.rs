//! `unet-lab report`: merge the runs and rebuild every picture and page from files.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

/// What `report` prints on standard output besides writing the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Only a line saying what was written (on standard error).
    Files,
    /// Also print `summary.json` (variants, main effects, interactions).
    Json,
}

/// Rebuild every picture and page of an experiment directory from its metrics and stored
/// predictions (no model is loaded, nothing is trained).
#[derive(Args, Debug)]
#[command(after_help = "Example: unet-lab report reports/mse_adam")]
pub struct ReportArgs {
    /// An experiment directory written by `run` (e.g. reports/mse_adam).
    pub dir: PathBuf,
    /// `json`: also print the tables of `summary.json` on standard output.
    #[arg(long, value_enum, default_value = "files")]
    pub format: Format,
    /// The same as --format json (the flag the other commands use).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
}

pub(crate) fn execute(args: ReportArgs) -> Result<u8> {
    let ReportArgs { dir, format, json } = args;
    let format = if json { Format::Json } else { format };
    let started = std::time::Instant::now();
    let written = crate::report::render_experiment(&dir)?;
    eprintln!(
        "rebuilt {} files in {} ({:.2} s)",
        written.len(),
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    if format == Format::Json {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        println!("{text}");
    }
    Ok(0)
}
