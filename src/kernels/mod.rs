//! Custom CPU kernels for the U-Net's ops: the 3×3 convolution (stride 1, zero padding 1,
//! optionally fused with the ReLU that follows it), the 2×2 stride-2 up-convolution, the 1×1
//! head, the 2×2 max-pool and the skip concatenation, each with its backward pass.
//!
//! Burn 0.21's Flex backend runs a convolution as tiled im2col + single-threaded GEMM tiles and
//! computes the backward pass with Burn's generic rules (the weight gradient as a convolution
//! over swapped batch/channel dimensions), which spends its time moving data (BENCHMARKS.md).
//! Three implementations replace it, each chosen per kernel where it measured fastest
//! ([`ConvPath::Auto`], measured with `examples/conv_kernels.rs`):
//! - [`direct`]: row-wise kernels for long rows and few channels (the narrow layers);
//! - [`gemm`]: pixel-major im2col + multithreaded matrix products, forward and backward (the
//!   other layers under 64 channels, and the forward pass on small planes);
//! - [`winograd`]: Winograd F(2×2, 3×3) and F(4×4, 3×3) minimal filtering, forward and
//!   backward, for the layers with 64 channels or more (the paper widths).
//!
//! The ops form a backend extension: [`KernelBackend`] is implemented for Flex (forward), for
//! `Autodiff<Flex>` (forward + the custom backward registered on Burn's autodiff graph) and,
//! with the `cuda` feature, for CUDA through Burn's own ops. [`ConvPath::Generic`] runs Burn's ops
//! on the CPU too: the reference the tests compare every kernel with.

pub mod direct;
pub mod gemm;
pub mod winograd;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::ops::{
    ActivationOps, ConvOptions, ConvTransposeOptions, FloatTensor, FloatTensorOps, ModuleOps,
};
use burn::tensor::{TensorMetadata, TensorPrimitive};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};

/// Which implementation runs a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvPath {
    /// The fastest measured for the shape, kernel by kernel: [`ConvPath::Direct`] for planes of
    /// at least [`DIRECT_MIN_PLANE`] pixels and `cin · cout` up to [`DIRECT_MAX`]; Winograd
    /// for 3×3 layers with [`WINOGRAD_MIN_CHANNELS`] channels or more (F(4×4, 3×3) from
    /// [`WINOGRAD4_MIN_TILES`] 4×4 tiles, im2col's forward below [`WINOGRAD_MIN_TILES`] 2×2
    /// tiles); [`ConvPath::Gemm`] otherwise (BENCHMARKS.md).
    Auto,
    /// The row-wise kernels of [`direct`].
    Direct,
    /// The im2col + GEMM kernels of [`gemm`].
    Gemm,
    /// The Winograd F(2×2, 3×3) kernels of [`winograd`] for every 3×3 convolution (the other
    /// ops as [`ConvPath::Gemm`]).
    Winograd,
    /// Burn's own convolution and generic backward (the reference the tests compare with).
    Generic,
}

/// The path the model's convolutions take; `unet-lab bench --kernels` changes it to measure
/// one implementation against another.
static MODEL_PATH: AtomicU8 = AtomicU8::new(0);

const PATHS: [ConvPath; 5] = [
    ConvPath::Auto,
    ConvPath::Direct,
    ConvPath::Gemm,
    ConvPath::Winograd,
    ConvPath::Generic,
];

/// Makes every convolution of the model run on `path` (for benchmarks; [`ConvPath::Auto`] is the
/// default).
pub fn set_model_path(path: ConvPath) {
    let index = PATHS
        .iter()
        .position(|&p| p == path)
        .expect("a listed path");
    MODEL_PATH.store(index as u8, Ordering::Relaxed);
}

fn model_path() -> ConvPath {
    PATHS[MODEL_PATH.load(Ordering::Relaxed) as usize]
}

/// Row-wise kernels need long rows: below 32×32 the GEMM path wins.
pub const DIRECT_MIN_PLANE: usize = 32 * 32;
/// Beyond 32 × 32 channel pairs the GEMM's arithmetic efficiency wins.
pub const DIRECT_MAX: usize = 32 * 32;

fn padding_one() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

fn pointwise() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
}

fn up_options() -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1)
}

