//! `report.md`: the page's tables and images for viewing on a git host.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;

use super::Renderer;
use super::effects::AxisEffect;
use super::load::{ExperimentData, VariantData};
use super::markdown_escape as esc;
use super::summary::{self, VariantRow, fmt_effect, verdict};
use crate::track::manifest::ExperimentManifest;
use crate::track::write_atomic;

pub(crate) struct MarkdownRenderer;

/// A variant's pictures, in page order: (file, alt text).
const PICTURES: [(&str, &str); 5] = [
    ("loss.png", "loss"),
    ("metrics.png", "validation metrics"),
    ("overlay.png", "best epoch overlays"),
    ("progress.gif", "prediction epoch by epoch"),
    ("results.gif", "results"),
];

/// Title, description and how to read the numbers.
fn header(s: &mut String, m: &ExperimentManifest) {
    let _ = writeln!(s, "# {}\n", esc(&m.name));
    if !m.description.is_empty() {
        let _ = writeln!(s, "{}\n", esc(&m.description));
    }
    let _ = writeln!(
        s,
        "Seeds: {:?}. Dice is the mean over validation images (empty prediction of an empty mask = 1), mean ± sd over seeds.\n",
        m.seeds
    );
}

/// One row per variant, then why any run diverged or failed.
fn variant_table(s: &mut String, rows: &[VariantRow], axes: &[String], test: bool) {
    let _ = write!(s, "| variant |");
    for a in axes {
        let _ = write!(s, " {} |", esc(a));
    }
    let test_header = if test { " test Dice |" } else { "" };
    let _ = writeln!(
        s,
        " status | best val Dice | final val Dice |{test_header} best epoch | epochs |"
    );
    let _ = writeln!(s, "|{}", "---|".repeat(axes.len() + 6 + usize::from(test)));
    for r in rows {
        let nothing = if r.learned_nothing {
            " (learned nothing)"
        } else {
            ""
        };
        let _ = write!(s, "| {}{nothing} |", esc(&r.name));
        for a in axes {
            let level = r.level(a);
            let _ = write!(s, " {} |", esc(level));
        }
        let test_cell = if test {
            format!(" {} |", r.test())
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            " {} | {} | {} |{test_cell} {} | {} |",
            r.status_counts,
            r.best(),
            r.last(),
            r.best_epoch(),
            r.epochs
        );
    }
    if let Some(note) = super::summary::cross_validation_note(rows) {
        let _ = writeln!(s, "\n{}", esc(&note));
    }
    for r in rows.iter().filter(|r| !r.notes.is_empty()) {
        for n in &r.notes {
            let _ = writeln!(s, "\n- {}: {}", esc(&r.name), esc(n));
        }
    }
}

/// What each variant's score is made of (presence against shape).
fn score_breakdown(s: &mut String, rows: &[VariantRow], test: bool) {
    if !rows
        .iter()
        .any(|r| r.found.is_some() || r.empty_correct.is_some())
    {
        return;
    }
    let share = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.3}"));
    let _ = writeln!(
        s,
        "\n### What the score is made of\n\nOn the {}{}, mean over seeds: presence errors (first two columns) against shape.\n\n| variant | empty predicted empty | nerves found | Dice on those found |\n|---|---|---|---|",
        if test {
            "test split"
        } else {
            "best validation epoch"
        },
        if rows.iter().any(|r| r.tuning.is_some()) {
            " (with the tuned post-processing for tuned variants)"
        } else {
            ""
        }
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            esc(&r.name),
            share(r.empty_correct),
            share(r.found),
            share(r.dice_found)
        );
    }
}

/// The post-processing tuning chose, and what it changed.
fn tuning(s: &mut String, rows: &[VariantRow]) {
    if !rows.iter().any(|r| r.tuning.is_some()) {
        return;
    }
    let heads = summary::TUNING_HEADS;
    let _ = writeln!(
        s,
        "\n### Tuned post-processing\n\n{}\n\n| {} |\n|{}",
        summary::TUNING_NOTE,
        heads.join(" | "),
        "---|".repeat(heads.len())
    );
    for r in rows {
        if let Some(t) = &r.tuning {
            let _ = writeln!(s, "| {} | {} |", esc(&r.name), t.cells().join(" | "));
        }
    }
}

/// One table per grid axis; nothing without a grid.
fn main_effects(s: &mut String, effects: &[AxisEffect]) {
    if effects.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## Main effects\n\n{}\n",
        esc(&summary::effects_intro(effects))
    );
    for e in effects {
        let _ = writeln!(s, "### {}\n\n{}\n", esc(&e.axis), esc(&verdict(e)));
        let _ = writeln!(
            s,
            "| level | mean {} | difference vs {} [95% CI] | seeds |\n|---|---|---|---|",
            e.score,
            esc(&e.reference)
        );
        for l in &e.levels {
            let diff = if l.level == e.reference {
                "reference".to_string()
            } else {
                fmt_effect(l.difference, l.ci95)
            };
            let _ = writeln!(
                s,
                "| {} | {:.4} | {} | {} |",
                esc(&l.level),
                l.mean_dice,
                diff,
                l.seeds
            );
        }
        s.push('\n');
    }
}

