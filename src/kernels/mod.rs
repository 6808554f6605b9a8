//! Custom CPU kernels for the U-Net's ops: the 3×3 convolution (stride 1, zero padding 1,
//! optionally fused with the ReLU that follows it), the 2×2 stride-2 up-convolution, the 1×1
//! head, the 2×2 max-pool and the skip concatenation, each with its backward pass.
//!
//! Burn 0.21's Flex backend runs a convolution as tiled im2col + single-threaded GEMM tiles and
//! computes the backward pass with Burn's generic rules (the weight gradient as a convolution
//! over swapped batch/channel dimensions), which spends its time moving data (docs/benchmarks.md).
//! Three implementations replace it, each chosen per kernel where it measured fastest
//! ([`ConvPath::Auto`], the rules in [`policy`], measured with `examples/conv_kernels.rs`):
//! - [`direct`]: row-wise kernels for long rows and few channels (the narrow layers);
//! - [`gemm`]: pixel-major im2col + multithreaded matrix products, forward and backward (the
//!   other layers under 64 channels, and the forward pass on small planes);
//! - [`winograd`]: Winograd F(2×2, 3×3) and F(4×4, 3×3) minimal filtering, forward and
//!   backward, for the layers with 64 channels or more (the paper widths).
//!
//! The ops form a backend extension, [`KernelBackend`]: [`flex`] implements it for Flex (the
//! forward ops), [`autodiff`] for `Autodiff<Flex>` (the same forward, plus the custom backward
//! registered on Burn's autodiff graph). Every other backend (CUDA, wgpu) takes the trait's
//! defaults, Burn's own ops in [`generic`], through one blanket fallback ([`BurnOps`]); [`ConvPath::Generic`] runs those on the CPU too, the
//! reference the tests compare every kernel with.
//!
//! The path is an argument of every op, carried by the model (`UNet::with_kernels`), never a
//! process-wide setting.

mod autodiff;
pub mod direct;
mod flex;
pub mod gemm;
pub mod generic;
mod norm;
pub mod policy;
pub mod winograd;

use burn::backend::autodiff::{Autodiff, checkpoint::strategy::CheckpointStrategy};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

pub(crate) use norm::{Act, NormAct, Stats};

/// The output of [`KernelBackend::norm_act`]: the activated output, and the mean and variance
/// it normalised with (one per group: channel, or image and channel).
pub(crate) type Normalized<B> = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

/// Which implementation runs a convolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConvPath {
    /// The fastest measured for the shape, kernel by kernel: [`ConvPath::Direct`] for output
    /// planes of at least [`DIRECT_MIN_OUTPUT_PIXELS`] pixels and `cin · cout` up to
    /// [`DIRECT_MAX_CHANNEL_PAIRS`]; Winograd for 3×3 layers with [`WINOGRAD_MIN_CHANNELS`]
    /// channels or more (F(4×4, 3×3) from [`WINOGRAD4_MIN_TILES`] 4×4 tiles, im2col's forward
    /// below [`WINOGRAD_MIN_TILES`] 2×2 tiles); [`ConvPath::Gemm`] otherwise (docs/benchmarks.md).
    #[default]
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

