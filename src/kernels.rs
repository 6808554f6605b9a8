//! Custom CPU kernels for the narrow layers of the U-Net: a direct 3×3 convolution (stride 1,
//! zero padding 1) and the 2×2 stride-2 up-convolution, each with its backward pass.
//!
//! Burn 0.21's Flex backend runs every convolution through im2col + GEMM and computes the
//! backward pass with Burn's generic rules (the weight gradient as a convolution over swapped
//! batch/channel dimensions). With 3–96 channels that spends its time moving data
//! (BENCHMARKS.md). These kernels work on whole rows instead, auto-vectorised, in parallel over
//! output planes, and every output is summed in a fixed order, so results are deterministic.
//! Small planes and wide layers keep Flex's GEMM path (see [`Path::Auto`]).
//!
//! The op is a backend extension: [`KernelBackend`] is implemented for Flex (forward), for
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
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, FloatTensor, ModuleOps};
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
/// Beyond 32 × 32 channel pairs the GEMM's arithmetic efficiency wins.
pub const DIRECT_MAX: usize = 32 * 32;

fn padding_one() -> ConvOptions<2> {
    ConvOptions::new([1, 1], [1, 1], [1, 1], 1)
}

/// A backend that can run the U-Net's two convolutions: 3×3 (stride 1, padding 1) and the
/// 2×2 stride-2 transposed convolution of the up path, both with bias.
pub trait KernelBackend: Backend {
    /// `x` `[b, cin, h, w]`, `weight` `[cout, cin, 3, 3]`, `bias` `[cout]` → `[b, cout, h, w]`.
    fn conv3x3(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: Path,
    ) -> FloatTensor<Self>;

    /// `x` `[b, cin, h, w]`, `weight` `[cin, cout, 2, 2]`, `bias` `[cout]` → `[b, cout, 2h, 2w]`.
    fn up2x2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: Path,
    ) -> FloatTensor<Self>;
}

/// The tensor-level 3×3 convolution.
pub fn conv3x3<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 4> {
    conv3x3_on(x, weight, bias, Path::Auto)
}

/// The 3×3 convolution on a chosen implementation (tests compare them).
pub fn conv3x3_on<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    path: Path,
) -> Tensor<B, 4> {
    let (x, w, b) = primitives(x, weight, bias);
    Tensor::from_primitive(TensorPrimitive::Float(B::conv3x3(x, w, b, path)))
}

/// The tensor-level 2×2 stride-2 transposed convolution.
pub fn up2x2<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
) -> Tensor<B, 4> {
    up2x2_on(x, weight, bias, Path::Auto)
}

/// The up-convolution on a chosen implementation (tests compare them).
pub fn up2x2_on<B: KernelBackend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
    path: Path,
) -> Tensor<B, 4> {
    let (x, w, b) = primitives(x, weight, bias);
    Tensor::from_primitive(TensorPrimitive::Float(B::up2x2(x, w, b, path)))
}

fn primitives<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Tensor<B, 1>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    (
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.into_primitive().tensor(),
    )
}

fn up_options() -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1)
}

/// The direct path pays off on long rows and few channel pairs.
fn use_direct(path: Path, [_, cin, h, w]: [usize; 4], cout: usize) -> bool {
    match path {
        Path::Direct => true,
        Path::Gemm => false,
        Path::Auto => h * w >= DIRECT_MIN_PLANE && cin * cout <= DIRECT_MAX,
    }
}

/// The up-convolution's rows are those of its output, twice as long as the input's.
fn use_direct_up(path: Path, [b, cin, h, w]: [usize; 4], cout: usize) -> bool {
    use_direct(path, [b, cin, 2 * h, 2 * w], cout)
}

fn to_vec(t: FlexTensor) -> (Vec<f32>, Vec<usize>) {
    let data = t.into_data();
    let shape = data.shape.to_vec();
    (data.into_vec::<f32>().expect("f32 tensor"), shape)
}

