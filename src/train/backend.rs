//! Backend selection: Flex on the CPU (default), burn-cuda behind the `cuda` feature.

use anyhow::{Result, bail};

use crate::config::BackendKind;

/// The CPU training backend.
pub type CpuBackend = burn::backend::Autodiff<burn::backend::Flex>;

#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda>;

/// A human description of the backend and device (`device`: the GPU index), for manifests.
pub fn describe(kind: BackendKind, device: usize) -> (String, String) {
    match kind {
        BackendKind::Cpu => (
            "cpu (burn-flex)".into(),
            format!("{} threads", rayon::current_num_threads()),
        ),
        BackendKind::Cuda => ("cuda (burn-cuda)".into(), format!("cuda:{device}")),
    }
}

/// Whether this build has the backend at all (no device is probed: `validate` runs on login
/// nodes without GPUs).
pub fn check_built(kind: BackendKind) -> Result<()> {
    match kind {
        BackendKind::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Ok(()),
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => check_cuda(),
    }
}

/// Fails early, with a clear message, when the backend cannot be used.
pub fn check_available(kind: BackendKind) -> Result<()> {
    match kind {
        BackendKind::Cpu => Ok(()),
        BackendKind::Cuda => check_cuda(),
    }
}

#[cfg(not(feature = "cuda"))]
fn check_cuda() -> Result<()> {
    bail!(
        "backend \"cuda\" needs a build with the `cuda` feature: \
         cargo build --release --features cuda (or use --backend cpu)"
    )
}

/// Probes the CUDA driver with a tiny computation. cubecl has no fallible initialisation: a
/// missing driver panics on its device thread and the panic reaches us, so it is caught here.
#[cfg(feature = "cuda")]
fn check_cuda() -> Result<()> {
    use burn::backend::Cuda;
    use burn::backend::cuda::CudaDevice;
    use burn::prelude::*;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let ok = std::panic::catch_unwind(|| {
        let device = CudaDevice::default();
        let t = Tensor::<Cuda, 1>::from_floats([1.0, 2.0], &device);
        (t.sum().into_scalar().elem::<f32>() - 3.0).abs() < 1e-6
    })
    .unwrap_or(false);
    std::panic::set_hook(hook);
    if !ok {
        bail!(
            "no usable CUDA GPU: the CUDA driver (libcuda) or NVRTC could not be loaded, or no device \
             answered. Check `nvidia-smi`, or use --backend cpu"
        );
    }
    Ok(())
}
