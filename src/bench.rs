//! `unet-lab bench`: training and inference throughput of the U-Net on random data, the same
//! network and recipe as the PyTorch reference figures (docs/benchmarks.md).

use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;

use crate::config::{
    Activation, BackendKind, LossKind, ModelConfig, Norm, OptimizerKind, Padding, Precision,
    TrainConfig,
};
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
    /// The GPU or wgpu adapter (the backend's default without it).
    pub device: Option<usize>,
    pub precision: Precision,
    /// Also time forward, backward and optimizer separately.
    pub profile: bool,
    /// Which convolution implementations the model runs on.
    pub kernels: ConvPath,
    /// The block after each 3×3 convolution: the norm and the activation.
    pub norm: Norm,
    pub activation: Activation,
    pub presence_head: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub backend: String,
    /// The device as manifests describe it (threads on the CPU, the adapter on wgpu).
    pub device: String,
    pub precision: String,
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
    /// "none", "batch" or "instance".
    pub norm: String,
    /// "relu" or "elu".
    pub activation: String,
    pub presence_head: bool,
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

/// A padded 3×3 convolution as the U-Net runs it (the project's kernel), the ReLU fused when
/// `relu` is set.
fn conv_relu<B: crate::kernels::KernelBackend>(
    c: &burn::nn::conv::Conv2d<B>,
    x: Tensor<B, 4>,
    path: ConvPath,
    relu: bool,
) -> Tensor<B, 4> {
    let bias = c.bias.as_ref().expect("convolutions have a bias").val();
    crate::kernels::conv3x3(x, c.weight.val(), bias, relu, path)
}

/// Seconds per batch summed by layer type, in the order the types are first timed.
#[derive(Default)]
struct LayerTotals(Vec<LayerTime>);

impl LayerTotals {
    fn add(&mut self, layer: &str, (forward_s, backward_s): (f64, f64)) {
        match self.0.iter_mut().find(|t| t.layer == layer) {
            Some(t) => {
                t.forward_s += forward_s;
                t.backward_s += backward_s;
            }
            None => self.0.push(LayerTime {
                layer: layer.to_string(),
                forward_s,
                backward_s,
            }),
        }
    }
}

/// A `k`×`k` convolution `cin` → `cout`, padded for 3×3 as the U-Net's.
fn conv<B: Backend>(
    cin: usize,
    cout: usize,
    k: usize,
    device: &B::Device,
) -> burn::nn::conv::Conv2d<B> {
    use burn::nn::PaddingConfig2d;
    let pad = if k == 3 {
        PaddingConfig2d::Explicit(1, 1, 1, 1)
    } else {
        PaddingConfig2d::Valid
    };
    burn::nn::conv::Conv2dConfig::new([cin, cout], [k, k])
        .with_padding(pad)
        .init::<B>(device)
}

/// How one layer is timed: batch, repetitions, the kernels it runs on, the block after each
/// 3×3 convolution and the device.
struct LayerBench<'d, B: Backend> {
    batch: usize,
    reps: usize,
    path: ConvPath,
    block: (Norm, Activation),
    device: &'d B::Device,
}

impl<B: AutodiffBackend + crate::kernels::KernelBackend> LayerBench<'_, B> {
    /// Two 3×3 convolutions (`pairs` of channels in → out) on `s`×`s` planes, each with its
    /// block: the ReLU fused, or the norm and activation timed apart.
    fn double_conv(
        &self,
        totals: &mut LayerTotals,
        side: &str,
        pairs: [(usize, usize); 2],
        s: usize,
    ) {
        let (batch, reps, path, device) = (self.batch, self.reps, self.path, self.device);
        for (a, b) in pairs {
            let c = conv::<B>(a, b, 3, device);
            if self.block == (Norm::None, Activation::Relu) {
                let time = time_layer::<B>([batch, a, s, s], reps, device, &|x| {
                    conv_relu(&c, x, path, true)
                });
                totals.add(&format!("conv 3×3 + ReLU ({side})"), time);
                continue;
            }
            let time = time_layer::<B>([batch, a, s, s], reps, device, &|x| {
                conv_relu(&c, x, path, false)
            });
            totals.add(&format!("conv 3×3 ({side})"), time);
            let (norm, act) = self.block;
            let block = crate::model::norm::norm_and_activation::<B>(norm, act, b, device);
            let time = time_layer::<B>([batch, b, s, s], reps, device, &|x| block(x, path));
            let name = match norm {
                Norm::None => format!("{act:?}"),
                norm => format!("{norm:?} norm + {act:?}"),
            };
            totals.add(&name.to_lowercase(), time);
        }
    }

    /// The layers between a level (width `w`, `s`×`s` planes) and the one below it (width
    /// `below`): max-pool, up-conv, concat and the decoder's two convolutions.
    fn level_down_up(&self, totals: &mut LayerTotals, w: usize, below: usize, s: usize) {
        let (batch, reps, path, device) = (self.batch, self.reps, self.path, self.device);
        totals.add(
            "max-pool 2×2",
            time_layer::<B>([batch, w, s, s], reps, device, &|x| {
                crate::kernels::max_pool2x2(x, path)
            }),
        );
        let up = burn::nn::conv::ConvTranspose2dConfig::new([below, w], [2, 2])
            .with_stride([2, 2])
            .init::<B>(device);
        totals.add(
            "up-conv 2×2 (transposed)",
            time_layer::<B>([batch, below, s / 2, s / 2], reps, device, &|x| {
                crate::kernels::up2x2(
                    x,
                    up.weight.val(),
                    up.bias.as_ref().expect("bias").val(),
                    path,
                )
            }),
        );
        totals.add(
            "concat",
            time_layer::<B>([batch, w, s, s], reps, device, &|x| {
                crate::kernels::cat_channels(x.clone(), x, path)
            }),
        );
        // Decoder at this level: conv 2w→w, conv w→w.
        self.double_conv(totals, "decoder", [(2 * w, w), (w, w)], s);
    }

    /// The 1×1 head, `cin` → `classes`, on `size`×`size` planes.
    fn head(&self, totals: &mut LayerTotals, cin: usize, classes: usize, size: usize) {
        let head = conv::<B>(cin, classes, 1, self.device);
        totals.add(
            "head 1×1",
            time_layer::<B>(
                [self.batch, cin, size, size],
                self.reps,
                self.device,
                &|x| {
                    crate::kernels::conv1x1(
                        x,
                        head.weight.val(),
                        head.bias.as_ref().expect("bias").val(),
                        self.path,
                    )
                },
            ),
        );
    }
}

