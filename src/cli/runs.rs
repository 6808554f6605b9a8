//! `unet-lab runs DIR`: the runs table in the terminal — one line per variant with its grid
//! levels, how its seeds ended, test and best validation Dice (mean [95% interval] over every
//! seed with a result, failed ones included) and its seeds; `--json` or `--csv` for scripts.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::report::ExperimentData;
use crate::report::stats::mean_ci95;
use crate::report::summary::{self, VariantRow};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  unet-lab runs reports/kaggle_tricks --sort test
  unet-lab runs reports/ablation --csv > ablation.csv")]
pub struct RunsArgs {
    /// An experiment directory (e.g. reports/kaggle_tricks).
    pub dir: PathBuf,
    /// Sort by this column, best first for the scores: test, val, failed, seeds, variant or a
    /// grid axis (e.g. train.loss).
    #[arg(long, value_name = "COL")]
    pub sort: Option<String>,
    /// Print JSON (one object per variant) instead of the table.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV instead of the table.
    #[arg(long)]
    pub csv: bool,
}

/// "0.8123 [0.7901, 0.8345]", the mean alone for one seed, "—" for none.
fn mean_interval(values: &[f64]) -> String {
    match mean_ci95(values) {
        None => "—".into(),
        Some((m, None)) => format!("{m:.4}"),
        Some((m, Some((lo, hi)))) => format!("{m:.4} [{lo:.4}, {hi:.4}]"),
    }
}

/// The table: heads and one row of cells per variant.
pub(crate) fn table(exp: &ExperimentData, rows: &[VariantRow]) -> (Vec<String>, Vec<Vec<String>>) {
    let axes = &exp.manifest.axes;
    let mut heads = vec!["variant".to_string()];
    heads.extend(axes.iter().cloned());
    heads.extend(
        [
            "status",
            "test Dice [95%]",
            "best val Dice [95%]",
            "failed",
            "seeds",
        ]
        .map(String::from),
    );
    let cells = rows
        .iter()
        .map(|r| {
            let mut cells = vec![if r.learned_nothing {
                format!("{} (learned nothing)", r.name)
            } else {
                r.name.clone()
            }];
            cells.extend(axes.iter().map(|a| r.level(a).to_string()));
            cells.extend([
                r.status_counts.clone(),
                mean_interval(&r.test_dice),
                mean_interval(&r.best_dice),
                r.failed_seeds.to_string(),
                r.scored_seeds.to_string(),
            ]);
            cells
        })
        .collect();
    (heads, cells)
}

/// Orders the rows by `column`: scores and counts descending, names ascending.
fn sort_rows(exp: &ExperimentData, rows: &mut [VariantRow], column: &str) -> Result<()> {
    let by_mean = |v: &[f64]| crate::report::stats::mean(v).unwrap_or(f64::NEG_INFINITY);
    match column {
        "test" => rows.sort_by(|a, b| by_mean(&b.test_dice).total_cmp(&by_mean(&a.test_dice))),
        "val" => rows.sort_by(|a, b| by_mean(&b.best_dice).total_cmp(&by_mean(&a.best_dice))),
        "failed" => rows.sort_by_key(|r| std::cmp::Reverse(r.failed_seeds)),
        "seeds" => rows.sort_by_key(|r| std::cmp::Reverse(r.scored_seeds)),
        "variant" => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        axis if exp.manifest.axes.iter().any(|a| a == axis) => {
            rows.sort_by(|a, b| a.level(axis).cmp(b.level(axis)));
        }
        other => {
            let mut known = vec!["test", "val", "failed", "seeds", "variant"];
            known.extend(exp.manifest.axes.iter().map(String::as_str));
            bail!(
                "--sort {other}: no such column; one of {}",
                known.join(", ")
            );
        }
    }
    Ok(())
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

pub(crate) fn execute(args: RunsArgs) -> Result<u8> {
    let exp = ExperimentData::load(&args.dir)?;
    let mut rows = summary::rows(&exp);
    if let Some(column) = &args.sort
        && let Err(e) = sort_rows(&exp, &mut rows, column)
    {
        eprintln!("error: {e}");
        return Ok(super::exit::CONFIG);
    }
    if args.json {
        let values: Vec<serde_json::Value> =
            rows.iter().map(crate::report::json::variant).collect();
        println!("{}", serde_json::to_string_pretty(&values)?);
        return Ok(0);
    }
    let (heads, cells) = table(&exp, &rows);
    if args.csv {
        for line in std::iter::once(&heads).chain(&cells) {
            let fields: Vec<String> = line.iter().map(|c| csv_field(c)).collect();
            println!("{}", fields.join(","));
        }
        return Ok(0);
    }
    print!("{}", crate::util::aligned_table(&heads, &cells));
    Ok(0)
}
