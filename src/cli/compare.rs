//! `unet-lab compare`: one page across several experiment directories.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

/// Build one comparison page across several experiment directories.
#[derive(Args, Debug)]
pub struct CompareArgs {
    #[arg(required = true, num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the comparison page.
    #[arg(long, default_value = "reports/compare")]
    pub out: PathBuf,
}

pub(crate) fn execute(args: CompareArgs) -> Result<u8> {
    let CompareArgs { dirs, out } = args;
    if let Err(msg) = crate::report::compare::check_out(&out) {
        eprintln!("error: {msg}");
        return Ok(super::exit::CONFIG);
    }
    let page = crate::report::compare::render_comparison(&dirs, &out)?;
    eprintln!("wrote {}", page.display());
    Ok(0)
}
