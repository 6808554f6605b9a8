//! How a study decides: the `[decide]` table, the top-level `reference`, and `seeds` given as
//! a plan (`seeds = { min = 3, max = 20, step = 2 }`) for seeds until decided.

use serde::{Deserialize, Serialize};

use super::schema::SectionReader;
use super::tree::{ConfigError, Node, Source, Table, Value};

/// The rules every verdict of a study follows (defaults: α 0.05 family-wise, a margin of 0.02
/// Dice, no sequential looks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecideRules {
    /// Family-wise error level over all contrasts the page shows (Holm), and over all looks.
    pub alpha: f64,
    /// The smallest difference in Dice that matters: inside ±margin is "equivalent".
    pub margin: f64,
    /// Power the "seeds needed" estimate aims at.
    pub power: f64,
    /// Exponent ρ of the alpha-spending function α·tᵖ (3 spends little on early looks).
    pub spending: f64,
    /// Seeds of the first look; the study's seed list holds the most it may use.
    pub first_seeds: usize,
    /// Seeds added to undecided contrasts per round (0: the seeds are fixed).
    pub step: usize,
    /// The variant the others are compared with (explicit variants; default the first).
    #[serde(default)]
    pub reference: Option<String>,
}

impl Default for DecideRules {
    fn default() -> Self {
        DecideRules {
            alpha: 0.05,
            margin: 0.02,
            power: 0.8,
            spending: 3.0,
            first_seeds: 1,
            step: 0,
            reference: None,
        }
    }
}

impl DecideRules {
    /// Seeds are added until decided (more seeds allowed than the first look uses).
    pub fn sequential(&self, max_seeds: usize) -> bool {
        self.step > 0 && self.first_seeds < max_seeds
    }

    /// The seed counts at which verdicts are taken: the first look, then every `step` more,
    /// ending at `max_seeds`.
    pub fn looks(&self, max_seeds: usize) -> Vec<usize> {
        let mut looks = vec![self.first_seeds.min(max_seeds)];
        if self.step > 0 {
            while *looks.last().expect("one look") < max_seeds {
                let next = (looks.last().expect("one look") + self.step).min(max_seeds);
                looks.push(next);
            }
        }
        looks
    }
}

/// The `seeds` key: a list of seeds, or a plan `{ min, max, step }` of seeds 0..max.
pub(super) struct SeedPlan {
    pub seeds: Vec<u64>,
    /// `min` and `step` of a plan.
    pub sequential: Option<(usize, usize)>,
}

/// Reads `seeds`, either form; `None` when absent.
pub(super) fn read_seeds(
    source: &Source,
    top: &mut SectionReader<'_>,
) -> Result<Option<SeedPlan>, ConfigError> {
    let Some(node) = top.peek("seeds") else {
        top.allow(&["seeds"]);
        return Ok(None);
    };
    let Value::Table(table) = &node.value else {
        let seeds: Vec<u64> = top
            .int_list("seeds", 0, i64::MAX, 1..1001)?
            .map(|s| s.into_iter().map(|v| v as u64).collect())
            .unwrap_or_default();
        let mut sorted = seeds.clone();
        sorted.sort();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(source.error(Some(&node.span), Some("seeds"), "seeds must be distinct"));
        }
        return Ok(Some(SeedPlan {
            seeds,
            sequential: None,
        }));
    };
    top.allow(&["seeds"]);
    let mut plan = SectionReader::new(source, "seeds", table, Some(node.span.clone()));
    let min = plan.int("min", 2, 1000)?.unwrap_or(3) as usize;
    let max = plan.int("max", 2, 1000)?;
    let step = plan.int("step", 1, 1000)?.unwrap_or(2) as usize;
    plan.finish()?;
    let Some(max) = max else {
        return Err(source.error(
            Some(&node.span),
            Some("seeds.max"),
            "a seed plan needs `max`, the most seeds a variant may use (e.g. seeds = { min = 3, \
             max = 20, step = 2 })",
        ));
    };
    let max = max as usize;
    if max < min {
        return Err(source.error(
            Some(&node.span),
            Some("seeds.max"),
            format!("max ({max}) must be at least min ({min})"),
        ));
    }
    Ok(Some(SeedPlan {
        seeds: (0..max as u64).collect(),
        sequential: Some((min, step)),
    }))
}

