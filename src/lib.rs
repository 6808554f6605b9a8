//! unet-lab: U-Net segmentation experiments described in TOML, trained with Burn, tracked in
//! Parquet and reported as plots, overlays, GIFs and pages.
//!
//! The layers, bottom to top (each uses only its own and those below; `tests/layering.rs`):
//! [`util`], [`memory`], [`metrics`] → [`kernels`] → [`config`] → [`data`] → [`device`] →
//! [`model`] → [`track`] → [`train`] → [`report`] → [`predict`], [`bench`] → [`study`] →
//! [`cli`].

// No function outside the tests over `clippy.toml`'s 80 lines: each stage reads as named steps.
#![cfg_attr(not(test), deny(clippy::too_many_lines))]

// The layers in their order, bottom first.
pub mod memory;
pub mod metrics;
pub mod util;

pub mod kernels;

pub mod config;

pub mod data;

pub mod device;

pub mod model;

pub mod track;

pub mod train;

pub mod report;

pub mod bench;
pub mod predict;

pub mod study;

pub mod cli;
