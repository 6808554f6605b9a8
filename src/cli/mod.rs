//! The command line: `run`, `validate`, `tasks`, `status`, `slurm`, `report`, `compare`,
//! `predict`, `bench`, `augment-preview`. The study commands have a file each.

mod run;
mod slurm;
mod status;
mod tasks;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, BackendKind};

/// Exit codes: 0 success; 1 runtime error; 2 bad config or usage; 3 some runs diverged or
/// failed; 4 (`status`) the study is not complete yet; 130 interrupted.
pub mod exit {
    pub const ERROR: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const RUNS_NOT_COMPLETED: u8 = 3;
    pub const INCOMPLETE: u8 = 4;
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train every variant × seed of an experiment file (resuming where an earlier run
    /// stopped) and write metrics, checkpoints and the report under --out. With --task,
    /// --shard or --jobs, several workers share the study.
    Run(run::RunArgs),
    /// Check an experiment file, its data and the cluster options, and list its variants.
    Validate(validate::ValidateArgs),
    /// List the study's tasks (one per variant × seed, numbered in file order).
    Tasks(tasks::TasksArgs),
    /// Where a study stands: each task done, running, failed, diverged, interrupted or missing,
    /// and the command that finishes it. Exit 0 only when it is complete.
    Status(status::StatusArgs),
    /// Write (and with --submit, queue) a SLURM job array for the study and a report job after it.
    Slurm(slurm::SlurmArgs),
    /// Rebuild every picture and page of an experiment directory from its metrics and stored
    /// predictions (no model is loaded, nothing is trained).
    Report {
        /// An experiment directory written by `run` (e.g. reports/mse_adam).
        dir: PathBuf,
    },
    /// Predict masks for a folder of images with a trained variant, at each image's original
    /// resolution; optionally a Kaggle submission. A labelled input is also scored.
    Predict {
        /// The variant directory (<out>/<experiment>/<variant>).
        #[arg(long)]
        run: PathBuf,
        /// A folder of images (PNG or TIFF). `<stem>_mask.<ext>` files beside them are labels.
        #[arg(long)]
        input: PathBuf,
        /// Where `<stem>_mask.png` and `<stem>_overlay.png` go.
        #[arg(long)]
        out: PathBuf,
        /// Also write a Kaggle submission CSV (img,pixels; column-major 1-based RLE).
        #[arg(long)]
        submission: Option<PathBuf>,
        /// Which checkpoint to load.
        #[arg(long, value_enum, default_value = "best")]
        checkpoint: crate::predict::Which,
        /// Zero predicted masks smaller than this many pixels.
        #[arg(long, default_value_t = 0)]
        min_area: usize,
        /// The seed whose checkpoint to use (default: the first with one).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Training and inference throughput of the U-Net on random data.
    Bench {
        /// Channels per level.
        #[arg(long, value_delimiter = ',', default_value = "3,6,12,24,48")]
        widths: Vec<usize>,
        /// Square input size.
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, value_enum, default_value = "mse")]
        loss: crate::config::LossKind,
        #[arg(long, value_enum, default_value = "adam")]
        optim: crate::config::OptimizerKind,
        /// Timed steps (each phase).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendKind,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Also split a training step into forward, backward and optimizer time.
        #[arg(long)]
        profile: bool,
        /// Convolution implementations, to measure one against another.
        #[arg(long, value_enum, default_value = "auto")]
        kernels: crate::kernels::ConvPath,
    },
    /// Write a grid of augmented training samples (first column: the original) to check an
    /// [augment] table by eye.
    AugmentPreview {
        file: PathBuf,
        /// The variant whose data and augmentation to use (default: the first).
        #[arg(long)]
        variant: Option<String>,
        /// Output PNG.
        #[arg(long, default_value = "augment-preview.png")]
        out: PathBuf,
        /// Samples (rows) and augmented draws per sample (columns).
        #[arg(long, default_value_t = 4)]
        samples: usize,
        #[arg(long, default_value_t = 5)]
        draws: usize,
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
    crate::memory::keep_freed_memory();
    use_slurm_cpus();
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

/// Under SLURM the allocation, not the node, sets the thread count (`TaskPlugin=task/none`
/// does not confine a task to its CPUs); an explicit `RAYON_NUM_THREADS` still wins.
fn use_slurm_cpus() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let cpus = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0);
    if let Some(n) = cpus {
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
}

pub(crate) fn install_ctrlc() {
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
        Command::Run(args) => run::execute(args),
        Command::Validate(args) => validate::execute(args),
        Command::Tasks(args) => tasks::execute(args),
        Command::Status(args) => status::execute(args),
        Command::Slurm(args) => slurm::execute(args),
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
        Command::Predict {
            run,
            input,
            out,
            submission,
            checkpoint,
            min_area,
            seed,
        } => {
            let summary = crate::predict::predict(&crate::predict::PredictOptions {
                run,
                input,
                out: out.clone(),
                submission: submission.clone(),
                checkpoint,
                min_area,
                seed,
            })?;
            println!(
                "{} images, {} with a predicted nerve; masks and overlays in {}",
                summary.images,
                summary.nonempty,
                out.display()
            );
            if let Some(sub) = submission {
                println!("submission: {}", sub.display());
            }
            if let Some((dice, n)) = summary.score {
                println!(
                    "Kaggle score (mean Dice, empty/empty = 1) over {n} labelled images: {dice:.4}"
                );
            }
            Ok(0)
        }
        Command::Bench {
            widths,
            size,
            batch,
            loss,
            optim,
            steps,
            warmup,
            backend,
            json,
            profile,
            kernels,
        } => {
            if widths.is_empty() || widths.contains(&0) || batch == 0 || steps == 0 {
                eprintln!(
                    "error: --widths needs positive values; --batch and --steps must be at least 1"
                );
                return Ok(exit::CONFIG);
            }
            if let Err(msg) =
                crate::model::check_input_size([size, size], &widths, crate::config::Padding::Same)
            {
                eprintln!("error: --size: {msg}");
                return Ok(exit::CONFIG);
            }
            let result = crate::bench::bench(&crate::bench::BenchOptions {
                widths,
                size,
                batch,
                loss,
                optimizer: optim,
                steps,
                warmup,
                backend,
                profile,
                kernels,
            })?;
            if json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                println!("{}", result.human());
            }
            Ok(0)
        }
        Command::AugmentPreview {
            file,
            variant,
            out,
            samples,
            draws,
        } => {
            let mut experiment = config::load(&file)?;
            if let Some(v) = &variant
                && let Err(msg) = experiment.select(std::slice::from_ref(v))
            {
                eprintln!("error: {msg}");
                return Ok(exit::CONFIG);
            }
            let v = &experiment.variants[0];
            if !v.config.augment.any() {
                eprintln!(
                    "note: variant \"{}\" has no augmentation enabled; the columns repeat the original",
                    v.name
                );
            }
            let ds = crate::data::load(&v.config.data)?;
            // Prefer samples with an object: the mask shows whether it moved with the image.
            let mut picked: Vec<&crate::data::Sample> = ds
                .train
                .iter()
                .map(|&i| &ds.samples[i])
                .filter(|s| s.has_object())
                .take(samples.max(1))
                .collect();
            if picked.is_empty() {
                picked = ds
                    .train
                    .iter()
                    .take(samples.max(1))
                    .map(|&i| &ds.samples[i])
                    .collect();
            }
            let png = crate::report::augment_preview::preview_png(
                &v.config.augment,
                &picked,
                draws,
                v.config.data.seed,
            )?;
            crate::track::write_atomic(&out, &png)?;
            eprintln!("wrote {}", out.display());
            Ok(0)
        }
        Command::Compare { dirs, out } => {
            let page = crate::report::compare::render_comparison(&dirs, &out)?;
            eprintln!("wrote {}", page.display());
            Ok(0)
        }
    }
}