/// Reads `[decide]` (`alpha`, `margin`, `power`, `spending`, `max_seeds`, `step`) and settles
/// the study's seeds: `decide.max_seeds` extends a seed list with the next integers.
pub(super) fn read_decide(
    source: &Source,
    table: Option<(&super::tree::Key, &Table)>,
    seeds: SeedPlan,
    reference: Option<String>,
) -> Result<(Vec<u64>, DecideRules), ConfigError> {
    let mut rules = DecideRules {
        reference,
        first_seeds: seeds.seeds.len(),
        ..DecideRules::default()
    };
    let mut all_seeds = seeds.seeds;
    if let Some((min, step)) = seeds.sequential {
        rules.first_seeds = min;
        rules.step = step;
    }
    let Some((key, table)) = table else {
        return Ok((all_seeds, rules));
    };
    let mut r = SectionReader::new(source, "decide", table, Some(key.span.clone()));
    let open_unit =
        |v: f64| (!(v > 0.0 && v < 0.5)).then(|| "it must be above 0 and below 0.5".into());
    rules.alpha = r.float("alpha", open_unit)?.unwrap_or(rules.alpha);
    rules.margin = r
        .float("margin", |v| {
            (!(v > 0.0 && v < 1.0))
                .then(|| "it must be above 0 and below 1 (a Dice difference)".into())
        })?
        .unwrap_or(rules.margin);
    rules.power = r
        .float("power", |v| {
            (!(0.5..1.0).contains(&v)).then(|| "it must be at least 0.5 and below 1".into())
        })?
        .unwrap_or(rules.power);
    rules.spending = r
        .float("spending", |v| {
            (!(0.5..=10.0).contains(&v)).then(|| "it must be between 0.5 and 10".into())
        })?
        .unwrap_or(rules.spending);
    let max_node: Option<&Node> = r.peek("max_seeds");
    let max_seeds = r.int("max_seeds", 2, 1000)?;
    let step = r.int("step", 1, 1000)?;
    r.finish()?;
    let at = |node: Option<&Node>| node.map(|n| n.span.clone()).or(Some(key.span.clone()));
    match (max_seeds.map(|m| m as usize), seeds.sequential) {
        (Some(_), Some(_)) => {
            return Err(source.error(
                at(max_node).as_ref(),
                Some("decide.max_seeds"),
                "the seed plan already gives the maximum (seeds.max); write it once",
            ));
        }
        (Some(max), None) => {
            if max < all_seeds.len() {
                return Err(source.error(
                    at(max_node).as_ref(),
                    Some("decide.max_seeds"),
                    format!("{max} is fewer than the {} seeds listed", all_seeds.len()),
                ));
            }
            let mut next = all_seeds.iter().max().map_or(0, |m| m + 1);
            while all_seeds.len() < max {
                all_seeds.push(next);
                next += 1;
            }
            rules.step = step.map_or(2, |s| s as usize);
        }
        (None, Some(_)) => rules.step = step.map_or(rules.step, |s| s as usize),
        (None, None) if step.is_some() => {
            return Err(source.error(
                Some(&key.span),
                Some("decide.step"),
                "decide.step needs decide.max_seeds (the most seeds a variant may use)",
            ));
        }
        (None, None) => {}
    }
    Ok((all_seeds, rules))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::parse_str;
    use super::*;

    fn parse(text: &str) -> crate::config::Experiment {
        parse_str(Path::new("t.toml"), text.to_string()).unwrap()
    }

    #[test]
    fn a_seed_plan_expands_to_its_most_seeds_and_looks() {
        let e = parse("seeds = { min = 3, max = 8, step = 2 }\n[train]\nepochs = 1\n");
        assert_eq!(e.seeds, (0..8).collect::<Vec<u64>>());
        assert_eq!((e.decide.first_seeds, e.decide.step), (3, 2));
        assert!(e.decide.sequential(8));
        assert_eq!(e.decide.looks(8), [3, 5, 7, 8]);
        // Every task is planned; a round trains only its share (study::rounds).
        assert_eq!(e.tasks().len(), 8);
    }

    #[test]
    fn max_seeds_extends_a_seed_list_and_the_defaults_hold_without_decide() {
        let e = parse(
            "seeds = [1, 2, 3]\nreference = \"b\"\n[decide]\nmax_seeds = 6\nalpha = 0.1\nmargin = 0.05\n\
             [[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\ntrain.lr = 0.01\n",
        );
        assert_eq!(e.seeds, [1, 2, 3, 4, 5, 6]);
        assert_eq!(
            e.decide,
            DecideRules {
                alpha: 0.1,
                margin: 0.05,
                first_seeds: 3,
                step: 2,
                reference: Some("b".into()),
                ..DecideRules::default()
            }
        );
        let plain = parse("seeds = [4, 5]\n");
        assert_eq!(plain.decide.first_seeds, 2);
        assert!(!plain.decide.sequential(2));
        assert_eq!(plain.decide.looks(2), [2]);
    }
}
