//! `unet-lab bench`: training and inference throughput of the U-Net on random data, the same
//! network and recipe as the PyTorch reference figures (BENCHMARKS.md).

use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;

use crate::config::{BackendKind, LossKind, ModelConfig, OptimizerKind, Padding, RunConfig};
use crate::kernels::ConvPath;
use crate::model::UNet;
use crate::train::loss::loss;
use crate::train::optim::AnyOptimizer;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub widths: Vec<usize>,
    pub size: usize,
    pub batch: usize,
    pub loss: LossKind,
    pub optimizer: OptimizerKind,
    pub steps: usize,
    pub warmup: usize,
    pub backend: BackendKind,
    /// Also time forward, backward and optimizer separately.
    pub profile: bool,
    /// Which convolution implementations the model runs on.
    pub kernels: crate::kernels::ConvPath,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub backend: String,
    pub widths: Vec<usize>,
    pub size: usize,
    pub batch: usize,
    pub loss: String,
    pub optimizer: String,
    pub steps: usize,
    pub warmup: usize,
    pub parameters: usize,
    pub train_img_s: f64,
    pub infer_img_s: f64,
    pub peak_rss_mb: f64,
    pub threads: usize,
    /// The convolution implementations (`auto` unless `--kernels` chose one).
    pub kernels: String,
    /// Seconds per training step in forward (incl. loss), backward and optimizer.
    pub profile: Option<StepProfile>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepProfile {
    pub forward_s: f64,
    pub backward_s: f64,
    pub optimizer_s: f64,
    /// Forward and backward seconds per batch by layer type, each layer timed in isolation at
    /// the shapes it has in the network.
    pub layers: Vec<LayerTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerTime {
    pub layer: String,
    pub forward_s: f64,
    pub backward_s: f64,
}

/// Times one layer: forward, then backward to its input.
fn time_layer<B: AutodiffBackend>(
    shape: [usize; 4],
    reps: usize,
    device: &B::Device,
    forward: &dyn Fn(Tensor<B, 4>) -> Tensor<B, 4>,
) -> (f64, f64) {
    let (mut fwd, mut bwd) = (0.0, 0.0);
    for rep in 0..reps + 1 {
        let x =
            Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device).require_grad();
        let t = Instant::now();
        let y = forward(x.clone()).sum(); // [1]
        let _ = y.clone().into_scalar();
        let t1 = Instant::now();
        let grads = y.backward();
        let _ = x.grad(&grads).map(|g| g.sum().into_scalar());
        let t2 = Instant::now();
        if rep > 0 {
            // The first repetition warms up.
            fwd += (t1 - t).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
        }
    }
    (fwd / reps as f64, bwd / reps as f64)
}

/// A padded 3×3 convolution as the U-Net runs it (the project's kernel), then ReLU.
fn conv_relu<B: crate::kernels::KernelBackend>(
    c: &burn::nn::conv::Conv2d<B>,
    x: Tensor<B, 4>,
    path: ConvPath,
) -> Tensor<B, 4> {
    let bias = c.bias.as_ref().expect("convolutions have a bias").val();
    crate::kernels::conv3x3(x, c.weight.val(), bias, true, path)
}

