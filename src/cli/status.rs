//! `unet-lab status`: where a study stands and what finishes it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::report::verdicts::{SeedsNow, Verdicts};
use crate::study::{Program, Share, WorkerCommand};
use crate::track::status::{StudyStatus, TaskState, index_ranges};
use crate::util::shell_quote;

#[derive(Args, Debug)]
#[command(after_help = "Example: unet-lab status reports/ablation")]
pub struct StatusArgs {
    /// An experiment directory (e.g. reports/ablation).
    pub dir: PathBuf,
    /// Print one JSON object (tasks, counts, complete, finish commands).
    #[arg(long)]
    pub json: bool,
}

const STATES: [TaskState; 6] = [
    TaskState::Done,
    TaskState::Running,
    TaskState::Failed,
    TaskState::Diverged,
    TaskState::Interrupted,
    TaskState::Missing,
];

/// The commands that train every unfinished task.
fn finish_commands(status: &StudyStatus) -> Vec<String> {
    let unfinished = status.unfinished();
    if unfinished.is_empty() {
        return Vec::new();
    }
    let mut commands = Vec::new();
    let array = status.dir.join("slurm").join("array.sbatch");
    if array.exists() {
        commands.push(format!(
            "sbatch --array={} {}",
            index_ranges(&unfinished),
            shell_quote(&array.display().to_string())
        ));
    }
    // The backend the study was planned with is part of every task's config hash.
    let backend = status
        .backend
        .as_deref()
        .and_then(|b| <crate::config::BackendKind as clap::ValueEnum>::from_str(b, false).ok());
    let run = WorkerCommand {
        backend,
        edits: status.edits.clone(),
        // A plain run trains every task that is not finished (and skips the others).
        share: match unfinished.as_slice() {
            [only] => Share::Task(*only),
            _ => Share::Whole,
        },
        ..WorkerCommand::new(Program::OnPath, &status.source_file, &status.out)
    };
    commands.push(run.shell());
    commands
}

/// A study with seeds until decided: which look it is at, and the planned tasks of later looks
/// that no verdict needs now (taken out of the status: they are not unfinished work).
fn seeds_until_decided(status: &mut StudyStatus) -> Result<Option<String>> {
    let data = crate::report::ExperimentData::load(&status.dir)?;
    let rules = data.manifest.rules();
    let order = data.manifest.seeds.clone();
    if !rules.sequential(order.len()) {
        return Ok(None);
    }
    let verdicts = Verdicts::of(&data);
    let now = SeedsNow::of(&data, verdicts.as_ref());
    let needed = |t: &crate::track::status::TaskStatus| now.includes(&t.variant, t.seed);
    let before = status.tasks.len();
    status
        .tasks
        .retain(|t| t.state != TaskState::Missing || needed(t));
    let later = before - status.tasks.len();
    let looks = rules.looks(order.len());
    let line = match &verdicts {
        None => format!(
            "seeds until decided: first look ({} seeds per variant)",
            rules.first_seeds
        ),
        Some(v) => {
            let why = if v.undecided() == 0 {
                "every contrast is decided, so no seed is added".to_string()
            } else if let Some((n, variants)) = &v.next {
                format!(
                    "{} undecided, so the next look trains {n} seeds of {} variant(s)",
                    v.undecided(),
                    variants.len()
                )
            } else if v.provisional || v.looks.last() != looks.last() {
                format!(
                    "{} undecided; this look's seeds are still training",
                    v.undecided()
                )
            } else {
                format!(
                    "{} undecided with the most seeds ({}) used",
                    v.undecided(),
                    v.max_seeds
                )
            };
            format!(
                "seeds until decided: look {} of at most {} ({} seeds): {} of {} contrasts decided; {why}",
                v.looks.len(),
                looks.len(),
                v.looks.last().copied().unwrap_or(0),
                v.contrasts.len() - v.undecided(),
                v.contrasts.len()
            )
        }
    };
    Ok(Some(format!(
        "{line} ({later} planned task(s) of later looks not needed now)"
    )))
}

