//! BatchNorm and InstanceNorm with the activation after them, fused: the statistics in one pass
//! (sums in f64), then one pass that normalises, scales, shifts and activates
//! (`y = act(a·x + b)`, `a = γ/√(var + ε)`, `b = β − a·mean`); the backward pass in two (the
//! sums through the statistics, then the input gradient), with γ's and β's gradients from the
//! same sums. Burn's modules (`BatchNorm`, `InstanceNorm`, then `relu`/`elu`) compose a dozen
//! tensor ops for the same — each a pass over memory, most single-threaded on Flex.
//!
//! Tensors are `[n, c, h, w]` row-major: plane `p = i·c + k` holds image `i`, channel `k`.
//! BatchNorm's statistics are per channel (over `n` planes), InstanceNorm's per plane.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Whose statistics normalise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stats {
    /// Per channel, over the batch (BatchNorm).
    Batch,
    /// Per image and channel (InstanceNorm).
    Instance,
}

/// The activation after the norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    Relu,
    /// α = 1.
    Elu,
}

/// A norm and its activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NormAct {
    pub stats: Stats,
    pub act: Act,
    pub eps: f64,
}

impl NormAct {
    /// How many statistics `dims` has: one per channel, or one per plane.
    pub(crate) fn groups(&self, [n, c, _]: [usize; 3]) -> usize {
        match self.stats {
            Stats::Batch => c,
            Stats::Instance => n * c,
        }
    }

    /// The group of plane `p`.
    fn group(&self, p: usize, c: usize) -> usize {
        match self.stats {
            Stats::Batch => p % c,
            Stats::Instance => p,
        }
    }

    /// Values per group.
    fn group_size(&self, [n, _, hw]: [usize; 3]) -> usize {
        match self.stats {
            Stats::Batch => n * hw,
            Stats::Instance => hw,
        }
    }

    /// `act'(z)` from the output `y = act(z)`: ELU's derivative below 0 is `e^z = y + 1`.
    /// Branch-free, so that loops over it vectorise.
    #[inline(always)]
    fn slope(&self, y: f32) -> f32 {
        let below = match self.act {
            Act::Relu => 0.0,
            Act::Elu => y + 1.0,
        };
        if y > 0.0 { 1.0 } else { below }
    }
}

/// `e^x` for `x ≤ 0` (below −87 it is 0 to f32 precision): `2^k · e^r` with `x = k·ln 2 + r`,
/// `|r| ≤ ln 2 / 2`, and `e^r` to degree 6 (relative error under 2e-7). Plain arithmetic on
/// one value, so a loop over a slice vectorises, unlike calls to `expf`.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 0.0);
    let k = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((k as i32 + 127) as u32) << 23)
}

/// `y = act(a·x + b)` over a slice, written into `out` (every value).
fn activate_affine(out: &mut [MaybeUninit<f32>], x: &[f32], a: f32, b: f32, act: Act) {
    match act {
        Act::Relu => {
            for (o, &v) in out.iter_mut().zip(x) {
                o.write((a * v + b).max(0.0));
            }
        }
        Act::Elu => {
            for (o, &v) in out.iter_mut().zip(x) {
                let z = a * v + b;
                let negative = exp_nonpositive(z) - 1.0;
                o.write(if z > 0.0 { z } else { negative });
            }
        }
    }
}

/// A buffer of `len` values written plane by plane (`hw` values each), in parallel, by `fill`,
/// which writes every value of its plane: nothing is zeroed first, a pass over memory saved.
fn planes_written(
    len: usize,
    hw: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(hw)
        .enumerate()
        .for_each(|(p, plane)| fill(p, plane));
    // SAFETY: the planes cover `0..len` and `fill` wrote every value of each; a panic in
    // `fill` propagates before this line, leaving the vector empty.
    unsafe { out.set_len(len) };
    out
}

