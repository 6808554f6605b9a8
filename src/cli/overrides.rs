//! The flags that change a study from the command line — `--set`, `--grid`, `--epochs`,
//! `--backend` — shared by `run`, `validate`, `tasks` and `slurm`, so that every one of them
//! expands the same study.

use clap::Args;

use crate::config::{BackendKind, Edit};
use crate::study::Overrides;

#[derive(Args, Debug, Clone, Default)]
pub struct OverrideArgs {
    /// Set a key of every variant, typed and checked as in the file (repeatable), e.g.
    /// --set train.lr=1e-4 --set model.widths=[8,16,32]. The study is named after its
    /// overrides, so it gets its own directory.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = assignment)]
    pub set: Vec<String>,
    /// Add a grid axis, or replace the levels of the file's (repeatable), e.g.
    /// --grid train.optimizer=adam,sgd.
    #[arg(long = "grid", value_name = "KEY=V1,V2", value_parser = assignment)]
    pub grid: Vec<String>,
    /// Shorthand for --set train.epochs=N (a smoke test: --epochs 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: Option<u64>,
    /// Train every variant on this backend (part of every task's config hash).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
}

/// `KEY=VALUE` with a well-formed key, checked as clap parses the flag.
fn assignment(text: &str) -> Result<String, String> {
    crate::config::split_assignment(text)?;
    Ok(text.to_string())
}

impl OverrideArgs {
    pub fn edits(&self) -> Vec<Edit> {
        let sets = self.set.iter().map(Edit::set);
        let grids = self.grid.iter().map(Edit::grid);
        sets.chain(grids)
            .chain(self.epochs.map(Edit::epochs))
            .collect()
    }

    pub fn overrides(&self) -> Overrides {
        Overrides {
            backend: self.backend,
            edits: self.edits(),
        }
    }
}
