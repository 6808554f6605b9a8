//! The U-Net, built from the named parts of the paper's figure: `DoubleConv` (two 3×3 conv +
//! ReLU), `Down` (2×2 max-pool then `DoubleConv`), `Up` (2×2 stride-2 transposed conv, skip
//! concatenation, `DoubleConv`) and `OutConv` (the 1×1 head).

pub mod infer;
pub(crate) mod norm;
pub mod postprocess;
pub mod record;
pub mod tile;
pub mod tta;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig, PaddingConfig2d, Relu};
use burn::prelude::*;

pub(crate) use crate::config::geometry::{check_input_size, output_size};
use crate::config::{Activation, LossKind, ModelConfig, Padding};
use crate::kernels::{ConvPath, KernelBackend, cat_channels, conv1x1, conv3x3, max_pool2x2, up2x2};
use norm::NormLayer;

/// He-normal initialisation, std = sqrt(2 / fan_in), as in the paper.
fn he_normal() -> Initializer {
    Initializer::KaimingNormal {
        gain: std::f64::consts::SQRT_2,
        fan_out_only: false,
    }
}

fn conv3x3_layer<B: Backend>(
    cin: usize,
    cout: usize,
    padding: Padding,
    device: &B::Device,
) -> Conv2d<B> {
    let padding = match padding {
        Padding::Same => PaddingConfig2d::Explicit(1, 1, 1, 1),
        Padding::Valid => PaddingConfig2d::Valid,
    };
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(padding)
        .with_initializer(he_normal())
        .init(device)
}

/// Two 3×3 convolutions, each followed by its normalisation (if any) and the activation.
#[derive(Module, Debug)]
struct DoubleConv<B: Backend> {
    conv1: Conv2d<B>,
    norm1: Option<NormLayer<B>>,
    conv2: Conv2d<B>,
    norm2: Option<NormLayer<B>>,
    relu: Relu,
    padding: Padding,
    activation: Activation,
}

impl<B: Backend> DoubleConv<B> {
    pub fn new(cin: usize, cout: usize, config: &ModelConfig, device: &B::Device) -> Self {
        Self {
            conv1: conv3x3_layer(cin, cout, config.padding, device),
            norm1: NormLayer::new(config.norm, cout, device),
            conv2: conv3x3_layer(cout, cout, config.padding, device),
            norm2: NormLayer::new(config.norm, cout, device),
            relu: Relu::new(),
            padding: config.padding,
            activation: config.activation,
        }
    }
}

