//! Seeds until decided: a study with a seed plan (`seeds = { min, max, step }` or
//! `decide.max_seeds`) trains its first `min` seeds, takes the verdicts, and adds `step` seeds
//! to the variants of undecided contrasts, round after round, until every contrast is decided
//! or the most seeds are used.
//!
//! Which tasks a round holds is read off the study's directory, not kept in memory: a
//! variant needs its first `min` seeds, every seed it has started, and — when the verdicts
//! (`report::verdicts`, replaying the looks) name it for the next look — that look's seeds.
//! So `run` here, the worker processes of `--jobs` and a rerun after a crash all agree on the
//! round without talking to each other.

use std::path::Path;

use anyhow::Result;

use super::{RunOptions, Study, StudyTask, Summary};
use crate::report::ExperimentData;
use crate::report::verdicts::{SeedsNow, Verdicts};

/// The study's state in its directory: the verdicts so far, and the seeds each variant needs
/// (none before the study's first plan: then every variant trains the first look's).
pub(crate) struct Round {
    pub verdicts: Option<Verdicts>,
    seeds: Option<SeedsNow>,
    first: usize,
}

impl Round {
    /// Reads the round off `exp_dir` (a study not yet started: the first look).
    pub(crate) fn read(study: &Study, exp_dir: &Path) -> Result<Round> {
        let first = study.experiment.decide.first_seeds;
        if !exp_dir.join("experiment.json").exists() {
            return Ok(Round {
                verdicts: None,
                seeds: None,
                first,
            });
        }
        let data = ExperimentData::load(exp_dir)?;
        let verdicts = Verdicts::of(&data);
        let seeds = Some(SeedsNow::of(&data, verdicts.as_ref()));
        Ok(Round {
            verdicts,
            seeds,
            first,
        })
    }

    /// The tasks of `tasks` this round holds.
    pub(crate) fn tasks<'a>(&self, study: &Study, tasks: &[&'a StudyTask]) -> Vec<&'a StudyTask> {
        let order = &study.experiment.seeds;
        tasks
            .iter()
            .copied()
            .filter(|t| match &self.seeds {
                Some(now) => now.includes(&t.variant.slug, t.task.seed),
                None => order.iter().position(|s| *s == t.task.seed).unwrap_or(0) < self.first,
            })
            .collect()
    }

    /// "round 2 (5 seeds): 3 contrasts undecided".
    pub(crate) fn describe(&self) -> String {
        let most = self.seeds.as_ref().map_or(self.first, SeedsNow::most);
        match &self.verdicts {
            None => format!("first look ({most} seeds per variant)"),
            Some(v) => format!(
                "look {} of at most {} ({most} seeds for the variants still undecided): {} of {} \
                 contrasts undecided",
                v.looks.len() + usize::from(v.next.is_some()),
                v.rules.looks(v.max_seeds).len(),
                v.undecided(),
                v.contrasts.len()
            ),
        }
    }
}

/// Trains round after round until every contrast is decided or the seeds run out.
pub(super) fn run_until_decided(
    study: &Study,
    tasks: &[&StudyTask],
    opts: &RunOptions,
) -> Result<Summary> {
    let exp_dir = study.dir(&opts.out);
    let mut total = Summary::default();
    let mut trained: Vec<usize> = Vec::new();
    loop {
        let round = Round::read(study, &exp_dir)?;
        let this_round: Vec<&StudyTask> = round
            .tasks(study, tasks)
            .into_iter()
            .filter(|t| !trained.contains(&t.task.index))
            .collect();
        if this_round.is_empty() {
            if let Some(v) = &round.verdicts {
                crate::info!(
                    "seeds until decided: {} of {} contrasts decided after {} look(s); {}",
                    v.contrasts.len() - v.undecided(),
                    v.contrasts.len(),
                    v.looks.len(),
                    if v.undecided() == 0 {
                        "stopping".to_string()
                    } else {
                        format!("the most seeds ({}) are used", v.max_seeds)
                    }
                );
            }
            return Ok(total);
        }
        crate::info!(
            "seeds until decided: {} — training {} task(s)",
            round.describe(),
            this_round.len()
        );
        trained.extend(this_round.iter().map(|t| t.task.index));
        let summary = study.run_tasks(&this_round, opts)?;
        total.merge(&summary);
        let stopped = summary.errored + summary.interrupted > 0
            || crate::train::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
        if stopped || summary.busy > 0 {
            // Unfinished work: the next look cannot be taken yet; rerunning goes on from here.
            return Ok(total);
        }
        crate::track::merge::merge(&exp_dir)?;
    }
}
