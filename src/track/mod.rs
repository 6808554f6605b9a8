//! Everything a run leaves on disk: metric tables, manifests, checkpoints, prediction
//! snapshots — each written atomically.

pub mod checkpoint;
pub mod fsutil;
pub mod manifest;
pub mod snapshots;
pub mod tables;

pub use fsutil::{DirLock, write_atomic};
pub use manifest::{ExperimentManifest, RunRecord, RunStatus, VariantManifest};
pub use tables::{EpochRow, StepRow, Tracker};