impl<B: KernelBackend> DoubleConv<B> {
    /// Convolution, normalisation, activation. A padded convolution runs on the project's
    /// kernels — straight into a ReLU with the ReLU fused (the paper's layer); with a norm, the
    /// norm and the activation run fused after it (see `kernels::norm`), and at inference
    /// BatchNorm's running statistics fold into the convolution's weights and bias. Unpadded
    /// convolutions run on Burn's; a backend without the fused norm composes Burn's modules.
    fn layer(
        &self,
        conv: &Conv2d<B>,
        norm: Option<&NormLayer<B>>,
        x: Tensor<B, 4>,
        path: ConvPath,
    ) -> Tensor<B, 4> {
        let relu = self.activation == Activation::Relu;
        let folded = match self.padding {
            Padding::Same => norm.and_then(|n| n.folded(conv, path)),
            Padding::Valid => None,
        };
        if let Some((weight, bias)) = folded {
            let y = conv3x3(x, weight, bias, relu, path); // [b, cout, h, w]
            return if relu {
                y
            } else {
                norm::activation_on(y, self.activation, path)
            };
        }
        let fused = norm.is_none() && relu;
        let y = match (self.padding, &conv.bias) {
            (Padding::Same, Some(bias)) => {
                conv3x3(x, conv.weight.val(), bias.val(), fused, path) // [b, cout, h, w]
            }
            _ if fused => return self.relu.forward(conv.forward(x)),
            _ => conv.forward(x), // [b, cout, h', w']
        };
        match norm {
            _ if fused => y,
            Some(n) => n.forward_act(y, self.activation, path),
            None => norm::activation(y, self.activation),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>, path: ConvPath) -> Tensor<B, 4> {
        let x = self.layer(&self.conv1, self.norm1.as_ref(), x, path); // [b, cout, h', w']
        self.layer(&self.conv2, self.norm2.as_ref(), x, path) // [b, cout, h'', w'']
    }
}

/// 2×2 max-pool, then a `DoubleConv`.
#[derive(Module, Debug)]
struct Down<B: Backend> {
    conv: DoubleConv<B>,
}

impl<B: Backend> Down<B> {
    pub fn new(cin: usize, cout: usize, config: &ModelConfig, device: &B::Device) -> Self {
        Self {
            conv: DoubleConv::new(cin, cout, config, device),
        }
    }
}

impl<B: KernelBackend> Down<B> {
    pub fn forward(&self, x: Tensor<B, 4>, path: ConvPath) -> Tensor<B, 4> {
        let x = max_pool2x2(x, path); // [b, cin, h/2, w/2]
        self.conv.forward(x, path) // [b, cout, h/2, w/2] (same padding)
    }
}

/// 2×2 stride-2 transposed convolution, concatenation with the (cropped) skip, `DoubleConv`.
#[derive(Module, Debug)]
struct Up<B: Backend> {
    up: ConvTranspose2d<B>,
    conv: DoubleConv<B>,
}

impl<B: Backend> Up<B> {
    /// `cin` channels come from the level below; the up-convolution maps them to `skip`
    /// channels, as many as the skip brings, and the double conv maps `2·skip` to `cout`.
    pub fn new(
        cin: usize,
        skip: usize,
        cout: usize,
        config: &ModelConfig,
        device: &B::Device,
    ) -> Self {
        Self {
            up: ConvTranspose2dConfig::new([cin, skip], [2, 2])
                .with_stride([2, 2])
                .with_initializer(he_normal())
                .init(device),
            conv: DoubleConv::new(skip * 2, cout, config, device),
        }
    }
}

impl<B: KernelBackend> Up<B> {
    pub fn forward(&self, below: Tensor<B, 4>, skip: Tensor<B, 4>, path: ConvPath) -> Tensor<B, 4> {
        let up = match &self.up.bias {
            Some(bias) => up2x2(below, self.up.weight.val(), bias.val(), path),
            None => self.up.forward(below),
        }; // [b, skip_c, 2h, 2w]
        let [_, _, h, w] = up.dims();
        let skip = center_crop(skip, h, w); // [b, skip_c, 2h, 2w]
        let x = cat_channels(up, skip, path); // [b, 2·skip_c, 2h, 2w]
        self.conv.forward(x, path) // [b, cout, 2h, 2w] (same padding)
    }
}

/// The 1×1 head.
#[derive(Module, Debug)]
struct OutConv<B: Backend> {
    conv: Conv2d<B>,
}

impl<B: Backend> OutConv<B> {
    pub fn new(cin: usize, cout: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([cin, cout], [1, 1])
                .with_initializer(he_normal())
                .init(device),
        }
    }
}

impl<B: KernelBackend> OutConv<B> {
    pub fn forward(&self, x: Tensor<B, 4>, path: ConvPath) -> Tensor<B, 4> {
        match &self.conv.bias {
            Some(bias) => conv1x1(x, self.conv.weight.val(), bias.val(), path), // [b, cout, h, w]
            None => self.conv.forward(x),                                       // [b, cout, h, w]
        }
    }
}

/// Crops the centre `h × w` of a `[b, c, H, W]` tensor (the paper's skip crop).
pub(crate) fn center_crop<B: Backend>(x: Tensor<B, 4>, h: usize, w: usize) -> Tensor<B, 4> {
    let [b, c, hh, ww] = x.dims();
    if hh == h && ww == w {
        return x;
    }
    let top = (hh - h) / 2;
    let left = (ww - w) / 2;
    x.slice([0..b, 0..c, top..top + h, left..left + w]) // [b, c, h, w]
}

