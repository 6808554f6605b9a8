//! Custom CPU kernels: a direct 3×3 convolution (stride 1, zero padding 1) with its backward
//! pass, for the narrow layers of the U-Net.
//!
//! Burn 0.21's Flex backend runs every convolution through im2col + GEMM and computes the
//! backward pass with Burn's generic rules (the weight gradient as a convolution over swapped
//! batch/channel dimensions). With 3–96 channels that spends its time moving data
//! (BENCHMARKS.md). These kernels work on whole rows instead, auto-vectorised, in parallel over
//! output planes, and every output is summed in a fixed order, so results are deterministic.
//! Wide layers (`cin · cout` above [`DIRECT_MAX`]) keep Flex's GEMM path.
//!
//! The op is a backend extension: [`Conv3x3Backend`] is implemented for Flex (forward), for
//! `Autodiff<Flex>` (forward + the custom backward) and, with the `cuda` feature, for CUDA
//! through Burn's own convolution.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::{Autodiff, NodeId};
use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::ops::{ConvOptions, FloatTensor, ModuleOps};
use burn::tensor::{TensorMetadata, TensorPrimitive};
use rayon::prelude::*;

/// Which implementation runs a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Direct for planes of at least [`DIRECT_MIN_PLANE`] pixels and `cin · cout` up to
    /// [`DIRECT_MAX`]; GEMM otherwise (measured crossover, BENCHMARKS.md).
    Auto,
    Direct,
    Gemm,
}

/// Row-wise kernels need long rows: below 32×32 Flex's GEMM path wins.
pub const DIRECT_MIN_PLANE: usize = 32 * 32;
/// Beyond 64 × 64 channel pairs the GEMM's arithmetic efficiency wins.
pub const DIRECT_MAX: usize = 64 * 64;

fn padding_one() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

/// A backend that can run a 3×3, stride-1, padding-1 convolution with bias.
pub trait Conv3x3Backend: Backend {
    /// `x` `[b, cin, h, w]`, `weight` `[cout, cin, 3, 3]`, `bias` `[cout]` → `[b, cout, h, w]`.
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: Path,
    ) -> FloatTensor<Self>;
}

/// The tensor-level op.
pub fn conv3x3<B: Conv3x3Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 4> {
    conv3x3_on(x, weight, bias, Path::Auto)
}

/// The op on a chosen implementation (tests compare them).
pub fn conv3x3_on<B: Conv3x3Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    path: Path,
) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(B::conv3x3(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.into_primitive().tensor(),
        path,
    )))
}

fn use_direct(path: Path, [_, cin, h, w]: [usize; 4], cout: usize) -> bool {
    match path {
        Path::Direct => true,
        Path::Gemm => false,
        Path::Auto => h * w >= DIRECT_MIN_PLANE && cin * cout <= DIRECT_MAX,
    }
}

fn to_vec(t: FlexTensor) -> (Vec<f32>, Vec<usize>) {
    let data = t.into_data();
    let shape = data.shape.to_vec();
    (data.into_vec::<f32>().expect("f32 tensor"), shape)
}

fn from_vec(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl Conv3x3Backend for Flex {
    fn conv3x3(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, path: Path) -> FlexTensor {
        let dims = x.shape().dims::<4>();
        let (cin, cout) = (dims[1], weight.shape().dims::<4>()[0]);
        if !use_direct(path, dims, cout) {
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, Some(bias), padding_one());
        }
        let (x, xs) = to_vec(x);
        let (w, _) = to_vec(weight);
        let (b, _) = to_vec(bias);
        let [n, _, h, wd] = [xs[0], xs[1], xs[2], xs[3]];
        from_vec(
            forward(&x, &w, &b, [n, cin, h, wd], cout),
            vec![n, cout, h, wd],
        )
    }
}

#[derive(Debug)]
struct DirectConv3x3Backward;

impl Backward<Flex, 3> for DirectConv3x3Backward {
    type State = (NodeId, NodeId);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w, node_b] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_state, w_state) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let w: FlexTensor = checkpointer.retrieve_node_output(w_state);
        let (x, xs) = to_vec(x);
        let (w, ws) = to_vec(w);
        let (dy, _) = to_vec(grad);
        let dims = [xs[0], xs[1], xs[2], xs[3]];
        let cout = ws[0];
        if let Some(node) = node_x {
            grads.register::<Flex>(
                node.id,
                from_vec(input_grad(&dy, &w, dims, cout), xs.clone()),
            );
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(
                node.id,
                from_vec(weight_grad(&dy, &x, dims, cout), ws.clone()),
            );
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, from_vec(bias_grad(&dy, dims, cout), vec![cout]));
        }
    }
}

