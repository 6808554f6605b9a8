//! Verdicts: every contrast a study declares ends "better", "worse", "no difference that
//! matters", "neither learned" or "undecided" — with failed seeds counted, the family-wise
//! error held at `decide.alpha` by Holm over every contrast shown, and sequential looks
//! (seeds until decided) paid for by alpha spending.
//!
//! The contrasts: each variant against predicting nothing on the same images ("learned");
//! each grid axis's levels against its first (averaged over the other axes, as the main
//! effects) and every two-way interaction contrast; or, without a grid, each variant against
//! the reference. All on paired seeds: seed k fixes the data order and augmentation of every
//! variant, so d_k = a_k − b_k.
//!
//! Looks: at n₁ = `decide.first_seeds`, then every `step` seeds up to the most the study may
//! use, N. Look j spends Δα_j = α·t_jᵖ − α·t_{j−1}ᵖ (t = n/N) over the contrasts still
//! undecided (Holm at Δα_j); a contrast decided at a look keeps that verdict. By the union
//! bound the chance of any wrong "better"/"worse" over the whole study stays ≤ α.

use super::effects::{Cell, level_of, levels_of};
use super::load::ExperimentData;
use super::stats::{
    PairedT, alpha_spent, holm, mean, pearson, probability_of_improvement, seeds_needed, wilson,
};
use crate::config::DecideRules;

/// What a contrast compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContrastKind {
    /// A variant against predicting nothing.
    Learned,
    /// A variant against the reference variant.
    Variant,
    /// A grid level against its axis's first level.
    MainEffect,
    /// A difference of differences between two axes.
    Interaction,
}

/// A contrast's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Better,
    Worse,
    /// The interval lies inside ±margin.
    Equivalent,
    /// Every variant on both sides learned nothing.
    NeitherLearned,
    /// A variant beats predicting nothing.
    Learned,
    /// A variant does not beat predicting nothing (scores at or below it, or equivalent to it).
    LearnedNothing,
    /// Not yet: the seeds it would take at the observed spread, when it can be estimated.
    Undecided {
        seeds_needed: Option<usize>,
    },
}

impl Verdict {
    pub fn words(&self) -> String {
        match self {
            Verdict::Better => "better".into(),
            Verdict::Worse => "worse".into(),
            Verdict::Equivalent => "no difference that matters".into(),
            Verdict::NeitherLearned => "neither learned".into(),
            Verdict::Learned => "learned".into(),
            Verdict::LearnedNothing => "learned nothing".into(),
            Verdict::Undecided {
                seeds_needed: Some(n),
            } => format!("undecided, needs ~{n} seeds"),
            Verdict::Undecided { seeds_needed: None } => "undecided".into(),
        }
    }

    /// A short machine name (`summary.json`).
    pub fn key(&self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Equivalent => "equivalent",
            Verdict::NeitherLearned => "neither_learned",
            Verdict::Learned => "learned",
            Verdict::LearnedNothing => "learned_nothing",
            Verdict::Undecided { .. } => "undecided",
        }
    }
}

/// One contrast with its verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastVerdict {
    pub kind: ContrastKind,
    /// "all vs blog", "train.loss: bce vs mse", "train.loss × train.optimizer: bce, sgd",
    /// "blog vs predicting nothing".
    pub label: String,
    /// The variants on each side (indices into the experiment's variants).
    pub a_side: Vec<usize>,
    pub b_side: Vec<usize>,
    pub seeds: usize,
    pub difference: f64,
    /// The interval at `level` (none below two seeds or without spread).
    pub interval: Option<(f64, f64)>,
    /// The confidence of the interval: 1 − the level this contrast was tested at.
    pub level: f64,
    pub p_value: Option<f64>,
    /// Correlation of the two sides over seeds (what pairing bought).
    pub correlation: Option<f64>,
    /// Share of seeds where side a beats side b (ties ½), with its Wilson 95% interval.
    pub improvement: Option<(f64, (f64, f64))>,
    pub verdict: Verdict,
    /// Why no interval: "one seed", "no spread across seeds".
    pub degenerate: Option<&'static str>,
    /// The seeds per variant at the look that decided it (or the last look taken).
    pub look_seeds: usize,
    /// No more seeds would change the verdict (see [`settled`]); an unsettled contrast's
    /// variants get the next look's seeds.
    pub settled: bool,
}

/// A variant's failures: failed or diverged seeds of the seeds with a result.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRate {
    pub variant: String,
    pub failed: usize,
    pub seeds: usize,
    pub interval: Option<(f64, f64)>,
}

impl FailureRate {
    /// "1/5 [0.04, 0.62]".
    pub fn text(&self) -> String {
        match self.interval {
            Some((lo, hi)) => format!("{}/{} [{lo:.2}, {hi:.2}]", self.failed, self.seeds),
            None => format!("{}/{}", self.failed, self.seeds),
        }
    }
}

/// Every verdict of a study.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdicts {
    pub rules: DecideRules,
    pub contrasts: Vec<ContrastVerdict>,
    pub failures: Vec<FailureRate>,
    /// The looks taken (seeds per variant at each), and the most seeds a variant may use.
    pub looks: Vec<usize>,
    pub max_seeds: usize,
    /// The score compared ("test Dice" or "best Dice").
    pub score: &'static str,
    /// The next look's seed count when contrasts are undecided and seeds are left, and the
    /// variants that need them.
    pub next: Option<(usize, Vec<usize>)>,
    /// The first look's seeds have not all finished: the verdicts so far are provisional.
    pub provisional: bool,
}