/// A backend that can run the U-Net's two convolutions: 3×3 (stride 1, padding 1) and the
/// 2×2 stride-2 transposed convolution of the up path, both with bias.
pub trait KernelBackend: Backend {
    /// `x` `[b, cin, h, w]`, `weight` `[cout, cin, 3, 3]`, `bias` `[cout]` → `[b, cout, h, w]`,
    /// followed by a ReLU when `relu` is set.
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
        path: ConvPath,
    ) -> FloatTensor<Self>;

    /// `x` `[b, cin, h, w]`, `weight` `[cin, cout, 2, 2]`, `bias` `[cout]` → `[b, cout, 2h, 2w]`.
    fn up2x2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self>;

    /// `x` `[b, cin, h, w]`, `weight` `[cout, cin, 1, 1]`, `bias` `[cout]` → `[b, cout, h, w]`
    /// (the head).
    fn conv1x1(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self>;

    /// 2×2 max-pool with stride 2: `[b, c, h, w]` → `[b, c, h/2, w/2]`.
    fn max_pool2x2(x: FloatTensor<Self>, path: ConvPath) -> FloatTensor<Self>;

    /// Concatenation along channels (the skip connection): `[b, ca, h, w]` and `[b, cb, h, w]`
    /// → `[b, ca + cb, h, w]`.
    fn cat_channels(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self>;
}

/// The tensor-level 3×3 convolution followed by a ReLU, as every 3×3 layer of the U-Net runs.
pub fn conv3x3_relu<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 4> {
    conv3x3_on(x, weight, bias, true, model_path())
}

/// The 3×3 convolution, with or without the ReLU, on a chosen implementation (tests and the
/// benchmark compare them).
pub fn conv3x3_on<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    relu: bool,
    path: ConvPath,
) -> Tensor<B, 4> {
    with_primitives(x, weight, bias, |x, w, b| B::conv3x3(x, w, b, relu, path))
}

/// The tensor-level 2×2 stride-2 transposed convolution.
pub fn up2x2<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 4> {
    up2x2_on(x, weight, bias, model_path())
}

/// The up-convolution on a chosen implementation (tests compare them).
pub fn up2x2_on<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    path: ConvPath,
) -> Tensor<B, 4> {
    with_primitives(x, weight, bias, |x, w, b| B::up2x2(x, w, b, path))
}

/// The tensor-level 1×1 convolution (the head).
pub fn conv1x1<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 4> {
    conv1x1_on(x, weight, bias, model_path())
}

/// The 1×1 convolution on a chosen implementation (tests compare them).
pub fn conv1x1_on<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    path: ConvPath,
) -> Tensor<B, 4> {
    with_primitives(x, weight, bias, |x, w, b| B::conv1x1(x, w, b, path))
}

/// The tensor-level 2×2 max-pool (stride 2).
pub fn max_pool2x2<B: KernelBackend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    max_pool2x2_on(x, model_path())
}

/// The max-pool on a chosen implementation (tests compare them).
pub fn max_pool2x2_on<B: KernelBackend>(x: Tensor<B, 4>, path: ConvPath) -> Tensor<B, 4> {
    let x = x.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(B::max_pool2x2(x, path)))
}

/// The tensor-level channel concatenation `[a, b]` (the skip connection).
pub fn cat_channels<B: KernelBackend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> Tensor<B, 4> {
    cat_channels_on(a, b, model_path())
}

/// The concatenation on a chosen implementation (tests compare them).
pub fn cat_channels_on<B: KernelBackend>(
    a: Tensor<B, 4>,
    b: Tensor<B, 4>,
    path: ConvPath,
) -> Tensor<B, 4> {
    let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(B::cat_channels(a, b, path)))
}

fn pool_options() -> ([usize; 2], [usize; 2], [usize; 2], [usize; 2], bool) {
    // kernel, stride, padding, dilation, ceil mode
    ([2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// Runs a backend op on the primitives of an input, a weight and a bias.
fn with_primitives<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    op: impl FnOnce(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
) -> Tensor<B, 4> {
    let (x, w, b) = (
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.into_primitive().tensor(),
    );
    Tensor::from_primitive(TensorPrimitive::Float(op(x, w, b)))
}

/// Which of the convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Conv3x3,
    Up2x2,
    Conv1x1,
}

/// The project's implementations (Burn's generic one is `None` where an `Option<Impl>` is used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Direct,
    Gemm,
    Winograd,
    /// F(4×4, 3×3) for the forward pass and the input gradient (F(2×2, 3×3) for the weight
    /// gradient).
    Winograd4,
}

/// Which implementation runs each of an op's three kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    forward: Impl,
    input_grad: Impl,
    weight_grad: Impl,
}

impl Plan {
    fn all(imp: Impl) -> Self {
        Self {
            forward: imp,
            input_grad: imp,
            weight_grad: imp,
        }
    }
}

