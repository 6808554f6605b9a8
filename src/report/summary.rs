//! The numbers the pages show, computed once: one row per variant and the main effects.

use super::effects::{AxisEffect, Cell, main_effects};
use super::interactions::Interaction;
use super::load::{ExperimentData, RunData, SeedResult, VariantData};
pub(crate) use super::stats::fmt_effect;
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
    /// Folds per seed of a cross-validated variant: its best Dice is then out-of-fold.
    pub folds: Option<usize>,
    pub best_dice: Vec<f64>,
    pub final_dice: Vec<f64>,
    /// Test Dice of each seed's checkpoint chosen on validation (empty without a test split).
    pub test_dice: Vec<f64>,
    /// Mean over seeds of the score's parts: empty images predicted empty, non-empty images
    /// found, Dice on those found (test split, else best validation epoch).
    pub empty_correct: Option<f64>,
    pub found: Option<f64>,
    pub dice_found: Option<f64>,
    /// Each seed's best epoch.
    pub best_epochs: Vec<usize>,
    /// "3/3 completed", "2 completed, 1 failed (dead ReLU head)".
    pub status_counts: String,
    /// Seeds the Dice columns average: every seed with a result — completed, failed or
    /// diverged (intention to treat); running and interrupted seeds are unfinished work.
    pub scored_seeds: usize,
    /// Of those, the seeds that failed or diverged, and those scored as predicting nothing
    /// (no checkpoint to score).
    pub failed_seeds: usize,
    pub nothing_seeds: usize,
    /// The ranking score (test Dice, else best validation Dice) of the completed seeds only:
    /// the secondary view.
    pub completed_scores: Vec<f64>,
    /// The variant does not beat predicting nothing (see [`super::verdicts`]).
    pub learned_nothing: bool,
    /// Post-processing tuned on validation: the mean over seeds of the chosen values and of
    /// the scores before and after (none when no run was tuned).
    pub tuning: Option<TuningRow>,
    pub epochs: usize,
    pub parameters: usize,
    pub train_seconds: f64,
    pub images_per_sec: Option<f64>,
}

/// What tuning chose and changed, averaged over a variant's tuned seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct TuningRow {
    pub seeds: usize,
    pub threshold: f64,
    pub min_area_share: f64,
    pub presence_threshold: Option<f64>,
    pub val_before: f64,
    pub val_after: f64,
    pub test_before: Option<f64>,
    pub test_after: Option<f64>,
}

/// Column heads of the tuning table, and the explanation above it.
pub(crate) const TUNING_HEADS: [&str; 6] = [
    "variant",
    "threshold",
    "min area",
    "presence threshold",
    "validation Dice before → after",
    "test Dice before → after",
];
pub(crate) const TUNING_NOTE: &str = "Chosen on the validation images (out-of-fold for cross-validated \
     variants) by grid search, mean over tuned seeds; the validation gain is measured on the \
     images it was tuned on, so it is optimistic — the test columns are not. The variant table's \
     test Dice uses the tuned values.";

impl TuningRow {
    /// The cells after the variant name, in [`TUNING_HEADS`] order.
    pub fn cells(&self) -> [String; 5] {
        let change = |b: Option<f64>, a: Option<f64>| match (b, a) {
            (Some(b), Some(a)) => format!("{b:.4} → {a:.4} ({:+.4})", a - b),
            _ => "—".into(),
        };
        [
            format!("{:.2}", self.threshold),
            format!("{:.2}% of the image", 100.0 * self.min_area_share),
            self.presence_threshold
                .map_or("—".into(), |t| format!("{t:.2}")),
            change(Some(self.val_before), Some(self.val_after)),
            change(self.test_before, self.test_after),
        ]
    }
}