/// One variant × seed with a result.
#[derive(Debug, Clone)]
struct Observation {
    variant: usize,
    levels: Vec<(String, String)>,
    seed: u64,
    score: Option<f64>,
    baseline: Option<f64>,
}

/// The study's contrasts on its first `n` seeds: (kind, label, sides, per-seed (a, b)).
pub(crate) type Sample = (
    ContrastKind,
    String,
    Vec<usize>,
    Vec<usize>,
    Vec<(f64, f64)>,
);

impl Verdicts {
    /// Replays the looks the study's rules plan, as far as its results go.
    pub fn of(exp: &ExperimentData) -> Option<Verdicts> {
        let rules = exp.manifest.rules();
        let seed_order = exp.manifest.seeds.clone();
        let max_seeds = seed_order.len();
        let (observations, score) = observations(exp);
        if observations.is_empty() {
            return None;
        }
        let replay = replay(&rules, max_seeds, &|n| {
            samples(exp, &observations, &seed_order[..n])
        });
        Some(Verdicts {
            failures: failure_rates(exp),
            rules,
            contrasts: replay.contrasts,
            looks: replay.taken,
            max_seeds,
            score,
            next: replay.next,
            provisional: replay.provisional,
        })
    }

    /// Whether the variant beat predicting nothing: "learned", "learned nothing" or
    /// "undecided".
    pub fn learned_words(&self, variant: &str) -> String {
        self.contrasts
            .iter()
            .find(|c| {
                c.kind == ContrastKind::Learned
                    && c.label == format!("{variant} vs predicting nothing")
            })
            .map_or("—".into(), |c| c.verdict.words())
    }

    /// Whether the variant learned nothing (marked wherever it is shown).
    pub fn learned_nothing(&self, variant: usize) -> bool {
        self.contrasts.iter().any(|c| {
            c.kind == ContrastKind::Learned
                && c.a_side == [variant]
                && c.verdict == Verdict::LearnedNothing
        })
    }

    /// The Holm-adjusted verdicts of one two-way table's contrasts, in a sentence.
    pub fn interaction_line(&self, first: &str, second: &str) -> Option<String> {
        let prefix = format!("{first} × {second}: ");
        let parts: Vec<String> = self
            .contrasts
            .iter()
            .filter_map(|c| {
                let levels = c.label.strip_prefix(&prefix)?;
                Some(format!("({levels}) {}", c.verdict.words()))
            })
            .collect();
        (!parts.is_empty()).then(|| {
            format!(
                "Verdicts, Holm-adjusted with every contrast of the page (family-wise α = {}): {}.",
                self.rules.alpha,
                parts.join("; ")
            )
        })
    }

    /// The contrasts still undecided.
    pub fn undecided(&self) -> usize {
        self.contrasts.iter().filter(|c| !c.settled).count()
    }

    /// What the table's heading says about error control.
    pub fn explanation(&self) -> String {
        let looks = if self.looks.len() > 1 || self.rules.sequential(self.max_seeds) {
            format!(
                " Seeds are added until decided (looks at {} of at most {} seeds so far); each \
                 look spends part of α (α·t^{}, t = seeds/{}), so the error holds over all looks.",
                self.looks
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.max_seeds,
                self.rules.spending,
                self.max_seeds
            )
        } else {
            String::new()
        };
        let provisional = if self.provisional {
            " Provisional: not every seed of the first look has finished."
        } else {
            ""
        };
        format!(
            "Verdicts on {} over paired seeds, failed and diverged seeds counted (scored at their \
             best checkpoint, or as predicting nothing without one). The chance of any wrong \
             \"better\" or \"worse\" on this page is held at {} (Holm over all {} contrasts); \
             each interval is at its contrast's own level, given beside it. \"No difference that \
             matters\": the interval lies inside ±{} Dice (decide.margin).{looks}{provisional}",
            self.score,
            self.rules.alpha,
            self.contrasts.len(),
            self.rules.margin,
        )
    }
}

/// Seeds until decided: how many of the study's seeds each variant trains now — the first
/// look's, every seed it has started, and the next look's when the verdicts name it.
pub(crate) struct SeedsNow {
    /// The study's seeds in order.
    order: Vec<u64>,
    /// (name, directory name, seeds) per variant of the manifest.
    variants: Vec<(String, String, usize)>,
}

impl SeedsNow {
    pub(crate) fn of(exp: &ExperimentData, verdicts: Option<&Verdicts>) -> SeedsNow {
        let first = exp.manifest.rules().first_seeds;
        let order = exp.manifest.seeds.clone();
        let variants = exp
            .manifest
            .variants
            .iter()
            .map(|(name, slug)| {
                let data = exp.variants.iter().position(|v| v.slug == *slug);
                let started = data.map_or(0, |i| {
                    exp.variants[i]
                        .runs
                        .iter()
                        .filter_map(|r| order.iter().position(|s| *s == r.seed))
                        .map(|p| p + 1)
                        .max()
                        .unwrap_or(0)
                });
                let next = verdicts
                    .and_then(|v| v.next.as_ref())
                    .filter(|(_, variants)| data.is_some_and(|i| variants.contains(&i)))
                    .map_or(0, |(n, _)| *n);
                (name.clone(), slug.clone(), first.max(started).max(next))
            })
            .collect();
        SeedsNow { order, variants }
    }