/// Winograd's forward products have one row per 2×2 tile: below this many rows they are too
/// short to beat im2col's (measured at the paper widths, batch 2: 8×8 planes lose, 16×16 win).
/// Its gradients win on the 8×8 planes too.
pub const WINOGRAD_MIN_TILES: usize = 128;
/// F(4×4, 3×3) has one product row per 4×4 tile: it beats F(2×2, 3×3) from this many
/// (measured at the paper widths, batch 2: the planes from 32×32 up win, 16×16 loses).
pub const WINOGRAD4_MIN_TILES: usize = 128;
/// Winograd needs at least this many channels on both sides: its transforms cost O(channels)
/// per tile against O(channels²) for the products.
pub const WINOGRAD_MIN_CHANNELS: usize = 64;

/// The plan a path resolves to for input `[b, cin, h, w]` and `cout` outputs; `None` for
/// Burn's generic one. The direct kernels pay off on long rows (for the up-convolution, its
/// output rows) and few channel pairs; Winograd on wide layers with enough tiles.
fn resolve(path: ConvPath, kind: Kind, [n, cin, h, w]: [usize; 4], cout: usize) -> Option<Plan> {
    let out_plane = match kind {
        Kind::Conv3x3 => h * w,
        Kind::Up2x2 => 4 * h * w,
        // A 1×1 convolution is a matrix product whatever the shape.
        Kind::Conv1x1 => return (path != ConvPath::Generic).then_some(Plan::all(Impl::Gemm)),
    };
    let imp = match path {
        ConvPath::Direct => Impl::Direct,
        ConvPath::Gemm => Impl::Gemm,
        ConvPath::Winograd if kind == Kind::Conv3x3 => Impl::Winograd,
        ConvPath::Winograd => Impl::Gemm,
        ConvPath::Generic => return None,
        ConvPath::Auto if out_plane >= DIRECT_MIN_PLANE && cin * cout <= DIRECT_MAX => Impl::Direct,
        ConvPath::Auto if kind == Kind::Conv3x3 && cin.min(cout) >= WINOGRAD_MIN_CHANNELS => {
            let tiles = n * h.div_ceil(2) * w.div_ceil(2);
            let tiles4 = n * h.div_ceil(4) * w.div_ceil(4);
            return Some(if tiles4 >= WINOGRAD4_MIN_TILES {
                Plan {
                    weight_grad: Impl::Winograd,
                    ..Plan::all(Impl::Winograd4)
                }
            } else if tiles >= WINOGRAD_MIN_TILES {
                Plan::all(Impl::Winograd)
            } else {
                Plan {
                    forward: Impl::Gemm,
                    ..Plan::all(Impl::Winograd)
                }
            });
        }
        ConvPath::Auto => Impl::Gemm,
    };
    Some(Plan::all(imp))
}

/// Forward, input-gradient and weight-gradient kernels on NCHW slices; the shape arguments
/// are the input's `[b, cin, h, w]` and `cout`.
struct Kernels {
    forward: ForwardKernel,
    input_grad: GradientKernel,
    weight_grad: GradientKernel,
}

/// `(x, weight, bias, [b, cin, h, w], cout) → y`.
type ForwardKernel = fn(&[f32], &[f32], &[f32], [usize; 4], usize) -> Vec<f32>;
/// `(a, b, [b, cin, h, w], cout) → gradient`.
type GradientKernel = fn(&[f32], &[f32], [usize; 4], usize) -> Vec<f32>;

fn kernels(kind: Kind, plan: Plan) -> Kernels {
    Kernels {
        forward: table(kind, plan.forward).forward,
        input_grad: table(kind, plan.input_grad).input_grad,
        weight_grad: table(kind, plan.weight_grad).weight_grad,
    }
}

/// The three kernels of one implementation.
fn table(kind: Kind, imp: Impl) -> Kernels {
    match (kind, imp) {
        (Kind::Conv3x3, Impl::Direct) => Kernels {
            forward: direct::forward,
            input_grad: direct::input_grad,
            weight_grad: direct::weight_grad,
        },
        (Kind::Conv3x3, Impl::Gemm) => Kernels {
            forward: gemm::forward,
            input_grad: gemm::input_grad,
            weight_grad: gemm::weight_grad,
        },
        (Kind::Conv3x3, Impl::Winograd) => Kernels {
            forward: winograd::forward,
            input_grad: winograd::input_grad,
            weight_grad: winograd::weight_grad,
        },
        (Kind::Conv3x3, Impl::Winograd4) => Kernels {
            forward: winograd::forward_f4,
            input_grad: winograd::input_grad_f4,
            weight_grad: winograd::weight_grad,
        },
        (Kind::Up2x2, Impl::Direct) => Kernels {
            forward: direct::up_forward,
            input_grad: direct::up_input_grad,
            weight_grad: direct::up_weight_grad,
        },
        (Kind::Up2x2, Impl::Gemm | Impl::Winograd | Impl::Winograd4) => Kernels {
            forward: gemm::up_forward,
            input_grad: gemm::up_input_grad,
            weight_grad: gemm::up_weight_grad,
        },
        (Kind::Conv1x1, _) => Kernels {
            forward: gemm::pointwise_forward,
            input_grad: gemm::pointwise_input_grad,
            weight_grad: gemm::pointwise_weight_grad,
        },
    }
}

