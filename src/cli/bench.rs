//! `unet-lab bench`: training and inference throughput on random data.

use anyhow::Result;
use clap::Args;

use super::exit;
use crate::config::{BackendKind, LossKind, OptimizerKind, Precision};
use crate::kernels::ConvPath;

/// Training and inference throughput of the U-Net on random data.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Channels per level.
    #[arg(long, value_delimiter = ',', default_value = "3,6,12,24,48")]
    pub widths: Vec<usize>,
    /// Square input size.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, value_enum, default_value = "mse")]
    pub loss: LossKind,
    #[arg(long, value_enum, default_value = "adam")]
    pub optim: OptimizerKind,
    /// Timed steps (each phase).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
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
}

pub fn execute(args: BenchArgs) -> Result<u8> {
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
    } = args;
    if widths.is_empty() || widths.contains(&0) || batch == 0 || steps == 0 {
        eprintln!("error: --widths needs positive values; --batch and --steps must be at least 1");
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
    })?;
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("{}", result.human());
    }
    Ok(0)
}
