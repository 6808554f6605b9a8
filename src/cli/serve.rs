//! `unet-lab serve`: a study's page over HTTP on localhost, read-only.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::report::serve::{self, Site};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  unet-lab serve reports/kaggle_tricks                 # http://127.0.0.1:8000/
  unet-lab serve reports/ablation reports/blog_vs_paper --port 0
  ssh -N -L 8000:localhost:8000 cluster               # then open http://localhost:8000/ here")]
pub struct ServeArgs {
    /// Study directories written by `run` (one is served at /, several each under /NAME/).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// The localhost port (0: a free one, printed).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
}

pub(crate) fn execute(args: ServeArgs) -> Result<u8> {
    let site = match Site::new(&args.dirs) {
        Ok(site) => site,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(super::exit::CONFIG);
        }
    };
    serve::serve(site, args.port, |addr| {
        let port = addr.port();
        // One write: a reader that stops after the first line must not end the server.
        println!(
            "serving at http://{addr}/ (read-only; Ctrl-C stops it)\nfrom your machine: ssh -N -L \
             {port}:localhost:{port} HOST, then open http://localhost:{port}/"
        );
    })?;
    Ok(0)
}
