//! `unet-lab validate`: everything `run` (or a cluster) would reject, rejected first.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::exit;
use super::overrides::OverrideArgs;
use crate::config::{self, BackendKind, Experiment};
use crate::study::check_devices;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  unet-lab validate experiments/kaggle_tricks.toml
  unet-lab validate experiments/mse_adam.toml --set train.lr=1e-4 --json")]
pub struct ValidateArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// Print the expanded variants as a JSON array.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub overrides: OverrideArgs,
    /// Check these GPUs as `run --devices` would.
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub devices: Vec<usize>,
    /// Check a SLURM --gres request against the study.
    #[arg(long)]
    pub gres: Option<String>,
}

pub(crate) fn execute(args: ValidateArgs) -> Result<u8> {
    let mut experiment = config::load_edited(&args.file, &args.overrides.edits())?;
    if let Some(b) = args.overrides.backend {
        for v in &mut experiment.variants {
            v.config.train.backend = b;
        }
    }
    let mut problems = cluster_problems(&experiment, &args);
    let data_lines = survey_data(&experiment, &mut problems)?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {}: {p}", args.file.display());
        }
        return Ok(exit::CONFIG);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&experiment.to_json())?);
    } else {
        print_summary(&args, &experiment, &data_lines);
    }
    Ok(0)
}

/// What `run`, `--devices` or SLURM would refuse about the backends and the cluster options.
fn cluster_problems(experiment: &Experiment, args: &ValidateArgs) -> Vec<String> {
    let backends: Vec<BackendKind> = experiment
        .variants
        .iter()
        .map(|v| v.config.train.backend)
        .collect();
    let mut problems = Vec::new();
    if let Err(e) = check_devices(&backends, &args.devices, None) {
        problems.push(format!("{e:#}"));
    }
    if let Some(g) = &args.gres {
        let opts = crate::study::slurm::SlurmOptions {
            gres: Some(g.clone()),
            cpus_per_task: 1,
            ..Default::default()
        };
        if let Err(e) =
            crate::study::slurm::check_options(&opts, &backends, experiment.tasks().len())
        {
            problems.push(format!("{e:#}"));
        }
    }
    let mut distinct = backends;
    distinct.sort_by_key(|b| b.name());
    distinct.dedup();
    for b in distinct {
        if let Err(e) = crate::device::check_built(b) {
            problems.push(format!("{e:#}"));
        }
    }
    problems
}

/// Each distinct dataset once (the path exists and holds the layout, the subjects exist): a
/// line for each, its problems added to `problems`.
fn survey_data(experiment: &Experiment, problems: &mut Vec<String>) -> Result<Vec<String>> {
    let mut surveyed: Vec<(String, String)> = Vec::new();
    for v in &experiment.variants {
        let key = serde_json::to_string(&v.config.data)?;
        if surveyed.iter().any(|(k, _)| *k == key) {
            continue;
        }
        match crate::data::survey(&v.config.data) {
            Ok(s) => surveyed.push((
                key,
                format!(
                    "data ({}): {} images of {} subjects, resized to {}×{}",
                    v.config.data.source_label(),
                    s.images,
                    s.subjects,
                    v.config.data.size[0],
                    v.config.data.size[1]
                ),
            )),
            Err(e) => {
                problems.push(format!("variant \"{}\": data: {e:#}", v.name));
                surveyed.push((key, String::new()));
            }
        }
    }
    Ok(surveyed.into_iter().map(|(_, line)| line).collect())
}

fn print_summary(args: &ValidateArgs, experiment: &Experiment, data_lines: &[String]) {
    let rules = &experiment.decide;
    let plan = if rules.sequential(experiment.seeds.len()) {
        format!(
            " at most (seeds until decided: {} first, then {} more per look while undecided)",
            rules.first_seeds, rules.step
        )
    } else {
        String::new()
    };
    println!(
        "{}: experiment \"{}\", {} variant(s) × {} seed(s) = {} task(s){plan}",
        args.file.display(),
        experiment.name,
        experiment.variants.len(),
        experiment.seeds.len(),
        experiment.tasks().len()
    );
    let edits = args.overrides.edits();
    if !edits.is_empty() {
        let flags: Vec<String> = edits.iter().map(config::Edit::display).collect();
        println!(
            "  overrides: {} (its own directory: {}/)",
            flags.join(" "),
            experiment.slug
        );
    }
    for line in data_lines {
        println!("  {line}");
    }
    for v in &experiment.variants {
        let t = &v.config.train;
        println!(
            "  {:<28} widths {:?}, loss {}, {} lr {}, {} epochs, batch {}",
            v.name,
            v.config.model.widths,
            t.loss.name(),
            format!("{:?}", t.optimizer).to_lowercase(),
            t.lr,
            t.epochs,
            t.batch_size
        );
        let overrides: Vec<String> = experiment
            .overrides(v)
            .into_iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        if !overrides.is_empty() {
            println!(
                "  {:<28} differs from the base: {}",
                "",
                overrides.join(", ")
            );
        }
    }
}