/// Forward/backward time per batch of every layer type of the U-Net, at its shapes.
pub fn layer_profile<B: AutodiffBackend + crate::kernels::KernelBackend>(
    widths: &[usize],
    size: usize,
    batch: usize,
    classes: usize,
    reps: usize,
    path: ConvPath,
    device: &B::Device,
) -> Vec<LayerTime> {
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
    let mut totals: Vec<(String, f64, f64)> = Vec::new();
    let mut add = |name: &str, (f, b): (f64, f64)| match totals.iter_mut().find(|t| t.0 == name) {
        Some(t) => {
            t.1 += f;
            t.2 += b;
        }
        None => totals.push((name.to_string(), f, b)),
    };
    let conv = |cin: usize, cout: usize, k: usize| {
        let pad = if k == 3 {
            PaddingConfig2d::Explicit(1, 1, 1, 1)
        } else {
            PaddingConfig2d::Valid
        };
        Conv2dConfig::new([cin, cout], [k, k])
            .with_padding(pad)
            .init::<B>(device)
    };
    for (level, &w) in widths.iter().enumerate() {
        let s = size >> level;
        let cin = if level == 0 { 1 } else { widths[level - 1] };
        // Encoder: conv cin→w, conv w→w (+ ReLU each).
        for (a, b) in [(cin, w), (w, w)] {
            let c = conv(a, b, 3);
            add(
                "conv 3×3 + ReLU (encoder)",
                time_layer::<B>([batch, a, s, s], reps, device, &|x| conv_relu(&c, x, path)),
            );
        }
        if level + 1 < widths.len() {
            add(
                "max-pool 2×2",
                time_layer::<B>([batch, w, s, s], reps, device, &|x| {
                    crate::kernels::max_pool2x2(x, path)
                }),
            );
            let up = ConvTranspose2dConfig::new([widths[level + 1], w], [2, 2])
                .with_stride([2, 2])
                .init::<B>(device);
            add(
                "up-conv 2×2 (transposed)",
                time_layer::<B>(
                    [batch, widths[level + 1], s / 2, s / 2],
                    reps,
                    device,
                    &|x| {
                        crate::kernels::up2x2(
                            x,
                            up.weight.val(),
                            up.bias.as_ref().expect("bias").val(),
                            path,
                        )
                    },
                ),
            );
            add(
                "concat",
                time_layer::<B>([batch, w, s, s], reps, device, &|x| {
                    crate::kernels::cat_channels(x.clone(), x, path)
                }),
            );
            // Decoder at this level: conv 2w→w, conv w→w.
            for (a, b) in [(2 * w, w), (w, w)] {
                let c = conv(a, b, 3);
                add(
                    "conv 3×3 + ReLU (decoder)",
                    time_layer::<B>([batch, a, s, s], reps, device, &|x| conv_relu(&c, x, path)),
                );
            }
        }
    }
    let head = conv(widths[0], classes, 1);
    add(
        "head 1×1",
        time_layer::<B>([batch, widths[0], size, size], reps, device, &|x| {
            crate::kernels::conv1x1(
                x,
                head.weight.val(),
                head.bias.as_ref().expect("bias").val(),
                path,
            )
        }),
    );
    totals
        .into_iter()
        .map(|(layer, forward_s, backward_s)| LayerTime {
            layer,
            forward_s,
            backward_s,
        })
        .collect()
}

/// Peak resident memory of this process (Linux `VmHWM`), in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn train_config(opts: &BenchOptions) -> RunConfig {
    let text = format!(
        "[train]\nloss = \"{}\"\noptimizer = \"{}\"\nlr = {}\nmomentum = 0.99\n",
        opts.loss.name(),
        match opts.optimizer {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Sgd => "sgd",
        },
        match opts.optimizer {
            OptimizerKind::Adam => "1e-3",
            OptimizerKind::Sgd => "1e-2",
        }
    );
    crate::config::parse_str(std::path::Path::new("bench.toml"), text)
        .expect("bench config is valid")
        .variants
        .remove(0)
        .config
}

