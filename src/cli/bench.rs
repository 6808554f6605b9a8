//! `unet-lab bench`: training and inference throughput on random data.

use anyhow::Result;
use clap::Args;

use super::exit;
use crate::config::{Activation, BackendKind, LossKind, Norm, OptimizerKind, Precision};
use crate::kernels::ConvPath;

/// Training and inference throughput of the U-Net on random data.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  unet-lab bench --widths 3,6,12,24,48 --batch-size 8 --size 128
  unet-lab bench --norm batch --activation elu --json")]
pub struct BenchArgs {
    /// Channels per level.
    #[arg(long, value_delimiter = ',', default_value = "3,6,12,24,48")]
    pub widths: Vec<usize>,
    /// Square input size.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Images per step (`train.batch_size`; --batch-size works too).
    #[arg(long, visible_alias = "batch-size", default_value_t = 8)]
    pub batch: usize,
    /// The loss (`train.loss`).
    #[arg(long, value_enum, default_value = "mse")]
    pub loss: LossKind,
    /// The optimizer (`train.optimizer`; --optimizer works too).
    #[arg(long, visible_alias = "optimizer", value_enum, default_value = "adam")]
    pub optim: OptimizerKind,
    /// Timed steps (each phase).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// The backend to measure (cuda and wgpu need their cargo features).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendKind,
    /// The GPU (CUDA index) or wgpu adapter (the backend's default without it).
    #[arg(long, value_name = "N")]
    pub device: Option<usize>,
    /// Float type on GPU backends.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also split a training step into forward, backward and optimizer time.
    #[arg(long)]
    pub profile: bool,
    /// Convolution implementations, to measure one against another.
    #[arg(long, value_enum, default_value = "auto")]
    pub kernels: ConvPath,
    /// The norm after each 3×3 convolution (the Kaggle winners' network: --norm batch
    /// --activation elu).
    #[arg(long, value_enum, default_value = "none")]
    pub norm: Norm,
    /// The activation after each 3×3 convolution (and its norm).
    #[arg(long, value_enum, default_value = "relu")]
    pub activation: Activation,
    /// Add the presence head (one logit per image, from the bottleneck) and its loss.
    #[arg(long)]
    pub presence_head: bool,
}

pub(crate) fn execute(args: BenchArgs) -> Result<u8> {
    let BenchArgs {
        widths,
        size,
        batch,
        loss,
        optim,
        steps,
        warmup,
        backend,
        device,
        precision,
        json,
        profile,
        kernels,
        norm,
        activation,
        presence_head,
    } = args;
    if let Err(msg) = check_sizes(&widths, size, batch, steps) {
        eprintln!("error: {msg}");
        return Ok(exit::CONFIG);
    }
    if let Err(msg) =
        crate::model::check_input_size([size, size], &widths, crate::config::Padding::Same)
    {
        eprintln!("error: --size: {msg}");
        return Ok(exit::CONFIG);
    }
    let result = crate::bench::bench(&crate::bench::BenchOptions {
        widths,
        size,
        batch,
        loss,
        optimizer: optim,
        steps,
        warmup,
        backend,
        device,
        precision,
        profile,
        kernels,
        norm,
        activation,
        presence_head,
    })?;
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("{}", result.human());
    }
    Ok(0)
}

/// The limits the experiment files have (`model.widths`, `data.size`, `train.batch_size`):
/// beyond them a network does not fit in memory, or its size arithmetic overflows.
fn check_sizes(widths: &[usize], size: usize, batch: usize, steps: usize) -> Result<(), String> {
    if widths.is_empty() || widths.len() > 8 || widths.iter().any(|&w| w == 0 || w > 4096) {
        return Err("--widths: 1 to 8 levels of 1 to 4096 channels".into());
    }
    if !(8..=8192).contains(&size) {
        return Err(format!("--size {size}: must be 8 to 8192"));
    }
    if !(1..=4096).contains(&batch) {
        return Err(format!("--batch {batch}: must be 1 to 4096"));
    }
    if steps == 0 {
        return Err("--steps: must be at least 1".into());
    }
    Ok(())
}
