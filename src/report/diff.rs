//! What `compare` says about two studies: each variant of a study matched to the reference
//! study's variant of the same name (or, failing that, of the same config), the config keys
//! that differ, and the test and validation Dice of both with their difference — over the
//! seeds both trained, with a paired t interval.

use serde::Serialize;
use serde_json::Value;

use super::load::{ExperimentData, VariantData};
use super::stats::{PairedT, mean};

/// How a variant found its counterpart in the reference study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchedBy {
    Name,
    Config,
}

/// One config key with different values in the two variants (compact JSON values).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyDiff {
    pub key: String,
    pub reference: String,
    pub other: String,
}

/// One score of both variants and its difference (other − reference).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreDiff {
    /// Means over each variant's own seeds with a result (failed runs counted).
    pub reference: Option<f64>,
    pub other: Option<f64>,
    pub reference_seeds: usize,
    pub other_seeds: usize,
    /// Seeds both have a result for: the difference is their mean paired difference.
    pub paired_seeds: usize,
    pub difference: Option<f64>,
    /// The 95% paired t interval of the difference (two or more paired seeds with spread).
    pub interval: Option<[f64; 2]>,
    /// Why there is no interval, when there is none.
    pub note: Option<String>,
}

/// A variant of another study against its counterpart in the reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantMatch {
    pub reference_variant: String,
    pub other_variant: String,
    pub matched_by: MatchedBy,
    pub differing_keys: Vec<KeyDiff>,
    pub test_dice: ScoreDiff,
    pub val_dice: ScoreDiff,
}

/// Another study against the reference study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyDiff {
    pub reference: String,
    pub other: String,
    pub matches: Vec<VariantMatch>,
    /// Variants of the other study with no counterpart (by name or config).
    pub unmatched: Vec<String>,
}

/// Every study after the first, against the first.
pub fn against_first(studies: &[ExperimentData]) -> Vec<StudyDiff> {
    let Some((reference, others)) = studies.split_first() else {
        return Vec::new();
    };
    others.iter().map(|o| study_diff(reference, o)).collect()
}

fn study_diff(reference: &ExperimentData, other: &ExperimentData) -> StudyDiff {
    let configs = |e: &ExperimentData| -> Vec<Vec<(String, String)>> {
        e.variants.iter().map(flat_config).collect()
    };
    let (ref_configs, other_configs) = (configs(reference), configs(other));
    let mut matches = Vec::new();
    let mut unmatched = Vec::new();
    for (v, config) in other.variants.iter().zip(&other_configs) {
        let by_name = reference.variants.iter().position(|r| r.name == v.name);
        let found = by_name.map(|i| (i, MatchedBy::Name)).or_else(|| {
            ref_configs
                .iter()
                .position(|c| !c.is_empty() && c == config)
                .map(|i| (i, MatchedBy::Config))
        });
        match found {
            Some((i, matched_by)) => {
                let r = &reference.variants[i];
                matches.push(VariantMatch {
                    reference_variant: r.name.clone(),
                    other_variant: v.name.clone(),
                    matched_by,
                    differing_keys: differing_keys(&ref_configs[i], config),
                    test_dice: score_diff(r, v, |s| s.test_dice),
                    val_dice: score_diff(r, v, |s| s.best_dice),
                });
            }
            None => unmatched.push(v.name.clone()),
        }
    }
    StudyDiff {
        reference: reference.manifest.name.clone(),
        other: other.manifest.name.clone(),
        matches,
        unmatched,
    }
}

/// The variant's config as dotted keys and compact JSON values (arrays are values); empty
/// without a manifest.
fn flat_config(v: &VariantData) -> Vec<(String, String)> {
    let Some(m) = &v.manifest else {
        return Vec::new();
    };
    crate::util::flatten_json_text(&serde_json::to_value(&m.config).unwrap_or(Value::Null))
}

fn differing_keys(reference: &[(String, String)], other: &[(String, String)]) -> Vec<KeyDiff> {
    let value = |list: &[(String, String)], key: &str| {
        list.iter()
            .find(|(k, _)| k == key)
            .map_or_else(|| "—".to_string(), |(_, v)| v.clone())
    };
    let mut keys: Vec<&String> = reference.iter().chain(other).map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (r, o) = (value(reference, k), value(other, k));
            (r != o).then(|| KeyDiff {
                key: k.clone(),
                reference: r,
                other: o,
            })
        })
        .collect()
}

