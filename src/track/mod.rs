//! Everything a run leaves on disk: metric tables, manifests, checkpoints, prediction
//! snapshots — each written atomically, each run in its own directory behind its own lock —
//! and the study-wide files planned once (`plan.rs`) or merged from the runs (`merge.rs`).

pub mod checkpoint;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod merge;
pub mod migrate;
pub mod mlflow;
pub mod plan;
pub mod snapshots;
pub mod status;
pub mod supersede;
pub mod tables;

pub(crate) use crate::util::fs::write_atomic;
pub(crate) use layout::RunId;
pub(crate) use lock::Claim;
pub use lock::RunLock;
pub(crate) use manifest::{BestSoFar, ExperimentManifest, RunRecord, TestScore};
pub use manifest::{RunManifest, RunStatus, VariantManifest};
pub(crate) use plan::{Plan, PlannedTask};
pub use tables::{EpochRow, StepRow, Tracker};

/// The manifest of a trained variant directory (`predict`, `tune`): only a read. A study of
/// the single-file layout is migrated first by [`migrate::migrate_study_of`].
pub(crate) fn open_variant(variant_dir: &std::path::Path) -> anyhow::Result<VariantManifest> {
    use anyhow::Context;
    VariantManifest::load(variant_dir)?.with_context(|| {
        format!(
            "{} is not a variant directory written by `unet-lab run` (no manifest.json)",
            variant_dir.display()
        )
    })
}
