//! `unet-lab compare`: studies side by side — in the terminal, on a page, or as JSON.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::report::compare;
use crate::report::diff;
use crate::util::aligned_table;

/// Compare studies: every study after the first against the first.
#[derive(Args, Debug)]
#[command(
    after_help = "Example: unet-lab compare reports/mse_adam 'reports/mse_adam_train.lr_1e-4'"
)]
pub struct CompareArgs {
    /// Study directories written by `run`; the first is the reference.
    #[arg(required = true, num_args = 1.., value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write the comparison page.
    #[arg(long, default_value = "reports/compare")]
    pub out: PathBuf,
    /// Print the comparisons as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn execute(args: CompareArgs) -> Result<u8> {
    let CompareArgs { dirs, out, json } = args;
    if let Err(msg) = compare::check_out(&out) {
        eprintln!("error: {msg}");
        return Ok(super::exit::CONFIG);
    }
    for dir in &dirs {
        if let Err(e) = crate::track::merge::check_study_dir(dir) {
            eprintln!("error: {e:#}");
            return Ok(super::exit::CONFIG);
        }
    }
    let studies = compare::load_all(&dirs)?;
    let diffs = diff::against_first(&studies);
    if json {
        println!("{}", serde_json::to_string_pretty(&diffs)?);
    } else {
        for d in &diffs {
            let (heads, rows) = d.table();
            println!("{}:", d.title());
            print!("{}", aligned_table(&heads, &rows));
            if !d.unmatched.is_empty() {
                println!("only in {}: {}", d.other, d.unmatched.join(", "));
            }
            println!();
        }
    }
    let page = compare::render_comparison(&studies, &diffs, &out)?;
    eprintln!(
        "page: file://{}",
        std::fs::canonicalize(&page).unwrap_or(page).display()
    );
    Ok(0)
}
