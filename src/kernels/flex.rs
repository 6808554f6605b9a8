//! The forward ops on Flex, Burn's CPU backend: each op runs the kernel its [`Plan`] names, or
//! Burn's own op for [`ConvPath::Generic`].

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::prelude::TensorData;
use burn::tensor::TensorMetadata;
use rayon::prelude::*;

use super::norm::{self, Act, NormAct};
use super::policy::{Kind, Plan, kernels, resolve};
use super::{ConvPath, KernelBackend, Normalized, direct, generic};

pub(super) fn dims4(t: &FlexTensor) -> [usize; 4] {
    t.shape().dims::<4>()
}

/// The tensor's values as one contiguous f32 slice (copied only if it is a strided view).
pub(super) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

pub(super) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("a contiguous f32 tensor")
}

pub(super) fn from_vec(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Runs one of the project's kernels forward on Flex, the ReLU applied in place.
pub(super) fn run_forward(
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

/// `cout` of a convolution's weight: `[cout, cin, k, k]`, except the up-convolution's
/// `[cin, cout, 2, 2]`.
pub(super) fn out_channels(kind: Kind, weight: &FlexTensor) -> usize {
    let w = dims4(weight);
    if kind == Kind::Up2x2 { w[1] } else { w[0] }
}

/// One of the convolutions on `[x, weight, bias]`: the project's kernel its plan names, or
/// Burn's op (`fallback`) for [`ConvPath::Generic`].
fn kernel_op(
    kind: Kind,
    [x, weight, bias]: [FlexTensor; 3],
    relu: bool,
    path: ConvPath,
    fallback: impl FnOnce([FlexTensor; 3]) -> FlexTensor,
) -> FlexTensor {
    match resolve(path, kind, dims4(&x), out_channels(kind, &weight)) {
        Some(plan) => run_forward(kind, plan, x, weight, bias, relu),
        None => fallback([x, weight, bias]),
    }
}

/// The fused norm and activation on Flex (see [`norm`]).
pub(super) fn norm_forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    op: NormAct,
    running: Option<[FlexTensor; 2]>,
) -> Normalized<Flex> {
    let dims = dims4(&x);
    let [n, c, h, w] = dims;
    let d3 = [n, c, h * w];
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let (mean, var) = match running {
        Some([m, v]) => (
            values(&contiguous(m)).to_vec(),
            values(&contiguous(v)).to_vec(),
        ),
        None => norm::moments(values(&x), d3, &op),
    };
    let y = norm::forward(
        values(&x),
        d3,
        &op,
        (&mean, &var),
        (values(&gamma), values(&beta)),
    );
    let groups = vec![mean.len()];
    (
        from_vec(y, dims.to_vec()),
        from_vec(mean, groups.clone()),
        from_vec(var, groups),
    )
}

impl KernelBackend for Flex {
    fn conv3x3(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        relu: bool,
        path: ConvPath,
    ) -> FlexTensor {
        kernel_op(Kind::Conv3x3, [x, weight, bias], relu, path, |[x, w, b]| {
            generic::conv3x3::<Flex>(x, w, b, relu)
        })
    }

    fn up2x2(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, path: ConvPath) -> FlexTensor {
        kernel_op(Kind::Up2x2, [x, weight, bias], false, path, |[x, w, b]| {
            generic::up2x2::<Flex>(x, w, b)
        })
    }

    fn conv1x1(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, path: ConvPath) -> FlexTensor {
        kernel_op(
            Kind::Conv1x1,
            [x, weight, bias],
            false,
            path,
            |[x, w, b]| generic::conv1x1::<Flex>(x, w, b),
        )
    }

    fn max_pool2x2(x: FlexTensor, path: ConvPath) -> FlexTensor {
        if path == ConvPath::Generic {
            return generic::max_pool2x2::<Flex>(x);
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
            return generic::cat_channels::<Flex>(a, b);
        }
        let ([n, ca, h, w], cb) = (dims4(&a), dims4(&b)[1]);
        let (a, b) = (contiguous(a), contiguous(b));
        from_vec(
            direct::interleave(values(&a), values(&b), [n, ca, cb, h * w]),
            vec![n, ca + cb, h, w],
        )
    }

    fn fuses_norm(path: ConvPath) -> bool {
        path != ConvPath::Generic
    }

    fn norm_act(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        op: NormAct,
        running: Option<[FlexTensor; 2]>,
        path: ConvPath,
    ) -> Result<Normalized<Flex>, FlexTensor> {
        if !Self::fuses_norm(path) {
            return Err(x);
        }
        Ok(norm_forward(x, gamma, beta, op, running))
    }

    fn activation(x: FlexTensor, act: Act, path: ConvPath) -> Result<FlexTensor, FlexTensor> {
        if !Self::fuses_norm(path) {
            return Err(x);
        }
        let shape = dims4(&x).to_vec();
        let mut values = values(&contiguous(x)).to_vec();
        norm::activate(&mut values, act);
        Ok(from_vec(values, shape))
    }
}
