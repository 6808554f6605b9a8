//! Backend selection: Flex on the CPU (default); burn-cuda and burn-wgpu (Vulkan, Metal)
//! behind the `cuda` and `wgpu` features. A GPU backend is probed with a tiny computation, on
//! the chosen device and in the chosen float type, before anything is written.
//!
//! [`dispatch`] is the one place a [`BackendKind`] becomes a Burn type: training, `predict`,
//! `tune` and `bench` each describe their work as an [`OnDevice`] and hand it over.

use anyhow::{Result, bail};
use burn::tensor::backend::AutodiffBackend;

use crate::config::{BackendKind, Precision};
use crate::kernels::KernelBackend;

/// Work generic over the training backend `B` (its inner backend, `B::InnerBackend`, runs
/// inference on the same device).
pub(crate) trait OnDevice {
    type Output;

    fn run<B>(self, device: &B::Device) -> Result<Self::Output>
    where
        B: AutodiffBackend + KernelBackend,
        B::InnerBackend: KernelBackend;
}

/// Runs `work` on the backend `kind` (on GPU `device`, or the default one). The backend must
/// have passed [`check_available`] in this process: that probe is what fixes a GPU's float
/// type, once, before anything is written.
pub(crate) fn dispatch<W: OnDevice>(
    kind: BackendKind,
    device: Option<usize>,
    work: W,
) -> Result<W::Output> {
    let _ = device; // only GPU backends have devices
    match kind {
        BackendKind::Cpu => work.run::<CpuBackend>(&Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => work.run::<CudaBackend>(&cuda_device(device)),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => work.run::<WgpuBackend>(&wgpu_device(device)?),
        #[allow(unreachable_patterns)]
        _ => check_built(kind).and_then(|()| bail!("backend \"{}\" has no dispatch", kind.name())),
    }
}

/// The CPU training backend.
type CpuBackend = burn::backend::Autodiff<burn::backend::Flex>;

#[cfg(feature = "cuda")]
type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda>;

#[cfg(feature = "wgpu")]
type WgpuBackend = burn::backend::Autodiff<burn::backend::Wgpu>;

/// A human description of the backend and device (`device`: the GPU or adapter index), for
/// manifests: the adapter's name, type and driver on wgpu.
pub fn describe(kind: BackendKind, device: Option<usize>) -> (String, String) {
    match kind {
        BackendKind::Cpu => (
            "cpu (burn-flex)".into(),
            format!("{} threads", rayon::current_num_threads()),
        ),
        BackendKind::Cuda => (
            "cuda (burn-cuda)".into(),
            format!("cuda:{}", device.unwrap_or(0)),
        ),
        BackendKind::Wgpu => describe_wgpu(device),
    }
}

#[cfg(feature = "wgpu")]
fn describe_wgpu(device: Option<usize>) -> (String, String) {
    let adapter = wgpu_adapters::choose(device).map(|a| a.describe());
    (
        format!("wgpu (burn-wgpu, {})", wgpu_adapters::graphics_api()),
        adapter.unwrap_or_else(|e| format!("unknown adapter ({e})")),
    )
}

#[cfg(not(feature = "wgpu"))]
fn describe_wgpu(_device: Option<usize>) -> (String, String) {
    ("wgpu (not built)".into(), "none".into())
}

/// Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid or not set" for every adapter
/// query when the variable is unset (a login without a session: SSH, SLURM, containers). The
/// message is harmless; pointing the variable at a private directory silences it. Called
/// first thing in `main`, before any thread exists: only then is setting a variable sound.
pub(crate) fn quiet_vulkan_drivers() {
    #[cfg(feature = "wgpu")]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let dir = std::env::temp_dir().join(format!("unet-lab-runtime-{uid}"));
        let _ = std::fs::create_dir(&dir);
        let private = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .is_ok()
            && std::fs::metadata(&dir).is_ok_and(|m| m.uid() == uid && m.is_dir());
        if private {
            // SAFETY: no other thread exists yet (see above).
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

/// Whether this build has the backend at all (no device is probed: `validate` runs on login
/// nodes without GPUs).
pub(crate) fn check_built(kind: BackendKind) -> Result<()> {
    let built = match kind {
        BackendKind::Cpu => true,
        BackendKind::Cuda => cfg!(feature = "cuda"),
        BackendKind::Wgpu => cfg!(feature = "wgpu"),
    };
    if !built {
        let name = kind.name();
        bail!(
            "backend \"{name}\" needs a build with the `{name}` feature: \
             cargo build --release --features {name} (or use --backend cpu)"
        );
    }
    Ok(())
}

/// The float types a backend trains in: f32 everywhere; f16 and bf16 on GPU backends whose
/// device has them (checked by [`check_available`]).
fn check_precision(kind: BackendKind, precision: Precision) -> Result<()> {
    if kind == BackendKind::Cpu && precision != Precision::F32 {
        bail!(
            "train.precision = \"{}\": the CPU backend trains in f32 only (its kernels are f32); \
             use --backend cuda or wgpu, or precision = \"f32\"",
            precision.name()
        );
    }
    Ok(())
}

/// Fails early, with a clear message, when the backend cannot be used: not built, no driver or
/// adapter, no such device, or a float type the device lacks. On a GPU backend this also fixes
/// the device's float type for the process (Burn allows it once, before the first tensor).
pub(crate) fn check_available(
    kind: BackendKind,
    device: Option<usize>,
    precision: Precision,
) -> Result<()> {
    check_built(kind)?;
    check_precision(kind, precision)?;
    let _ = device; // only GPU backends have devices
    match kind {
        BackendKind::Cpu => Ok(()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            let device = cuda_device(device);
            probe::<burn::backend::Cuda>(&device, precision).map_err(|why| {
                anyhow::anyhow!(
                    "no usable CUDA GPU {}: {why}. Check `nvidia-smi`, or use --backend cpu",
                    device.index
                )
            })
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            let adapter = wgpu_adapters::choose(device)?;
            probe::<burn::backend::Wgpu>(&adapter.device, precision).map_err(|why| {
                anyhow::anyhow!(
                    "the wgpu adapter {} cannot train: {why}",
                    adapter.describe()
                )
            })
        }
        #[allow(unreachable_patterns)]
        _ => bail!("backend \"{}\" has no probe", kind.name()),
    }
}

/// The device a GPU backend trains on, checked by [`check_available`].
#[cfg(feature = "cuda")]
fn cuda_device(device: Option<usize>) -> burn::backend::cuda::CudaDevice {
    burn::backend::cuda::CudaDevice {
        index: device.unwrap_or(0),
    }
}

/// The device a GPU backend trains on, checked by [`check_available`].
#[cfg(feature = "wgpu")]
fn wgpu_device(device: Option<usize>) -> Result<burn::backend::wgpu::WgpuDevice> {
    Ok(wgpu_adapters::choose(device)?.device)
}

/// Sets the device's float type, then adds two numbers on it. cubecl has no fallible
/// initialisation: a missing driver panics on its device thread and the panic reaches us, so
/// it is caught here.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn probe<B: burn::prelude::Backend>(
    device: &B::Device,
    precision: Precision,
) -> std::result::Result<(), String> {
    use burn::prelude::*;
    use burn::tensor::{DType, FloatDType, IntDType};
    let wanted = match precision {
        Precision::F32 => FloatDType::F32,
        Precision::F16 => FloatDType::F16,
        Precision::Bf16 => FloatDType::BF16,
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> std::result::Result<(), String> {
            if !B::supports_dtype(device, DType::from(wanted)) {
                return Err(format!(
                    "the device has no {} arithmetic (train.precision = \"{}\")",
                    precision.name(),
                    precision.name()
                ));
            }
            // Reading the settings first would fix them at their defaults, so set, then compare.
            if burn::tensor::set_default_dtypes::<B>(device, wanted, IntDType::I32).is_err() {
                let current = burn::tensor::get_device_settings::<B>(device).float_dtype;
                if current != wanted {
                    return Err(format!(
                        "this process already trains in {current:?} on this device; variants with \
                     different train.precision need separate processes (--task or --jobs)"
                    ));
                }
            }
            let t = Tensor::<B, 1>::from_floats([1.0, 2.0], device);
            if (t.sum().into_scalar().elem::<f32>() - 3.0).abs() < 1e-3 {
                Ok(())
            } else {
                Err("1 + 2 did not give 3".into())
            }
        },
    ));
    std::panic::set_hook(hook);
    match outcome {
        Ok(result) => result,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the driver could not be loaded, or no device answered".into())),
    }
}

/// wgpu's adapters as `--device N` numbers them: every adapter of the platform's graphics API
/// (Vulkan, or Metal on macOS), in wgpu's order.
#[cfg(feature = "wgpu")]
mod wgpu_adapters {
    use anyhow::{Result, bail};
    use burn::backend::wgpu::WgpuDevice;
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};

    pub(super) struct Adapter {
        pub info: wgpu::AdapterInfo,
        pub device: WgpuDevice,
    }

    impl Adapter {
        /// "llvmpipe (LLVM 15.0.6, 256 bits) · cpu · driver llvmpipe, Mesa 22.3.6".
        pub fn describe(&self) -> String {
            let i = &self.info;
            let kind = format!("{:?}", i.device_type).to_lowercase();
            let mut s = format!("{} · {kind}", i.name);
            if !i.driver.is_empty() || !i.driver_info.is_empty() {
                s.push_str(&format!(" · driver {}", i.driver));
                if !i.driver_info.is_empty() {
                    s.push_str(&format!(", {}", i.driver_info));
                }
            }
            s
        }
    }

    pub(super) fn graphics_api() -> String {
        format!("{:?}", AutoGraphicsApi::backend())
    }

    fn instance() -> wgpu::Instance {
        wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: AutoGraphicsApi::backend().into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        })
    }

    /// Every adapter, in the order `--device` counts them.
    pub fn list() -> Vec<wgpu::AdapterInfo> {
        let instance = instance();
        futures_lite::future::block_on(
            instance.enumerate_adapters(AutoGraphicsApi::backend().into()),
        )
        .iter()
        .map(|a| a.get_info())
        .collect()
    }

    /// Adapter `index`, or the one Burn picks by default (the high-performance one) without it.
    pub(super) fn choose(index: Option<usize>) -> Result<Adapter> {
        let adapters = list();
        if adapters.is_empty() {
            bail!(
                "no {} adapter: wgpu found no driver or device (on Linux install a Vulkan driver, \
                 e.g. Debian's mesa-vulkan-drivers and libvulkan1), or use --backend cpu",
                graphics_api()
            );
        }
        let Some(index) = index else {
            let instance = instance();
            let info = futures_lite::future::block_on(instance.request_adapter(
                &wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: false,
                    compatible_surface: None,
                },
            ))
            .map(|a| a.get_info())
            .unwrap_or_else(|_| adapters[0].clone());
            return Ok(Adapter {
                info,
                device: WgpuDevice::DefaultDevice,
            });
        };
        let listing = || {
            adapters
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{i}: {} ({:?})", a.name, a.device_type))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let Some(info) = adapters.get(index) else {
            bail!(
                "--device {index}: there are {} wgpu adapter(s): {}",
                adapters.len(),
                listing()
            );
        };
        // cubecl selects an adapter as the k-th of its type.
        let k = adapters[..index]
            .iter()
            .filter(|a| a.device_type == info.device_type)
            .count();
        let device = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => WgpuDevice::DiscreteGpu(k),
            wgpu::DeviceType::IntegratedGpu => WgpuDevice::IntegratedGpu(k),
            wgpu::DeviceType::VirtualGpu => WgpuDevice::VirtualGpu(k),
            wgpu::DeviceType::Cpu if k == 0 => WgpuDevice::Cpu,
            _ => bail!(
                "--device {index}: Burn cannot select adapter \"{}\" ({:?}) by number; adapters: {}",
                info.name,
                info.device_type,
                listing()
            ),
        };
        Ok(Adapter {
            info: info.clone(),
            device,
        })
    }
}
