//! BatchNorm and InstanceNorm with the activation after them, fused: the statistics in one pass
//! (sums in f64), then one pass that normalises, scales, shifts and activates
//! (`y = act(a·x + b)`, `a = γ/√(var + ε)`, `b = β − a·mean`); the backward pass in two (the
//! sums through the statistics, then the input gradient), with γ's and β's gradients from the
//! same sums. Burn's modules (`BatchNorm`, `InstanceNorm`, then `relu`/`elu`) compose a dozen
//! tensor ops for the same — each a pass over memory, most single-threaded on Flex.
//!
//! Tensors are `[n, c, h, w]` row-major: plane `p = i·c + k` holds image `i`, channel `k`.
//! BatchNorm's statistics are per channel (over `n` planes), InstanceNorm's per plane.

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

    /// `act(z)`.
    fn activate(&self, z: f32) -> f32 {
        match (self.act, z > 0.0) {
            (_, true) => z,
            (Act::Relu, false) => 0.0,
            (Act::Elu, false) => z.exp() - 1.0,
        }
    }

    /// `act'(z)` from the output `y = act(z)`: ELU's derivative below 0 is `e^z = y + 1`.
    fn slope(&self, y: f32) -> f32 {
        match (self.act, y > 0.0) {
            (_, true) => 1.0,
            (Act::Relu, false) => 0.0,
            (Act::Elu, false) => y + 1.0,
        }
    }
}

/// Per plane: Σx and Σx² (f64).
fn plane_sums(x: &[f32], hw: usize) -> Vec<(f64, f64)> {
    x.par_chunks(hw)
        .map(|plane| {
            plane.iter().fold((0.0, 0.0), |(s, q), &v| {
                let v = v as f64;
                (s + v, q + v * v)
            })
        })
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
    let sums: Vec<(f64, f64)> = {
        let s: Vec<f64> = to_groups(op, &sums.iter().map(|s| s.0).collect::<Vec<_>>(), dims, 0.0);
        let q: Vec<f64> = to_groups(op, &sums.iter().map(|s| s.1).collect::<Vec<_>>(), dims, 0.0);
        s.into_iter().zip(q).collect()
    };
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
    let mut y = vec![0.0f32; x.len()];
    y.par_chunks_mut(hw)
        .zip(x.par_chunks(hw))
        .enumerate()
        .for_each(|(p, (out, plane))| {
            let (g, k) = (op.group(p, c), p % c);
            let a = gamma[k] * inv[g];
            let b = beta[k] - a * mean[g];
            for (o, &v) in out.iter_mut().zip(plane) {
                *o = op.activate(a * v + b);
            }
        });
    y
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
    // Per plane: Σdz and Σdz·x, dz = dy·act'(z).
    let planes: Vec<(f64, f64)> = dy
        .par_chunks(hw)
        .zip(y.par_chunks(hw))
        .zip(x.par_chunks(hw))
        .map(|((grad, out), input)| {
            grad.iter()
                .zip(out)
                .zip(input)
                .fold((0.0, 0.0), |(s, sx), ((&g, &o), &v)| {
                    let dz = (g * op.slope(o)) as f64;
                    (s + dz, sx + dz * v as f64)
                })
        })
        .collect();
    // Σdz·x̂ = inv·(Σdz·x − mean·Σdz), per group.
    let dz_sum: Vec<f64> = to_groups(
        op,
        &planes.iter().map(|p| p.0).collect::<Vec<_>>(),
        dims,
        0.0,
    );
    let dzx_sum: Vec<f64> = to_groups(
        op,
        &planes.iter().map(|p| p.1).collect::<Vec<_>>(),
        dims,
        0.0,
    );
    let dz_xhat: Vec<f64> = (0..dz_sum.len())
        .map(|g| inv[g] as f64 * (dzx_sum[g] - mean[g] as f64 * dz_sum[g]))
        .collect();
    let (mut dgamma, mut dbeta) = (vec![0.0f64; c], vec![0.0f64; c]);
    for g in 0..dz_sum.len() {
        dgamma[g % c] += dz_xhat[g];
        dbeta[g % c] += dz_sum[g];
    }
    let m = op.group_size(dims) as f64;
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, out)| {
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
            *d = scale * (grad * op.slope(o) - mean_dz - xhat * mean_dzxhat);
        }
    });
    let to_f32 = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (dx, to_f32(dgamma), to_f32(dbeta))
}