fn from_vec(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

impl KernelBackend for Flex {
    fn conv3x3(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, path: Path) -> FlexTensor {
        let dims = x.shape().dims::<4>();
        let cout = weight.shape().dims::<4>()[0];
        if !use_direct(path, dims, cout) {
            return <Flex as ModuleOps<Flex>>::conv2d(x, weight, Some(bias), padding_one());
        }
        let [n, _, h, wd] = dims;
        let (x, w, b) = (to_vec(x).0, to_vec(weight).0, to_vec(bias).0);
        from_vec(forward(&x, &w, &b, dims, cout), vec![n, cout, h, wd])
    }

    fn up2x2(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, path: Path) -> FlexTensor {
        let dims = x.shape().dims::<4>();
        let cout = weight.shape().dims::<4>()[1];
        if !use_direct_up(path, dims, cout) {
            return <Flex as ModuleOps<Flex>>::conv_transpose2d(
                x,
                weight,
                Some(bias),
                up_options(),
            );
        }
        let [n, _, h, wd] = dims;
        let (x, w, b) = (to_vec(x).0, to_vec(weight).0, to_vec(bias).0);
        from_vec(
            up_forward(&x, &w, &b, dims, cout),
            vec![n, cout, 2 * h, 2 * wd],
        )
    }
}

/// Which op a backward pass belongs to.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Conv3x3,
    Up2x2,
}

/// The backward pass of both direct ops: gradients for input, weight and bias.
#[derive(Debug)]
struct DirectBackward(Kind);

impl Backward<Flex, 3> for DirectBackward {
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
        let (x, xs) = to_vec(checkpointer.retrieve_node_output(x_state));
        let (w, ws) = to_vec(checkpointer.retrieve_node_output(w_state));
        let (dy, ys) = to_vec(grad);
        let dims = [xs[0], xs[1], xs[2], xs[3]];
        let cout = ys[1];
        let (dx, dw): (
            fn(&[f32], &[f32], [usize; 4], usize) -> Vec<f32>,
            fn(&[f32], &[f32], [usize; 4], usize) -> Vec<f32>,
        ) = match self.0 {
            Kind::Conv3x3 => (input_grad, weight_grad),
            Kind::Up2x2 => (up_input_grad, up_weight_grad),
        };
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, from_vec(dx(&dy, &w, dims, cout), xs.clone()));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, from_vec(dw(&dy, &x, dims, cout), ws));
        }
        if let Some(node) = node_b {
            let out_dims = [ys[0], ys[1], ys[2], ys[3]];
            grads.register::<Flex>(
                node.id,
                from_vec(bias_grad(&dy, out_dims, cout), vec![cout]),
            );
        }
    }
}

/// Records a direct op on the autodiff graph (checkpointing input and weight for backward).
fn tracked<C: CheckpointStrategy>(
    kind: Kind,
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    bias: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    let run = |x, w, b| match kind {
        Kind::Conv3x3 => Flex::conv3x3(x, w, b, Path::Direct),
        Kind::Up2x2 => Flex::up2x2(x, w, b, Path::Direct),
    };
    match DirectBackward(kind)
        .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let w_state = prep.checkpoint(&weight);
            let out = run(x.primitive, weight.primitive, bias.primitive);
            prep.finish((x_state, w_state), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(run(x.primitive, weight.primitive, bias.primitive)),
    }
}