    /// Whether the variant (by name or directory name) trains `seed` now.
    pub(crate) fn includes(&self, variant: &str, seed: u64) -> bool {
        let Some(position) = self.order.iter().position(|s| *s == seed) else {
            return false;
        };
        self.variants
            .iter()
            .any(|(name, slug, n)| (name == variant || slug == variant) && position < *n)
    }

    /// The most seeds any variant trains now.
    pub(crate) fn most(&self) -> usize {
        self.variants.iter().map(|v| v.2).max().unwrap_or(0)
    }
}

/// What replaying the looks found.
pub(crate) struct Replay {
    pub contrasts: Vec<ContrastVerdict>,
    pub taken: Vec<usize>,
    pub next: Option<(usize, Vec<usize>)>,
    pub provisional: bool,
}

/// The looks of `rules` (one at `max_seeds` for a study without a seed plan), each on the
/// contrasts `samples_at(n)` gives for the first n seeds; a look is taken when every contrast
/// still open has all its n pairs (the first look is taken anyway, provisionally).
pub(crate) fn replay(
    rules: &DecideRules,
    max_seeds: usize,
    samples_at: &dyn Fn(usize) -> Vec<Sample>,
) -> Replay {
    let looks = if rules.sequential(max_seeds) {
        rules.looks(max_seeds)
    } else {
        vec![max_seeds]
    };
    let mut decided: Vec<Option<ContrastVerdict>> = Vec::new();
    let mut latest: Vec<ContrastVerdict> = Vec::new();
    let mut taken = Vec::new();
    let mut spent = 0.0;
    let mut provisional = false;
    for (j, &n) in looks.iter().enumerate() {
        if j > 0 && decided.iter().all(Option::is_some) {
            break;
        }
        let samples = samples_at(n);
        if decided.is_empty() {
            decided = vec![None; samples.len()];
        }
        let complete = samples
            .iter()
            .zip(&decided)
            .all(|(s, d)| d.is_some() || s.4.len() == n);
        if !complete && j > 0 {
            break;
        }
        let now = alpha_spent(rules.alpha, n as f64 / max_seeds as f64, rules.spending);
        let budget = if looks.len() == 1 {
            rules.alpha
        } else {
            now - spent
        };
        spent = now;
        taken.push(n);
        let judged = judge(&samples, &decided, budget, rules, n);
        let merged = judged
            .into_iter()
            .zip(&decided)
            .map(|(now, then)| then.clone().unwrap_or(now))
            .collect();
        latest = neither_learned(merged);
        for (slot, v) in decided.iter_mut().zip(&latest) {
            if slot.is_none() && settled(v, &latest) {
                *slot = Some(v.clone());
            }
        }
        if !complete {
            provisional = true;
            break;
        }
    }
    let mut contrasts = latest;
    let settled_now: Vec<bool> = contrasts.iter().map(|c| settled(c, &contrasts)).collect();
    for (c, s) in contrasts.iter_mut().zip(settled_now) {
        c.settled = s;
    }
    let next = if provisional {
        None
    } else {
        next_look(&contrasts, &looks, &taken)
    };
    Replay {
        contrasts,
        taken,
        next,
        provisional,
    }
}

/// A verdict no more seeds would change: "better", "worse", "equivalent", "learned", a tested
/// "learned nothing", and "neither learned" once both sides' "learned nothing" are. A variant
/// that scored exactly predicting nothing on every seed so far is shown as "learned nothing"
/// but is not settled: no test stands behind it, and more seeds may learn.
fn settled(v: &ContrastVerdict, all: &[ContrastVerdict]) -> bool {
    let nothing_tested =
        |c: &ContrastVerdict| c.verdict == Verdict::LearnedNothing && c.degenerate.is_none();
    match v.verdict {
        Verdict::Undecided { .. } => false,
        Verdict::LearnedNothing => nothing_tested(v),
        Verdict::NeitherLearned => v.a_side.iter().chain(&v.b_side).all(|i| {
            all.iter()
                .any(|c| c.kind == ContrastKind::Learned && c.a_side == [*i] && nothing_tested(c))
        }),
        _ => true,
    }
}

/// One observation per variant × seed, scored as the report ranks (test Dice with a test
/// split, else best validation Dice); unfinished seeds have no score.
fn observations(exp: &ExperimentData) -> (Vec<Observation>, &'static str) {
    let on_test = exp.has_test_split();
    let obs = exp
        .variants
        .iter()
        .enumerate()
        .flat_map(|(i, v)| {
            v.seed_results().into_iter().map(move |s| Observation {
                variant: i,
                levels: v.levels.clone(),
                seed: s.seed,
                score: if on_test { s.test_dice } else { s.best_dice },
                baseline: if on_test {
                    s.baseline_test
                } else {
                    s.baseline_val
                },
            })
        })
        .collect();
    (obs, if on_test { "test Dice" } else { "best Dice" })
}

