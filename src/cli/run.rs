//! `unet-lab run`: train a study, or the share of it this worker is given.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use super::exit;
use super::overrides::OverrideArgs;
use crate::study::{self, RunOptions, Selection, Study};
use crate::track::mlflow;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  unet-lab run experiments/mse_adam.toml
  unet-lab run experiments/mse_adam.toml --epochs 1                 # a smoke test, its own directory
  unet-lab run experiments/ablation.toml --set train.lr=1e-4 --jobs 2
  unet-lab run experiments/mse_adam.toml --grid train.optimizer=adam,sgd")]
pub struct RunArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// Output directory; the experiment goes to <out>/<experiment name>/.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Train only these variants (repeatable).
    #[arg(long = "variant", value_name = "NAME")]
    pub variants: Vec<String>,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Discard earlier results of the selected runs and train them again.
    #[arg(long)]
    pub fresh: bool,
    /// Do not render the report at the end.
    #[arg(long)]
    pub no_report: bool,
    /// Train one task of the study (see `unet-lab tasks FILE`); a worker: no merge, no report.
    #[arg(long, value_name = "I", conflicts_with_all = ["shard", "jobs"])]
    pub task: Option<usize>,
    /// Train every N-th task from I (I/N, I from 0); a worker: no merge, no report.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, conflicts_with = "jobs")]
    pub shard: Option<(usize, usize)>,
    /// Worker processes on this machine, splitting the CPU threads between them.
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// CUDA: one GPU per worker (--devices 0,1,2,3 starts four workers unless --jobs says).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub devices: Vec<usize>,
    /// The GPU (CUDA index) or wgpu adapter to train on, overriding train.device (--devices sets
    /// it for the workers it starts; a bad number lists the adapters).
    #[arg(long, value_name = "N")]
    pub device: Option<usize>,
    /// Log to this MLflow tracking server (http://HOST:PORT), overriding [track] mlflow and
    /// MLFLOW_TRACKING_URI; the MLflow experiment is MLFLOW_EXPERIMENT_NAME, else the study's name.
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
    /// A worker process of an already planned study (set by --jobs).
    #[arg(long, hide = true)]
    pub worker: bool,
}

/// `I/N` → (I, N).
fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("expected I/N with 0 ≤ I < N (e.g. 0/4), got \"{text}\"");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

pub(crate) fn execute(args: RunArgs) -> Result<u8> {
    let study = Study::load(&args.file, args.overrides.overrides())?;
    let selection = match (args.task, args.shard) {
        (Some(i), _) => Selection::Task(i),
        (_, Some((index, count))) => Selection::Shard { index, count },
        _ => Selection::All,
    };
    // A selection the study does not have is a usage error, before anything is checked.
    if let Err(e) = study.select(&args.variants, selection) {
        eprintln!("error: {e:#}");
        return Ok(exit::CONFIG);
    }
    let (jobs, device) = match worker_count(&args) {
        Ok(x) => x,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(exit::CONFIG);
        }
    };
    let tracking = match mlflow::target(
        args.mlflow.as_deref(),
        &study.experiment.track,
        &study.experiment.name,
    ) {
        Ok(target) => target,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(exit::CONFIG);
        }
    };
    super::install_ctrlc();
    let exp_dir = study.dir(&args.out);
    // Workers log their own runs; the planner of `--jobs` only syncs the study at the end.
    let sink = tracking.map(|t| std::sync::Arc::new(mlflow::Sink::start(t)));
    let opts = RunOptions {
        out: args.out,
        fresh: args.fresh,
        variants: args.variants,
        selection,
        worker: args.worker || selection != Selection::All,
        jobs,
        devices: if jobs > 1 { args.devices } else { Vec::new() },
        device,
        live: (!args.no_report).then(|| live_hook(&exp_dir)),
        tracking: sink.clone(),
        mlflow: args.mlflow.clone(),
    };
    let summary = study.run(&opts)?;
    if opts.whole_study() {
        study::finish(&exp_dir, !args.no_report, summary.busy)?;
    }
    if let Some(sink) = sink {
        finish_tracking(&sink, &exp_dir, opts.whole_study());
    }
    crate::info!("summary: {}", summary.line());
    if opts.whole_study() && !crate::util::say::quiet() {
        print_answer(&exp_dir, !args.no_report);
    }
    Ok(if summary.errored > 0 {
        exit::ERROR
    } else if summary.interrupted > 0 {
        exit::INTERRUPTED
    } else if summary.diverged + summary.failed > 0 {
        exit::RUNS_NOT_COMPLETED
    } else {
        0
    })
}

