//! `unet-lab tune`: post-processing chosen on validation, for `predict` and the test score.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Grid-search the probability threshold, the minimum mask area and (with a presence head) the
/// presence threshold that maximise the Kaggle score on validation; write them beside the
/// checkpoints (`predict` uses them) and score the test split with them.
#[derive(Args, Debug)]
#[command(after_help = "Example: unet-lab tune --run reports/kaggle_tricks/blog")]
pub struct TuneArgs {
    /// The variant directory (<out>/<experiment>/<variant>).
    #[arg(long)]
    pub run: PathBuf,
    /// Tune only this seed (default: each seed, separately).
    #[arg(long)]
    pub seed: Option<u64>,
}

pub(crate) fn execute(args: TuneArgs) -> Result<u8> {
    crate::track::migrate::migrate_study_of(&args.run)?;
    let tuned = crate::train::tune::tune_variant(&args.run, args.seed)?;
    for seed in &tuned {
        let first = &seed.tuned[0];
        let runs = match seed.runs.len() {
            1 => seed.runs[0].to_string(),
            n => format!("seed {} ({n} folds, out-of-fold images pooled)", seed.seed),
        };
        println!("{runs}: {}", first.describe());
        if seed.tuned.len() > 1 {
            for (run, t) in seed.runs.iter().zip(&seed.tuned) {
                if let (Some(b), Some(a)) = (t.test_before, t.test_after) {
                    println!("  {run}: test Dice {b:.4} → {a:.4}");
                }
            }
        }
    }
    // The study-wide tables carry the tuned scores once merged; the report shows them.
    if let Some(exp_dir) = args.run.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::track::merge::merge(exp_dir)?;
        println!(
            "written beside the checkpoints ({}); `unet-lab report {}` shows them",
            crate::model::postprocess::FILE_NAME,
            exp_dir.display()
        );
    }
    Ok(0)
}