/// The contrasts on the seeds `seeds`, in page order: learned, then main effects and
/// interactions (grid) or variants against the reference.
fn samples(exp: &ExperimentData, obs: &[Observation], seeds: &[u64]) -> Vec<Sample> {
    let obs: Vec<&Observation> = obs.iter().filter(|o| seeds.contains(&o.seed)).collect();
    let mut out = Vec::new();
    for (i, v) in exp.variants.iter().enumerate() {
        let pairs = seeds
            .iter()
            .filter_map(|&s| {
                let o = obs.iter().find(|o| o.variant == i && o.seed == s)?;
                Some((o.score?, o.baseline?))
            })
            .collect();
        let label = format!("{} vs predicting nothing", v.name);
        out.push((ContrastKind::Learned, label, vec![i], Vec::new(), pairs));
    }
    if exp.manifest.axes.is_empty() {
        let reference = exp
            .manifest
            .rules()
            .reference
            .and_then(|r| exp.variants.iter().position(|v| v.name == r))
            .unwrap_or(0);
        for (i, v) in exp.variants.iter().enumerate() {
            if i == reference {
                continue;
            }
            let pairs = seeds
                .iter()
                .filter_map(|&s| {
                    let score = |k: usize| {
                        obs.iter()
                            .find(|o| o.variant == k && o.seed == s)
                            .and_then(|o| o.score)
                    };
                    Some((score(i)?, score(reference)?))
                })
                .collect();
            let label = format!("{} vs {}", v.name, exp.variants[reference].name);
            out.push((
                ContrastKind::Variant,
                label,
                vec![i],
                vec![reference],
                pairs,
            ));
        }
    } else {
        grid_samples(&exp.manifest.axes, &obs, seeds, &mut out);
    }
    out
}

/// Main effects and two-way interaction contrasts of a grid, per seed.
fn grid_samples(axes: &[String], obs: &[&Observation], seeds: &[u64], out: &mut Vec<Sample>) {
    let cells: Vec<Cell> = obs
        .iter()
        .map(|o| Cell {
            levels: o.levels.clone(),
            seed: o.seed,
            score: o.score,
        })
        .collect();
    let variants_at = |axis: &str, level: &str| -> Vec<usize> {
        let mut v: Vec<usize> = obs
            .iter()
            .filter(|o| level_of_obs(o, axis) == Some(level))
            .map(|o| o.variant)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    // A seed counts for an axis (pair of axes) when every variant on it has a score.
    let complete = |on: &dyn Fn(&Cell) -> bool| -> Vec<u64> {
        seeds
            .iter()
            .copied()
            .filter(|&s| {
                let of_seed: Vec<&Cell> = cells.iter().filter(|c| c.seed == s && on(c)).collect();
                !of_seed.is_empty() && of_seed.iter().all(|c| c.score.is_some())
            })
            .collect()
    };
    let m = |s: u64, want: &[(&str, &str)]| -> Option<f64> {
        let v: Vec<f64> = cells
            .iter()
            .filter(|c| c.seed == s && want.iter().all(|(a, l)| level_of(c, a) == Some(l)))
            .filter_map(|c| c.score)
            .collect();
        mean(&v)
    };
    for axis in axes {
        let levels = levels_of(&cells, axis);
        let seeds_ok = complete(&|c| level_of(c, axis).is_some());
        for level in levels.iter().skip(1) {
            let pairs = seeds_ok
                .iter()
                .filter_map(|&s| Some((m(s, &[(axis, level)])?, m(s, &[(axis, &levels[0])])?)))
                .collect();
            out.push((
                ContrastKind::MainEffect,
                format!("{axis}: {level} vs {}", levels[0]),
                variants_at(axis, level),
                variants_at(axis, &levels[0]),
                pairs,
            ));
        }
    }
    for (i, a) in axes.iter().enumerate() {
        for b in &axes[i + 1..] {
            let (la, lb) = (levels_of(&cells, a), levels_of(&cells, b));
            let seeds_ok = complete(&|c| level_of(c, a).is_some() && level_of(c, b).is_some());
            for x in la.iter().skip(1) {
                for y in lb.iter().skip(1) {
                    let (x0, y0) = (la[0].as_str(), lb[0].as_str());
                    let pairs = seeds_ok
                        .iter()
                        .filter_map(|&s| {
                            let at = |p: &str, q: &str| m(s, &[(a, p), (b, q)]);
                            Some((at(x, y)? - at(x0, y)?, at(x, y0)? - at(x0, y0)?))
                        })
                        .collect();
                    let mut sides = variants_at(a, x);
                    sides.extend(variants_at(a, x0));
                    out.push((
                        ContrastKind::Interaction,
                        format!("{a} × {b}: {x}, {y}"),
                        sides,
                        Vec::new(),
                        pairs,
                    ));
                }
            }
        }
    }
}

fn level_of_obs<'a>(o: &'a Observation, axis: &str) -> Option<&'a str> {
    o.levels
        .iter()
        .find(|(a, _)| a == axis)
        .map(|(_, l)| l.as_str())
}