fn dims4(t: &FlexTensor) -> [usize; 4] {
    t.shape().dims::<4>()
}

/// The tensor's values as one contiguous f32 slice (copied only if it is a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

fn from_vec(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Runs one of the project's kernels forward on Flex, the ReLU applied in place.
fn run_forward(
    kind: Kind,
    plan: Plan,
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    relu: bool,
) -> FlexTensor {
    let dims = dims4(&x);
    let [n, _, h, w] = dims;
    let (cout, out_shape) = match kind {
        Kind::Conv3x3 | Kind::Conv1x1 => {
            let cout = dims4(&weight)[0];
            (cout, vec![n, cout, h, w])
        }
        Kind::Up2x2 => {
            let cout = dims4(&weight)[1];
            (cout, vec![n, cout, 2 * h, 2 * w])
        }
    };
    let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
    let mut out =
        (kernels(kind, plan).forward)(values(&x), values(&weight), values(&bias), dims, cout);
    if relu {
        out.par_chunks_mut(1 << 14)
            .for_each(|c| c.iter_mut().for_each(|v| *v = v.max(0.0)));
    }
    from_vec(out, out_shape)
}

impl KernelBackend for Flex {
    fn conv3x3(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        relu: bool,
        path: ConvPath,
    ) -> FlexTensor {
        match resolve(path, Kind::Conv3x3, dims4(&x), dims4(&weight)[0]) {
            Some(plan) => run_forward(Kind::Conv3x3, plan, x, weight, bias, relu),
            None => {
                let y = <Flex as ModuleOps<Flex>>::conv2d(x, weight, Some(bias), padding_one());
                if relu {
                    <Flex as ActivationOps<Flex>>::relu(y)
                } else {
                    y
                }
            }
        }
    }

    fn up2x2(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, path: ConvPath) -> FlexTensor {
        match resolve(path, Kind::Up2x2, dims4(&x), dims4(&weight)[1]) {
            Some(plan) => run_forward(Kind::Up2x2, plan, x, weight, bias, false),
            None => {
                <Flex as ModuleOps<Flex>>::conv_transpose2d(x, weight, Some(bias), up_options())
            }
        }
    }

    fn conv1x1(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, path: ConvPath) -> FlexTensor {
        match resolve(path, Kind::Conv1x1, dims4(&x), dims4(&weight)[0]) {
            Some(plan) => run_forward(Kind::Conv1x1, plan, x, weight, bias, false),
            None => <Flex as ModuleOps<Flex>>::conv2d(x, weight, Some(bias), pointwise()),
        }
    }

    fn max_pool2x2(x: FlexTensor, path: ConvPath) -> FlexTensor {
        if path == ConvPath::Generic {
            let (k, s, p, d, c) = pool_options();
            return <Flex as ModuleOps<Flex>>::max_pool2d(x, k, s, p, d, c);
        }
        let dims = dims4(&x);
        let [n, c, h, w] = dims;
        let x = contiguous(x);
        from_vec(
            direct::max_pool_forward(values(&x), dims),
            vec![n, c, h / 2, w / 2],
        )
    }

    fn cat_channels(a: FlexTensor, b: FlexTensor, path: ConvPath) -> FlexTensor {
        if path == ConvPath::Generic {
            return <Flex as FloatTensorOps<Flex>>::float_cat(vec![a, b], 1);
        }
        let ([n, ca, h, w], cb) = (dims4(&a), dims4(&b)[1]);
        let (a, b) = (contiguous(a), contiguous(b));
        from_vec(
            direct::interleave(values(&a), values(&b), [n, ca, cb, h * w]),
            vec![n, ca + cb, h, w],
        )
    }
}

/// The backward pass of the project's kernels: gradients for input, weight and bias, through
/// the fused ReLU when there is one.
#[derive(Debug)]
struct KernelBackward {
    kind: Kind,
    plan: Plan,
}

/// What the backward pass keeps: the checkpointed input and weight, and the output when a
/// ReLU was fused (its positive entries are where the gradient passes).
type BackwardState = (NodeId, NodeId, Option<FlexTensor>);

impl Backward<Flex, 3> for KernelBackward {
    type State = BackwardState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let (x_state, w_state, relu_output) = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let out_dims = dims4(&dy);
        // Through the fused ReLU, the gradient passes where the output is positive.
        let dy: std::borrow::Cow<[f32]> = match relu_output {
            Some(out) => {
                let out = contiguous(out);
                values(&dy)
                    .par_iter()
                    .zip(values(&out))
                    .map(|(&g, &o)| if o > 0.0 { g } else { 0.0 })
                    .collect::<Vec<f32>>()
                    .into()
            }
            None => values(&dy).into(),
        };
        let x = contiguous(checkpointer.retrieve_node_output(x_state));
        let w = contiguous(checkpointer.retrieve_node_output(w_state));
        let (dims, w_shape) = (dims4(&x), dims4(&w).to_vec());
        let cout = out_dims[1];
        let k = kernels(self.kind, self.plan);
        if let Some(node) = node_x {
            let dx = (k.input_grad)(&dy, values(&w), dims, cout);
            grads.register::<Flex>(node.id, from_vec(dx, dims.to_vec()));
        }
        if let Some(node) = node_w {
            let dw = (k.weight_grad)(&dy, values(&x), dims, cout);
            grads.register::<Flex>(node.id, from_vec(dw, w_shape));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(
                node.id,
                from_vec(direct::bias_grad(&dy, out_dims, cout), vec![cout]),
            );
        }
    }
}

