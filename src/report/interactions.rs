//! Two-way interactions: for every pair of grid axes, the mean score of each pair of levels
//! (averaged over the other axes) with its 95% interval over seeds, and the interaction
//! contrasts — does the effect of one axis depend on the level of the other?
//!
//! For seed s, levels a of axis A and b of axis B: m_s(a, b) is the mean score of the variants
//! at (a, b). The contrast of (a, b) against the reference levels (a₀, b₀) is
//! c_s = (m_s(a, b) − m_s(a₀, b)) − (m_s(a, b₀) − m_s(a₀, b₀)): how much more switching A
//! from a₀ to a changes the score at b than at b₀. For two 2-level axes it is the one
//! interaction contrast; the table reports its mean over seeds with a t-interval. As for the
//! main effects, a seed enters only when every variant on both axes has a score for it.

use super::effects::{Cell, level_of, levels_of};
use super::stats::{fmt_effect, mean, mean_ci95};

/// One cell of a two-way table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PairCell {
    pub mean: f64,
    pub ci95: Option<(f64, f64)>,
    pub seeds: usize,
}

/// One difference of differences, against the reference levels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Contrast {
    /// The non-reference levels of the first and second axis.
    pub first: String,
    pub second: String,
    pub value: f64,
    pub ci95: Option<(f64, f64)>,
    pub seeds: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Interaction {
    pub first: String,
    pub second: String,
    pub first_levels: Vec<String>,
    pub second_levels: Vec<String>,
    /// `cells[i][j]`: first axis at level i, second at level j (none without any score).
    pub cells: Vec<Vec<Option<PairCell>>>,
    pub contrasts: Vec<Contrast>,
    /// What was compared ("best Dice" or "test Dice").
    pub score: &'static str,
}

/// The two-way table of every pair of axes (in file order).
pub(crate) fn interactions(
    axes: &[String],
    cells: &[Cell],
    score: &'static str,
) -> Vec<Interaction> {
    let mut out = Vec::new();
    for (i, a) in axes.iter().enumerate() {
        for b in &axes[i + 1..] {
            if let Some(t) = two_way(a, b, cells, score) {
                out.push(t);
            }
        }
    }
    out
}

