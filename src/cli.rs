//! The command line: `run`, `validate`, `report`, `compare`, `predict`, `bench`,
//! `augment-preview`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, BackendKind};
use crate::train::runner::{RunOptions, run_experiment};

/// Exit codes: 0 success; 1 runtime error; 2 bad config or usage; 3 some runs diverged or
/// failed; 130 interrupted.
pub mod exit {
    pub const ERROR: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const RUNS_NOT_COMPLETED: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser, Debug)]
#[command(
    name = "unet-lab",
    version,
    about = "U-Net segmentation experiments: TOML studies → Burn training → Parquet metrics → reports"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Cpu,
    Cuda,
}

impl From<BackendArg> for BackendKind {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Cpu => BackendKind::Cpu,
            BackendArg::Cuda => BackendKind::Cuda,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train every variant of an experiment file (resuming where an earlier run stopped) and
    /// write metrics, checkpoints and the report under --out.
    Run {
        /// The experiment file (TOML).
        file: PathBuf,
        /// Output directory; the experiment goes to <out>/<experiment name>/.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Train only these variants (repeatable).
        #[arg(long = "variant", value_name = "NAME")]
        variants: Vec<String>,
        /// Override the backend of every variant.
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// Discard earlier results of the selected variants and train them again.
        #[arg(long)]
        fresh: bool,
        /// Do not render the report at the end.
        #[arg(long)]
        no_report: bool,
    },
    /// Check an experiment file and list its variants.
    Validate {
        file: PathBuf,
        /// Print the expanded variants as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild every picture and page of an experiment directory from its metrics and stored
    /// predictions (no model is loaded, nothing is trained).
    Report {
        /// An experiment directory written by `run` (e.g. reports/mse_adam).
        dir: PathBuf,
    },
    /// Build one comparison page across several experiment directories.
    Compare {
        #[arg(required = true, num_args = 1..)]
        dirs: Vec<PathBuf>,
        /// Where to write the comparison page.
        #[arg(long, default_value = "reports/compare")]
        out: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(cfg) = e.downcast_ref::<config::ConfigError>() {
                eprintln!("error: {cfg}");
                return ExitCode::from(exit::CONFIG);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        if crate::train::INTERRUPTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: stopping now");
            std::process::exit(exit::INTERRUPTED as i32);
        }
        eprintln!(
            "\nCtrl-C: finishing the current step, then saving and stopping (Ctrl-C again to stop at once)"
        );
    });
}

fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run {
            file,
            out,
            variants,
            backend,
            fresh,
            no_report,
        } => {
            let mut experiment = config::load(&file)?;
            if let Err(msg) = experiment.select(&variants) {
                eprintln!("error: {msg}");
                return Ok(exit::CONFIG);
            }
            install_ctrlc();
            let summary = run_experiment(
                &file,
                experiment,
                &RunOptions {
                    out,
                    backend: backend.map(Into::into),
                    fresh,
                    report: !no_report,
                },
            )?;
            eprintln!("summary: {}", summary.line());
            Ok(if summary.interrupted > 0 {
                exit::INTERRUPTED
            } else if summary.diverged + summary.failed > 0 {
                exit::RUNS_NOT_COMPLETED
            } else {
                0
            })
        }
        Command::Validate { file, json } => {
            let experiment = config::load(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&experiment.to_json())?);
            } else {
                println!(
                    "{}: experiment \"{}\", {} variant(s) × {} seed(s)",
                    file.display(),
                    experiment.name,
                    experiment.variants.len(),
                    experiment.seeds.len()
                );
                for v in &experiment.variants {
                    let t = &v.config.train;
                    println!(
                        "  {:<28} widths {:?}, loss {}, {:?} lr {}, {} epochs, batch {}",
                        v.name,
                        v.config.model.widths,
                        t.loss.name(),
                        t.optimizer,
                        t.lr,
                        t.epochs,
                        t.batch_size
                    );
                }
            }
            Ok(0)
        }
        Command::Report { dir } => {
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
        Command::Compare { dirs, out } => {
            let page = crate::report::compare::render_comparison(&dirs, &out)?;
            eprintln!("wrote {}", page.display());
            Ok(0)
        }
    }
}