/// The verdicts of one look: Holm at `budget` over the contrasts not decided earlier.
fn judge(
    samples: &[Sample],
    decided: &[Option<ContrastVerdict>],
    budget: f64,
    rules: &DecideRules,
    look: usize,
) -> Vec<ContrastVerdict> {
    let tests: Vec<Option<PairedT>> = samples
        .iter()
        .map(|s| PairedT::of(&s.4.iter().map(|(a, b)| a - b).collect::<Vec<_>>()))
        .collect();
    let open: Vec<usize> = (0..samples.len())
        .filter(|&i| decided[i].is_none())
        .collect();
    let p: Vec<Option<f64>> = open
        .iter()
        .map(|&i| tests[i].and_then(|t| t.p_value))
        .collect();
    let holm = holm(&p, budget);
    let mut level_of_contrast = vec![(false, budget); samples.len()];
    for (k, &i) in open.iter().enumerate() {
        level_of_contrast[i] = holm[k];
    }
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let (rejected, level) = level_of_contrast[i];
            verdict_of(s, tests[i], rejected, level, rules, look)
        })
        .collect()
}

/// One contrast's verdict at its Holm level.
fn verdict_of(
    (kind, label, a_side, b_side, pairs): &Sample,
    test: Option<PairedT>,
    rejected: bool,
    level: f64,
    rules: &DecideRules,
    look: usize,
) -> ContrastVerdict {
    let d: Vec<f64> = pairs.iter().map(|(a, b)| a - b).collect();
    let (a, b): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    let difference = mean(&d).unwrap_or(f64::NAN);
    let degenerate = match test {
        None => Some("one seed: no interval"),
        Some(t) if t.p_value.is_none() => Some("no spread across seeds: no interval"),
        Some(_) => None,
    };
    let interval = test
        .filter(|t| t.p_value.is_some())
        .map(|t| t.interval(1.0 - level));
    // Equivalence: the two one-sided tests at `level`, i.e. the (1 − 2·level) interval inside
    // ±margin.
    let equivalent = test.filter(|t| t.p_value.is_some()).is_some_and(|t| {
        let (lo, hi) = t.interval(1.0 - 2.0 * level);
        lo > -rules.margin && hi < rules.margin
    });
    let learned = *kind == ContrastKind::Learned;
    let verdict = match (rejected, difference > 0.0) {
        (true, true) if learned => Verdict::Learned,
        (true, false) if learned => Verdict::LearnedNothing,
        (true, true) => Verdict::Better,
        (true, false) => Verdict::Worse,
        // Every seed exactly at predicting nothing: collapsed, however many seeds.
        _ if learned && degenerate.is_some() && d.len() >= 2 && difference.abs() < 1e-9 => {
            Verdict::LearnedNothing
        }
        _ if equivalent && learned => Verdict::LearnedNothing,
        _ if equivalent => Verdict::Equivalent,
        _ => Verdict::Undecided {
            seeds_needed: test
                .filter(|t| t.p_value.is_some())
                .and_then(|t| needed(t, rules, level)),
        },
    };
    ContrastVerdict {
        kind: *kind,
        label: label.clone(),
        a_side: a_side.clone(),
        b_side: b_side.clone(),
        seeds: d.len(),
        difference,
        interval,
        level: 1.0 - level,
        p_value: test.and_then(|t| t.p_value),
        correlation: pearson(&a, &b),
        improvement: probability_of_improvement(&d).filter(|_| !d.is_empty()),
        verdict,
        degenerate,
        look_seeds: look,
        settled: false,
    }
}