pub fn run_bench<B: AutodiffBackend + crate::kernels::KernelBackend>(
    opts: &BenchOptions,
    device: &B::Device,
) -> Result<BenchResult>
where
    B::InnerBackend: crate::kernels::KernelBackend,
{
    B::seed(device, 0);
    let model_cfg = ModelConfig {
        widths: opts.widths.clone(),
        padding: Padding::Same,
        dropout: 0.0,
    };
    let cfg = train_config(opts);
    let mut model: UNet<B> = UNet::new(&model_cfg, opts.loss, device).with_kernels(opts.kernels);
    let parameters = model.num_params();
    let mut optim = AnyOptimizer::<UNet<B>, B>::new(&cfg.train);
    let shape = [opts.batch, 1, opts.size, opts.size];
    let x = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let y = Tensor::<B, 4>::random(shape, Distribution::Bernoulli(0.5), device);

    let step = |model: UNet<B>,
                optim: &mut AnyOptimizer<UNet<B>, B>,
                profile: Option<&mut [f64; 3]>|
     -> UNet<B> {
        let t0 = Instant::now();
        let out = model.forward(x.clone()); // [b, classes, s, s]
        let l = loss(opts.loss, out, y.clone(), None); // [1]
        match profile {
            None => {
                let grads = GradientsParams::from_grads(l.backward(), &model);
                let model = optim.step(1e-3, model, grads);
                let _ = l_sync::<B>(&model);
                model
            }
            Some(p) => {
                let _ = l.clone().into_scalar(); // waits for the forward pass
                let t1 = Instant::now();
                let grads = l.backward();
                let grads = GradientsParams::from_grads(grads, &model);
                let t2 = Instant::now();
                let model = optim.step(1e-3, model, grads);
                let _ = l_sync::<B>(&model);
                let t3 = Instant::now();
                p[0] += (t1 - t0).as_secs_f64();
                p[1] += (t2 - t1).as_secs_f64();
                p[2] += (t3 - t2).as_secs_f64();
                model
            }
        }
    };
    for _ in 0..opts.warmup {
        model = step(model, &mut optim, None);
    }
    let t = Instant::now();
    for _ in 0..opts.steps {
        model = step(model, &mut optim, None);
    }
    let train_img_s = (opts.steps * opts.batch) as f64 / t.elapsed().as_secs_f64();
    let profile = if opts.profile {
        let mut p = [0.0; 3];
        for _ in 0..opts.steps {
            model = step(model, &mut optim, Some(&mut p));
        }
        let n = opts.steps.max(1) as f64;
        Some(StepProfile {
            forward_s: p[0] / n,
            backward_s: p[1] / n,
            optimizer_s: p[2] / n,
            layers: layer_profile::<B>(
                &opts.widths,
                opts.size,
                opts.batch,
                opts.loss.out_channels(),
                opts.steps.clamp(1, 5),
                opts.kernels,
                device,
            ),
        })
    } else {
        None
    };

    let inference = model.valid();
    let xi = x.inner();
    let infer = |m: &UNet<B::InnerBackend>| {
        let out = m.forward(xi.clone()); // [b, classes, s, s]
        let _ = out.sum().into_scalar();
    };
    for _ in 0..opts.warmup {
        infer(&inference);
    }
    let t = Instant::now();
    for _ in 0..opts.steps {
        infer(&inference);
    }
    let infer_img_s = (opts.steps * opts.batch) as f64 / t.elapsed().as_secs_f64();

    Ok(BenchResult {
        backend: crate::train::backend::describe(opts.backend, 0).0,
        widths: opts.widths.clone(),
        size: opts.size,
        batch: opts.batch,
        loss: opts.loss.name().to_string(),
        optimizer: format!("{:?}", opts.optimizer).to_lowercase(),
        steps: opts.steps,
        warmup: opts.warmup,
        parameters,
        train_img_s,
        infer_img_s,
        peak_rss_mb: peak_rss_mb(),
        threads: rayon::current_num_threads(),
        kernels: format!("{:?}", opts.kernels).to_lowercase(),
        profile,
    })
}

/// Waits for the backend to finish the step: reading one parameter back forces completion on
/// asynchronous backends (CUDA) and costs nothing measurable on the CPU.
fn l_sync<B: AutodiffBackend>(model: &UNet<B>) -> f32 {
    model.probe_value()
}

pub fn bench(opts: &BenchOptions) -> Result<BenchResult> {
    crate::train::backend::check_available(opts.backend)?;
    match opts.backend {
        BackendKind::Cpu => {
            run_bench::<crate::train::backend::CpuBackend>(opts, &Default::default())
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            run_bench::<crate::train::backend::CudaBackend>(opts, &Default::default())
        }
        #[cfg(not(feature = "cuda"))]
        BackendKind::Cuda => unreachable!("checked by check_available"),
    }
}

impl BenchResult {
    pub fn human(&self) -> String {
        let mut s = format!(
            "backend {} ({} threads, {} kernels) · widths {:?} · {}×{} · batch {} · {} + {} · {} parameters\n\
             train:     {:8.2} img/s\ninference: {:8.2} img/s\npeak RSS:  {:8.0} MB",
            self.backend,
            self.threads,
            self.kernels,
            self.widths,
            self.size,
            self.size,
            self.batch,
            self.loss,
            self.optimizer,
            self.parameters,
            self.train_img_s,
            self.infer_img_s,
            self.peak_rss_mb
        );
        if let Some(p) = &self.profile {
            let total = p.forward_s + p.backward_s + p.optimizer_s;
            s.push_str(&format!(
                "\nstep profile: forward+loss {:.1} ms ({:.0}%), backward {:.1} ms ({:.0}%), optimizer {:.1} ms ({:.0}%)",
                p.forward_s * 1e3,
                100.0 * p.forward_s / total,
                p.backward_s * 1e3,
                100.0 * p.backward_s / total,
                p.optimizer_s * 1e3,
                100.0 * p.optimizer_s / total
            ));
            let layer_total: f64 = p.layers.iter().map(|l| l.forward_s + l.backward_s).sum();
            s.push_str("\nby layer type (each timed alone at its shapes, per batch):");
            for l in &p.layers {
                s.push_str(&format!(
                    "\n  {:<28} forward {:7.1} ms  backward {:7.1} ms  ({:4.1}% of the layer total)",
                    l.layer,
                    l.forward_s * 1e3,
                    l.backward_s * 1e3,
                    100.0 * (l.forward_s + l.backward_s) / layer_total
                ));
            }
        }
        s
    }
}
