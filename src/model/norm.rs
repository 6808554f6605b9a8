//! The normalisation after a 3×3 convolution (`model.norm`) with the activation after it: on
//! the backend's fused kernel where it has one (`KernelBackend::norm_act`), else Burn's
//! modules (`BatchNorm`, `InstanceNorm`, then `relu` or `elu`) — what a GPU backend and
//! `ConvPath::Generic` run.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, InstanceNorm, InstanceNormConfig};
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::ops::FloatTensor;

use crate::config::{Activation, Norm};
use crate::kernels::{Act, ConvPath, KernelBackend, NormAct, Stats};

/// The normalisation after a 3×3 convolution.
#[derive(Module, Debug)]
pub(super) enum NormLayer<B: Backend> {
    Batch(BatchNorm<B>),
    Instance(InstanceNorm<B>),
}

/// The activation on its own (after a norm Burn composed, or with no norm).
pub(super) fn activation<B: Backend>(x: Tensor<B, 4>, act: Activation) -> Tensor<B, 4> {
    match act {
        Activation::Relu => burn::tensor::activation::relu(x),
        Activation::Elu => burn::tensor::activation::elu(x, 1.0),
    }
}

/// [`activation`] on the backend's kernel where it has one (at inference on the CPU).
pub(super) fn activation_on<B: KernelBackend>(
    x: Tensor<B, 4>,
    act: Activation,
    path: ConvPath,
) -> Tensor<B, 4> {
    let kind = match act {
        Activation::Relu => Act::Relu,
        Activation::Elu => Act::Elu,
    };
    match B::activation(x.into_primitive().tensor(), kind, path) {
        Ok(y) => tensor(y),
        Err(x) => activation(tensor(x), act),
    }
}

impl<B: Backend> NormLayer<B> {
    pub(super) fn new(norm: Norm, channels: usize, device: &B::Device) -> Option<Self> {
        match norm {
            Norm::None => None,
            Norm::Batch => Some(Self::Batch(BatchNormConfig::new(channels).init(device))),
            Norm::Instance => Some(Self::Instance(
                InstanceNormConfig::new(channels).init(device),
            )),
        }
    }

    /// Burn's module.
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Batch(n) => n.forward(x),    // [b, c, h, w]
            Self::Instance(n) => n.forward(x), // [b, c, h, w]
        }
    }

    /// γ and β (an InstanceNorm without them scales by 1 and shifts by 0).
    fn affine(&self, channels: usize, device: &B::Device) -> (Tensor<B, 1>, Tensor<B, 1>) {
        match self {
            Self::Batch(n) => (n.gamma.val(), n.beta.val()),
            Self::Instance(n) => (
                n.gamma
                    .as_ref()
                    .map_or_else(|| Tensor::ones([channels], device), |g| g.val()),
                n.beta
                    .as_ref()
                    .map_or_else(|| Tensor::zeros([channels], device), |b| b.val()),
            ),
        }
    }

    fn op(&self, act: Activation) -> NormAct {
        let act = match act {
            Activation::Relu => Act::Relu,
            Activation::Elu => Act::Elu,
        };
        match self {
            Self::Batch(n) => NormAct {
                stats: Stats::Batch,
                act,
                eps: n.epsilon,
            },
            Self::Instance(n) => NormAct {
                stats: Stats::Instance,
                act,
                eps: n.epsilon,
            },
        }
    }
}

impl<B: KernelBackend> NormLayer<B> {
    /// The norm and `act` on `x` `[b, c, h, w]`. In training, BatchNorm's running statistics
    /// move towards the batch's as Burn's module moves them.
    pub(super) fn forward_act(
        &self,
        x: Tensor<B, 4>,
        act: Activation,
        path: ConvPath,
    ) -> Tensor<B, 4> {
        let device = x.device();
        let training = B::ad_enabled(&device);
        let running = match self {
            Self::Batch(n) if !training => Some([
                n.running_mean.value().into_primitive().tensor(),
                n.running_var.value().into_primitive().tensor(),
            ]),
            _ => None,
        };
        let (gamma, beta) = self.affine(x.dims()[1], &device);
        let fused = B::norm_act(
            x.into_primitive().tensor(),
            gamma.into_primitive().tensor(),
            beta.into_primitive().tensor(),
            self.op(act),
            running,
            path,
        );
        match fused {
            Ok((y, mean, var)) => {
                if let (Self::Batch(n), true) = (self, training) {
                    update_running(n, tensor(mean), tensor(var));
                }
                tensor(y)
            }
            Err(x) => activation(self.forward(tensor(x)), act),
        }
    }

    /// At inference, BatchNorm's running statistics folded into the preceding convolution:
    /// `w·s` and `(b − mean)·s + β`, `s = γ/√(var + ε)` per output channel. `None` for
    /// InstanceNorm (its statistics are each image's), in training, or where the backend keeps
    /// Burn's modules.
    pub(super) fn folded(
        &self,
        conv: &Conv2d<B>,
        path: ConvPath,
    ) -> Option<(Tensor<B, 4>, Tensor<B, 1>)> {
        let (Self::Batch(n), Some(bias)) = (self, &conv.bias) else {
            return None;
        };
        let weight = conv.weight.val();
        if B::ad_enabled(&weight.device()) || !B::fuses_norm(path) {
            return None;
        }
        let cout = weight.dims()[0];
        let scale = n.gamma.val() / n.running_var.value().add_scalar(n.epsilon).sqrt(); // [cout]
        let bias = (bias.val() - n.running_mean.value()) * scale.clone() + n.beta.val();
        Some((weight * scale.reshape([cout, 1, 1, 1]), bias))
    }
}

fn tensor<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// The norm (if any) and the activation after a 3×3 convolution with `channels` outputs, as
/// one layer: what `bench --profile` times on its own.
pub(crate) fn norm_and_activation<B: KernelBackend>(
    norm: Norm,
    act: Activation,
    channels: usize,
    device: &B::Device,
) -> impl Fn(Tensor<B, 4>, ConvPath) -> Tensor<B, 4> {
    let layer = NormLayer::new(norm, channels, device);
    move |x, path| match &layer {
        Some(l) => l.forward_act(x, act, path),
        None => activation(x, act),
    }
}

/// Burn's update of the running statistics: `running·(1 − momentum) + batch·momentum`.
fn update_running<B: Backend>(n: &BatchNorm<B>, mean: Tensor<B, 1>, var: Tensor<B, 1>) {
    let m = n.momentum;
    let mean = n.running_mean.value_sync().mul_scalar(1.0 - m) + mean.detach().mul_scalar(m);
    let var = n.running_var.value_sync().mul_scalar(1.0 - m) + var.detach().mul_scalar(m);
    n.running_mean.update(mean.detach());
    n.running_var.update(var.detach());
}