/// The activation alone, in place (ELU after a convolution whose BatchNorm was folded in).
pub(crate) fn activate(values: &mut [f32], act: Act) {
    values.par_chunks_mut(1 << 14).for_each(|chunk| {
        let copy: &mut [f32] = chunk;
        for v in copy.iter_mut() {
            let z = *v;
            let negative = match act {
                Act::Relu => 0.0,
                Act::Elu => exp_nonpositive(z) - 1.0,
            };
            *v = if z > 0.0 { z } else { negative };
        }
    });
}

/// Lanes of f32 partial sums: independent accumulators vectorise, and a block of 1024 values
/// summed in f32 loses nothing that matters before it joins the f64 total.
const LANES: usize = 8;
const BLOCK: usize = 1024;

/// `(Σ f(i), Σ g(i))` over `0..n`, in f32 lanes per block and f64 across blocks.
#[inline(always)]
fn sum2(n: usize, f: impl Fn(usize) -> (f32, f32)) -> (f64, f64) {
    let (mut total_a, mut total_b) = (0f64, 0f64);
    for start in (0..n).step_by(BLOCK) {
        let end = (start + BLOCK).min(n);
        let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
        let mut i = start;
        while i + LANES <= end {
            for l in 0..LANES {
                let (u, v) = f(i + l);
                a[l] += u;
                b[l] += v;
            }
            i += LANES;
        }
        for j in i..end {
            let (u, v) = f(j);
            a[0] += u;
            b[0] += v;
        }
        total_a += a.iter().map(|&v| v as f64).sum::<f64>();
        total_b += b.iter().map(|&v| v as f64).sum::<f64>();
    }
    (total_a, total_b)
}

/// Per plane: Σx and Σx².
fn plane_sums(x: &[f32], hw: usize) -> Vec<(f64, f64)> {
    x.par_chunks(hw)
        .map(|plane| sum2(plane.len(), |i| (plane[i], plane[i] * plane[i])))
        .collect()
}

/// Adds per-plane values into their groups.
fn to_groups<T: Copy + std::ops::Add<Output = T>>(
    op: &NormAct,
    planes: &[T],
    dims: [usize; 3],
    zero: T,
) -> Vec<T> {
    let c = dims[1];
    let mut groups = vec![zero; op.groups(dims)];
    for (p, &v) in planes.iter().enumerate() {
        let g = op.group(p, c);
        groups[g] = groups[g] + v;
    }
    groups
}

/// The mean and (biased) variance of each group of `x` `[n, c, hw]`.
pub(crate) fn moments(x: &[f32], dims: [usize; 3], op: &NormAct) -> (Vec<f32>, Vec<f32>) {
    let sums = plane_sums(x, dims[2]);
    let m = op.group_size(dims) as f64;
    let column = |k: usize| -> Vec<f64> {
        let per_plane: Vec<f64> = sums
            .iter()
            .map(|p| if k == 0 { p.0 } else { p.1 })
            .collect();
        to_groups(op, &per_plane, dims, 0.0)
    };
    let sums: Vec<(f64, f64)> = column(0).into_iter().zip(column(1)).collect();
    sums.iter()
        .map(|&(s, q)| {
            let mean = s / m;
            (mean as f32, (q / m - mean * mean).max(0.0) as f32)
        })
        .unzip()
}

fn inverse_std(var: &[f32], eps: f64) -> Vec<f32> {
    var.iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect()
}

/// `act(γ·(x − mean)/√(var + ε) + β)` of `x` `[n, c, hw]` under the groups' `mean` and `var`.
pub(crate) fn forward(
    x: &[f32],
    dims: [usize; 3],
    op: &NormAct,
    (mean, var): (&[f32], &[f32]),
    (gamma, beta): (&[f32], &[f32]),
) -> Vec<f32> {
    let [_, c, hw] = dims;
    let inv = inverse_std(var, op.eps);
    planes_written(x.len(), hw, |p, out| {
        let (g, k) = (op.group(p, c), p % c);
        let a = gamma[k] * inv[g];
        let plane = &x[p * hw..(p + 1) * hw];
        activate_affine(out, plane, a, beta[k] - a * mean[g], op.act);
    })
}