/// The U-Net. `widths[i]` channels at level `i`; the head has one channel per class
/// (2 for softmax losses, 1 for MSE / sigmoid losses).
#[derive(Module, Debug)]
pub(crate) struct UNet<B: Backend> {
    inc: DoubleConv<B>,
    downs: Vec<Down<B>>,
    ups: Vec<Up<B>>,
    dropout: Dropout,
    outc: OutConv<B>,
    /// The MSE recipe puts a ReLU on the output (the blog); other losses take raw logits.
    relu_head: bool,
    /// `model.presence_head`: pooled bottleneck → one logit, "the image holds a nerve".
    presence: Option<Linear<B>>,
    /// Which kernels run the convolutions (not a parameter: a record loads into any choice).
    kernels: ConvPath,
}

impl<B: Backend> UNet<B> {
    pub fn new(config: &ModelConfig, loss: LossKind, device: &B::Device) -> Self {
        let w = &config.widths;
        let levels = w.len();
        let inc = DoubleConv::new(1, w[0], config, device);
        let downs = (1..levels)
            .map(|i| Down::new(w[i - 1], w[i], config, device))
            .collect();
        let ups = (1..levels)
            .rev()
            .map(|i| Up::new(w[i], w[i - 1], w[i - 1], config, device))
            .collect();
        Self {
            inc,
            downs,
            ups,
            dropout: DropoutConfig::new(config.dropout).init(),
            outc: OutConv::new(w[0], loss.out_channels(), device),
            relu_head: loss == LossKind::Mse,
            presence: config
                .presence_head
                .then(|| LinearConfig::new(w[levels - 1], 1).init(device)),
            kernels: ConvPath::Auto,
        }
    }

    /// The initial network of `seed`, drawn on the CPU whatever the backend, then moved to
    /// `device`: every backend draws other numbers from the same seed (Flex's generator, cubecl's
    /// on each GPU), so drawing on the CPU is what makes a seed start from the same weights on
    /// the CPU, CUDA and wgpu, and a study comparable across machines.
    pub(crate) fn seeded(
        config: &ModelConfig,
        loss: LossKind,
        seed: u64,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let cpu = Default::default();
        burn::backend::Flex::seed(&cpu, seed);
        let drawn: UNet<burn::backend::Flex> = UNet::new(config, loss, &cpu);
        // Parameters initialise lazily; touching them all fixes the order of the draws.
        drawn.num_params();
        let bytes = record::model_to_bytes(&drawn)?;
        record::model_from_bytes(Self::new(config, loss, device), bytes, device)
    }

    /// The same network with its convolutions on `kernels` (the benchmark compares them).
    pub(crate) fn with_kernels(self, kernels: ConvPath) -> Self {
        Self { kernels, ..self }
    }
}

impl<B: KernelBackend> UNet<B> {
    /// `[b, 1, h, w]` image → `[b, classes, h_out, w_out]` (`h_out = h` with same padding).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.forward_heads(x).0
    }

    /// The segmentation output and, with a presence head, its logit per image (`[b, 1]`).
    pub(crate) fn forward_heads(&self, x: Tensor<B, 4>) -> (Tensor<B, 4>, Option<Tensor<B, 2>>) {
        let mut skips = Vec::with_capacity(self.downs.len());
        let path = self.kernels;
        let mut x = self.inc.forward(x, path); // [b, w0, h, w]
        for down in &self.downs {
            skips.push(x.clone());
            x = down.forward(x, path); // [b, w_{i+1}, h/2^(i+1), w/2^(i+1)]
        }
        let presence = self.presence.as_ref().map(|head| {
            let [b, c, _, _] = x.dims();
            let pooled = x.clone().mean_dim(3).mean_dim(2).reshape([b, c]); // [b, w_last]
            head.forward(pooled) // [b, 1]
        });
        // The paper's dropout sits at the end of the contracting path.
        let mut x = self.dropout.forward(x); // [b, w_last, h/2^L, w/2^L]
        for up in &self.ups {
            let skip = skips.pop().expect("one skip per level");
            x = up.forward(x, skip, path); // [b, w_i, h/2^i, w/2^i]
        }
        let x = self.outc.forward(x, path); // [b, classes, h, w]
        let x = if self.relu_head {
            burn::tensor::activation::relu(x)
        } else {
            x
        };
        (x, presence)
    }
}