/// Seeds to settle an undecided contrast at the observed spread: to exclude 0 when the
/// difference is at least half the margin, else to fit inside ±margin — whichever is fewer.
fn needed(t: PairedT, rules: &DecideRules, level: f64) -> Option<usize> {
    let sd = t.sd.max(1e-6);
    let apart = seeds_needed(sd, t.mean.abs(), level, rules.power);
    let inside = seeds_needed(sd, rules.margin - t.mean.abs(), 2.0 * level, rules.power);
    match (apart, inside) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A contrast between variants that all learned nothing is "neither learned", never "better".
fn neither_learned(mut contrasts: Vec<ContrastVerdict>) -> Vec<ContrastVerdict> {
    let nothing: Vec<usize> = contrasts
        .iter()
        .filter(|c| c.kind == ContrastKind::Learned && c.verdict == Verdict::LearnedNothing)
        .flat_map(|c| c.a_side.clone())
        .collect();
    for c in contrasts
        .iter_mut()
        .filter(|c| c.kind != ContrastKind::Learned)
    {
        let sides = c.a_side.iter().chain(&c.b_side);
        if !c.a_side.is_empty() && sides.clone().all(|v| nothing.contains(v)) {
            c.verdict = Verdict::NeitherLearned;
        }
    }
    contrasts
}

/// The next look and the variants it adds seeds to: those of undecided contrasts (every
/// variant of a grid axis or interaction), while seeds are left.
fn next_look(
    contrasts: &[ContrastVerdict],
    looks: &[usize],
    taken: &[usize],
) -> Option<(usize, Vec<usize>)> {
    let last = *taken.last()?;
    let next = *looks.iter().find(|&&n| n > last)?;
    let mut variants: Vec<usize> = contrasts
        .iter()
        .filter(|c| !c.settled)
        .flat_map(|c| c.a_side.iter().chain(&c.b_side).copied())
        .collect();
    variants.sort_unstable();
    variants.dedup();
    (!variants.is_empty()).then_some((next, variants))
}

/// Each variant's failed or diverged seeds among its seeds with a result, with a Wilson 95%
/// interval.
fn failure_rates(exp: &ExperimentData) -> Vec<FailureRate> {
    exp.variants
        .iter()
        .map(|v| {
            let seeds: Vec<_> = v
                .seed_results()
                .into_iter()
                .filter(|s| !s.unfinished)
                .collect();
            let failed = seeds.iter().filter(|s| s.failed).count();
            FailureRate {
                variant: v.name.clone(),
                failed,
                seeds: seeds.len(),
                interval: wilson(failed as f64, seeds.len(), 0.95),
            }
        })
        .collect()
}

/// Column heads of the verdict table.
pub(crate) const HEADS: [&str; 7] = [
    "contrast",
    "difference [interval] (level)",
    "P(improvement) [95%]",
    "pairing ρ",
    "failed seeds (a · b)",
    "seeds",
    "verdict",
];

impl Verdicts {
    /// The failed seeds of the variants on one side, pooled: "1/5".
    fn side_failures(&self, side: &[usize]) -> String {
        let (failed, seeds) = side
            .iter()
            .filter_map(|&i| self.failures.get(i))
            .fold((0, 0), |(f, n), r| (f + r.failed, n + r.seeds));
        format!("{failed}/{seeds}")
    }

    /// The table's rows in [`HEADS`] order, as text.
    pub(crate) fn rows(&self) -> Vec<[String; 7]> {
        self.contrasts
            .iter()
            .map(|c| {
                let difference = match (c.interval, c.degenerate) {
                    (Some((lo, hi)), _) => format!(
                        "{:+.4} [{lo:+.4}, {hi:+.4}] ({})",
                        c.difference,
                        percent(c.level)
                    ),
                    (None, Some(why)) if c.seeds > 0 => format!("{:+.4} ({why})", c.difference),
                    _ => "— (no paired seeds yet)".into(),
                };
                let improvement = c.improvement.map_or("—".into(), |(p, (lo, hi))| {
                    format!("{p:.2} [{lo:.2}, {hi:.2}]")
                });
                let failures = if c.b_side.is_empty() {
                    self.side_failures(&c.a_side)
                } else {
                    format!(
                        "{} · {}",
                        self.side_failures(&c.a_side),
                        self.side_failures(&c.b_side)
                    )
                };
                [
                    c.label.clone(),
                    difference,
                    improvement,
                    c.correlation.map_or("—".into(), |r| format!("{r:.2}")),
                    failures,
                    c.seeds.to_string(),
                    c.verdict.words(),
                ]
            })
            .collect()
    }

    /// The table as plain aligned text (the end of `run`).
    pub fn terminal_table(&self) -> String {
        let rows: Vec<Vec<String>> = self.rows().into_iter().map(Vec::from).collect();
        crate::util::aligned_table(&HEADS, &rows)
    }
}

/// "95%", "98.3%".
fn percent(level: f64) -> String {
    let p = 100.0 * level;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::load::{RunData, VariantData};
    use crate::track::manifest::{ExperimentManifest, RunRecord, RunStatus};

    /// Predicting nothing on the 40 validation images of every run: 21 empty masks, 0.525.
    const NOTHING: f64 = 0.525;

    /// One run: `Some(dice)` validated once at that Dice, `None` stopped before any epoch.
    pub(crate) fn run(seed: u64, status: RunStatus, dice: Option<f64>) -> RunData {
        let row = |d: f64| crate::track::EpochRow::val_for_test("", seed, d);
        let info = crate::data::DatasetInfo {
            source: "synthetic".into(),
            images: 200,
            subjects: 10,
            empty_mask_share: 0.5,
            train_images: 160,
            val_images: 40,
            val_subjects: Vec::new(),
            test_images: 0,
            test_subjects: Vec::new(),
            val_empty_masks: Some(21),
            test_empty_masks: Some(0),
            height: 8,
            width: 8,
        };
        RunData {
            seed,
            fold: None,
            record: RunRecord {
                status,
                dataset: Some(info),
                ..RunRecord::new(seed, "", String::new(), String::new())
            },
            train: Vec::new(),
            val: dice.map(row).into_iter().collect(),
            steps: Vec::new(),
            snapshots: None,
        }
    }

    /// A variant: name, grid levels, and its runs.
    pub(crate) type Spec = (String, Vec<(String, String)>, Vec<RunData>);

    pub(crate) fn experiment(
        axes: &[&str],
        seeds: usize,
        rules: DecideRules,
        variants: Vec<Spec>,
    ) -> ExperimentData {
        let dir = std::path::PathBuf::from("/nonexistent/unet-lab-verdicts");
        ExperimentData {
            manifest: ExperimentManifest {
                name: "t".into(),
                description: String::new(),
                seeds: (0..seeds as u64).collect(),
                axes: axes.iter().map(|a| a.to_string()).collect(),
                variants: variants
                    .iter()
                    .map(|v| (v.0.clone(), v.0.clone()))
                    .collect(),
                source_file: "t.toml".into(),
                layout: None,
                decide: Some(rules),
                track: None,
            },
            variants: variants
                .into_iter()
                .map(|(name, levels, runs)| VariantData {
                    slug: name.clone(),
                    dir: dir.join(&name),
                    levels,
                    manifest: None,
                    runs,
                    name,
                })
                .collect(),
            dir,
        }
    }

    pub(crate) fn completed(scores: &[f64]) -> Vec<RunData> {
        scores
            .iter()
            .enumerate()
            .map(|(s, &d)| run(s as u64, RunStatus::Completed, Some(d)))
            .collect()
    }

    pub(crate) fn fixed(seeds: usize) -> DecideRules {
        DecideRules {
            first_seeds: seeds,
            ..DecideRules::default()
        }
    }

    fn find<'a>(v: &'a Verdicts, label: &str) -> &'a ContrastVerdict {
        v.contrasts
            .iter()
            .find(|c| c.label == label)
            .unwrap_or_else(|| panic!("no contrast {label}: {:?}", v.contrasts))
    }

    #[test]
    fn collapsed_cells_are_neither_learned_never_better() {
        // The 2×2 of the issue: both SGD cells score exactly predicting nothing on every seed,
        // both Adam cells below it; a naive main effect says "sgd beats adam" by +0.23.
        let cell = |loss: &str, opt: &str, scores: &[f64]| -> Spec {
            (
                format!("{loss}-{opt}"),
                vec![
                    ("train.loss".into(), loss.into()),
                    ("train.optimizer".into(), opt.into()),
                ],
                completed(scores),
            )
        };
        let exp = experiment(
            &["train.loss", "train.optimizer"],
            3,
            fixed(3),
            vec![
                cell("mse", "adam", &[0.29, 0.31, 0.27]),
                cell("mse", "sgd", &[NOTHING; 3]),
                cell("bce", "adam", &[0.30, 0.28, 0.30]),
                cell("bce", "sgd", &[NOTHING; 3]),
            ],
        );
        let v = Verdicts::of(&exp).unwrap();
        // 4 learned + 2 main effects + 1 interaction.
        assert_eq!(v.contrasts.len(), 7);
        let sgd = find(&v, "mse-sgd vs predicting nothing");
        assert_eq!(sgd.verdict, Verdict::LearnedNothing);
        assert_eq!(sgd.degenerate, Some("no spread across seeds: no interval"));
        // No test stands behind an exact collapse: shown, but not settled (more seeds may
        // learn); a tested "learned nothing" (below the floor, with spread) is.
        assert!(!sgd.settled);
        assert!(find(&v, "bce-adam vs predicting nothing").settled);
        assert_eq!(
            find(&v, "bce-adam vs predicting nothing").verdict,
            Verdict::LearnedNothing
        );
        let opt = find(&v, "train.optimizer: sgd vs adam");
        assert!(opt.difference > 0.2);
        assert_eq!(opt.verdict, Verdict::NeitherLearned);
        assert!(v.learned_nothing(1) && v.rows()[5][6] == "neither learned");
    }

    /// "steady" and "fragile", whose seed 1 died before its first validation.
    pub(crate) fn fragile() -> ExperimentData {
        let mut fragile = completed(&[0.80, 0.0, 0.82]);
        fragile[1] = run(1, RunStatus::Failed, None);
        experiment(
            &[],
            3,
            fixed(3),
            vec![
                ("steady".into(), Vec::new(), completed(&[0.70, 0.71, 0.72])),
                ("fragile".into(), Vec::new(), fragile),
            ],
        )
    }

    #[test]
    fn a_two_by_two_with_three_seeds_decides_its_interaction_under_holm() {
        // SGD only fails with cross-entropy: mse 0.80/0.79, ce 0.86/0.60 (adam/sgd), with
        // independent noise of ±0.01 per run.
        let noise = [
            [0.004, -0.006, 0.002],
            [-0.003, 0.005, -0.001],
            [0.006, 0.0, -0.005],
            [-0.002, -0.004, 0.007],
        ];
        let cell = |k: usize, loss: &str, opt: &str, mean: f64| -> Spec {
            (
                format!("{loss}-{opt}"),
                vec![
                    ("train.loss".into(), loss.into()),
                    ("train.optimizer".into(), opt.into()),
                ],
                completed(&noise[k].map(|e| mean + e)),
            )
        };
        let exp = experiment(
            &["train.loss", "train.optimizer"],
            3,
            fixed(3),
            vec![
                cell(0, "mse", "adam", 0.80),
                cell(1, "mse", "sgd", 0.79),
                cell(2, "ce", "adam", 0.86),
                cell(3, "ce", "sgd", 0.60),
            ],
        );
        let v = Verdicts::of(&exp).unwrap();
        assert_eq!(v.contrasts.len(), 7);
        let interaction = find(&v, "train.loss × train.optimizer: ce, sgd");
        // (0.60 − 0.79) − (0.86 − 0.80) = −0.25 by construction, up to the noise.
        assert!(
            (interaction.difference + 0.25).abs() < 0.01,
            "{interaction:?}"
        );
        assert_eq!(interaction.verdict, Verdict::Worse);
        // Holm's level for it is one of α/7 … α, and the page says so.
        assert!(interaction.level >= 0.95 && interaction.level < 1.0);
        assert_eq!(
            v.interaction_line("train.loss", "train.optimizer").unwrap(),
            "Verdicts, Holm-adjusted with every contrast of the page (family-wise α = 0.05): \
             (ce, sgd) worse."
        );
        for variant in ["mse-adam", "mse-sgd", "ce-adam", "ce-sgd"] {
            let c = find(&v, &format!("{variant} vs predicting nothing"));
            assert_eq!(c.verdict, Verdict::Learned, "{c:?}");
        }
    }

    #[test]
    fn a_failed_seed_counts_as_predicting_nothing() {
        // The failed seed is scored 0.525, not dropped (its row: summary's tests).
        let exp = fragile();
        let v = Verdicts::of(&exp).unwrap();
        let c = find(&v, "fragile vs steady");
        // d = (+0.10, −0.185, +0.10): all three seeds count.
        assert_eq!(c.seeds, 3);
        assert!((c.difference - 0.005).abs() < 1e-12);
        assert!(matches!(c.verdict, Verdict::Undecided { .. }));
        assert_eq!(v.failures[1].text(), "1/3 [0.06, 0.79]");
        assert_eq!(v.rows()[2][4], "1/3 · 0/3");
        // An interrupted seed is unfinished work: no score, no failure.
        let mut exp = exp;
        exp.variants[0].runs[2].record.status = RunStatus::Interrupted;
        let v = Verdicts::of(&exp).unwrap();
        assert_eq!((v.failures[0].failed, v.failures[0].seeds), (0, 2));
        assert!(v.provisional && v.next.is_none());
    }

    #[test]
    fn better_worse_and_equivalent_under_holm() {
        // Reference at 0.70; "up" is 0.05 better on every seed with little noise; "same" is
        // within a thousandth; "down" 0.06 worse.
        let base = [0.70, 0.72, 0.69, 0.71, 0.70, 0.73];
        let shift = |by: f64, wobble: f64| -> Vec<f64> {
            base.iter()
                .enumerate()
                .map(|(i, b)| b + by + if i % 2 == 0 { wobble } else { -wobble })
                .collect()
        };
        let exp = experiment(
            &[],
            6,
            fixed(6),
            vec![
                ("ref".into(), Vec::new(), completed(&base)),
                ("up".into(), Vec::new(), completed(&shift(0.05, 0.004))),
                ("same".into(), Vec::new(), completed(&shift(0.0, 0.001))),
                ("down".into(), Vec::new(), completed(&shift(-0.06, 0.003))),
            ],
        );
        let v = Verdicts::of(&exp).unwrap();
        assert_eq!(v.contrasts.len(), 7);
        assert_eq!(find(&v, "up vs ref").verdict, Verdict::Better);
        assert_eq!(find(&v, "down vs ref").verdict, Verdict::Worse);
        assert_eq!(find(&v, "same vs ref").verdict, Verdict::Equivalent);
        assert_eq!(
            find(&v, "ref vs predicting nothing").verdict,
            Verdict::Learned
        );
        // Perfect pairing: the shifted variants move with the reference seed by seed.
        assert!(find(&v, "up vs ref").correlation.unwrap() > 0.9);
        assert_eq!(find(&v, "up vs ref").improvement.unwrap().0, 1.0);
        // Every level is a Holm level at α = 0.05 over 7 contrasts: α/7 … α.
        for c in &v.contrasts {
            assert!(c.level >= 1.0 - 0.05 && c.level <= 1.0 - 0.05 / 7.0 + 1e-12);
        }
        // A reference other than the first variant.
        let mut exp = exp;
        exp.manifest.decide.as_mut().unwrap().reference = Some("up".into());
        let v = Verdicts::of(&exp).unwrap();
        assert_eq!(find(&v, "ref vs up").verdict, Verdict::Worse);
    }

    #[test]
    fn sequential_looks_spend_alpha_and_name_the_next_round() {
        // Looks at 3, 5, 7 of at most 7 seeds; 3 seeds trained. "clear" is far apart from the
        // reference, "close" is not decided at 3 seeds.
        let rules = DecideRules {
            first_seeds: 3,
            step: 2,
            ..DecideRules::default()
        };
        let exp = experiment(
            &[],
            7,
            rules,
            vec![
                ("ref".into(), Vec::new(), completed(&[0.70, 0.75, 0.72])),
                ("clear".into(), Vec::new(), completed(&[0.90, 0.95, 0.92])),
                ("close".into(), Vec::new(), completed(&[0.72, 0.74, 0.75])),
            ],
        );
        let v = Verdicts::of(&exp).unwrap();
        assert_eq!(v.looks, [3]);
        // The first look spends α·(3/7)³ = 0.003936; "clear" differs by exactly 0.2 on every
        // seed: no spread, so no test — undecided, never "better" on a degenerate interval.
        let clear = find(&v, "clear vs ref");
        assert_eq!(
            clear.degenerate,
            Some("no spread across seeds: no interval")
        );
        assert!(!clear.settled);
        let (n, variants) = v.next.clone().unwrap();
        assert_eq!(n, 5);
        assert!(variants.contains(&0) && variants.contains(&2));
        let spent = alpha_spent(0.05, 3.0 / 7.0, 3.0);
        assert!((spent - 0.003_935_860_058).abs() < 1e-9);
        assert!(v.explanation().contains("looks at 3 of at most 7 seeds"));
    }
}