/// Records one of the project's kernels on the autodiff graph.
fn tracked<C: CheckpointStrategy>(
    kind: Kind,
    plan: Plan,
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    bias: FloatTensor<Autodiff<Flex, C>>,
    relu: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    match (KernelBackward { kind, plan })
        .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let w_state = prep.checkpoint(&weight);
            let out = run_forward(
                kind,
                plan,
                x.primitive,
                weight.primitive,
                bias.primitive,
                relu,
            );
            let relu_output = relu.then(|| out.clone());
            prep.finish((x_state, w_state, relu_output), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(run_forward(
            kind,
            plan,
            x.primitive,
            weight.primitive,
            bias.primitive,
            relu,
        )),
    }
}

impl<C: CheckpointStrategy> KernelBackend for Autodiff<Flex, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
        path: ConvPath,
    ) -> FloatTensor<Self> {
        let (dims, cout) = (dims4(&x.primitive), dims4(&weight.primitive)[0]);
        match resolve(path, Kind::Conv3x3, dims, cout) {
            Some(plan) => tracked::<C>(Kind::Conv3x3, plan, x, weight, bias, relu),
            None => {
                let y = <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), padding_one());
                if relu {
                    <Self as ActivationOps<Self>>::relu(y)
                } else {
                    y
                }
            }
        }
    }

    fn up2x2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self> {
        let (dims, cout) = (dims4(&x.primitive), dims4(&weight.primitive)[1]);
        match resolve(path, Kind::Up2x2, dims, cout) {
            Some(plan) => tracked::<C>(Kind::Up2x2, plan, x, weight, bias, false),
            None => {
                <Self as ModuleOps<Self>>::conv_transpose2d(x, weight, Some(bias), up_options())
            }
        }
    }

    fn conv1x1(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self> {
        let (dims, cout) = (dims4(&x.primitive), dims4(&weight.primitive)[0]);
        match resolve(path, Kind::Conv1x1, dims, cout) {
            Some(plan) => tracked::<C>(Kind::Conv1x1, plan, x, weight, bias, false),
            None => <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), pointwise()),
        }
    }

    fn max_pool2x2(x: FloatTensor<Self>, path: ConvPath) -> FloatTensor<Self> {
        if path == ConvPath::Generic {
            let (k, s, p, d, c) = pool_options();
            return <Self as ModuleOps<Self>>::max_pool2d(x, k, s, p, d, c);
        }
        match PoolBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                prep.finish(x_state, Flex::max_pool2x2(x.primitive, path))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::max_pool2x2(x.primitive, path)),
        }
    }

    fn cat_channels(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        path: ConvPath,
    ) -> FloatTensor<Self> {
        if path == ConvPath::Generic {
            return <Self as FloatTensorOps<Self>>::float_cat(vec![a, b], 1);
        }
        let channels = [dims4(&a.primitive)[1], dims4(&b.primitive)[1]];
        match CatBackward
            .prepare::<C>([a.node.clone(), b.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                prep.finish(channels, Flex::cat_channels(a.primitive, b.primitive, path))
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::cat_channels(a.primitive, b.primitive, path))
            }
        }
    }
}

/// The concatenation's backward pass: the gradient split back into its two channel ranges,
/// each a contiguous tensor.
#[derive(Debug)]
struct CatBackward;