impl<C: CheckpointStrategy> Conv3x3Backend for Autodiff<Flex, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: Path,
    ) -> FloatTensor<Self> {
        let dims = x.primitive.shape().dims::<4>();
        if !use_direct(path, dims, weight.primitive.shape().dims::<4>()[0]) {
            return <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), padding_one());
        }
        match DirectConv3x3Backward
            .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let w_state = prep.checkpoint(&weight);
                let out =
                    Flex::conv3x3(x.primitive, weight.primitive, bias.primitive, Path::Direct);
                prep.finish((x_state, w_state), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::conv3x3(
                x.primitive,
                weight.primitive,
                bias.primitive,
                Path::Direct,
            )),
        }
    }
}

#[cfg(feature = "cuda")]
impl Conv3x3Backend for burn::backend::Cuda {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        _path: Path,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), padding_one())
    }
}

#[cfg(feature = "cuda")]
impl<C: CheckpointStrategy> Conv3x3Backend for Autodiff<burn::backend::Cuda, C> {
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        _path: Path,
    ) -> FloatTensor<Self> {
        <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), padding_one())
    }
}

/// `out += k ⋆ input` for one plane: 3×3 cross-correlation with zero padding 1.
#[inline]
fn correlate_add(out: &mut [f32], input: &[f32], k: &[f32], h: usize, w: usize) {
    for i in 0..h {
        let orow = &mut out[i * w..(i + 1) * w];
        for ky in 0..3 {
            let r = i as isize + ky as isize - 1;
            if r < 0 || r >= h as isize {
                continue;
            }
            let xrow = &input[r as usize * w..(r as usize + 1) * w];
            let (k0, k1, k2) = (k[ky * 3], k[ky * 3 + 1], k[ky * 3 + 2]);
            if w == 1 {
                orow[0] += k1 * xrow[0];
                continue;
            }
            // Interior: three shifted rows, equal-length slices so the loop vectorises.
            let (left, centre, right) = (&xrow[..w - 2], &xrow[1..w - 1], &xrow[2..]);
            let mid = &mut orow[1..w - 1];
            for j in 0..w - 2 {
                mid[j] += k0 * left[j] + k1 * centre[j] + k2 * right[j];
            }
            orow[0] += k1 * xrow[0] + k2 * xrow[1];
            orow[w - 1] += k0 * xrow[w - 2] + k1 * xrow[w - 1];
        }
    }
}

/// Forward: `y[b, co] = bias[co] + Σ_ci w[co, ci] ⋆ x[b, ci]`.
pub fn forward(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let plane = h * wd;
    let mut out = vec![0f32; n * cout * plane];
    out.par_chunks_mut(plane).enumerate().for_each(|(idx, o)| {
        let (b, co) = (idx / cout, idx % cout);
        o.fill(bias[co]);
        for ci in 0..cin {
            let xp = &x[(b * cin + ci) * plane..][..plane];
            correlate_add(o, xp, &w[(co * cin + ci) * 9..][..9], h, wd);
        }
    });
    out
}

/// Input gradient: `dx[b, ci] = Σ_co flip(w[co, ci]) ⋆ dy[b, co]`.
pub fn input_grad(dy: &[f32], w: &[f32], [n, cin, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
    let plane = h * wd;
    let mut dx = vec![0f32; n * cin * plane];
    dx.par_chunks_mut(plane).enumerate().for_each(|(idx, d)| {
        let (b, ci) = (idx / cin, idx % cin);
        for co in 0..cout {
            let k = &w[(co * cin + ci) * 9..][..9];
            let flipped = [k[8], k[7], k[6], k[5], k[4], k[3], k[2], k[1], k[0]];
            correlate_add(d, &dy[(b * cout + co) * plane..][..plane], &flipped, h, wd);
        }
    });
    dx
}

/// Σ a·b in eight independent lanes (vectorisable; a fixed order, so deterministic).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let mut sum = lanes.iter().sum::<f32>();
    for (x, y) in ar.iter().zip(br) {
        sum += x * y;
    }
    sum
}