fn score_diff(
    reference: &VariantData,
    other: &VariantData,
    score: impl Fn(&super::load::SeedResult) -> Option<f64>,
) -> ScoreDiff {
    let per_seed = |v: &VariantData| -> Vec<(u64, f64)> {
        v.seed_results()
            .iter()
            .filter_map(|s| score(s).map(|x| (s.seed, x)))
            .collect()
    };
    let (r, o) = (per_seed(reference), per_seed(other));
    let values = |list: &[(u64, f64)]| list.iter().map(|(_, x)| *x).collect::<Vec<f64>>();
    let differences: Vec<f64> = o
        .iter()
        .filter_map(|(seed, x)| r.iter().find(|(s, _)| s == seed).map(|(_, y)| x - y))
        .collect();
    let test = PairedT::of(&differences);
    let (interval, note) = match (differences.len(), test) {
        (0, _) => (None, Some("no seed in common: no difference".to_string())),
        (1, _) => (None, Some("one seed in common: no interval".to_string())),
        (_, Some(t)) if t.p_value.is_none() => (
            None,
            Some("the same difference on every seed: no interval".to_string()),
        ),
        (_, Some(t)) => {
            let (lo, hi) = t.interval(0.95);
            (Some([lo, hi]), None)
        }
        (_, None) => (None, None),
    };
    ScoreDiff {
        reference: mean(&values(&r)),
        other: mean(&values(&o)),
        reference_seeds: r.len(),
        other_seeds: o.len(),
        paired_seeds: differences.len(),
        difference: mean(&differences),
        interval,
        note,
    }
}

impl ScoreDiff {
    /// "+0.0123 [−0.0100, +0.0346]", the difference alone with no interval, "—" without one.
    pub fn difference_text(&self) -> String {
        match (self.difference, self.interval) {
            (None, _) => "—".into(),
            (Some(d), None) => format!("{d:+.4}"),
            (Some(d), Some([lo, hi])) => format!("{d:+.4} [{lo:+.4}, {hi:+.4}]"),
        }
    }
}

impl VariantMatch {
    /// "train.lr 0.003 → 0.01; model.widths [8,16] → [4,8]", or "same config".
    pub fn keys_text(&self) -> String {
        if self.differing_keys.is_empty() {
            return "same config".into();
        }
        self.differing_keys
            .iter()
            .map(|d| format!("{} {} → {}", d.key, d.reference, d.other))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl StudyDiff {
    /// "B against A": the line above the table, naming its A and B.
    pub fn title(&self) -> String {
        format!("{} (B) against {} (A)", self.other, self.reference)
    }

    /// The table's heads and rows (terminal and page), A the reference and B the other.
    pub fn table(&self) -> (Vec<String>, Vec<Vec<String>>) {
        let heads = [
            "variant",
            "matched by",
            "differs from A",
            "test Dice A · B",
            "test B − A [95%]",
            "best val Dice A · B",
            "val B − A [95%]",
            "paired seeds",
        ]
        .map(String::from)
        .to_vec();
        let both = |s: &ScoreDiff| {
            let f = |x: Option<f64>| x.map_or_else(|| "—".to_string(), |x| format!("{x:.4}"));
            format!("{} · {}", f(s.reference), f(s.other))
        };
        let rows = self
            .matches
            .iter()
            .map(|m| {
                let name = if m.reference_variant == m.other_variant {
                    m.other_variant.clone()
                } else {
                    format!("{} ~ {}", m.reference_variant, m.other_variant)
                };
                vec![
                    name,
                    match m.matched_by {
                        MatchedBy::Name => "name".into(),
                        MatchedBy::Config => "config".into(),
                    },
                    m.keys_text(),
                    both(&m.test_dice),
                    m.test_dice.difference_text(),
                    both(&m.val_dice),
                    m.val_dice.difference_text(),
                    m.val_dice.paired_seeds.to_string(),
                ]
            })
            .collect();
        (heads, rows)
    }
}
