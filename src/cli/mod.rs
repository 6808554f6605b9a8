//! The command line: `run`, `validate`, `tasks`, `status`, `runs`, `slurm`, `report`, `compare`,
//! `tune`, `predict`, `bench`, `augment-preview`, `prune`, `next-round`. The study commands have a file each.

mod augment_preview;
mod bench;
mod compare;
mod mlflow_sync;
mod next_round;
mod overrides;
mod predict;
mod prune;
mod report;
mod run;
mod runs;
mod serve;
mod slurm;
mod status;
mod tasks;
mod tune;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// Exit codes: 0 success; 1 runtime error; 2 bad config or usage; 3 some runs diverged or
/// failed; 4 (`status`) the study is not complete yet; 130 interrupted.
pub mod exit {
    pub(crate) const ERROR: u8 = 1;
    pub(crate) const CONFIG: u8 = 2;
    pub(crate) const RUNS_NOT_COMPLETED: u8 = 3;
    pub(crate) const INCOMPLETE: u8 = 4;
    pub(crate) const INTERRUPTED: u8 = 130;
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
    /// Say only warnings and errors on standard error (no progress, no tables after a run).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Say more: the commands of the worker processes.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
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
    /// The runs table: one line per variant with its levels, how its seeds ended, test and best
    /// validation Dice (mean [95% interval]) and its seeds; --json or --csv for scripts.
    Runs(runs::RunsArgs),
    /// Where a study stands: each task done, running, failed, diverged, interrupted or missing,
    /// and the command that finishes it. Exit 0 only when it is complete.
    Status(status::StatusArgs),
    /// Delete the runs a study set aside in <dir>/superseded/ (their config changed, or
    /// --fresh retrained them): the only command that deletes trained results.
    Prune(prune::PruneArgs),
    /// Write (and with --submit, queue) a SLURM job array for the study and a report job after it.
    Slurm(slurm::SlurmArgs),
    /// The decide job of a study with seeds until decided on SLURM: take the verdicts after a
    /// round and submit the next round, or render the report when nothing is left to train.
    NextRound(next_round::NextRoundArgs),
    /// Rebuild every picture and page of an experiment directory from its metrics and stored
    /// predictions (no model is loaded, nothing is trained).
    Report(report::ReportArgs),
    /// Choose the threshold, minimum area and presence threshold on validation (per seed; a
    /// cross-validated seed on its out-of-fold images) for `predict` and the test score.
    Tune(tune::TuneArgs),
    /// Predict masks for a folder of images with a trained variant, at each image's original
    /// resolution; optionally a Kaggle submission. A labelled input is also scored.
    Predict(predict::PredictArgs),
    /// Training and inference throughput of the U-Net on random data.
    Bench(bench::BenchArgs),
    /// Write a grid of augmented training samples (first column: the original) to check an
    /// [augment] table by eye.
    AugmentPreview(augment_preview::AugmentPreviewArgs),
    /// Build one comparison page across several experiment directories.
    Compare(compare::CompareArgs),
    /// Push a study to an MLflow tracking server: what live logging could not deliver, or a
    /// study trained without a server (the same content as logging it live).
    MlflowSync(mlflow_sync::MlflowSyncArgs),
    /// Serve study pages read-only over HTTP on localhost (for a study on a cluster: through
    /// an SSH port forward); the live page of a study in training reloads itself.
    Serve(serve::ServeArgs),
}

pub fn main() -> ExitCode {
    end_quietly_on_closed_stdout();
    crate::device::quiet_vulkan_drivers();
    crate::memory::keep_freed_memory();
    use_slurm_cpus();
    let cli = Cli::parse();
    crate::util::say::set(cli.quiet, cli.verbose);
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if let Some(cfg) = e.downcast_ref::<config::ConfigError>() {
                eprintln!("error: {cfg}");
                return ExitCode::from(exit::CONFIG);
            }
            if let Some(refusal) = e.downcast_ref::<crate::util::Refusal>() {
                eprintln!("error: {refusal}");
                return ExitCode::from(exit::CONFIG);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// A closed stdout (`unet-lab validate FILE | head -1`) ends the process quietly, as it does
/// `cat` or `ls`: Rust ignores SIGPIPE, so a write to a closed pipe fails and `println!`
/// panics ("failed printing to stdout: Broken pipe"). With the default disposition the kernel
/// ends the process at that write instead, in every command alike. Runs stay safe: they are
/// written to survive being killed at any point (their locks are released by the kernel).
fn end_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
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
        Command::Runs(args) => runs::execute(args),
        Command::Prune(args) => prune::execute(args),
        Command::Slurm(args) => slurm::execute(args),
        Command::NextRound(args) => next_round::execute(args),
        Command::Report(args) => report::execute(args),
        Command::Tune(args) => tune::execute(args),
        Command::Predict(args) => predict::execute(args),
        Command::Bench(args) => bench::execute(args),
        Command::AugmentPreview(args) => augment_preview::execute(args),
        Command::Compare(args) => compare::execute(args),
        Command::Serve(args) => serve::execute(args),
        Command::MlflowSync(args) => mlflow_sync::execute(args),
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    #[test]
    fn every_argument_has_help_and_every_command_an_example() {
        let cli = super::Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            let example = sub
                .get_after_help()
                .or(sub.get_after_long_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            if !example.contains("unet-lab ") {
                missing.push(format!("{name}: no example"));
            }
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{name} {id}: no help"));
                }
            }
        }
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
