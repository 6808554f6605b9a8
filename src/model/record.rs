//! Model parameters as bytes (Burn's named MessagePack, full precision): what checkpoints hold,
//! written by training and read by `predict` and resumed runs alike.

use anyhow::{Context, Result};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};

/// The one recorder of checkpoints (model and optimizer state); it reports corrupt bytes as
/// errors rather than panicking.
pub fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::<FullPrecisionSettings>::default()
}

/// The model's parameters as bytes.
pub fn model_to_bytes<B: burn::prelude::Backend, M: burn::module::Module<B>>(
    model: &M,
) -> Result<Vec<u8>> {
    Ok(recorder().record(model.clone().into_record(), ())?)
}

/// The network a run's config describes, with the parameters of the checkpoint at `path`.
pub fn load_checkpoint<B: crate::kernels::KernelBackend>(
    path: &std::path::Path,
    config: &crate::config::RunConfig,
    device: &B::Device,
) -> Result<super::UNet<B>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
    let model = super::UNet::<B>::new(&config.model, config.train.loss, device);
    model_from_bytes(model, bytes, device)
        .with_context(|| format!("cannot load {}", path.display()))
}

/// Loads parameters saved by [`model_to_bytes`] into `model`.
pub fn model_from_bytes<B: burn::prelude::Backend, M: burn::module::Module<B>>(
    model: M,
    bytes: Vec<u8>,
    device: &B::Device,
) -> Result<M> {
    let record = Recorder::<B>::load(&recorder(), bytes, device).context(
        "the model parameters cannot be read (corrupt checkpoint, or another network shape)",
    )?;
    Ok(model.load_record(record))
}
