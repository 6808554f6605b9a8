//! Everything a run leaves on disk: metric tables, manifests, checkpoints, prediction
//! snapshots — each written atomically, each run in its own directory behind its own lock —
//! and the study-wide files planned once (`plan.rs`) or merged from the runs (`merge.rs`).

pub mod checkpoint;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod merge;
pub mod migrate;
pub mod plan;
pub mod snapshots;
pub mod status;
pub mod supersede;
pub mod tables;

pub use crate::util::fs::write_atomic;
pub use layout::RunId;
pub use lock::{Claim, Holder, RunLock};
pub use manifest::{
    ExperimentManifest, RunManifest, RunRecord, RunStatus, TestScore, VariantManifest,
};
pub use plan::{Plan, PlannedTask};
pub use tables::{EpochRow, StepRow, Tracker};