/// One tuned score per seed (a cross-validated seed's folds share theirs; the test scores are
/// the mean over its folds).
fn tuning_row(v: &VariantData) -> Option<TuningRow> {
    let mut per_seed: Vec<Vec<crate::track::manifest::TunedScore>> = Vec::new();
    let mut seeds: Vec<u64> = v.runs.iter().map(|r| r.seed).collect();
    seeds.dedup();
    for s in seeds {
        let tuned: Vec<_> = v
            .runs
            .iter()
            .filter(|r| r.seed == s)
            .filter_map(|r| r.record.tuned)
            .collect();
        if !tuned.is_empty() {
            per_seed.push(tuned);
        }
    }
    let first = |get: &dyn Fn(&crate::track::manifest::TunedScore) -> f64| -> f64 {
        mean(&per_seed.iter().map(|t| get(&t[0])).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    };
    let test = |get: &dyn Fn(&crate::track::manifest::TunedScore) -> Option<f64>| {
        let per: Option<Vec<f64>> = per_seed
            .iter()
            .map(|t| {
                t.iter()
                    .map(get)
                    .collect::<Option<Vec<f64>>>()
                    .and_then(|v| mean(&v))
            })
            .collect();
        per.and_then(|v| mean(&v))
    };
    let presence: Option<Vec<f64>> = per_seed
        .iter()
        .map(|t| t[0].post.presence_threshold)
        .collect();
    (!per_seed.is_empty()).then(|| TuningRow {
        seeds: per_seed.len(),
        threshold: first(&|t| f64::from(t.post.threshold)),
        min_area_share: first(&|t| t.post.min_area_share),
        presence_threshold: presence.and_then(|p| mean(&p)),
        val_before: first(&|t| t.val_before),
        val_after: first(&|t| t.val_after),
        test_before: test(&|t| t.test_before),
        test_after: test(&|t| t.test_after),
    })
}

impl VariantRow {
    pub fn best(&self) -> String {
        self.over_seeds(&self.best_dice)
    }
    pub fn last(&self) -> String {
        self.over_seeds(&self.final_dice)
    }
    pub fn test(&self) -> String {
        self.over_seeds(&self.test_dice)
    }

    /// Mean ± sd, saying over how many seeds when not all of them count.
    fn over_seeds(&self, values: &[f64]) -> String {
        if values.is_empty() || values.len() == self.seeds {
            fmt_mean_sd(values)
        } else {
            format!(
                "{} ({} of {} seeds)",
                fmt_mean_sd(values),
                values.len(),
                self.seeds
            )
        }
    }

    /// The best epoch: a whole number when every seed agrees, else "mean 2.3".
    pub fn best_epoch(&self) -> String {
        fmt_epochs(&self.best_epochs)
    }
    /// This variant's level on a grid axis ("—" when it is not on the grid).
    pub fn level(&self, axis: &str) -> &str {
        self.levels
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, l)| l.as_str())
            .unwrap_or("—")
    }

    /// The score the page ranks by over every seed with a result: test Dice with a test split,
    /// else best validation Dice.
    pub fn ranking_score(&self) -> String {
        if self.test_dice.is_empty() {
            self.best()
        } else {
            self.test()
        }
    }

    /// Sort key for the test-Dice column.
    pub(crate) fn test_mean(&self) -> f64 {
        mean(&self.test_dice).unwrap_or(-1.0)
    }

    /// Sort key for the best-Dice column.
    pub(crate) fn best_mean(&self) -> f64 {
        mean(&self.best_dice).unwrap_or(-1.0)
    }
}

