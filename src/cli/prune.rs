//! `unet-lab prune`: delete the runs a study set aside in `superseded/` — the only command
//! that deletes trained results.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::track::supersede;

#[derive(Args, Debug)]
#[command(after_help = "Example: unet-lab prune reports/ablation --dry-run")]
pub struct PruneArgs {
    /// An experiment directory (e.g. reports/ablation).
    pub dir: PathBuf,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub(crate) fn execute(args: PruneArgs) -> Result<u8> {
    if !args.dir.join("experiment.json").is_file() {
        return Err(crate::util::Refusal(format!(
            "{} is not an experiment directory written by `unet-lab run` (no experiment.json); \
             nothing was deleted",
            args.dir.display()
        ))
        .into());
    }
    let runs = supersede::list(&args.dir);
    if runs.is_empty() {
        println!("{}: no superseded runs", args.dir.display());
        return Ok(0);
    }
    for r in &runs {
        println!(
            "{} {}  {}  (set aside {})",
            if args.dry_run {
                "would delete"
            } else {
                "deleting"
            },
            r.variant,
            r.run,
            r.when
        );
    }
    if args.dry_run {
        return Ok(0);
    }
    let (count, bytes) = supersede::prune(&args.dir)?;
    println!(
        "deleted {count} superseded run(s), {:.1} MB, from {}",
        bytes as f64 / 1e6,
        args.dir.join(supersede::DIR).display()
    );
    Ok(0)
}
