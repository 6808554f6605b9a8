//! The numbers the pages show, computed once: one row per variant and the main effects.

use super::effects::{AxisEffect, Cell, main_effects};
use super::load::{ExperimentData, VariantData};
use super::stats::{fmt_mean_sd, mean};
use crate::track::RunStatus;
use crate::track::manifest::ScoreBreakdown;

pub struct VariantRow {
    pub name: String,
    pub slug: String,
    pub levels: Vec<(String, String)>,
    pub status: RunStatus,
    /// Why a run diverged or failed, one line per affected seed.
    pub notes: Vec<String>,
    pub seeds: usize,
    pub best_dice: Vec<f64>,
    pub final_dice: Vec<f64>,
    /// Test Dice of each seed's checkpoint chosen on validation (empty without a test split).
    pub test_dice: Vec<f64>,
    /// Mean over seeds of the score's parts: empty images predicted empty, non-empty images
    /// found, Dice on those found (test split, else best validation epoch).
    pub empty_correct: Option<f64>,
    pub found: Option<f64>,
    pub dice_found: Option<f64>,
    pub best_epoch: Option<f64>,
    pub epochs: usize,
    pub parameters: usize,
    pub train_seconds: f64,
    pub images_per_sec: Option<f64>,
}

impl VariantRow {
    pub fn best(&self) -> String {
        fmt_mean_sd(&self.best_dice)
    }
    pub fn last(&self) -> String {
        fmt_mean_sd(&self.final_dice)
    }
    pub fn test(&self) -> String {
        fmt_mean_sd(&self.test_dice)
    }
    /// This variant's level on a grid axis ("—" when it is not on the grid).
    pub fn level(&self, axis: &str) -> &str {
        self.levels
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, l)| l.as_str())
            .unwrap_or("—")
    }

    /// Sort key for the test-Dice column.
    pub fn test_mean(&self) -> f64 {
        mean(&self.test_dice).unwrap_or(-1.0)
    }

    /// Sort key for the best-Dice column.
    pub fn best_mean(&self) -> f64 {
        mean(&self.best_dice).unwrap_or(-1.0)
    }
}

pub fn variant_row(v: &VariantData) -> VariantRow {
    let notes = v
        .runs
        .iter()
        .filter_map(|r| {
            r.record
                .message
                .as_ref()
                .map(|m| format!("seed {}: {} — {m}", r.seed, r.record.status.as_str()))
        })
        .collect();
    let best_epochs: Vec<f64> = v
        .runs
        .iter()
        .filter_map(|r| r.best_epoch())
        .map(|e| e as f64)
        .collect();
    let speeds: Vec<f64> = v
        .runs
        .iter()
        .flat_map(|r| r.train.iter().map(|t| t.images_per_sec))
        .filter(|s| s.is_finite())
        .collect();
    VariantRow {
        name: v.name.clone(),
        slug: v.slug.clone(),
        levels: v.levels.clone(),
        status: v.status(),
        notes,
        seeds: v.runs.len(),
        best_dice: v.runs.iter().filter_map(|r| r.best_dice()).collect(),
        final_dice: v.runs.iter().filter_map(|r| r.final_dice()).collect(),
        test_dice: v.runs.iter().filter_map(|r| r.test_dice()).collect(),
        empty_correct: part(v, |b| b.empty_correct),
        found: part(v, |b| b.found),
        dice_found: part(v, |b| b.dice_found),
        best_epoch: mean(&best_epochs),
        epochs: v.runs.iter().map(|r| r.val.len()).max().unwrap_or(0),
        parameters: v
            .runs
            .iter()
            .map(|r| r.record.parameters)
            .max()
            .unwrap_or(0),
        train_seconds: v
            .runs
            .iter()
            .flat_map(|r| r.train.iter().chain(&r.val).map(|t| t.seconds))
            .filter(|s| s.is_finite())
            .sum(),
        images_per_sec: mean(&speeds),
    }
}

/// The mean over a variant's seeds of one part of the score breakdown.
fn part(v: &VariantData, get: fn(&ScoreBreakdown) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = v
        .runs
        .iter()
        .filter_map(|r| r.breakdown().as_ref().and_then(get))
        .collect();
    mean(&values)
}

pub fn rows(exp: &ExperimentData) -> Vec<VariantRow> {
    exp.variants.iter().map(variant_row).collect()
}

/// Whether any run of the experiment was scored on a test split.
pub fn has_test_split(exp: &ExperimentData) -> bool {
    exp.variants
        .iter()
        .flat_map(|v| &v.runs)
        .any(|r| r.test_dice().is_some())
}

/// The main effects on test Dice when the study has a test split (held-out subjects: an
/// unbiased score), else on best validation Dice (the epoch is chosen on the same images, so
/// it is optimistic).
pub fn effects(exp: &ExperimentData) -> Vec<AxisEffect> {
    let on_test = has_test_split(exp);
    let cells: Vec<Cell> = exp
        .variants
        .iter()
        .flat_map(|v| {
            v.runs.iter().map(move |r| Cell {
                levels: v.levels.clone(),
                seed: r.seed,
                score: if on_test {
                    r.test_dice()
                } else {
                    r.best_dice()
                },
            })
        })
        .collect();
    let mut effects = main_effects(&exp.manifest.axes, &cells);
    if on_test {
        effects.iter_mut().for_each(|e| e.score = "test Dice");
    }
    effects
}

/// What the main effects compare, in words.
pub fn ranked_by(effects: &[AxisEffect]) -> &'static str {
    match effects.first().map(|e| e.score) {
        Some("test Dice") => "test Dice (held-out test subjects)",
        _ => "best validation Dice",
    }
}

/// "+0.0123 [−0.0040, +0.0286]".
pub fn fmt_effect(difference: f64, ci: Option<(f64, f64)>) -> String {
    match ci {
        Some((lo, hi)) => format!("{difference:+.4} [{lo:+.4}, {hi:+.4}]"),
        None => format!("{difference:+.4}"),
    }
}

/// A sentence per axis saying which level was best and whether the interval excludes zero.
pub fn verdict(effect: &AxisEffect) -> String {
    let best = effect
        .levels
        .iter()
        .max_by(|a, b| a.difference.total_cmp(&b.difference))
        .expect("an effect has levels");
    if best.level == effect.reference {
        let runner_up = effect
            .levels
            .iter()
            .filter(|l| l.level != effect.reference)
            .max_by(|a, b| a.difference.total_cmp(&b.difference));
        match runner_up {
            Some(r) => format!(
                "{}: \"{}\" is best; \"{}\" changes {} by {}{}",
                effect.axis,
                effect.reference,
                r.level,
                effect.score,
                fmt_effect(r.difference, r.ci95),
                significance(r.ci95)
            ),
            None => format!("{}: only one level", effect.axis),
        }
    } else {
        format!(
            "{}: \"{}\" beats \"{}\" by {} {}{}",
            effect.axis,
            best.level,
            effect.reference,
            fmt_effect(best.difference, best.ci95),
            effect.score,
            significance(best.ci95)
        )
    }
}

fn significance(ci: Option<(f64, f64)>) -> &'static str {
    match ci {
        Some((lo, hi)) if lo > 0.0 || hi < 0.0 => " (the 95% interval excludes 0)",
        Some(_) => " (the 95% interval includes 0: not distinguishable from noise)",
        None => " (one seed: no interval)",
    }
}