pub(crate) fn variant_row(v: &VariantData) -> VariantRow {
    let notes = v
        .runs
        .iter()
        .filter_map(|r| {
            r.record
                .message
                .as_ref()
                .map(|m| format!("{}: {} — {m}", r.label(), r.record.status.as_str()))
        })
        .collect();
    // The scores average every seed with a result: a failed or diverged run is a result of
    // its recipe (intention to treat), scored at its best checkpoint or as predicting nothing.
    // A cross-validated seed is complete when all its folds are.
    let seeds = v.seed_results();
    let scored: Vec<&SeedResult> = seeds.iter().filter(|s| !s.unfinished).collect();
    let on_test = seeds.iter().any(|s| s.test_dice.is_some());
    let completed_scores = scored
        .iter()
        .filter(|s| s.completed)
        .filter_map(|s| if on_test { s.test_dice } else { s.best_dice })
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
        seeds: seeds.len(),
        folds: seeds
            .iter()
            .map(|s| s.folds)
            .max()
            .filter(|_| v.cross_validated()),
        best_dice: scored.iter().filter_map(|s| s.best_dice).collect(),
        final_dice: scored.iter().filter_map(|s| s.final_dice).collect(),
        test_dice: scored.iter().filter_map(|s| s.test_dice).collect(),
        best_epochs: scored.iter().filter_map(|s| s.best_epoch).collect(),
        status_counts: status_counts(v),
        scored_seeds: scored.len(),
        failed_seeds: scored.iter().filter(|s| s.failed).count(),
        nothing_seeds: scored.iter().filter(|s| s.scored_as_nothing).count(),
        completed_scores,
        learned_nothing: false,
        empty_correct: part(&scored, |b| b.empty_correct),
        found: part(&scored, |b| b.found),
        dice_found: part(&scored, |b| b.dice_found),
        tuning: tuning_row(v),
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
fn part(seeds: &[&SeedResult], get: fn(&ScoreBreakdown) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = seeds
        .iter()
        .filter_map(|s| s.breakdown.as_ref().and_then(get))
        .collect();
    mean(&values)
}

/// Epochs as whole numbers: "5" when every value is 5, "mean 2.3" when they differ, "—" for none.
fn fmt_epochs(epochs: &[usize]) -> String {
    match epochs {
        [] => "—".into(),
        [first, rest @ ..] if rest.iter().all(|e| e == first) => first.to_string(),
        _ => {
            let m = epochs.iter().sum::<usize>() as f64 / epochs.len() as f64;
            format!("mean {m:.1}")
        }
    }
}

/// How many seeds ended how: "3/3 completed", or "2 completed, 1 failed (dead ReLU head)".
pub(crate) fn status_counts(v: &VariantData) -> String {
    let order = [
        RunStatus::Completed,
        RunStatus::Running,
        RunStatus::Interrupted,
        RunStatus::Diverged,
        RunStatus::Failed,
    ];
    let of = |s: RunStatus| -> Vec<&RunData> {
        v.runs.iter().filter(|r| r.record.status == s).collect()
    };
    let dead_head = |r: &&RunData| {
        r.record
            .message
            .as_deref()
            .is_some_and(|m| m.contains("ReLU output head is dead"))
    };
    // "failed (dead ReLU head)" when that is why every failed seed failed.
    let name = |s: RunStatus| {
        if s == RunStatus::Failed && of(s).iter().all(dead_head) {
            format!("{} (dead ReLU head)", s.as_str())
        } else {
            s.as_str().to_string()
        }
    };
    let present: Vec<RunStatus> = order.into_iter().filter(|&s| !of(s).is_empty()).collect();
    if let [only] = present[..] {
        return format!("{}/{} {}", of(only).len(), v.runs.len(), name(only));
    }
    present
        .iter()
        .map(|&s| format!("{} {}", of(s).len(), name(s)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Where the runs trained: each backend and device (the adapter and driver on wgpu) with its
/// number of runs, "Trained on cpu (burn-flex), 2 threads (4 runs)."
pub(crate) fn trained_on(exp: &ExperimentData) -> Option<String> {
    let mut places: Vec<(String, usize)> = Vec::new();
    for r in exp.variants.iter().flat_map(|v| &v.runs) {
        let place = format!("{}, {}", r.record.backend, r.record.device);
        match places.iter_mut().find(|(p, _)| *p == place) {
            Some((_, n)) => *n += 1,
            None => places.push((place, 1)),
        }
    }
    if places.is_empty() {
        return None;
    }
    let parts: Vec<String> = places
        .iter()
        .map(|(p, n)| format!("{p} ({n} run{})", if *n == 1 { "" } else { "s" }))
        .collect();
    Some(format!("Trained on {}.", parts.join("; ")))
}

/// What the Dice columns mean for cross-validated variants, when there are any.
pub(crate) fn cross_validation_note(rows: &[VariantRow]) -> Option<String> {
    let cv: Vec<String> = rows
        .iter()
        .filter_map(|r| r.folds.map(|k| format!("{} ({k} folds)", r.name)))
        .collect();
    (!cv.is_empty()).then(|| {
        format!(
            "Cross-validated: {}. Their validation Dice is the out-of-fold score: every image \
             outside the test split is scored once, by the fold that did not train on it, at that \
             fold's best epoch; their test Dice is the mean over the folds' checkpoints. Each seed \
             counts once, its folds combined.",
            cv.join(", ")
        )
    })
}

pub fn rows(exp: &ExperimentData) -> Vec<VariantRow> {
    rows_with(exp, super::verdicts::Verdicts::of(exp).as_ref())
}

/// [`rows`], marking "learned nothing" from verdicts the caller already has.
pub(crate) fn rows_with(
    exp: &ExperimentData,
    verdicts: Option<&super::verdicts::Verdicts>,
) -> Vec<VariantRow> {
    exp.variants
        .iter()
        .enumerate()
        .map(|(i, v)| VariantRow {
            learned_nothing: verdicts.is_some_and(|x| x.learned_nothing(i)),
            ..variant_row(v)
        })
        .collect()
}

/// The score of predicting every mask empty, on the images the ranking score is taken on (the
/// test split, else the validation images): the share of empty masks there — the floor any
/// variant must beat (about 0.5 on the Kaggle data).
pub(crate) fn all_empty_score(exp: &ExperimentData) -> Option<f64> {
    let on_test = has_test_split(exp);
    exp.variants.iter().flat_map(|v| &v.runs).find_map(|r| {
        if on_test {
            r.baseline_test()
        } else {
            r.baseline_val()
        }
    })
}

/// Whether any run of the experiment was scored on a test split.
pub(crate) fn has_test_split(exp: &ExperimentData) -> bool {
    exp.has_test_split()
}

/// The main effects on test Dice when the study has a test split (held-out subjects: an
/// unbiased score), else on best validation Dice (the epoch is chosen on the same images, so
/// it is optimistic).
///
/// A study of explicit variants (no grid) is compared as one axis, `variant`, whose reference
/// is the first variant: each variant's difference to it with a 95% interval over seeds.
pub(crate) fn effects(exp: &ExperimentData) -> Vec<AxisEffect> {
    let (cells, score) = ranking_cells(exp);
    let axes = match exp.manifest.axes.as_slice() {
        [] => vec![VARIANT_AXIS.to_string()],
        axes => axes.to_vec(),
    };
    let mut effects = main_effects(&axes, &cells);
    effects.iter_mut().for_each(|e| e.score = score);
    effects
}

/// The axis of a study without a grid: its variants, against the first.
const VARIANT_AXIS: &str = "variant";

/// The two-way tables of every pair of grid axes, on the same score as the main effects.
pub(crate) fn interactions(exp: &ExperimentData) -> Vec<Interaction> {
    let (cells, score) = ranking_cells(exp);
    super::interactions::interactions(&exp.manifest.axes, &cells, score)
}

/// One observation per variant × seed of the score the report ranks by, and its name. Without
/// a grid, a variant's level is its name on the [`VARIANT_AXIS`].
fn ranking_cells(exp: &ExperimentData) -> (Vec<Cell>, &'static str) {
    let on_test = has_test_split(exp);
    let no_grid = exp.manifest.axes.is_empty();
    let cells = exp
        .variants
        .iter()
        .flat_map(|v| {
            let levels = if no_grid {
                vec![(VARIANT_AXIS.to_string(), v.name.clone())]
            } else {
                v.levels.clone()
            };
            v.seed_results().into_iter().map(move |s| Cell {
                levels: levels.clone(),
                seed: s.seed,
                score: if on_test { s.test_dice } else { s.best_dice },
            })
        })
        .collect();
    (cells, if on_test { "test Dice" } else { "best Dice" })
}

/// What the main-effect tables are, in words.
pub(crate) fn effects_intro(effects: &[AxisEffect]) -> String {
    let score = ranked_by(effects);
    if effects.first().is_some_and(|e| e.axis == VARIANT_AXIS) {
        format!(
            "Difference in {score} of each variant against the first, \"{}\", with the 95% \
             interval across seeds (t distribution; the seeds in which every variant has a score).",
            effects[0].reference
        )
    } else {
        format!(
            "Difference in {score} against the first level of each grid axis, averaged over the \
             other axes; in brackets the 95% interval across seeds (t distribution)."
        )
    }
}

/// What the main effects compare, in words.
pub(crate) fn ranked_by(effects: &[AxisEffect]) -> &'static str {
    match effects.first().map(|e| e.score) {
        Some("test Dice") => "test Dice (held-out test subjects)",
        _ => "best validation Dice",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::manifest::RunRecord;

    fn run(seed: u64, status: RunStatus, message: Option<&str>, best_epoch: usize) -> RunData {
        let record = RunRecord {
            status,
            message: message.map(String::from),
            best: crate::track::BestSoFar {
                epochs_done: best_epoch,
                epoch: Some(best_epoch),
                ..Default::default()
            },
            ..RunRecord::new(seed, "", "cpu".into(), "cpu".into())
        };
        let row = |epoch: usize, dice: f64| crate::track::EpochRow {
            variant: "v".into(),
            seed,
            fold: None,
            epoch,
            split: "val".into(),
            loss: 1.0,
            dice: Some(dice),
            iou: Some(dice),
            pixel_accuracy: None,
            precision: None,
            recall: None,
            presence_accuracy: None,
            lr: 0.0,
            seconds: 1.0,
            images_per_sec: 1.0,
            load_seconds: 0.0,
            step_seconds: 0.0,
        };
        // Dice peaks at `best_epoch`; a failed seed scores 0.1, the others 0.8 + seed/100.
        let top = if status == RunStatus::Completed {
            0.8 + seed as f64 / 100.0
        } else {
            0.1
        };
        let val = (1..=3)
            .map(|e| row(e, if e == best_epoch { top } else { 0.0 }))
            .collect();
        RunData {
            seed,
            fold: None,
            record,
            train: Vec::new(),
            val,
            steps: Vec::new(),
            snapshots: None,
        }
    }

    fn variant(runs: Vec<RunData>) -> VariantData {
        VariantData {
            name: "v".into(),
            slug: "v".into(),
            dir: std::path::PathBuf::new(),
            levels: Vec::new(),
            manifest: None,
            runs,
        }
    }

    #[test]
    fn status_counts_each_seed_and_scores_the_failed_ones_too() {
        let dead = "the ReLU output head is dead: every validation output was exactly 0";
        let all = variant(vec![
            run(1, RunStatus::Completed, None, 2),
            run(2, RunStatus::Completed, None, 2),
            run(3, RunStatus::Completed, None, 2),
        ]);
        assert_eq!(status_counts(&all), "3/3 completed");
        let row = variant_row(&all);
        assert_eq!(row.best_epoch(), "2");
        assert_eq!(row.best(), "0.8200 ± 0.0100");
        let mixed = variant(vec![
            run(1, RunStatus::Completed, None, 2),
            run(2, RunStatus::Failed, Some(dead), 1),
            run(3, RunStatus::Completed, None, 3),
        ]);
        assert_eq!(
            status_counts(&mixed),
            "2 completed, 1 failed (dead ReLU head)"
        );
        let row = variant_row(&mixed);
        // Intention to treat: the failed seed's best Dice, 0.1, counts beside 0.81 and 0.83;
        // the completed seeds alone are the secondary view.
        assert_eq!(row.best(), "0.5800 ± 0.4158");
        assert_eq!((row.scored_seeds, row.failed_seeds), (3, 1));
        assert_eq!(fmt_mean_sd(&row.completed_scores), "0.8200 ± 0.0141");
        assert_eq!(row.best_epoch(), "mean 2.0");
        let diverged = variant(vec![
            run(
                1,
                RunStatus::Diverged,
                Some("loss inf at epoch 2, step 3"),
                1,
            ),
            run(2, RunStatus::Failed, Some("out of memory"), 1),
        ]);
        assert_eq!(status_counts(&diverged), "1 diverged, 1 failed");
        let all_dead = variant(vec![
            run(1, RunStatus::Failed, Some(dead), 1),
            run(2, RunStatus::Failed, Some(dead), 1),
        ]);
        assert_eq!(status_counts(&all_dead), "2/2 failed (dead ReLU head)");
        // None completed: every seed counts.
        assert_eq!(variant_row(&diverged).best(), "0.1000 ± 0.0000");
    }

    /// A fold of seed `seed` validated on `images` images, best Dice 0.8 + seed/100 at
    /// `best_epoch` (see [`run`]), then shifted by `shift`.
    fn fold(seed: u64, fold: usize, images: usize, shift: f64, best_epoch: usize) -> RunData {
        let mut r = run(seed, RunStatus::Completed, None, best_epoch);
        r.fold = Some(fold);
        r.record.fold = Some(fold);
        r.val
            .iter_mut()
            .for_each(|row| row.dice = row.dice.map(|d| if d > 0.0 { d + shift } else { d }));
        let info = crate::data::DatasetInfo {
            source: "synthetic".into(),
            images: 100,
            subjects: 10,
            empty_mask_share: 0.5,
            train_images: 100 - images,
            val_images: images,
            val_subjects: Vec::new(),
            test_images: 0,
            test_subjects: Vec::new(),
            val_empty_masks: None,
            test_empty_masks: None,
            height: 8,
            width: 8,
        };
        r.record.dataset = Some(info);
        r
    }

    #[test]
    fn cross_validated_seeds_score_out_of_fold_weighted_by_validation_images() {
        // Seed 0: folds of 30 and 10 images at 0.80 and 0.60 → (30·0.8 + 10·0.6) / 40 = 0.75.
        // Seed 1: 20 and 20 images at 0.81 and 0.71 → 0.76.
        let v = variant(vec![
            fold(0, 0, 30, 0.0, 1),
            fold(0, 1, 10, -0.2, 3),
            fold(1, 0, 20, 0.0, 2),
            fold(1, 1, 20, -0.1, 2),
        ]);
        assert!(v.cross_validated());
        let seeds = v.seed_results();
        assert_eq!(seeds.len(), 2);
        assert_eq!((seeds[0].seed, seeds[0].folds), (0, 2));
        assert!(
            (seeds[0].best_dice.unwrap() - 0.75).abs() < 1e-12,
            "{seeds:?}"
        );
        assert!(
            (seeds[1].best_dice.unwrap() - 0.76).abs() < 1e-12,
            "{seeds:?}"
        );
        assert_eq!(seeds[0].best_epoch, Some(2));
        let row = variant_row(&v);
        assert_eq!((row.seeds, row.folds), (2, Some(2)));
        assert_eq!(row.best(), "0.7550 ± 0.0071");
        assert_eq!(status_counts(&v), "4/4 completed");
        assert!(
            cross_validation_note(&[row])
                .unwrap()
                .starts_with("Cross-validated: v (2 folds).")
        );
        // A seed with a failed fold is a failed seed, still scored out of fold.
        let mut failed = variant(vec![
            fold(0, 0, 30, 0.0, 1),
            fold(0, 1, 10, -0.2, 3),
            fold(1, 0, 20, 0.0, 2),
            fold(1, 1, 20, -0.1, 2),
        ]);
        failed.runs[1].record.status = RunStatus::Failed;
        let row = variant_row(&failed);
        assert_eq!(row.best(), "0.7550 ± 0.0071");
        assert_eq!((row.failed_seeds, row.completed_scores.len()), (1, 1));
    }

    #[test]
    fn explicit_variants_are_compared_with_the_first() {
        let mut exp = crate::report::html::tests::grid();
        exp.manifest.axes.clear();
        let effects = effects(&exp);
        assert_eq!(effects.len(), 1);
        let e = &effects[0];
        assert_eq!(
            (e.axis.as_str(), e.reference.as_str()),
            ("variant", "mse-adam")
        );
        // The seeds' noise is shared by every variant: ce-sgd − mse-adam = 0.48 − 0.60 exactly.
        let ce_sgd = e.levels.iter().find(|l| l.level == "ce-sgd").unwrap();
        assert!((ce_sgd.difference + 0.12).abs() < 1e-9 && ce_sgd.seeds == 3);
        assert!(effects_intro(&effects).starts_with(
            "Difference in best validation Dice of each variant against the first, \"mse-adam\""
        ));
        // No breakdown was recorded: no all-empty baseline to state.
        assert_eq!(all_empty_score(&exp), None);
    }

    #[test]
    fn a_failed_seed_without_a_checkpoint_scores_as_predicting_nothing() {
        let exp = super::super::verdicts::tests::fragile();
        let rows = rows(&exp);
        // (0.80 + 0.525 + 0.82) / 3 = 0.715; completed seeds only: 0.81.
        assert_eq!(rows[1].best(), "0.7150 ± 0.1648");
        assert_eq!((rows[1].failed_seeds, rows[1].nothing_seeds), (1, 1));
        assert_eq!(fmt_mean_sd(&rows[1].completed_scores), "0.8100 ± 0.0141");
        assert!(!rows[1].learned_nothing);
    }

    #[test]
    fn epochs_are_whole_numbers_unless_seeds_differ() {
        assert_eq!(fmt_epochs(&[]), "—");
        assert_eq!(fmt_epochs(&[5]), "5");
        assert_eq!(fmt_epochs(&[5, 5, 5]), "5");
        assert_eq!(fmt_epochs(&[2, 2, 3]), "mean 2.3");
    }
}