/// One two-way table per pair of grid axes.
fn interactions(
    s: &mut String,
    all: &[super::interactions::Interaction],
    verdicts: Option<&super::verdicts::Verdicts>,
) {
    if all.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Interactions\n\n{}\n", super::interactions::NOTE);
    for (k, t) in all.iter().enumerate() {
        let _ = writeln!(
            s,
            "### {} × {}\n\n{}\n",
            esc(&t.first),
            esc(&t.second),
            esc(&t.verdict())
        );
        let heads: Vec<String> = t.second_levels.iter().map(|l| esc(l)).collect();
        let _ = writeln!(
            s,
            "| {} \\\\ {} | {} |\n|{}",
            esc(&t.first),
            esc(&t.second),
            heads.join(" | "),
            "---|".repeat(heads.len() + 1)
        );
        for (i, level) in t.first_levels.iter().enumerate() {
            let cells: Vec<String> = t.cells[i]
                .iter()
                .map(|c| c.as_ref().map_or("—".to_string(), |c| c.text()))
                .collect();
            let _ = writeln!(s, "| {} | {} |", esc(level), cells.join(" | "));
        }
        let contrasts: Vec<String> = t.contrasts.iter().map(|c| esc(&c.text())).collect();
        if !contrasts.is_empty() {
            let _ = writeln!(s, "\nInteraction contrasts: {}.", contrasts.join("; "));
        }
        if let Some(line) = verdicts.and_then(|v| v.interaction_line(&t.first, &t.second)) {
            let _ = writeln!(s, "\n{}", esc(&line));
        }
        let _ = writeln!(
            s,
            "\n![{} × {}]({})\n",
            esc(&t.first),
            esc(&t.second),
            super::heatmap::file_name(k)
        );
    }
}

/// The answer first: the verdicts, then each variant's failures and the completed-seeds view.
fn verdict_table(s: &mut String, v: &super::verdicts::Verdicts, rows: &[VariantRow]) {
    let _ = writeln!(s, "## Verdicts\n\n{}\n", esc(&v.explanation()));
    let heads = super::verdicts::HEADS;
    let _ = writeln!(
        s,
        "| {} |\n|{}",
        heads.join(" | "),
        "---|".repeat(heads.len())
    );
    for cells in v.rows() {
        let cells: Vec<String> = cells.iter().map(|c| esc(c)).collect();
        let _ = writeln!(s, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(
        s,
        "\n| variant | failed seeds [Wilson 95%] | all seeds | completed seeds only | learned? |\n|---|---|---|---|---|"
    );
    for (r, f) in rows.iter().zip(&v.failures) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            esc(&r.name),
            f.text(),
            r.ranking_score(),
            super::stats::fmt_mean_sd(&r.completed_scores),
            v.learned_words(&r.name)
        );
    }
    let _ = writeln!(s);
}

/// A heading per variant and those of its pictures that exist.
fn variant_sections(s: &mut String, variants: &[VariantData]) {
    for v in variants {
        let _ = writeln!(s, "## {}\n", esc(&v.name));
        for (file, alt) in PICTURES {
            if v.dir.join(file).exists() {
                let _ = writeln!(s, "![{alt}]({}/{file})\n", v.slug);
            }
        }
    }
}

fn render_markdown(exp: &ExperimentData) -> String {
    let mut s = String::new();
    header(&mut s, &exp.manifest);
    if let Some(place) = summary::trained_on(exp) {
        let _ = writeln!(s, "{}\n", esc(&place));
    }
    let test = summary::has_test_split(exp);
    let verdicts = super::verdicts::Verdicts::of(exp);
    let rows = summary::rows_with(exp, verdicts.as_ref());
    if let Some(floor) = summary::all_empty_score(exp) {
        let _ = writeln!(
            s,
            "All-empty baseline (every mask predicted empty) on the {}: {floor:.4} — the share of empty masks there.\n",
            if test {
                "test split"
            } else {
                "validation images"
            }
        );
    }
    if let Some(v) = &verdicts {
        verdict_table(&mut s, v, &rows);
    }
    variant_table(&mut s, &rows, &exp.manifest.axes, test);
    score_breakdown(&mut s, &rows, test);
    tuning(&mut s, &rows);
    let _ = writeln!(s, "\n![loss](loss.png)\n\n![validation Dice](dice.png)\n");
    main_effects(&mut s, &summary::effects(exp));
    interactions(&mut s, &summary::interactions(exp), verdicts.as_ref());
    variant_sections(&mut s, &exp.variants);
    superseded(&mut s, &crate::track::supersede::list(&exp.dir));
    s
}

fn superseded(s: &mut String, runs: &[crate::track::supersede::SupersededRun]) {
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Superseded runs\n\n{} earlier run(s) were set aside (config changed, or `--fresh`); \
         not part of any score above, kept in `superseded/` until `unet-lab prune`.\n\n\
         | set aside | variant | run | status | best val Dice |\n|---|---|---|---|---|",
        runs.len()
    );
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            esc(&r.when),
            esc(&r.variant),
            esc(&r.run),
            r.status.as_deref().unwrap_or("—"),
            r.best_dice.map_or("—".to_string(), |d| format!("{d:.4}"))
        );
    }
}

impl Renderer for MarkdownRenderer {
    fn render(&self, exp: &ExperimentData) -> Result<Vec<PathBuf>> {
        let path = exp.dir.join("report.md");
        write_atomic(&path, render_markdown(exp).as_bytes())?;
        Ok(vec![path])
    }
}