impl Backward<Flex, 2> for CatBackward {
    type State = [usize; 2];

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_a, node_b] = ops.parents;
        let [ca, cb] = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let [n, _, h, w] = dims4(&dy);
        let (da, db) = direct::deinterleave(values(&dy), [n, ca, cb, h * w]);
        if let Some(node) = node_a {
            grads.register::<Flex>(node.id, from_vec(da, vec![n, ca, h, w]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, from_vec(db, vec![n, cb, h, w]));
        }
    }
}

/// The max-pool's backward pass: the gradient goes to each window's maximum, found again from
/// the checkpointed input (cheaper than keeping indices).
#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let x = contiguous(checkpointer.retrieve_node_output(ops.state));
        if let Some(node) = node_x {
            let dims = dims4(&x);
            let dx = direct::max_pool_input_grad(values(&dy), values(&x), dims);
            grads.register::<Flex>(node.id, from_vec(dx, dims.to_vec()));
        }
    }
}

/// CUDA runs Burn's own convolutions (GPU kernels; the CPU crossover does not apply).
#[cfg(feature = "cuda")]
macro_rules! burn_convolutions {
    () => {
        fn conv3x3(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            relu: bool,
            _path: ConvPath,
        ) -> FloatTensor<Self> {
            let y = <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), padding_one());
            if relu {
                <Self as ActivationOps<Self>>::relu(y)
            } else {
                y
            }
        }

        fn up2x2(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            _path: ConvPath,
        ) -> FloatTensor<Self> {
            <Self as ModuleOps<Self>>::conv_transpose2d(x, weight, Some(bias), up_options())
        }

        fn conv1x1(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            _path: ConvPath,
        ) -> FloatTensor<Self> {
            <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), pointwise())
        }

        fn max_pool2x2(x: FloatTensor<Self>, _path: ConvPath) -> FloatTensor<Self> {
            let (k, s, p, d, c) = pool_options();
            <Self as ModuleOps<Self>>::max_pool2d(x, k, s, p, d, c)
        }

        fn cat_channels(
            a: FloatTensor<Self>,
            b: FloatTensor<Self>,
            _path: ConvPath,
        ) -> FloatTensor<Self> {
            <Self as FloatTensorOps<Self>>::float_cat(vec![a, b], 1)
        }
    };
}

#[cfg(feature = "cuda")]
impl KernelBackend for burn::backend::Cuda {
    burn_convolutions!();
}

#[cfg(feature = "cuda")]
impl<C: CheckpointStrategy> KernelBackend for Autodiff<burn::backend::Cuda, C> {
    burn_convolutions!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::tensor::Distribution;

    type Ad = Autodiff<Flex>;

    fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
            / scale
    }

    type Op = fn(Tensor<Ad, 4>, Tensor<Ad, 4>, Tensor<Ad, 1>, ConvPath) -> Tensor<Ad, 4>;

    fn conv(x: Tensor<Ad, 4>, w: Tensor<Ad, 4>, b: Tensor<Ad, 1>, path: ConvPath) -> Tensor<Ad, 4> {
        conv3x3_on(x, w, b, false, path)
    }

    fn conv_relu(
        x: Tensor<Ad, 4>,
        w: Tensor<Ad, 4>,
        b: Tensor<Ad, 1>,
        path: ConvPath,
    ) -> Tensor<Ad, 4> {
        conv3x3_on(x, w, b, true, path)
    }

    /// One of the project's kernels against Burn's generic one, forward and every gradient:
    /// input `[n, cin, h, w]`, weight of `w_shape`, output `[n, cout, oh, ow]`.
    fn compare(
        op: Op,
        path: ConvPath,
        input: [usize; 4],
        w_shape: [usize; 4],
        out: [usize; 4],
        what: &str,
    ) {
        let device = Default::default();
        Flex::seed(
            &device,
            input
                .iter()
                .chain(&w_shape)
                .fold(7, |a, &d| a * 31 + d as u64),
        );
        let cout = out[1];
        let x = Tensor::<Ad, 4>::random(input, Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<Ad, 4>::random(w_shape, Distribution::Normal(0.0, 0.5), &device);
        let b = Tensor::<Ad, 1>::random([cout], Distribution::Normal(0.0, 0.5), &device);
        // A weighted sum gives every output a different upstream gradient.
        let up = Tensor::<Ad, 4>::random(out, Distribution::Normal(0.0, 1.0), &device);
        let run = |path: ConvPath| {
            let (x, k, b) = (
                x.clone().require_grad(),
                k.clone().require_grad(),
                b.clone().require_grad(),
            );
            let y = op(x.clone(), k.clone(), b.clone(), path);
            let grads = (y.clone() * up.clone()).sum().backward();
            let v = |t: Tensor<Flex, 4>| t.into_data().to_vec::<f32>().unwrap();
            [
                v(y.inner()),
                v(x.grad(&grads).unwrap()),
                v(k.grad(&grads).unwrap()),
                b.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap(),
            ]
        };
        let (ours, generic) = (run(path), run(ConvPath::Generic));
        for (part, (d, g)) in [
            "forward",
            "input gradient",
            "weight gradient",
            "bias gradient",
        ]
        .iter()
        .zip(ours.iter().zip(&generic))
        {
            let err = max_rel_err(d, g);
            assert!(
                err <= 1e-4,
                "{part} of {what} on {path:?}: relative error {err}"
            );
        }
    }

    fn check(path: ConvPath, n: usize, cin: usize, cout: usize, h: usize, w: usize) {
        for (op, name) in [
            (conv as Op, "conv 3×3"),
            (conv_relu as Op, "conv 3×3 + ReLU"),
        ] {
            let what = format!("{name} {n}×{cin}→{cout} at {h}×{w}");
            compare(
                op,
                path,
                [n, cin, h, w],
                [cout, cin, 3, 3],
                [n, cout, h, w],
                &what,
            );
        }
    }

    fn check_up(path: ConvPath, n: usize, cin: usize, cout: usize, h: usize, w: usize) {
        let what = format!("up 2×2 {n}×{cin}→{cout} at {h}×{w}");
        compare(
            up2x2_on,
            path,
            [n, cin, h, w],
            [cin, cout, 2, 2],
            [n, cout, 2 * h, 2 * w],
            &what,
        );
    }

    /// Small planes, odd sizes, one-pixel rows and columns, and planes of at least 32×32
    /// (where the GEMM path multiplies image by image instead of stacking the batch).
    const CONV_SHAPES: [[usize; 5]; 8] = [
        [2, 4, 3, 32, 33],
        [2, 1, 3, 16, 16],
        [3, 6, 3, 9, 13],
        [2, 12, 24, 8, 8],
        [1, 5, 2, 1, 7],
        [2, 3, 4, 5, 1],
        [2, 96, 48, 4, 4],
        [1, 70, 40, 6, 5],
    ];

    const UP_SHAPES: [[usize; 5]; 5] = [
        [2, 6, 3, 8, 8],
        [3, 12, 6, 5, 7],
        [1, 48, 24, 4, 4],
        [2, 2, 5, 1, 3],
        [2, 80, 40, 3, 2],
    ];

    #[test]
    fn direct_conv3x3_matches_the_generic_convolution() {
        for [n, cin, cout, h, w] in CONV_SHAPES {
            check(ConvPath::Direct, n, cin, cout, h, w);
        }
    }

    #[test]
    fn gemm_conv3x3_matches_the_generic_convolution() {
        for [n, cin, cout, h, w] in CONV_SHAPES {
            check(ConvPath::Gemm, n, cin, cout, h, w);
        }
    }

    #[test]
    fn winograd_conv3x3_matches_the_generic_convolution() {
        for [n, cin, cout, h, w] in CONV_SHAPES {
            check(ConvPath::Winograd, n, cin, cout, h, w);
        }
        // Wide enough for several chunks of tile rows, with odd sides.
        check(ConvPath::Winograd, 2, 64, 48, 67, 35);
    }

    #[test]
    fn mixed_plans_match_the_generic_convolution() {
        // im2col's forward with Winograd's gradients.
        check(ConvPath::Auto, 1, 128, 64, 8, 8);
        // F(4×4, 3×3) forward and input gradient with F(2×2, 3×3)'s weight gradient.
        check(ConvPath::Auto, 2, 64, 64, 64, 64);
    }

    #[test]
    fn direct_up_convolution_matches_the_generic_one() {
        for [n, cin, cout, h, w] in UP_SHAPES {
            check_up(ConvPath::Direct, n, cin, cout, h, w);
        }
    }

    #[test]
    fn gemm_up_convolution_matches_the_generic_one() {
        for [n, cin, cout, h, w] in UP_SHAPES {
            check_up(ConvPath::Gemm, n, cin, cout, h, w);
        }
    }

    fn pointwise(
        x: Tensor<Ad, 4>,
        w: Tensor<Ad, 4>,
        b: Tensor<Ad, 1>,
        path: ConvPath,
    ) -> Tensor<Ad, 4> {
        conv1x1_on(x, w, b, path)
    }

    #[test]
    fn gemm_conv1x1_matches_the_generic_convolution() {
        for [n, cin, cout, h, w] in [[2, 3, 1, 16, 16], [3, 64, 2, 5, 7], [1, 1, 1, 1, 1]] {
            let what = format!("conv 1×1 {n}×{cin}→{cout} at {h}×{w}");
            compare(
                pointwise,
                ConvPath::Gemm,
                [n, cin, h, w],
                [cout, cin, 1, 1],
                [n, cout, h, w],
                &what,
            );
        }
    }

    #[test]
    fn max_pool_matches_the_generic_one() {
        let device = Default::default();
        for (seed, [n, c, h, w]) in [[2, 3, 16, 16], [1, 5, 7, 9], [2, 2, 2, 2]]
            .into_iter()
            .enumerate()
        {
            Flex::seed(&device, seed as u64);
            let x = Tensor::<Ad, 4>::random([n, c, h, w], Distribution::Normal(0.0, 1.0), &device);
            let up = Tensor::<Ad, 4>::random(
                [n, c, h / 2, w / 2],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let run = |path: ConvPath| {
                let x = x.clone().require_grad();
                let y = max_pool2x2_on(x.clone(), path);
                let grads = (y.clone() * up.clone()).sum().backward();
                let v = |t: Tensor<Flex, 4>| t.into_data().to_vec::<f32>().unwrap();
                (v(y.inner()), v(x.grad(&grads).unwrap()))
            };
            // Max and routing are exact: no arithmetic, so no tolerance.
            assert_eq!(
                run(ConvPath::Auto),
                run(ConvPath::Generic),
                "max-pool {n}×{c}×{h}×{w}"
            );
        }
    }

    #[test]
    fn channel_concatenation_matches_the_generic_one() {
        let device = Default::default();
        Flex::seed(&device, 11);
        let a = Tensor::<Ad, 4>::random([2, 3, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<Ad, 4>::random([2, 2, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let up = Tensor::<Ad, 4>::random([2, 5, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let run = |path: ConvPath| {
            let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
            let y = cat_channels_on(a.clone(), b.clone(), path);
            let grads = (y.clone() * up.clone()).sum().backward();
            let v = |t: Tensor<Flex, 4>| t.into_data().to_vec::<f32>().unwrap();
            (
                v(y.inner()),
                v(a.grad(&grads).unwrap()),
                v(b.grad(&grads).unwrap()),
            )
        };
        // Copies only: exact.
        assert_eq!(run(ConvPath::Auto), run(ConvPath::Generic));
    }

    #[test]
    fn the_automatic_choice_follows_the_measured_crossover() {
        let conv = |dims, cout| resolve(ConvPath::Auto, Kind::Conv3x3, dims, cout);
        let all = |imp| Some(Plan::all(imp));
        assert_eq!(conv([8, 3, 128, 128], 3), all(Impl::Direct));
        assert_eq!(conv([2, 1, 128, 128], 64), all(Impl::Direct));
        assert_eq!(conv([2, 32, 32, 32], 64), all(Impl::Gemm));
        assert_eq!(conv([8, 48, 16, 16], 48), all(Impl::Gemm));
        // Paper widths: Winograd on the wide layers, F(4×4, 3×3) on the large planes, and
        // im2col's forward on the 8×8 planes.
        assert_eq!(
            conv([2, 128, 64, 64], 64),
            Some(Plan {
                weight_grad: Impl::Winograd,
                ..Plan::all(Impl::Winograd4)
            })
        );
        assert_eq!(conv([2, 512, 16, 16], 256), all(Impl::Winograd));
        assert_eq!(conv([2, 1024, 16, 16], 512), all(Impl::Winograd));
        assert_eq!(
            conv([2, 1024, 8, 8], 1024),
            Some(Plan {
                forward: Impl::Gemm,
                ..Plan::all(Impl::Winograd)
            })
        );
        assert_eq!(
            resolve(ConvPath::Generic, Kind::Conv3x3, [8, 3, 128, 128], 3),
            None
        );
        // The up-convolution is judged by its output rows.
        assert_eq!(
            resolve(ConvPath::Auto, Kind::Up2x2, [8, 6, 16, 16], 3),
            all(Impl::Direct)
        );
        assert_eq!(
            resolve(ConvPath::Auto, Kind::Up2x2, [8, 6, 8, 8], 3),
            all(Impl::Gemm)
        );
    }

    #[test]
    fn the_kernels_are_deterministic() {
        let device = Default::default();
        Flex::seed(&device, 3);
        let x = Tensor::<Flex, 4>::random([2, 64, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let w = Tensor::<Flex, 4>::random([64, 64, 3, 3], Distribution::Normal(0.0, 0.1), &device);
        let b = Tensor::<Flex, 1>::zeros([64], &device);
        let run = || {
            conv3x3_on(x.clone(), w.clone(), b.clone(), true, ConvPath::Gemm)
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(run(), run());
    }
}