/// Lets the sink deliver what it was told of; a whole study then syncs every run and each
/// variant's parent run (pictures, the page, status).
fn finish_tracking(sink: &mlflow::Sink, exp_dir: &Path, whole_study: bool) {
    let Some(target) = sink.finish(std::time::Duration::from_secs(120)) else {
        return;
    };
    if !whole_study {
        return;
    }
    match mlflow::sync_study(&target, exp_dir) {
        Ok(s) if s.pending == 0 => crate::info!(
            "MLflow: {} run(s) logged to {}, experiment \"{}\"",
            s.runs,
            sink.uri(),
            target.experiment
        ),
        Ok(s) => eprintln!(
            "warning: MLflow: {} run(s) not delivered to {}; `unet-lab mlflow-sync {}` delivers them",
            s.pending,
            sink.uri(),
            exp_dir.display()
        ),
        Err(e) => eprintln!(
            "warning: MLflow: {e:#}; nothing is lost: `unet-lab mlflow-sync {}` delivers the study",
            exp_dir.display()
        ),
    }
}

/// The answer at the end of a run: the runs table, the verdict table (when the study compares
/// anything) and where the page is.
fn print_answer(exp_dir: &Path, report: bool) {
    match crate::report::ExperimentData::load(exp_dir) {
        Ok(data) => {
            let verdicts = crate::report::verdicts::Verdicts::of(&data);
            let rows = crate::report::summary::rows_with(&data, verdicts.as_ref());
            let (heads, cells) = super::runs::table(&data, &rows);
            eprintln!("\nruns (`unet-lab runs {}`):", exp_dir.display());
            eprint!("{}", crate::util::aligned_table(&heads, &cells));
            if let Some(v) = verdicts
                && v.contrasts.len() > 1
            {
                eprintln!(
                    "\nverdicts ({}, family-wise α = {}):",
                    v.score, v.rules.alpha
                );
                eprint!("{}", v.terminal_table());
            }
        }
        Err(e) => eprintln!("warning: cannot read the results back: {e:#}"),
    }
    let page = exp_dir.join("index.html");
    if report && page.exists() {
        let page = std::fs::canonicalize(&page).unwrap_or(page);
        eprintln!("\nreport: file://{}", page.display());
    }
}

/// Seconds between two refreshes of the live page after epochs (a finished run always
/// refreshes it).
const LIVE_REFRESH_SECONDS: u64 = 2;

/// The live page: refreshed as epochs are recorded, fully when a run ends.
fn live_hook(exp_dir: &Path) -> crate::train::progress::LiveHook {
    let live = crate::report::live::LiveReport::new(
        exp_dir,
        std::time::Duration::from_secs(LIVE_REFRESH_SECONDS),
    );
    std::sync::Arc::new(move |event| {
        live.refresh(event == crate::train::progress::LiveEvent::RunEnded)
    })
}

/// Worker processes to start, and this process's GPU, from --jobs, --devices and --device.
fn worker_count(args: &RunArgs) -> Result<(usize, Option<usize>), String> {
    let jobs = args.jobs.unwrap_or(args.devices.len().max(1));
    if jobs == 0 {
        return Err("--jobs: needs at least 1 worker".into());
    }
    if !args.devices.is_empty() && jobs > args.devices.len() {
        return Err(format!(
            "--jobs {jobs} with {} GPU(s) in --devices: each worker gets its own GPU; list at least \
             {jobs} devices or lower --jobs",
            args.devices.len()
        ));
    }
    if args.device.is_some() && !args.devices.is_empty() {
        return Err("--device and --devices: give one or the other".into());
    }
    let device = match (jobs, args.devices.as_slice()) {
        (1, [only]) => Some(*only),
        _ => args.device,
    };
    Ok((jobs, device))
}