/// A backend that can run the U-Net's ops. The defaults are Burn's own ops ([`generic`]),
/// whatever the path: what a GPU backend uses.
pub(crate) trait KernelBackend: Backend {
    /// `x` `[b, cin, h, w]`, `weight` `[cout, cin, 3, 3]`, `bias` `[cout]` → `[b, cout, h, w]`,
    /// followed by a ReLU when `relu` is set.
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        relu: bool,
        _path: ConvPath,
    ) -> FloatTensor<Self> {
        generic::conv3x3::<Self>(x, weight, bias, relu)
    }

    /// `x` `[b, cin, h, w]`, `weight` `[cin, cout, 2, 2]`, `bias` `[cout]` → `[b, cout, 2h, 2w]`.
    fn up2x2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        _path: ConvPath,
    ) -> FloatTensor<Self> {
        generic::up2x2::<Self>(x, weight, bias)
    }

    /// `x` `[b, cin, h, w]`, `weight` `[cout, cin, 1, 1]`, `bias` `[cout]` → `[b, cout, h, w]`
    /// (the head).
    fn conv1x1(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        _path: ConvPath,
    ) -> FloatTensor<Self> {
        generic::conv1x1::<Self>(x, weight, bias)
    }

    /// 2×2 max-pool with stride 2: `[b, c, h, w]` → `[b, c, h/2, w/2]`.
    fn max_pool2x2(x: FloatTensor<Self>, _path: ConvPath) -> FloatTensor<Self> {
        generic::max_pool2x2::<Self>(x)
    }

    /// Concatenation along channels (the skip connection): `[b, ca, h, w]` and `[b, cb, h, w]`
    /// → `[b, ca + cb, h, w]`.
    fn cat_channels(
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        _path: ConvPath,
    ) -> FloatTensor<Self> {
        generic::cat_channels::<Self>(a, b)
    }

    /// Whether [`KernelBackend::norm_act`] runs fused on this backend and path (else the
    /// model composes Burn's modules, as a GPU backend always does).
    fn fuses_norm(_path: ConvPath) -> bool {
        false
    }

    /// A norm and its activation on `x` `[b, c, h, w]` with the affine `gamma`, `beta` `[c]`:
    /// under the statistics of `x` itself, or the `running` mean and variance (BatchNorm at
    /// inference). `Err(x)` gives the input back where the backend does not fuse it.
    fn norm_act(
        x: FloatTensor<Self>,
        _gamma: FloatTensor<Self>,
        _beta: FloatTensor<Self>,
        _op: NormAct,
        _running: Option<[FloatTensor<Self>; 2]>,
        _path: ConvPath,
    ) -> Result<Normalized<Self>, FloatTensor<Self>> {
        Err(x)
    }

    /// The activation alone, at inference (ELU after a convolution whose BatchNorm was folded
    /// into it). `Err(x)` gives the input back where the backend keeps Burn's op.
    fn activation(
        x: FloatTensor<Self>,
        _act: Act,
        _path: ConvPath,
    ) -> Result<FloatTensor<Self>, FloatTensor<Self>> {
        Err(x)
    }
}

/// A backend that runs the U-Net on Burn's own ops (every backend but Flex): the one generic
/// fallback, for the backend and its autodiff wrapper alike. A new backend opts in with one
/// line.
trait BurnOps: Backend {}

impl<B: BurnOps> KernelBackend for B {}

impl<B: BurnOps, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {}

#[cfg(feature = "cuda")]
impl BurnOps for burn::backend::Cuda {}

#[cfg(feature = "wgpu")]
impl BurnOps for burn::backend::Wgpu {}

/// The tensor-level 3×3 convolution, with the ReLU fused when `relu` is set.
pub(crate) fn conv3x3<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    relu: bool,
    path: ConvPath,
) -> Tensor<B, 4> {
    with_primitives(x, weight, bias, |x, w, b| B::conv3x3(x, w, b, relu, path))
}

/// The tensor-level 2×2 stride-2 transposed convolution.
pub(crate) fn up2x2<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    path: ConvPath,
) -> Tensor<B, 4> {
    with_primitives(x, weight, bias, |x, w, b| B::up2x2(x, w, b, path))
}

/// The tensor-level 1×1 convolution (the head).
pub(crate) fn conv1x1<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    path: ConvPath,
) -> Tensor<B, 4> {
    with_primitives(x, weight, bias, |x, w, b| B::conv1x1(x, w, b, path))
}

/// The tensor-level 2×2 max-pool (stride 2).
pub(crate) fn max_pool2x2<B: KernelBackend>(x: Tensor<B, 4>, path: ConvPath) -> Tensor<B, 4> {
    let x = x.into_primitive().tensor();
    Tensor::from_primitive(TensorPrimitive::Float(B::max_pool2x2(x, path)))
}

/// The tensor-level channel concatenation `[a, b]` (the skip connection).
pub(crate) fn cat_channels<B: KernelBackend>(
    a: Tensor<B, 4>,
    b: Tensor<B, 4>,
    path: ConvPath,
) -> Tensor<B, 4> {
    let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
    Tensor::from_primitive(TensorPrimitive::Float(B::cat_channels(a, b, path)))
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

#[cfg(test)]
mod tests;
