//! `unet-lab next-round DIR`: the decide job of a study with seeds until decided on SLURM.
//! After a round's array ends, it takes the verdicts and submits the next round (its array
//! over the tasks the verdicts need, and another decide job after it), or renders the report
//! when every contrast is decided or the most seeds are used.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::study::slurm;

#[derive(Args, Debug)]
#[command(
    after_help = "Example (what decide.sbatch runs): unet-lab next-round /shared/reports/kaggle_tricks"
)]
pub struct NextRoundArgs {
    /// The study's directory (written by `unet-lab slurm FILE --submit`).
    pub dir: PathBuf,
}

/// A set of tasks submitted this often without finishing is not resubmitted again.
const MAX_SUBMISSIONS: usize = 2;

pub(crate) fn execute(args: NextRoundArgs) -> Result<u8> {
    let (line, indices) = super::status::current_round(&args.dir)?;
    println!("{line}");
    let scripts = args.dir.join("slurm");
    let Some(indices) = indices else {
        crate::report::render_experiment(&args.dir)?;
        println!(
            "nothing left to train: report rendered in {}",
            args.dir.display()
        );
        return Ok(0);
    };
    // Tasks that keep ending unfinished (cancelled, out of time, a broken node) would loop
    // forever: stop after the same set was submitted twice, and say what to do.
    let log = scripts.join("rounds.log");
    let earlier = std::fs::read_to_string(&log).unwrap_or_default();
    if earlier.lines().filter(|l| *l == indices).count() >= MAX_SUBMISSIONS {
        crate::report::render_experiment(&args.dir)?;
        eprintln!(
            "error: tasks {indices} were submitted {MAX_SUBMISSIONS} times and did not finish; \
             their logs are in {}; once fixed, resubmit with `unet-lab slurm FILE --out OUT \
             --submit` (the report is rendered with what finished)",
            scripts.join("logs").display()
        );
        return Ok(super::exit::ERROR);
    }
    let (array, decide) = slurm::submit_round(
        &scripts.join("array.sbatch"),
        &scripts.join("decide.sbatch"),
        &indices,
    )?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot write {}", log.display()))?;
    writeln!(file, "{indices}").with_context(|| format!("cannot write {}", log.display()))?;
    println!(
        "submitted array job {array} (tasks {indices}) and decide job {decide} (after any end of {array})"
    );
    Ok(0)
}