/// What the backward pass needs of the forward one.
pub(crate) struct Saved<'a> {
    pub x: &'a [f32],
    /// The forward's output (the activation's derivative is read from it).
    pub y: &'a [f32],
    pub mean: &'a [f32],
    pub var: &'a [f32],
    pub gamma: &'a [f32],
}

/// The gradients of `x`, γ and β from the output's gradient `dy`.
pub(crate) fn backward(
    dy: &[f32],
    saved: &Saved,
    dims: [usize; 3],
    op: &NormAct,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let [_, c, hw] = dims;
    let Saved {
        x,
        y,
        mean,
        var,
        gamma,
    } = *saved;
    let inv = inverse_std(var, op.eps);
    // Per plane: Σdz and Σdz·(x − mean), dz = dy·act'(z).
    let planes: Vec<(f64, f64)> = dy
        .par_chunks(hw)
        .zip(y.par_chunks(hw))
        .zip(x.par_chunks(hw))
        .enumerate()
        .map(|(p, ((grad, out), input))| {
            let centre = mean[op.group(p, c)];
            sum2(grad.len(), |i| {
                let dz = grad[i] * op.slope(out[i]);
                (dz, dz * (input[i] - centre))
            })
        })
        .collect();
    let column = |k: usize| -> Vec<f64> {
        let per_plane: Vec<f64> = planes
            .iter()
            .map(|p| if k == 0 { p.0 } else { p.1 })
            .collect();
        to_groups(op, &per_plane, dims, 0.0)
    };
    // Σdz·x̂ = inv·Σdz·(x − mean), per group.
    let (dz_sum, dz_centred) = (column(0), column(1));
    let dz_xhat: Vec<f64> = (0..dz_sum.len())
        .map(|g| inv[g] as f64 * dz_centred[g])
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0f64; c], vec![0.0f64; c]);
    for g in 0..dz_sum.len() {
        dgamma[g % c] += dz_xhat[g];
        dbeta[g % c] += dz_sum[g];
    }
    let m = op.group_size(dims) as f64;
    let dx = planes_written(x.len(), hw, |p, out| {
        let (g, k) = (op.group(p, c), p % c);
        let scale = gamma[k] * inv[g];
        let (mean_dz, mean_dzxhat) = ((dz_sum[g] / m) as f32, (dz_xhat[g] / m) as f32);
        let range = p * hw..(p + 1) * hw;
        let (mean_g, inv_g) = (mean[g], inv[g]);
        for ((d, &grad), (&o, &v)) in out
            .iter_mut()
            .zip(&dy[range.clone()])
            .zip(y[range.clone()].iter().zip(&x[range]))
        {
            let xhat = (v - mean_g) * inv_g;
            d.write(scale * (grad * op.slope(o) - mean_dz - xhat * mean_dzxhat));
        }
    });
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (dx, to_f32(dgamma), to_f32(dbeta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorisable_exp_agrees_with_the_library_one() {
        let mut worst = 0f64;
        for k in 0..=87_000 {
            let x = -(k as f32) / 1000.0;
            let (fast, exact) = (exp_nonpositive(x) as f64, (x as f64).exp());
            worst = worst.max((fast - exact).abs() / exact);
        }
        assert!(worst < 5e-7, "relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1000.0), exp_nonpositive(-87.0));
        // ELU by hand: elu(−1) = e⁻¹ − 1, elu(2) = 2; ReLU(−1) = 0.
        let mut v = [-1.0f32, 2.0, 0.0];
        activate(&mut v, Act::Elu);
        assert!(
            (v[0] - (-0.632_120_56)).abs() < 1e-6 && v[1] == 2.0 && v[2] == 0.0,
            "{v:?}"
        );
        let mut v = [-1.0f32, 2.0];
        activate(&mut v, Act::Relu);
        assert_eq!(v, [0.0, 2.0]);
    }
}