/// A study with seeds until decided: the line saying where it stands and the unfinished tasks
/// of its current round (SLURM's `--array` form), none when nothing is left to train.
pub(super) fn current_round(exp_dir: &std::path::Path) -> Result<(String, Option<String>)> {
    let mut status = StudyStatus::read(exp_dir)?;
    let line = seeds_until_decided(&mut status)?.unwrap_or_default();
    let unfinished = status.unfinished();
    Ok((
        line,
        (!unfinished.is_empty()).then(|| index_ranges(&unfinished)),
    ))
}

pub(crate) fn execute(args: StatusArgs) -> Result<u8> {
    let mut status = StudyStatus::read(&args.dir)?;
    let round = seeds_until_decided(&mut status)?;
    let total = status.tasks.len();
    let done = status.count(TaskState::Done);
    let finish = finish_commands(&status);
    let superseded = crate::track::supersede::list(&status.dir);
    if args.json {
        let counts: serde_json::Map<String, serde_json::Value> = STATES
            .iter()
            .map(|s| (s.as_str().to_string(), status.count(*s).into()))
            .collect();
        let json = serde_json::json!({
            "experiment": status.experiment,
            "dir": status.dir,
            "complete": status.complete(),
            "total": total,
            "counts": counts,
            "unfinished": status.unfinished(),
            "finish": finish,
            "tasks": status.tasks,
            "superseded": superseded,
            "seeds_until_decided": round,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print_tasks(&status);
        print_superseded(&status, &superseded);
        if let Some(round) = &round {
            println!("{round}");
        }
        let others: Vec<String> = STATES[1..]
            .iter()
            .filter(|s| status.count(**s) > 0)
            .map(|s| format!("{} {}", status.count(*s), s.as_str()))
            .collect();
        let mut line = format!("{done}/{total} complete");
        if !others.is_empty() {
            line.push_str(&format!(" ({})", others.join(", ")));
        }
        println!("{line}");
        if status.complete() {
            println!(
                "the study is complete: unet-lab report {}",
                status.dir.display()
            );
        } else if !finish.is_empty() {
            println!("to finish the study:");
            for c in &finish {
                println!("  {c}");
            }
        } else {
            println!("every unfinished task is running; check again later");
        }
    }
    Ok(if status.complete() {
        0
    } else {
        super::exit::INCOMPLETE
    })
}

/// One line per task: its state and, for a stopped run, why.
fn print_tasks(status: &StudyStatus) {
    println!("{} ({})", status.experiment, status.dir.display());
    for t in &status.tasks {
        let mut detail = match t.state {
            TaskState::Done => format!(
                "done, best Dice {}",
                t.best_dice.map_or("—".into(), |d| format!("{d:.4}"))
            ),
            TaskState::Running => format!(
                "running ({}), epoch {}/{}",
                t.holder
                    .as_ref()
                    .map_or("holder unknown".into(), |h| h.describe()),
                t.epochs_done,
                t.epochs
            ),
            TaskState::Interrupted => {
                format!("interrupted after epoch {}/{}", t.epochs_done, t.epochs)
            }
            other => other.as_str().to_string(),
        };
        if let (Some(m), TaskState::Failed | TaskState::Diverged | TaskState::Interrupted) =
            (&t.message, t.state)
        {
            detail.push_str(&format!(": {m}"));
        }
        let run = crate::track::RunId::new(t.seed, t.fold);
        println!("  {:>4}  {}  {run}  {detail}", t.index, t.variant);
    }
}

/// The runs set aside in `superseded/`, which no score uses.
fn print_superseded(status: &StudyStatus, runs: &[crate::track::supersede::SupersededRun]) {
    if runs.is_empty() {
        return;
    }
    println!(
        "superseded (kept in {}; not scored; `unet-lab prune {}` deletes them):",
        status.dir.join(crate::track::supersede::DIR).display(),
        status.dir.display()
    );
    for r in runs {
        let best = r
            .best_dice
            .map_or(String::new(), |d| format!(", best Dice {d:.4}"));
        println!(
            "        {}  {}  set aside {}  ({}{best})",
            r.variant,
            r.run,
            r.when,
            r.status.as_deref().unwrap_or("no record")
        );
    }
}
