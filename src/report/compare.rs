//! `unet-lab compare DIR...`: one page across several experiment directories (e.g. the same
//! grid on synthetic and on real data), linking to each experiment's own report. The same
//! maud page shell and stylesheet as `index.html` ([`super::html`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use maud::{Markup, html};

use super::diff::StudyDiff;
use super::html::page_shell;
use super::load::ExperimentData;
use super::summary;
use crate::track::write_atomic;
use crate::util::owned::{Claim, claim};

/// The record of the files `compare` wrote into its `--out` folder: a rerun replaces its own
/// page and nothing else.
pub(crate) const OUT_RECORD: &str = ".unet-lab-compare.json";

/// Checks `--out` before anything is written: not an experiment directory (whose own
/// `index.html` the page would replace), and no `index.html` there that an earlier `compare`
/// did not write. The error is the message for the person.
pub(crate) fn check_out(out: &Path) -> Result<Claim, String> {
    for marker in ["experiment.json", "plan.json"] {
        if out.join(marker).exists() {
            return Err(format!(
                "--out {} is an experiment directory (it has {marker}): the comparison page \
                 would replace its report; choose another folder, e.g. reports/compare",
                out.display()
            ));
        }
    }
    claim(
        out,
        OUT_RECORD,
        "compare",
        "--out",
        &["index.html".to_string()],
    )
}

/// A path to `target` relative to the directory `from` (both made absolute first).
fn relative(target: &Path, from: &Path) -> PathBuf {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (t, f) = (abs(target), abs(from));
    let tc: Vec<_> = t.components().collect();
    let fc: Vec<_> = f.components().collect();
    let common = tc.iter().zip(&fc).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..fc.len() {
        rel.push("..");
    }
    for c in &tc[common..] {
        rel.push(c.as_os_str());
    }
    rel
}

/// Variant names across experiments, each once, in first-seen order.
fn variant_names(experiments: &[ExperimentData]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for e in experiments {
        for v in &e.variants {
            if !names.contains(&v.name) {
                names.push(v.name.clone());
            }
        }
    }
    names
}

/// A variant's best validation Dice in one experiment, "—" where it has no such variant.
fn best_dice(e: &ExperimentData, name: &str) -> String {
    e.variants
        .iter()
        .find(|v| v.name == name)
        .map(|v| summary::variant_row(v).best())
        .unwrap_or_else(|| "—".into())
}

/// One row per variant name, one column per experiment (linking to its page).
fn dice_table(experiments: &[ExperimentData], out: &Path) -> Markup {
    html! {
        h2 { "Best validation Dice (mean ± sd over seeds)" }
        table {
            thead {
                tr {
                    th { "variant" }
                    @for e in experiments {
                        th {
                            a href=(relative(&e.dir.join("index.html"), out).to_string_lossy()) {
                                (e.manifest.name)
                            }
                        }
                    }
                }
            }
            tbody {
                @for name in variant_names(experiments) {
                    tr {
                        td { (name) }
                        @for e in experiments { td.num { (best_dice(e, &name)) } }
                    }
                }
            }
        }
    }
}

/// An experiment's description, main-effect verdicts and Dice chart.
fn experiment_section(e: &ExperimentData, out: &Path) -> Markup {
    let dice = e.dir.join("dice.png");
    html! {
        h2 { (e.manifest.name) }
        p { (e.manifest.description) }
        @for effect in summary::effects(e) { p { (summary::verdict(&effect)) } }
        @if dice.exists() {
            img src=(relative(&dice, out).to_string_lossy()) alt="validation Dice";
        }
    }
}

/// Each study after the first against the first: the matched variants' differing keys and
/// scores.
fn diff_section(diff: &StudyDiff) -> Markup {
    let (heads, rows) = diff.table();
    html! {
        h2 { (diff.title()) }
        p {
            "Variants matched by name, else by identical config; differences are "
            (diff.other) " − " (diff.reference) " over the seeds both trained, with a 95% paired t \
            interval; failed runs count as scored."
        }
        table {
            thead { tr { @for h in &heads { th { (h) } } } }
            tbody {
                @for row in &rows {
                    tr { @for (i, cell) in row.iter().enumerate() {
                        @if i >= 3 { td.num { (cell) } } @else { td { (cell) } }
                    } }
                }
            }
        }
        @if !diff.unmatched.is_empty() {
            p { "Only in " (diff.other) ": " (diff.unmatched.join(", ")) }
        }
    }
}

/// Reads every study directory (before anything is written).
pub(crate) fn load_all(dirs: &[PathBuf]) -> Result<Vec<ExperimentData>> {
    dirs.iter().map(|d| ExperimentData::load(d)).collect()
}

/// Writes `out/index.html`; `out` is created only once every directory has been read.
pub(crate) fn render_comparison(
    experiments: &[ExperimentData],
    diffs: &[StudyDiff],
    out: &Path,
) -> Result<PathBuf> {
    let claim = check_out(out).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    claim.commit()?;
    let body = html! {
        h1 { "Comparison" }
        @for d in diffs { (diff_section(d)) }
        (dice_table(experiments, out))
        @for e in experiments { (experiment_section(e, out)) }
    };
    let path = out.join("index.html");
    write_atomic(&path, page_shell("unet-lab comparison", body).as_bytes())?;
    Ok(path)
}
