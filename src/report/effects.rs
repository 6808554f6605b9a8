//! Main-effect tables: for each grid axis, how much each level moved the best validation Dice
//! relative to the axis's first level, averaged over the other axes, with a 95% interval
//! across seeds.
//!
//! For seed s and level L: effect_s(L) = mean over variants at L of best Dice − mean over
//! variants at the reference level. The table reports the mean of effect_s over seeds and its
//! t-interval. A seed enters an axis's contrast only when every variant on that axis has a
//! best Dice for it (a run that failed before its first validation has none).

use super::stats::{mean, mean_ci95};

/// One (variant, seed) observation.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    pub levels: Vec<(String, String)>,
    pub seed: u64,
    /// The score the tables compare (best validation Dice, or test Dice).
    pub score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LevelEffect {
    pub level: String,
    /// Mean best Dice at this level (over variants and seeds).
    pub mean_dice: f64,
    /// Difference to the reference level (0 for the reference itself).
    pub difference: f64,
    pub ci95: Option<(f64, f64)>,
    pub seeds: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AxisEffect {
    pub axis: String,
    pub reference: String,
    pub levels: Vec<LevelEffect>,
    /// What was compared: "best Dice" (validation) or "test Dice".
    pub score: &'static str,
}

/// Computes the table of every axis in `axes`.
pub(crate) fn main_effects(axes: &[String], cells: &[Cell]) -> Vec<AxisEffect> {
    axes.iter()
        .filter_map(|axis| axis_effect(axis, cells))
        .collect()
}

pub(super) fn level_of<'a>(cell: &'a Cell, axis: &str) -> Option<&'a str> {
    cell.levels
        .iter()
        .find(|(a, _)| a == axis)
        .map(|(_, l)| l.as_str())
}

/// The levels of `axis` in order of first appearance (file order).
pub(super) fn levels_of(cells: &[Cell], axis: &str) -> Vec<String> {
    let mut levels: Vec<String> = Vec::new();
    for c in cells {
        if let Some(l) = level_of(c, axis)
            && !levels.iter().any(|x| x == l)
        {
            levels.push(l.to_string());
        }
    }
    levels
}

fn axis_effect(axis: &str, cells: &[Cell]) -> Option<AxisEffect> {
    let levels = levels_of(cells, axis);
    if levels.len() < 2 {
        return None;
    }
    let on_axis: Vec<&Cell> = cells
        .iter()
        .filter(|c| level_of(c, axis).is_some())
        .collect();
    let mut seeds: Vec<u64> = on_axis.iter().map(|c| c.seed).collect();
    seeds.sort();
    seeds.dedup();
    // A seed is complete when every cell of it on this axis has a value.
    let complete: Vec<u64> = seeds
        .into_iter()
        .filter(|s| {
            on_axis
                .iter()
                .filter(|c| c.seed == *s)
                .all(|c| c.score.is_some())
        })
        .collect();
    let per_seed_level_mean = |seed: u64, level: &str| -> Option<f64> {
        let v: Vec<f64> = on_axis
            .iter()
            .filter(|c| c.seed == seed && level_of(c, axis) == Some(level))
            .filter_map(|c| c.score)
            .collect();
        mean(&v)
    };
    let reference = levels[0].clone();
    let mut out = Vec::new();
    for level in &levels {
        let mut diffs = Vec::new();
        let mut level_means = Vec::new();
        for &s in &complete {
            if let (Some(a), Some(r)) = (
                per_seed_level_mean(s, level),
                per_seed_level_mean(s, &reference),
            ) {
                diffs.push(a - r);
                level_means.push(a);
            }
        }
        let Some((difference, ci95)) = mean_ci95(&diffs) else {
            continue;
        };
        out.push(LevelEffect {
            level: level.clone(),
            mean_dice: mean(&level_means).unwrap_or(f64::NAN),
            difference,
            ci95: if *level == reference { None } else { ci95 },
            seeds: diffs.len(),
        });
    }
    (!out.is_empty()).then(|| AxisEffect {
        score: "best Dice",
        axis: axis.to_string(),
        reference,
        levels: out,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A (loss, optimizer) grid cell of one seed.
    pub(crate) fn cell(loss: &str, opt: &str, seed: u64, dice: f64) -> Cell {
        Cell {
            levels: vec![
                ("train.loss".into(), loss.into()),
                ("train.optimizer".into(), opt.into()),
            ],
            seed,
            score: Some(dice),
        }
    }

    #[test]
    fn main_effect_by_hand() {
        // 2×2 grid, 2 seeds.
        let cells = vec![
            cell("mse", "adam", 1, 0.80),
            cell("mse", "sgd", 1, 0.60),
            cell("ce", "adam", 1, 0.90),
            cell("ce", "sgd", 1, 0.70),
            cell("mse", "adam", 2, 0.82),
            cell("mse", "sgd", 2, 0.58),
            cell("ce", "adam", 2, 0.86),
            cell("ce", "sgd", 2, 0.74),
        ];
        let axes = vec!["train.loss".to_string(), "train.optimizer".to_string()];
        let effects = main_effects(&axes, &cells);
        assert_eq!(effects.len(), 2);
        let loss = &effects[0];
        assert_eq!(loss.reference, "mse");
        // Seed 1: ce mean 0.80, mse mean 0.70 → +0.10. Seed 2: ce 0.80, mse 0.70 → +0.10.
        let ce = &loss.levels[1];
        assert_eq!(ce.level, "ce");
        assert!((ce.difference - 0.10).abs() < 1e-12);
        assert!((ce.mean_dice - 0.80).abs() < 1e-12);
        let (lo, hi) = ce.ci95.unwrap();
        assert!((lo - 0.10).abs() < 1e-9 && (hi - 0.10).abs() < 1e-9); // no spread across seeds
        let opt = &effects[1];
        // Seed 1: sgd 0.65 − adam 0.85 = −0.20. Seed 2: sgd 0.66 − adam 0.84 = −0.18.
        let sgd = &opt.levels[1];
        assert!((sgd.difference - (-0.19)).abs() < 1e-12);
        // sd of (−0.20, −0.18) = √0.0002; half-width = t(0.975, 1) · sd / √2 = 0.01 · t, where
        // t with 1 df is Cauchy: t(0.975, 1) = tan(0.475π) = 12.7062.
        let (lo, hi) = sgd.ci95.unwrap();
        let half = 0.01 * (0.475 * std::f64::consts::PI).tan();
        assert!((lo - (-0.19 - half)).abs() < 1e-6 && (hi - (-0.19 + half)).abs() < 1e-6);
        assert_eq!(sgd.seeds, 2);
    }

    #[test]
    fn incomplete_seed_is_left_out() {
        let mut cells = vec![cell("mse", "adam", 1, 0.8), cell("ce", "adam", 1, 0.9)];
        cells.push(Cell {
            score: None,
            ..cell("mse", "adam", 2, 0.0)
        });
        cells.push(cell("ce", "adam", 2, 0.5));
        let effects = main_effects(&["train.loss".to_string()], &cells);
        assert_eq!(effects[0].levels[1].seeds, 1);
        assert!((effects[0].levels[1].difference - 0.1).abs() < 1e-12);
    }
}
