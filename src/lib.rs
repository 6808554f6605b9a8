//! unet-lab: U-Net segmentation experiments described in TOML, trained with Burn, tracked in
//! Parquet and reported as plots, overlays, GIFs and pages.
//!
//! The pipeline, one module per stage: [`config`] → [`data`] → [`model`] → [`train`] →
//! [`track`] → [`report`].

// No function outside the tests over `clippy.toml`'s 80 lines: each stage reads as named steps.
#![cfg_attr(not(test), deny(clippy::too_many_lines))]

pub mod bench;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod kernels;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod predict;
pub mod report;
pub mod study;
pub mod track;
pub mod train;
pub mod util;
