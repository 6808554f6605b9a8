//! Burn's own ops for the U-Net's kernels, on any backend: [`ConvPath::Generic`] on the CPU
//! (the reference every kernel is tested against) and the whole of a GPU backend, where the
//! CPU crossovers do not apply.
//!
//! [`ConvPath::Generic`]: super::ConvPath::Generic

use burn::prelude::Backend;
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor};

fn padding_one() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

fn pointwise() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [0, 0], [1, 1], 1)
}

fn up_options() -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1)
}

/// 3×3, stride 1, zero padding 1, then the ReLU when `relu` is set.
pub(crate) fn conv3x3<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    relu: bool,
) -> FloatTensor<B> {
    let y = B::conv2d(x, weight, Some(bias), padding_one());
    if relu { B::relu(y) } else { y }
}

/// 2×2 transposed convolution, stride 2.
pub(crate) fn up2x2<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    B::conv_transpose2d(x, weight, Some(bias), up_options())
}

/// 1×1 convolution.
pub(crate) fn conv1x1<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
) -> FloatTensor<B> {
    B::conv2d(x, weight, Some(bias), pointwise())
}

/// 2×2 max-pool, stride 2, no padding.
pub(crate) fn max_pool2x2<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    B::max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// Concatenation along channels.
pub(crate) fn cat_channels<B: Backend>(a: FloatTensor<B>, b: FloatTensor<B>) -> FloatTensor<B> {
    B::float_cat(vec![a, b], 1)
}
