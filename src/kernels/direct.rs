//! Direct kernels for the narrow layers: they work on whole NCHW rows (auto-vectorised
//! slices), in parallel over output planes, and sum every output in a written-out order, so
//! results are deterministic. Fast where rows are long and channels few (see `ConvPath::Auto`).

use rayon::prelude::*;

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
#[inline(always)]
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

/// The nine weight-gradient sums of one (output, input) channel pair, on the AVX2 + FMA build
/// where the CPU has it.
fn weight_grad_taps(
    dy: &[f32],
    x: &[f32],
    dims: [usize; 4],
    cout: usize,
    co: usize,
    ci: usize,
) -> [f64; 9] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { weight_grad_taps_avx2(dy, x, dims, cout, co, ci) };
    }
    weight_grad_taps_body(dy, x, dims, cout, co, ci)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_grad_taps_avx2(
    dy: &[f32],
    x: &[f32],
    dims: [usize; 4],
    cout: usize,
    co: usize,
    ci: usize,
) -> [f64; 9] {
    weight_grad_taps_body(dy, x, dims, cout, co, ci)
}

#[inline(always)]
fn weight_grad_taps_body(
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
pub(crate) fn bias_grad(dy: &[f32], [n, _, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
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
pub(crate) fn up_forward(
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
pub(crate) fn up_input_grad(
    dy: &[f32],
    w: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
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
pub(crate) fn up_weight_grad(
    dy: &[f32],
    x: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
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

/// 2×2 max-pool, stride 2 (a trailing odd row or column is dropped, as Burn's pool does):
/// `y[b, c, i, j] = max of x[b, c, 2i..2i+2, 2j..2j+2]`.
pub(crate) fn max_pool_forward(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut out = vec![0f32; n * c * oh * ow];
    if oh * ow == 0 {
        return out;
    }
    out.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, xp)| {
            for (i, orow) in o.chunks_exact_mut(ow).enumerate() {
                let (r0, r1) = (&xp[2 * i * w..][..2 * ow], &xp[(2 * i + 1) * w..][..2 * ow]);
                for ((v, a), b) in orow
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    *v = a[0].max(a[1]).max(b[0].max(b[1]));
                }
            }
        });
    out
}

/// 2×2 max-pool backward: each output's gradient goes to the first of its four inputs (in
/// row order) that holds the maximum, the rule Burn's and PyTorch's pools follow.
pub(crate) fn max_pool_input_grad(dy: &[f32], x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let (oh, ow) = (h / 2, w / 2);
    let mut dx = vec![0f32; n * c * h * w];
    if oh * ow == 0 {
        return dx;
    }
    dx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(dy.par_chunks(oh * ow))
        .for_each(|((d, xp), g)| {
            for (i, grow) in g.chunks_exact(ow).enumerate() {
                for (j, &gv) in grow.iter().enumerate() {
                    let at = [
                        2 * i * w + 2 * j,
                        2 * i * w + 2 * j + 1,
                        (2 * i + 1) * w + 2 * j,
                        (2 * i + 1) * w + 2 * j + 1,
                    ];
                    let mut best = at[0];
                    for &k in &at[1..] {
                        if xp[k] > xp[best] {
                            best = k;
                        }
                    }
                    d[best] = gv;
                }
            }
        });
    dx
}

/// Channel concatenation of `a` `[n, ca, plane]` and `b` `[n, cb, plane]` → `[n, ca + cb, plane]`.
pub(crate) fn interleave(a: &[f32], b: &[f32], [n, ca, cb, plane]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0f32; n * (ca + cb) * plane];
    out.par_chunks_mut((ca + cb) * plane)
        .zip(a.par_chunks(ca * plane).zip(b.par_chunks(cb * plane)))
        .for_each(|(o, (a, b))| {
            o[..ca * plane].copy_from_slice(a);
            o[ca * plane..].copy_from_slice(b);
        });
    out
}

/// The inverse of [`interleave`]: `[n, ca + cb, plane]` → (`[n, ca, plane]`, `[n, cb, plane]`).
pub(crate) fn deinterleave(y: &[f32], [n, ca, cb, plane]: [usize; 4]) -> (Vec<f32>, Vec<f32>) {
    let (mut a, mut b) = (vec![0f32; n * ca * plane], vec![0f32; n * cb * plane]);
    a.par_chunks_mut(ca * plane)
        .zip(b.par_chunks_mut(cb * plane))
        .zip(y.par_chunks((ca + cb) * plane))
        .for_each(|((a, b), y)| {
            a.copy_from_slice(&y[..ca * plane]);
            b.copy_from_slice(&y[ca * plane..]);
        });
    (a, b)
}