impl<C: CheckpointStrategy> KernelBackend for Autodiff<Flex, C> {
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
        tracked::<C>(Kind::Conv3x3, x, weight, bias)
    }

    fn up2x2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        path: Path,
    ) -> FloatTensor<Self> {
        let dims = x.primitive.shape().dims::<4>();
        if !use_direct_up(path, dims, weight.primitive.shape().dims::<4>()[1]) {
            return <Self as ModuleOps<Self>>::conv_transpose2d(
                x,
                weight,
                Some(bias),
                up_options(),
            );
        }
        tracked::<C>(Kind::Up2x2, x, weight, bias)
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
            _path: Path,
        ) -> FloatTensor<Self> {
            <Self as ModuleOps<Self>>::conv2d(x, weight, Some(bias), padding_one())
        }

        fn up2x2(
            x: FloatTensor<Self>,
            weight: FloatTensor<Self>,
            bias: FloatTensor<Self>,
            _path: Path,
        ) -> FloatTensor<Self> {
            <Self as ModuleOps<Self>>::conv_transpose2d(x, weight, Some(bias), up_options())
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

/// `out += k ⋆ input` for one plane: 3×3 cross-correlation with zero padding 1. Each output
/// row is updated once with all nine taps (three input rows, three shifts), so the output
/// row is read and written once per input channel rather than three times.
fn correlate_add(out: &mut [f32], input: &[f32], k: &[f32], h: usize, w: usize) {
    if w < 3 {
        return correlate_add_narrow(out, input, k, h, w);
    }
    let zeros = vec![0f32; w];
    for i in 0..h {
        let row = |r: isize| -> &[f32] {
            if r < 0 || r >= h as isize {
                &zeros
            } else {
                &input[r as usize * w..(r as usize + 1) * w]
            }
        };
        let (r0, r1, r2) = (row(i as isize - 1), row(i as isize), row(i as isize + 1));
        let orow = &mut out[i * w..(i + 1) * w];
        let n = w - 2;
        // Equal-length slices let the compiler drop bounds checks and vectorise.
        let (a0, b0, c0) = (&r0[..n], &r0[1..n + 1], &r0[2..]);
        let (a1, b1, c1) = (&r1[..n], &r1[1..n + 1], &r1[2..]);
        let (a2, b2, c2) = (&r2[..n], &r2[1..n + 1], &r2[2..]);
        let mid = &mut orow[1..n + 1];
        for j in 0..n {
            mid[j] += k[0] * a0[j]
                + k[1] * b0[j]
                + k[2] * c0[j]
                + k[3] * a1[j]
                + k[4] * b1[j]
                + k[5] * c1[j]
                + k[6] * a2[j]
                + k[7] * b2[j]
                + k[8] * c2[j];
        }
        orow[0] +=
            k[1] * r0[0] + k[2] * r0[1] + k[4] * r1[0] + k[5] * r1[1] + k[7] * r2[0] + k[8] * r2[1];
        orow[w - 1] += k[0] * r0[w - 2]
            + k[1] * r0[w - 1]
            + k[3] * r1[w - 2]
            + k[4] * r1[w - 1]
            + k[6] * r2[w - 2]
            + k[7] * r2[w - 1];
    }
}

/// The same for planes narrower than three pixels, tap by tap.
fn correlate_add_narrow(out: &mut [f32], input: &[f32], k: &[f32], h: usize, w: usize) {
    for i in 0..h {
        for j in 0..w {
            let mut acc = 0.0;
            for ky in 0..3 {
                for kx in 0..3 {
                    let (r, c) = (i as isize + ky as isize - 1, j as isize + kx as isize - 1);
                    if r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w {
                        acc += k[ky * 3 + kx] * input[r as usize * w + c as usize];
                    }
                }
            }
            out[i * w + j] += acc;
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
    let mut dw = vec![0f32; cout * cin * 9];
    dw.par_chunks_mut(9).enumerate().for_each(|(idx, k)| {
        let (co, ci) = (idx / cin, idx % cin);
        let acc = weight_grad_taps(dy, x, [n, cin, h, wd], cout, co, ci);
        for (dst, a) in k.iter_mut().zip(acc) {
            *dst = a as f32;
        }
    });
    dw
}

/// The nine weight-gradient sums of one (output, input) channel pair.
fn weight_grad_taps(
    dy: &[f32],
    x: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
    co: usize,
    ci: usize,
) -> [f64; 9] {
    let plane = h * wd;
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
    acc
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

/// Up-convolution forward: `y[b, co, 2i+a, 2j+c] = bias[co] + Σ_ci x[b, ci, i, j] · w[ci, co, a, c]`.
pub fn up_forward(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let (plane, out_w) = (h * wd, 2 * wd);
    let mut out = vec![0f32; n * cout * 4 * plane];
    out.par_chunks_mut(4 * plane)
        .enumerate()
        .for_each(|(idx, o)| {
            let (b, co) = (idx / cout, idx % cout);
            o.fill(bias[co]);
            for ci in 0..cin {
                let xp = &x[(b * cin + ci) * plane..][..plane];
                let k = &w[(ci * cout + co) * 4..][..4];
                for i in 0..h {
                    let xrow = &xp[i * wd..(i + 1) * wd];
                    for a in 0..2 {
                        let orow = &mut o[(2 * i + a) * out_w..(2 * i + a + 1) * out_w];
                        let (k0, k1) = (k[2 * a], k[2 * a + 1]);
                        for (pair, &v) in orow.chunks_exact_mut(2).zip(xrow) {
                            pair[0] += k0 * v;
                            pair[1] += k1 * v;
                        }
                    }
                }
            }
        });
    out
}

/// Up-convolution input gradient: `dx[b, ci, i, j] = Σ_co Σ_ac w[ci, co, a, c] · dy[b, co, 2i+a, 2j+c]`.
pub fn up_input_grad(dy: &[f32], w: &[f32], [n, cin, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
    let (plane, out_w) = (h * wd, 2 * wd);
    let mut dx = vec![0f32; n * cin * plane];
    dx.par_chunks_mut(plane).enumerate().for_each(|(idx, d)| {
        let (b, ci) = (idx / cin, idx % cin);
        for co in 0..cout {
            let dyp = &dy[(b * cout + co) * 4 * plane..][..4 * plane];
            let k = &w[(ci * cout + co) * 4..][..4];
            for i in 0..h {
                let drow = &mut d[i * wd..(i + 1) * wd];
                for a in 0..2 {
                    let dyrow = &dyp[(2 * i + a) * out_w..(2 * i + a + 1) * out_w];
                    let (k0, k1) = (k[2 * a], k[2 * a + 1]);
                    for (v, pair) in drow.iter_mut().zip(dyrow.chunks_exact(2)) {
                        *v += k0 * pair[0] + k1 * pair[1];
                    }
                }
            }
        }
    });
    dx
}

/// Up-convolution weight gradient: `dw[ci, co, a, c] = Σ_b Σ_ij x[b, ci, i, j] · dy[b, co, 2i+a, 2j+c]`.
pub fn up_weight_grad(dy: &[f32], x: &[f32], [n, cin, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
    let (plane, out_w) = (h * wd, 2 * wd);
    let mut dw = vec![0f32; cin * cout * 4];
    dw.par_chunks_mut(4).enumerate().for_each(|(idx, k)| {
        let (ci, co) = (idx / cout, idx % cout);
        let mut acc = [0f64; 4];
        for b in 0..n {
            let xp = &x[(b * cin + ci) * plane..][..plane];
            let dyp = &dy[(b * cout + co) * 4 * plane..][..4 * plane];
            for i in 0..h {
                let xrow = &xp[i * wd..(i + 1) * wd];
                for a in 0..2 {
                    let dyrow = &dyp[(2 * i + a) * out_w..(2 * i + a + 1) * out_w];
                    let (mut s0, mut s1) = (0f32, 0f32);
                    for (&v, pair) in xrow.iter().zip(dyrow.chunks_exact(2)) {
                        s0 += v * pair[0];
                        s1 += v * pair[1];
                    }
                    acc[2 * a] += s0 as f64;
                    acc[2 * a + 1] += s1 as f64;
                }
            }
        }
        for (dst, a) in k.iter_mut().zip(acc) {
            *dst = a as f32;
        }
    });
    dw
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

    type Op = fn(Tensor<Ad, 4>, Tensor<Ad, 4>, Tensor<Ad, 1>, Path) -> Tensor<Ad, 4>;

    /// A direct kernel against Burn's generic one (the GEMM path), forward and every gradient:
    /// input `[n, cin, h, w]`, weight of `w_shape`, output `[n, cout, oh, ow]`.
    fn compare(op: Op, input: [usize; 4], w_shape: [usize; 4], out: [usize; 4], what: &str) {
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
        let run = |path: Path| {
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
        let (direct, generic) = (run(Path::Direct), run(Path::Gemm));
        for (part, (d, g)) in [
            "forward",
            "input gradient",
            "weight gradient",
            "bias gradient",
        ]
        .iter()
        .zip(direct.iter().zip(&generic))
        {
            assert!(max_rel_err(d, g) <= 1e-4, "{part} of {what}");
        }
    }

    fn check(n: usize, cin: usize, cout: usize, h: usize, w: usize) {
        let what = format!("conv 3×3 {n}×{cin}→{cout} at {h}×{w}");
        compare(
            conv3x3_on,
            [n, cin, h, w],
            [cout, cin, 3, 3],
            [n, cout, h, w],
            &what,
        );
    }

    fn check_up(n: usize, cin: usize, cout: usize, h: usize, w: usize) {
        let what = format!("up 2×2 {n}×{cin}→{cout} at {h}×{w}");
        compare(
            up2x2_on,
            [n, cin, h, w],
            [cin, cout, 2, 2],
            [n, cout, 2 * h, 2 * w],
            &what,
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
    fn direct_up_convolution_matches_the_generic_one() {
        check_up(2, 6, 3, 8, 8);
        check_up(3, 12, 6, 5, 7);
        check_up(1, 48, 24, 4, 4);
        check_up(2, 2, 5, 1, 3);
    }

    #[test]
    fn the_automatic_choice_follows_the_measured_crossover() {
        assert!(use_direct(Path::Auto, [8, 3, 128, 128], 3));
        assert!(use_direct(Path::Auto, [2, 1, 128, 128], 64));
        assert!(!use_direct(Path::Auto, [2, 64, 32, 32], 64));
        assert!(!use_direct(Path::Auto, [8, 48, 16, 16], 48));
        assert!(!use_direct(Path::Auto, [2, 128, 64, 64], 64));
        assert!(!use_direct(Path::Gemm, [8, 3, 128, 128], 3));
    }
}