impl<B: Backend> UNet<B> {
    /// One parameter value read back from the device: forces pending work to finish on
    /// asynchronous backends (used by the benchmark to time whole steps).
    #[allow(clippy::single_range_in_vec_init)] // Burn's slice takes one range per dimension
    pub(crate) fn probe_value(&self) -> f32 {
        let w = self.outc.conv.weight.val(); // [classes, w0, 1, 1]
        w.flatten::<1>(0, 3)
            .slice([0..1])
            .into_scalar()
            .elem::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Norm;

    #[test]
    fn valid_padding_matches_the_paper() {
        assert_eq!(output_size(572, 5, Padding::Valid), Ok(388));
        assert!(output_size(571, 5, Padding::Valid).is_err());
        assert_eq!(output_size(128, 5, Padding::Same), Ok(128));
        assert!(output_size(100, 5, Padding::Same).is_err());
    }

    fn forward_dims(
        widths: &[usize],
        padding: Padding,
        loss: LossKind,
        input: [usize; 4],
    ) -> ([usize; 4], usize) {
        let device = Default::default();
        let cfg = ModelConfig {
            widths: widths.to_vec(),
            padding,
            ..ModelConfig::default()
        };
        let model = UNet::<burn::backend::Flex>::new(&cfg, loss, &device);
        let x = Tensor::<burn::backend::Flex, 4>::zeros(input, &device);
        (model.forward(x).dims(), model.num_params())
    }

    #[test]
    fn output_shapes_and_parameter_counts_for_both_width_sets() {
        // The reduced (blog) widths: same parameter count as the PyTorch reference (68 518).
        let (dims, params) = forward_dims(
            &[3, 6, 12, 24, 48],
            Padding::Same,
            LossKind::Mse,
            [2, 1, 64, 80],
        );
        assert_eq!((dims, params), ([2, 1, 64, 80], 68_518));
        let (dims, params) = forward_dims(
            &[3, 6, 12, 24, 48],
            Padding::Same,
            LossKind::Ce,
            [1, 1, 32, 48],
        );
        assert_eq!((dims, params), ([1, 2, 32, 48], 68_522));
        // The paper widths: 31 030 593 parameters with one output channel, as PyTorch counts.
        let (dims, params) = forward_dims(
            &[64, 128, 256, 512, 1024],
            Padding::Same,
            LossKind::Mse,
            [1, 1, 32, 32],
        );
        assert_eq!((dims, params), ([1, 1, 32, 32], 31_030_593));
        let (dims, _) = forward_dims(
            &[64, 128, 256, 512, 1024],
            Padding::Same,
            LossKind::Ce,
            [1, 1, 16, 16],
        );
        assert_eq!(dims, [1, 2, 16, 16]);
    }

    #[test]
    fn every_kernel_choice_computes_the_same_network() {
        let device = Default::default();
        let cfg = ModelConfig {
            widths: vec![3, 6, 12],
            padding: Padding::Same,
            dropout: 0.0,
            ..ModelConfig::default()
        };
        burn::backend::Flex::seed(&device, 7);
        let model = UNet::<burn::backend::Flex>::new(&cfg, LossKind::Ce, &device);
        let x = Tensor::<burn::backend::Flex, 4>::random(
            [2, 1, 32, 40],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        // Parameters are initialised lazily, per clone: draw them once before cloning.
        let _ = model.forward(x.clone());
        let run = |path: ConvPath| {
            let y = model.clone().with_kernels(path).forward(x.clone());
            y.into_data().to_vec::<f32>().unwrap()
        };
        let reference = run(ConvPath::Generic);
        for path in [
            ConvPath::Auto,
            ConvPath::Direct,
            ConvPath::Gemm,
            ConvPath::Winograd,
        ] {
            let y = run(path);
            let err = y
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-4, "{path:?}: max error {err}");
        }
    }

    #[test]
    fn norms_and_elu_keep_shapes_add_their_per_channel_parameters_and_train() {
        use burn::backend::Autodiff;
        type Ad = Autodiff<burn::backend::Flex>;
        let device = Default::default();
        // Every 3×3 convolution of the reduced widths: 2·(3+6+12+24+48) encoder and
        // 2·(24+12+6+3) decoder output channels, each with a scale and a shift (and for
        // BatchNorm a running mean and variance, which Burn counts too).
        let channels = 2 * (3 + 6 + 12 + 24 + 48) + 2 * (24 + 12 + 6 + 3);
        for (norm, activation) in [
            (Norm::Batch, Activation::Elu),
            (Norm::Instance, Activation::Relu),
            (Norm::None, Activation::Elu),
        ] {
            let cfg = ModelConfig {
                norm,
                activation,
                ..ModelConfig::default()
            };
            let model = UNet::<Ad>::new(&cfg, LossKind::Bce, &device);
            let per_channel = match norm {
                Norm::None => 0,
                Norm::Instance => 2,
                Norm::Batch => 4,
            };
            let expected = 68_518 + per_channel * channels;
            assert_eq!(model.num_params(), expected, "{norm:?} + {activation:?}");
            let x = Tensor::<Ad, 4>::random(
                [2, 1, 32, 48],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let y = model.forward(x.clone()); // [2, 1, 32, 48]
            assert_eq!(y.dims(), [2, 1, 32, 48]);
            // Gradients reach the first convolution through every norm and activation.
            let grads = y.powi_scalar(2).mean().backward();
            let first = model.inc.conv1.weight.grad(&grads).expect("a gradient");
            let norm_of_grad = first.abs().sum().into_scalar().elem::<f32>();
            assert!(norm_of_grad > 0.0, "{norm:?} + {activation:?}: no gradient");
        }
    }

    #[test]
    fn fused_norms_match_burns_modules_in_training_and_at_inference() {
        use burn::backend::Autodiff;
        use burn::module::AutodiffModule;
        type Ad = Autodiff<burn::backend::Flex>;
        let device = Default::default();
        let max_err = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max)
                / scale
        };
        for (norm, activation, padding, size) in [
            (Norm::Batch, Activation::Elu, Padding::Same, [2, 1, 32, 40]),
            (
                Norm::Instance,
                Activation::Elu,
                Padding::Same,
                [2, 1, 32, 40],
            ),
            (Norm::Batch, Activation::Relu, Padding::Same, [1, 1, 24, 16]),
            (Norm::Batch, Activation::Elu, Padding::Valid, [2, 1, 60, 60]),
        ] {
            let cfg = ModelConfig {
                widths: vec![3, 6, 12],
                norm,
                activation,
                padding,
                dropout: 0.0,
                ..ModelConfig::default()
            };
            burn::backend::Flex::seed(&device, 11);
            let model = UNet::<Ad>::new(&cfg, LossKind::Bce, &device);
            let x = Tensor::<Ad, 4>::random(
                size,
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let _ = model.forward(x.clone()); // draws the lazily initialised parameters
            let models = [ConvPath::Generic, ConvPath::Auto].map(|p| model.clone().with_kernels(p));
            let trained: Vec<[Vec<f32>; 2]> = models
                .iter()
                .map(|m| {
                    let y = m.forward(x.clone());
                    let grads = y.clone().powi_scalar(2).mean().backward();
                    let g = m.inc.conv1.weight.grad(&grads).expect("a gradient");
                    [
                        y.inner().into_data().to_vec::<f32>().unwrap(),
                        g.into_data().to_vec::<f32>().unwrap(),
                    ]
                })
                .collect();
            // At inference BatchNorm runs on its running statistics (folded into the
            // convolutions on the kernels' path).
            let inferred: Vec<Vec<f32>> = models
                .iter()
                .map(|m| {
                    m.valid()
                        .forward(x.clone().inner())
                        .into_data()
                        .to_vec::<f32>()
                        .unwrap()
                })
                .collect();
            let what = format!("{norm:?} + {activation:?}, {padding:?}");
            for (k, name) in ["training output", "first weight gradient"]
                .iter()
                .enumerate()
            {
                let err = max_err(&trained[1][k], &trained[0][k]);
                assert!(err < 1e-3, "{what}: {name} differs by {err:e}");
            }
            let err = max_err(&inferred[1], &inferred[0]);
            assert!(err < 1e-3, "{what}: inference differs by {err:e}");
        }
    }

    #[test]
    fn the_presence_head_gives_one_logit_per_image_and_trains_the_encoder() {
        use burn::backend::Autodiff;
        type Ad = Autodiff<burn::backend::Flex>;
        let device = Default::default();
        let cfg = ModelConfig {
            presence_head: true,
            ..ModelConfig::default()
        };
        let model = UNet::<Ad>::new(&cfg, LossKind::Mse, &device);
        // A linear layer from the 48 bottleneck channels to one logit: 48 weights + 1 bias.
        assert_eq!(model.num_params(), 68_518 + 49);
        let x = Tensor::<Ad, 4>::ones([3, 1, 32, 48], &device);
        let (seg, presence) = model.forward_heads(x);
        assert_eq!(seg.dims(), [3, 1, 32, 48]);
        let logits = presence.expect("a presence head");
        assert_eq!(logits.dims(), [3, 1]);
        // The presence loss alone reaches the head and the first convolution.
        let grads = logits.powi_scalar(2).mean().backward();
        let head = model
            .presence
            .as_ref()
            .unwrap()
            .weight
            .grad(&grads)
            .expect("head gradient");
        assert!(head.abs().sum().into_scalar().elem::<f32>() > 0.0);
        let first = model
            .inc
            .conv1
            .weight
            .grad(&grads)
            .expect("encoder gradient");
        assert!(first.abs().sum().into_scalar().elem::<f32>() > 0.0);
        let plain = UNet::<Ad>::new(&ModelConfig::default(), LossKind::Mse, &device);
        assert!(
            plain
                .forward_heads(Tensor::ones([1, 1, 32, 48], &device))
                .1
                .is_none()
        );
    }

    #[test]
    fn norms_and_elu_work_with_unpadded_convolutions() {
        let device = Default::default();
        let cfg = ModelConfig {
            widths: vec![2, 4, 4],
            padding: Padding::Valid,
            norm: Norm::Instance,
            activation: Activation::Elu,
            ..ModelConfig::default()
        };
        let model = UNet::<burn::backend::Flex>::new(&cfg, LossKind::Ce, &device);
        let side = output_size(92, 3, Padding::Valid).expect("92 fits three levels");
        let x = Tensor::<burn::backend::Flex, 4>::ones([1, 1, 92, 92], &device);
        assert_eq!(model.forward(x).dims(), [1, 2, side, side]);
    }

    #[test]
    fn valid_padding_gives_the_papers_572_to_388() {
        // Shapes depend on the number of levels, not the widths: five levels as the paper.
        let (dims, _) = forward_dims(
            &[1, 2, 2, 2, 2],
            Padding::Valid,
            LossKind::Ce,
            [1, 1, 572, 572],
        );
        assert_eq!(dims, [1, 2, 388, 388]);
    }

    #[test]
    fn size_error_suggests_nearest_valid() {
        let err = check_input_size([100, 128], &[3, 6, 12, 24, 48], Padding::Same).unwrap_err();
        assert!(err.contains("height 100"), "{err}");
        assert!(err.contains("96 or 112"), "{err}");
        let err =
            check_input_size([570, 572], &[64, 128, 256, 512, 1024], Padding::Valid).unwrap_err();
        assert!(err.contains("572"), "{err}");
    }
}