/// Forward/backward time per batch of every layer type of the U-Net, at its shapes.
fn layer_profile<B: AutodiffBackend + crate::kernels::KernelBackend>(
    opts: &BenchOptions,
    reps: usize,
    device: &B::Device,
) -> Vec<LayerTime> {
    let (widths, size) = (&opts.widths, opts.size);
    let bench = LayerBench::<B> {
        batch: opts.batch,
        reps,
        path: opts.kernels,
        block: (opts.norm, opts.activation),
        device,
    };
    let mut totals = LayerTotals::default();
    for (level, &w) in widths.iter().enumerate() {
        let s = size >> level;
        let cin = if level == 0 { 1 } else { widths[level - 1] };
        // Encoder: conv cin→w, conv w→w (+ ReLU each).
        bench.double_conv(&mut totals, "encoder", [(cin, w), (w, w)], s);
        if let Some(&below) = widths.get(level + 1) {
            bench.level_down_up(&mut totals, w, below, s);
        }
    }
    bench.head(&mut totals, widths[0], opts.loss.out_channels(), size);
    totals.0
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

/// The training recipe of the PyTorch reference: the defaults with the chosen loss and
/// optimizer, Adam at 1e-3 or SGD at 1e-2 with momentum 0.99.
fn train_config(opts: &BenchOptions) -> TrainConfig {
    TrainConfig {
        loss: opts.loss,
        optimizer: opts.optimizer,
        lr: match opts.optimizer {
            OptimizerKind::Adam => 1e-3,
            OptimizerKind::Sgd => 1e-2,
        },
        momentum: 0.99,
        ..TrainConfig::default()
    }
}

/// One training step on the batch `x` → `y`; with `profile`, its forward (incl. loss),
/// backward and optimizer seconds are added to it.
fn train_step<B: AutodiffBackend + crate::kernels::KernelBackend>(
    model: UNet<B>,
    optim: &mut AnyOptimizer<UNet<B>, B>,
    x: &Tensor<B, 4>,
    y: &Tensor<B, 4>,
    kind: LossKind,
    profile: Option<&mut [f64; 3]>,
) -> UNet<B> {
    let t0 = Instant::now();
    let (out, presence) = model.forward_heads(x.clone()); // [b, classes, s, s], [b, 1]
    let seg = loss(kind, out, y.clone(), None); // [1]
    let l = crate::train::loss::with_presence(seg, presence, y.clone(), 1.0); // [1]
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
}

/// The model and optimizer being timed, and the random batch they train on.
struct Trainer<B: AutodiffBackend> {
    model: UNet<B>,
    optim: AnyOptimizer<UNet<B>, B>,
    x: Tensor<B, 4>,
    y: Tensor<B, 4>,
}

impl<B: AutodiffBackend + crate::kernels::KernelBackend> Trainer<B> {
    fn new(opts: &BenchOptions, device: &B::Device) -> Self {
        let model_cfg = ModelConfig {
            widths: opts.widths.clone(),
            padding: Padding::Same,
            dropout: 0.0,
            norm: opts.norm,
            activation: opts.activation,
            presence_head: opts.presence_head,
            ..ModelConfig::default()
        };
        let train = train_config(opts);
        let model: UNet<B> = UNet::new(&model_cfg, opts.loss, device).with_kernels(opts.kernels);
        let optim = AnyOptimizer::<UNet<B>, B>::new(&train);
        let shape = [opts.batch, 1, opts.size, opts.size];
        let x = Tensor::<B, 4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        let y = Tensor::<B, 4>::random(shape, Distribution::Bernoulli(0.5), device);
        Self { model, optim, x, y }
    }

    fn steps(mut self, n: usize, kind: LossKind, mut profile: Option<&mut [f64; 3]>) -> Self {
        for _ in 0..n {
            self.model = train_step(
                self.model,
                &mut self.optim,
                &self.x,
                &self.y,
                kind,
                profile.as_deref_mut(),
            );
        }
        self
    }
}

/// Images per second of inference (no autodiff) on the training batch.
fn time_inference<B: AutodiffBackend>(opts: &BenchOptions, trainer: &Trainer<B>) -> f64
where
    B::InnerBackend: crate::kernels::KernelBackend,
{
    let inference = trainer.model.valid();
    let xi = trainer.x.clone().inner();
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
    (opts.steps * opts.batch) as f64 / t.elapsed().as_secs_f64()
}

/// With `--profile`: `steps` more training steps timed phase by phase, and each layer type
/// timed alone.
fn profile_steps<B: AutodiffBackend + crate::kernels::KernelBackend>(
    opts: &BenchOptions,
    trainer: Trainer<B>,
    device: &B::Device,
) -> (Trainer<B>, StepProfile) {
    let mut p = [0.0; 3];
    let trainer = trainer.steps(opts.steps, opts.loss, Some(&mut p));
    let n = opts.steps.max(1) as f64;
    let profile = StepProfile {
        forward_s: p[0] / n,
        backward_s: p[1] / n,
        optimizer_s: p[2] / n,
        layers: layer_profile::<B>(opts, opts.steps.clamp(1, 5), device),
    };
    (trainer, profile)
}

fn run_bench<B: AutodiffBackend + crate::kernels::KernelBackend>(
    opts: &BenchOptions,
    device: &B::Device,
) -> Result<BenchResult>
where
    B::InnerBackend: crate::kernels::KernelBackend,
{
    B::seed(device, 0);
    let trainer = Trainer::<B>::new(opts, device);
    let parameters = trainer.model.num_params();
    let trainer = trainer.steps(opts.warmup, opts.loss, None);
    let t = Instant::now();
    let trainer = trainer.steps(opts.steps, opts.loss, None);
    let train_img_s = (opts.steps * opts.batch) as f64 / t.elapsed().as_secs_f64();
    let (trainer, profile) = if opts.profile {
        let (trainer, profile) = profile_steps(opts, trainer, device);
        (trainer, Some(profile))
    } else {
        (trainer, None)
    };
    let infer_img_s = time_inference(opts, &trainer);

    let (backend, device) = crate::device::describe(opts.backend, opts.device);
    Ok(BenchResult {
        backend,
        device,
        precision: opts.precision.name().to_string(),
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
        norm: format!("{:?}", opts.norm).to_lowercase(),
        activation: format!("{:?}", opts.activation).to_lowercase(),
        presence_head: opts.presence_head,
        profile,
    })
}

/// Waits for the backend to finish the step: reading one parameter back forces completion on
/// asynchronous backends (CUDA) and costs nothing measurable on the CPU.
fn l_sync<B: AutodiffBackend>(model: &UNet<B>) -> f32 {
    model.probe_value()
}

pub fn bench(opts: &BenchOptions) -> Result<BenchResult> {
    crate::device::check_available(opts.backend, opts.device, opts.precision)?;
    crate::device::dispatch(opts.backend, opts.device, BenchOn(opts))
}

/// The benchmark, on whichever backend it was asked for.
struct BenchOn<'a>(&'a BenchOptions);

impl crate::device::OnDevice for BenchOn<'_> {
    type Output = BenchResult;

    fn run<B>(self, device: &B::Device) -> Result<BenchResult>
    where
        B: AutodiffBackend + crate::kernels::KernelBackend,
        B::InnerBackend: crate::kernels::KernelBackend,
    {
        run_bench::<B>(self.0, device)
    }
}

impl BenchResult {
    /// "conv + relu", "conv + batch norm + elu", with "+ presence head".
    fn block(&self) -> String {
        let mut s = match self.norm.as_str() {
            "none" => format!("conv + {}", self.activation),
            norm => format!("conv + {norm} norm + {}", self.activation),
        };
        if self.presence_head {
            s.push_str(" + presence head");
        }
        s
    }

    pub(crate) fn human(&self) -> String {
        let mut s = format!(
            "backend {} ({}, {}, {} kernels) · widths {:?} · {} · {}×{} · batch {} · {} + {} · {} parameters\n\
             train:     {:8.2} img/s\ninference: {:8.2} img/s\npeak RSS:  {:8.0} MB",
            self.backend,
            self.device,
            self.precision,
            self.kernels,
            self.widths,
            self.block(),
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
