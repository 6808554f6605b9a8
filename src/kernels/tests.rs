//! Every kernel against Burn's generic ops, the automatic choice against the measured
//! crossovers, and determinism.

use super::policy::{Impl, Kind, Plan, resolve};
use super::*;
use burn::backend::{Autodiff, Flex};
use burn::tensor::{TensorData, TensorPrimitive};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::util::noise::standard_normal;

type Ad = Autodiff<Flex>;

/// Normal draws from a generator of the test's own: Burn's backend RNG is one per process,
/// shared with every test running beside this one, so its draws would differ from run to run.
fn normal<B: burn::prelude::Backend, const D: usize>(
    shape: [usize; D],
    std: f32,
    rng: &mut StdRng,
    device: &B::Device,
) -> Tensor<B, D> {
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| std * standard_normal(rng)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

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
    conv3x3(x, w, b, false, path)
}

fn conv_relu(
    x: Tensor<Ad, 4>,
    w: Tensor<Ad, 4>,
    b: Tensor<Ad, 1>,
    path: ConvPath,
) -> Tensor<Ad, 4> {
    conv3x3(x, w, b, true, path)
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
    let mut rng = StdRng::seed_from_u64(
        input
            .iter()
            .chain(&w_shape)
            .fold(7, |a, &d| a * 31 + d as u64),
    );
    let cout = out[1];
    let x = normal::<Ad, 4>(input, 1.0, &mut rng, &device);
    let k = normal::<Ad, 4>(w_shape, 0.5, &mut rng, &device);
    let b = normal::<Ad, 1>([cout], 0.5, &mut rng, &device);
    // A weighted sum gives every output a different upstream gradient.
    let up = normal::<Ad, 4>(out, 1.0, &mut rng, &device);
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
        up2x2,
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
    conv1x1(x, w, b, path)
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
        let mut rng = StdRng::seed_from_u64(seed as u64);
        let x = normal::<Ad, 4>([n, c, h, w], 1.0, &mut rng, &device);
        let up = normal::<Ad, 4>([n, c, h / 2, w / 2], 1.0, &mut rng, &device);
        let run = |path: ConvPath| {
            let x = x.clone().require_grad();
            let y = max_pool2x2(x.clone(), path);
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
    let mut rng = StdRng::seed_from_u64(11);
    let a = normal::<Ad, 4>([2, 3, 5, 4], 1.0, &mut rng, &device);
    let b = normal::<Ad, 4>([2, 2, 5, 4], 1.0, &mut rng, &device);
    let up = normal::<Ad, 4>([2, 5, 5, 4], 1.0, &mut rng, &device);
    let run = |path: ConvPath| {
        let (a, b) = (a.clone().require_grad(), b.clone().require_grad());
        let y = cat_channels(a.clone(), b.clone(), path);
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
    let mut rng = StdRng::seed_from_u64(3);
    let x = normal::<Flex, 4>([2, 64, 16, 16], 1.0, &mut rng, &device);
    let w = normal::<Flex, 4>([64, 64, 3, 3], 0.1, &mut rng, &device);
    let b = Tensor::<Flex, 1>::zeros([64], &device);
    let run = || {
        conv3x3(x.clone(), w.clone(), b.clone(), true, ConvPath::Gemm)
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(run(), run());
}

/// Burn's composition of a norm and its activation (the modules' arithmetic): the reference
/// for the fused kernel.
fn composed_norm(
    x: Tensor<Ad, 4>,
    gamma: Tensor<Ad, 1>,
    beta: Tensor<Ad, 1>,
    op: NormAct,
) -> Tensor<Ad, 4> {
    let [n, c, h, w] = x.dims();
    let (groups, size) = match op.stats {
        Stats::Batch => (c, n * h * w),
        Stats::Instance => (n * c, h * w),
    };
    let grouped = match op.stats {
        Stats::Batch => x.clone().swap_dims(0, 1).reshape([groups, size]),
        Stats::Instance => x.clone().reshape([groups, size]),
    };
    let mean = grouped.clone().mean_dim(1); // [groups, 1]
    let var = grouped.sub(mean.clone()).square().mean_dim(1); // [groups, 1]
    let shape = match op.stats {
        Stats::Batch => [1, c, 1, 1],
        Stats::Instance => [n, c, 1, 1],
    };
    let xhat = (x - mean.reshape(shape)) / var.add_scalar(op.eps).sqrt().reshape(shape);
    let z = xhat * gamma.reshape([1, c, 1, 1]) + beta.reshape([1, c, 1, 1]);
    match op.act {
        Act::Relu => burn::tensor::activation::relu(z),
        Act::Elu => burn::tensor::activation::elu(z, 1.0),
    }
}

/// The fused norm against Burn's composition: the output, the statistics, and the gradients
/// of the input, γ and β.
fn check_norm(op: NormAct, [n, c, h, w]: [usize; 4]) {
    let device = Default::default();
    let mut rng = StdRng::seed_from_u64((n * 1000 + c * 100 + h * 10 + w) as u64);
    // An offset and a spread per tensor, as a convolution's output has.
    let x = normal::<Ad, 4>([n, c, h, w], 1.7, &mut rng, &device).add_scalar(0.4);
    let gamma = normal::<Ad, 1>([c], 0.5, &mut rng, &device).add_scalar(1.0);
    let beta = normal::<Ad, 1>([c], 0.5, &mut rng, &device);
    let seed = normal::<Ad, 4>([n, c, h, w], 1.0, &mut rng, &device);
    let run = |fused: bool| {
        let (x, g, b) = (
            x.clone().require_grad(),
            gamma.clone().require_grad(),
            beta.clone().require_grad(),
        );
        let (y, stats) = if fused {
            let prim = |t: Tensor<Ad, 1>| t.into_primitive().tensor();
            let (y, mean, var) = Ad::norm_act(
                x.clone().into_primitive().tensor(),
                prim(g.clone()),
                prim(b.clone()),
                op,
                None,
                ConvPath::Auto,
            )
            .unwrap_or_else(|_| panic!("Autodiff<Flex> fuses the norm"));
            let t1 = |t| Tensor::<Ad, 1>::from_primitive(TensorPrimitive::Float(t));
            let stats = [t1(mean), t1(var)].map(|t| t.into_data().to_vec::<f32>().unwrap());
            (
                Tensor::<Ad, 4>::from_primitive(TensorPrimitive::Float(y)),
                Some(stats),
            )
        } else {
            (composed_norm(x.clone(), g.clone(), b.clone(), op), None)
        };
        let grads = (y.clone() * seed.clone()).sum().backward();
        let v = |t: Tensor<Flex, 4>| t.into_data().to_vec::<f32>().unwrap();
        let v1 = |t: Tensor<Flex, 1>| t.into_data().to_vec::<f32>().unwrap();
        (
            [
                v(y.inner()),
                v(x.grad(&grads).unwrap()),
                v1(g.grad(&grads).unwrap()),
                v1(b.grad(&grads).unwrap()),
            ],
            stats,
        )
    };
    let (fused, stats) = run(true);
    let (reference, _) = run(false);
    let what = format!("{op:?} on [{n}, {c}, {h}, {w}]");
    for (name, (a, b)) in ["output", "input gradient", "γ gradient", "β gradient"]
        .iter()
        .zip(fused.iter().zip(&reference))
    {
        let err = max_rel_err(a, b);
        assert!(err < 2e-4, "{what}: {name} differs by {err:e} (relative)");
    }
    // The statistics, by hand: the mean and biased variance of each group.
    let [mean, var] = stats.unwrap();
    let xs = x.into_data().to_vec::<f32>().unwrap();
    let hw = h * w;
    let group_of = |p: usize| match op.stats {
        Stats::Batch => p % c,
        Stats::Instance => p,
    };
    let mut groups = vec![Vec::new(); mean.len()];
    for (p, plane) in xs.chunks(hw).enumerate() {
        groups[group_of(p)].extend(plane.iter().map(|&v| v as f64));
    }
    for (g, values) in groups.iter().enumerate() {
        let m = values.iter().sum::<f64>() / values.len() as f64;
        let s = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / values.len() as f64;
        assert!(
            (mean[g] as f64 - m).abs() < 1e-5,
            "{what}: mean of group {g}"
        );
        assert!(
            (var[g] as f64 - s).abs() < 1e-4 * s.max(1.0),
            "{what}: variance of group {g}"
        );
    }
}

const NORM_SHAPES: [[usize; 4]; 5] = [
    [2, 3, 8, 8],
    [1, 5, 7, 9],
    [3, 12, 5, 3],
    [1, 1, 1, 4],
    [4, 48, 16, 16],
];

/// Every shape, after ELU and ReLU alike.
fn check_norm_everywhere(stats: Stats) {
    for act in [Act::Elu, Act::Relu] {
        for shape in NORM_SHAPES {
            check_norm(
                NormAct {
                    stats,
                    act,
                    eps: 1e-5,
                },
                shape,
            );
        }
    }
}

#[test]
fn fused_batch_norm_matches_burns_composition() {
    check_norm_everywhere(Stats::Batch);
}

#[test]
fn fused_instance_norm_matches_burns_composition() {
    check_norm_everywhere(Stats::Instance);
}