/// Weight gradient: `dw[co, ci, ky, kx] = Σ_b Σ_ij dy[b, co, i, j] · x[b, ci, i+ky−1, j+kx−1]`.
pub fn weight_grad(dy: &[f32], x: &[f32], [n, cin, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
    let plane = h * wd;
    let mut dw = vec![0f32; cout * cin * 9];
    dw.par_chunks_mut(9).enumerate().for_each(|(idx, k)| {
        let (co, ci) = (idx / cin, idx % cin);
        let mut acc = [0f64; 9];
        for b in 0..n {
            let dyp = &dy[(b * cout + co) * plane..][..plane];
            let xp = &x[(b * cin + ci) * plane..][..plane];
            for i in 0..h {
                let dyrow = &dyp[i * wd..(i + 1) * wd];
                for ky in 0..3 {
                    let r = i as isize + ky as isize - 1;
                    if r < 0 || r >= h as isize {
                        continue;
                    }
                    let xrow = &xp[r as usize * wd..(r as usize + 1) * wd];
                    acc[ky * 3 + 1] += dot(dyrow, xrow) as f64;
                    if wd > 1 {
                        acc[ky * 3] += dot(&dyrow[1..], &xrow[..wd - 1]) as f64;
                        acc[ky * 3 + 2] += dot(&dyrow[..wd - 1], &xrow[1..]) as f64;
                    }
                }
            }
        }
        for (dst, a) in k.iter_mut().zip(acc) {
            *dst = a as f32;
        }
    });
    dw
}

/// Bias gradient: `db[co] = Σ dy[b, co, ·, ·]`.
pub fn bias_grad(dy: &[f32], [n, _, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
    let plane = h * wd;
    (0..cout)
        .map(|co| {
            (0..n)
                .map(|b| {
                    dy[(b * cout + co) * plane..][..plane]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>()
                })
                .sum::<f64>() as f32
        })
        .collect()
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

    /// The direct kernels against Burn's generic convolution, forward and every gradient.
    fn check(n: usize, cin: usize, cout: usize, h: usize, w: usize) {
        let device = Default::default();
        Flex::seed(&device, (n * 1000 + cin * 100 + cout * 10 + h) as u64);
        let x = Tensor::<Ad, 4>::random([n, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<Ad, 4>::random([cout, cin, 3, 3], Distribution::Normal(0.0, 0.5), &device);
        let b = Tensor::<Ad, 1>::random([cout], Distribution::Normal(0.0, 0.5), &device);
        let up = Tensor::<Ad, 4>::random([n, cout, h, w], Distribution::Normal(0.0, 1.0), &device);
        let run = |direct: bool| {
            let (x, k, b) = (
                x.clone().require_grad(),
                k.clone().require_grad(),
                b.clone().require_grad(),
            );
            let y = if direct {
                conv3x3_on(x.clone(), k.clone(), b.clone(), Path::Direct)
            } else {
                burn::tensor::module::conv2d(x.clone(), k.clone(), Some(b.clone()), padding_one())
            };
            // A weighted sum gives every output a different upstream gradient.
            let loss = (y.clone() * up.clone()).sum();
            let grads = loss.backward();
            let v = |t: Tensor<Flex, 4>| t.into_data().to_vec::<f32>().unwrap();
            (
                v(y.inner()),
                v(x.grad(&grads).unwrap()),
                v(k.grad(&grads).unwrap()),
                b.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap(),
            )
        };
        let (direct, generic) = (run(true), run(false));
        let what = format!("{n}×{cin}→{cout} at {h}×{w}");
        assert!(max_rel_err(&direct.0, &generic.0) <= 1e-4, "forward {what}");
        assert!(
            max_rel_err(&direct.1, &generic.1) <= 1e-4,
            "input gradient {what}"
        );
        assert!(
            max_rel_err(&direct.2, &generic.2) <= 1e-4,
            "weight gradient {what}"
        );
        assert!(
            max_rel_err(&direct.3, &generic.3) <= 1e-4,
            "bias gradient {what}"
        );
    }

    #[test]
    fn direct_conv3x3_matches_the_generic_convolution() {
        check(2, 1, 3, 16, 16);
        check(3, 6, 3, 9, 13);
        check(2, 12, 24, 8, 8);
        check(1, 5, 2, 1, 7);
        check(2, 3, 4, 5, 1);
        check(2, 96, 48, 4, 4);
    }

    #[test]
    fn the_automatic_choice_follows_the_measured_crossover() {
        assert!(use_direct(Path::Auto, [8, 3, 128, 128], 3));
        assert!(use_direct(Path::Auto, [2, 64, 128, 128], 64));
        assert!(!use_direct(Path::Auto, [8, 48, 16, 16], 48));
        assert!(!use_direct(Path::Auto, [2, 128, 64, 64], 64));
        assert!(!use_direct(Path::Gemm, [8, 3, 128, 128], 3));
    }
}
