//! `unet-lab slurm`: plan the study and write (optionally submit) its SLURM job array.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use super::overrides::OverrideArgs;
use crate::config::BackendKind;
use crate::study::Study;
use crate::study::slurm::{self, SlurmOptions};
use crate::track::Plan;
use crate::util::shell_quote;

#[derive(Args, Debug)]
#[command(
    after_help = "Example: unet-lab slurm experiments/ablation.toml --out /shared/reports --partition gpu --account lab42 --time 2:00:00 --submit"
)]
pub struct SlurmArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// Output directory; the experiment goes to <out>/<experiment name>/ (on a shared filesystem).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// SLURM partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit of each task (SLURM's forms: 30, 2:00:00, 1-12, ...).
    #[arg(long)]
    pub time: Option<String>,
    /// Account to charge (sbatch --account), when the cluster requires one.
    #[arg(long)]
    pub account: Option<String>,
    /// Quality of service (sbatch --qos).
    #[arg(long)]
    pub qos: Option<String>,
    /// Memory of each task (sbatch --mem), e.g. 16G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Any other sbatch option for every job, as a long option (repeatable), e.g.
    /// --sbatch-arg=--constraint=a100.
    #[arg(long = "sbatch-arg", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// CPUs of each task; training uses that many threads (default 2).
    #[arg(long, default_value_t = 2)]
    pub cpus_per_task: usize,
    /// Generic resources of each task, e.g. gpu:1 (only when asked: no default).
    #[arg(long)]
    pub gres: Option<String>,
    /// At most this many tasks at once (--array=0-(T-1)%K).
    #[arg(long, value_name = "K")]
    pub max_parallel: Option<usize>,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Every task logs its run to this MLflow tracking server (http://HOST:PORT); the
    /// environment's MLFLOW_TRACKING_URI reaches the jobs too.
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
    /// Submit both scripts with sbatch and print the job ids.
    #[arg(long)]
    pub submit: bool,
}

/// The paths that go into the scripts and the tracking address, checked before anything is
/// read or written.
fn check_args(args: &SlurmArgs, cwd: &Path) -> Result<()> {
    slurm::check_script_path("the working directory", cwd)?;
    slurm::check_script_path("the experiment file", &args.file)?;
    slurm::check_script_path("--out", &args.out)?;
    slurm::check_log_dir("--out", &cwd.join(&args.out))?;
    if let Some(uri) = &args.mlflow {
        crate::config::check_tracking_uri(uri).map_err(|m| anyhow::anyhow!("--mlflow: {m}"))?;
    }
    Ok(())
}

pub(crate) fn execute(args: SlurmArgs) -> Result<u8> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    if let Err(e) = check_args(&args, &cwd) {
        eprintln!("error: {e:#}");
        return Ok(super::exit::CONFIG);
    }
    let backend = args.overrides.backend;
    let study = Study::load(&args.file, args.overrides.overrides())?;
    let opts = SlurmOptions {
        partition: args.partition,
        account: args.account,
        qos: args.qos,
        mem: args.mem,
        sbatch_args: args.sbatch_args,
        time: args.time,
        cpus_per_task: args.cpus_per_task,
        gres: args.gres,
        max_parallel: args.max_parallel,
        backend,
        mlflow: args.mlflow,
    };
    let backends: Vec<BackendKind> = study
        .experiment
        .variants
        .iter()
        .map(|v| v.config.train.backend)
        .collect();
    if let Err(e) = slurm::check_options(&opts, &backends, study.tasks.len()) {
        eprintln!("error: {e:#}");
        return Ok(super::exit::CONFIG);
    }
    study.check_backends(&[], None)?;
    study.survey_data()?;
    let exp_dir = study.plan(&args.out, true)?;
    let plan = Plan::load(&exp_dir)?.context("the plan was just written")?;
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let scripts = slurm::write_scripts(&exp_dir, &plan, &exe, &cwd, &opts, study.sequential())?;
    println!(
        "array job ({} tasks): {}",
        scripts.tasks,
        scripts.array.display()
    );
    println!("report job:           {}", scripts.report.display());
    // The commands below are for pasting into a shell: their paths are quoted.
    let quoted = |p: &Path| shell_quote(&p.display().to_string());
    if let Some(decide) = &scripts.decide {
        println!("decide job:           {}", decide.display());
        let (line, indices) = super::status::current_round(&exp_dir)?;
        println!("{line}");
        let Some(indices) = indices else {
            println!("nothing to train: unet-lab report {}", quoted(&exp_dir));
            return Ok(0);
        };
        if args.submit {
            let (array, job) = slurm::submit(&scripts, Some(&indices))?;
            println!(
                "submitted array job {array} (tasks {indices}) and decide job {job} (after any end \
                 of {array}): it takes the verdicts and submits the next round, or renders the report"
            );
            println!("follow it with: unet-lab status {}", quoted(&exp_dir));
        } else {
            println!(
                "submit with: job=$(sbatch --parsable --array={indices} {}) && sbatch --dependency=afterany:$job {}",
                quoted(&scripts.array),
                quoted(decide)
            );
        }
        return Ok(0);
    }
    if args.submit {
        let (array, report) = slurm::submit(&scripts, None)?;
        println!("submitted array job {array} and report job {report} (after any end of {array})");
        println!("follow it with: unet-lab status {}", quoted(&exp_dir));
    } else {
        println!(
            "submit with: job=$(sbatch --parsable {}) && sbatch --dependency=afterany:$job {}",
            quoted(&scripts.array),
            quoted(&scripts.report)
        );
    }
    Ok(0)
}