fn two_way(a: &str, b: &str, cells: &[Cell], score: &'static str) -> Option<Interaction> {
    let (la, lb) = (levels_of(cells, a), levels_of(cells, b));
    if la.len() < 2 || lb.len() < 2 {
        return None;
    }
    let on_both: Vec<&Cell> = cells
        .iter()
        .filter(|c| level_of(c, a).is_some() && level_of(c, b).is_some())
        .collect();
    let mut seeds: Vec<u64> = on_both.iter().map(|c| c.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    seeds.retain(|s| {
        on_both
            .iter()
            .filter(|c| c.seed == *s)
            .all(|c| c.score.is_some())
    });
    let m = |s: u64, x: &str, y: &str| -> Option<f64> {
        let v: Vec<f64> = on_both
            .iter()
            .filter(|c| c.seed == s && level_of(c, a) == Some(x) && level_of(c, b) == Some(y))
            .filter_map(|c| c.score)
            .collect();
        mean(&v)
    };
    let table: Vec<Vec<Option<PairCell>>> = la
        .iter()
        .map(|x| {
            lb.iter()
                .map(|y| {
                    let v: Vec<f64> = seeds.iter().filter_map(|&s| m(s, x, y)).collect();
                    mean_ci95(&v).map(|(mean, ci95)| PairCell {
                        mean,
                        ci95,
                        seeds: v.len(),
                    })
                })
                .collect()
        })
        .collect();
    let mut contrasts = Vec::new();
    for x in &la[1..] {
        for y in &lb[1..] {
            let per_seed: Vec<f64> = seeds
                .iter()
                .filter_map(|&s| {
                    Some(
                        (m(s, x, y)? - m(s, &la[0], y)?)
                            - (m(s, x, &lb[0])? - m(s, &la[0], &lb[0])?),
                    )
                })
                .collect();
            if let Some((value, ci95)) = mean_ci95(&per_seed) {
                contrasts.push(Contrast {
                    first: x.clone(),
                    second: y.clone(),
                    value,
                    ci95,
                    seeds: per_seed.len(),
                });
            }
        }
    }
    Some(Interaction {
        first: a.to_string(),
        second: b.to_string(),
        first_levels: la,
        second_levels: lb,
        cells: table,
        contrasts,
        score,
    })
}

impl PairCell {
    /// "0.6933 [0.6512, 0.7354]", or the mean alone for one seed.
    pub fn text(&self) -> String {
        match self.ci95 {
            Some((lo, hi)) => format!("{:.4} [{lo:.4}, {hi:.4}]", self.mean),
            None => format!("{:.4}", self.mean),
        }
    }
}

impl Contrast {
    /// "\"ce\" × \"sgd\": -0.2400 [-0.2600, -0.2200]".
    pub fn text(&self) -> String {
        format!(
            "\"{}\" × \"{}\": {}",
            self.first,
            self.second,
            fmt_effect(self.value, self.ci95)
        )
    }
}

/// What the two-way tables show, in words (the page and report.md).
pub(crate) const NOTE: &str = "For each pair of grid axes: the mean score of each pair of levels \
     (averaged over the other axes) with its 95% interval across seeds, and the interaction \
     contrasts — (change from the first level of the row axis at this column) − (the same change \
     at the first column): how much the effect of one axis depends on the level of the other.";

impl Interaction {
    fn cell(&self, first: &str, second: &str) -> Option<&PairCell> {
        let i = self.first_levels.iter().position(|l| l == first)?;
        let j = self.second_levels.iter().position(|l| l == second)?;
        self.cells[i][j].as_ref()
    }

    /// The contrast whose interval lies furthest from 0 (the clearest dependence), else the
    /// largest in size.
    fn strongest(&self) -> Option<&Contrast> {
        let distance = |c: &Contrast| match c.ci95 {
            Some((lo, _)) if lo > 0.0 => lo,
            Some((_, hi)) if hi < 0.0 => -hi,
            _ => -1.0 / (1.0 + c.value.abs()),
        };
        self.contrasts
            .iter()
            .max_by(|x, y| distance(x).total_cmp(&distance(y)))
    }

    /// One sentence: whether the effect of the first axis depends on the second.
    pub fn verdict(&self) -> String {
        let Some(c) = self.strongest() else {
            return format!(
                "{} × {}: no seed has a score in every cell",
                self.first, self.second
            );
        };
        let (a0, b0) = (&self.first_levels[0], &self.second_levels[0]);
        let effect_at = |y: &str| -> Option<f64> {
            Some(self.cell(&c.first, y)?.mean - self.cell(a0, y)?.mean)
        };
        let interval = fmt_effect(c.value, c.ci95);
        let clear = matches!(c.ci95, Some((lo, hi)) if lo > 0.0 || hi < 0.0);
        match (clear, effect_at(&c.second), effect_at(b0)) {
            (true, Some(at), Some(at_ref)) => format!(
                "{a} × {b}: the effect of {a} depends on {b} — \"{x}\" instead of \"{a0}\" changes \
                 {score} by {at:+.4} with {b} = \"{y}\" but by {at_ref:+.4} with {b} = \"{b0}\" \
                 (interaction {interval}, the 95% interval excludes 0)",
                a = self.first,
                b = self.second,
                x = c.first,
                y = c.second,
                score = self.score,
            ),
            _ => format!(
                "{} × {}: no clear interaction — the effect of one does not measurably depend on \
                 the other (largest interaction {interval}{})",
                self.first,
                self.second,
                match c.ci95 {
                    Some(_) => ", the 95% interval includes 0",
                    None => ", one seed: no interval",
                }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::effects::tests::cell;

    /// The case: the optimizer matters a lot, but only with cross-entropy.
    fn hand_made() -> Vec<Cell> {
        let mut cells = Vec::new();
        for (seed, noise) in [(0, 0.0), (1, 0.01), (2, -0.01)] {
            for (loss, adam, sgd) in [("mse", 0.60, 0.62), ("bce", 0.65, 0.66), ("ce", 0.70, 0.48)]
            {
                cells.push(cell(loss, "adam", seed, adam + noise));
                cells.push(cell(loss, "sgd", seed, sgd + noise * 2.0));
            }
        }
        cells
    }

    #[test]
    fn the_two_way_table_and_contrasts_have_the_hand_computed_values() {
        let axes = vec!["train.loss".to_string(), "train.optimizer".to_string()];
        let t = &interactions(&axes, &hand_made(), "best Dice")[0];
        assert_eq!(t.first_levels, ["mse", "bce", "ce"]);
        assert_eq!(t.second_levels, ["adam", "sgd"]);
        let ce_sgd = t.cells[2][1].as_ref().unwrap();
        // Seeds: 0.48, 0.50, 0.46 → 0.48, sd 0.02, half-width t(2) · 0.02 / √3.
        assert!((ce_sgd.mean - 0.48).abs() < 1e-12);
        let half = crate::report::stats::t_975(2) * 0.02 / 3f64.sqrt();
        let (lo, hi) = ce_sgd.ci95.unwrap();
        assert!((lo - (0.48 - half)).abs() < 1e-9 && (hi - (0.48 + half)).abs() < 1e-9);
        // Contrasts against (mse, adam): bce: (0.66 − 0.65) − (0.62 − 0.60) = −0.01;
        // ce: (0.48 − 0.70) − (0.62 − 0.60) = −0.24 — the same for every seed (the noise
        // cancels), so the intervals have no width.
        let by_level: Vec<(&str, f64)> = t
            .contrasts
            .iter()
            .map(|c| (c.first.as_str(), c.value))
            .collect();
        assert_eq!(by_level.len(), 2);
        assert!((by_level[0].1 + 0.01).abs() < 1e-9 && by_level[0].0 == "bce");
        assert!((by_level[1].1 + 0.24).abs() < 1e-9 && by_level[1].0 == "ce");
        assert_eq!(
            t.verdict(),
            "train.loss × train.optimizer: the effect of train.loss depends on train.optimizer — \
             \"ce\" instead of \"mse\" changes best Dice by -0.1400 with train.optimizer = \"sgd\" \
             but by +0.1000 with train.optimizer = \"adam\" (interaction -0.2400 [-0.2400, \
             -0.2400], the 95% interval excludes 0)"
        );
    }

    #[test]
    fn no_interaction_is_said_so_and_incomplete_seeds_are_left_out() {
        // Additive effects: loss +0.1, optimizer −0.05, no interaction; seed noise differs.
        let mut cells = Vec::new();
        for (seed, n) in [(0, [0.0, 0.02, -0.01, 0.01]), (1, [0.01, -0.02, 0.0, 0.02])] {
            cells.push(cell("mse", "adam", seed, 0.6 + n[0]));
            cells.push(cell("mse", "sgd", seed, 0.55 + n[1]));
            cells.push(cell("ce", "adam", seed, 0.7 + n[2]));
            cells.push(cell("ce", "sgd", seed, 0.65 + n[3]));
        }
        // Seed 2 lacks a score in one cell: it enters no cell.
        cells.push(cell("mse", "adam", 2, 0.9));
        cells.push(Cell {
            score: None,
            ..cell("ce", "sgd", 2, 0.0)
        });
        let axes = vec!["train.loss".to_string(), "train.optimizer".to_string()];
        let t = &interactions(&axes, &cells, "test Dice")[0];
        assert_eq!(t.cells[0][0].as_ref().unwrap().seeds, 2);
        let c = &t.contrasts[0];
        // Seed 0: (0.66 − 0.57) − (0.69 − 0.60) = 0; seed 1: (0.67 − 0.53) − (0.70 − 0.61) = 0.05.
        assert!((c.value - 0.025).abs() < 1e-9, "{c:?}");
        assert!(
            t.verdict().starts_with(
                "train.loss × train.optimizer: no clear interaction — the effect of one does not \
             measurably depend on the other (largest interaction +0.0250 ["
            ),
            "{}",
            t.verdict()
        );
        assert!(t.verdict().ends_with("the 95% interval includes 0)"));
    }
}
