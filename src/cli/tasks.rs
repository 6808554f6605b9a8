//! `unet-lab tasks`: the study's task list, for schedulers and scripts.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::overrides::OverrideArgs;
use crate::study::Study;

#[derive(Args, Debug)]
#[command(after_help = "Example: unet-lab tasks experiments/ablation.toml --json")]
pub struct TasksArgs {
    /// The experiment file (TOML).
    pub file: PathBuf,
    /// The output directory the study is (or would be) written under.
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Print a JSON array of objects (index, variant, seed, fold, config_hash, dir).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub overrides: OverrideArgs,
}

pub(crate) fn execute(args: TasksArgs) -> Result<u8> {
    let study = Study::load(&args.file, args.overrides.overrides())?;
    let exp_dir = study.dir(&args.out);
    let rows: Vec<serde_json::Value> = study
        .tasks
        .iter()
        .map(|t| {
            serde_json::json!({
                "index": t.task.index,
                "variant": t.variant.name,
                "slug": t.variant.slug,
                "seed": t.task.seed,
                "fold": t.task.fold,
                "config_hash": t.config_hash,
                "dir": t.run_dir(&exp_dir).display().to_string(),
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let experiment = &study.experiment;
    let folds = experiment
        .variants
        .iter()
        .map(|v| v.folds().len())
        .max()
        .unwrap_or(1);
    println!(
        "{}: {} task(s) ({} variant(s) × {} seed(s){})",
        args.file.display(),
        rows.len(),
        experiment.variants.len(),
        experiment.seeds.len(),
        if folds > 1 {
            format!(" × {folds} folds")
        } else {
            String::new()
        }
    );
    let width = rows
        .iter()
        .map(|r| r["variant"].as_str().unwrap_or("").chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:>5}  {:<width$}  {:>6}  {:>4}  {:<16}  output directory",
        "index", "variant", "seed", "fold", "config hash"
    );
    for r in &rows {
        println!(
            "{:>5}  {:<width$}  {:>6}  {:>4}  {:<16}  {}",
            r["index"].as_u64().unwrap_or(0),
            r["variant"].as_str().unwrap_or(""),
            r["seed"].as_u64().unwrap_or(0),
            r["fold"]
                .as_u64()
                .map_or("—".to_string(), |f| f.to_string()),
            r["config_hash"].as_str().unwrap_or(""),
            r["dir"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}
