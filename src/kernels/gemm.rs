//! GEMM kernels for the middle layers (under 64 channels, beyond the direct kernels' channel
//! pairs) and small planes: the 3×3 convolution as pixel-major
//! im2col + matrix products, the 2×2 stride-2 up-convolution as a product plus a pixel
//! shuffle, and the 1×1 head; forward and backward.
//!
//! Flex's own convolution builds im2col in 512-pixel tiles, each multiplied single-threaded,
//! and Burn's generic backward computes the weight gradient as a convolution over swapped
//! batch/channel dimensions. Here each step is one large product that the `gemm` crate splits
//! across threads: the forward `y = col · Wᵀ` (pixel-major, then transposed into NCHW), the weight
//! gradient `dWᵀ = colᵀ · dyᵀ`, the input gradient a convolution with the transposed, flipped
//! kernel. im2col is pixel-major (`[pixels, 9·cin]`): measured, the products run 2–3× faster in
//! that orientation than with channel-major `[9·cin, pixels]` rows, and the copy from a padded
//! pixel-major image is three `memcpy`s per pixel. Products split only over the output, never
//! over the sum, so results are deterministic.

use ::gemm::Parallelism;
use rayon::prelude::*;

/// A row-major matrix view: `rows × cols` elements at `ptr`, with the given strides.
#[derive(Clone, Copy)]
pub(super) struct View {
    pub(super) ptr: *const f32,
    pub(super) row_stride: isize,
    pub(super) col_stride: isize,
}

impl View {
    /// A contiguous row-major matrix with `cols` columns.
    pub(super) fn rows(data: &[f32], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// The transpose of a contiguous row-major matrix with `cols` columns.
    pub(super) fn transposed(data: &[f32], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: 1,
            col_stride: cols as isize,
        }
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, `dst` contiguous row-major; accumulates when
/// `accumulate` is set, overwrites otherwise.
pub(super) fn matmul(dst: &mut [f32], dims: [usize; 3], lhs: View, rhs: View, accumulate: bool) {
    assert_eq!(dst.len(), dims[0] * dims[1], "matmul destination");
    matmul_strided(dst, dims[1], dims, lhs, rhs, accumulate);
}

/// [`matmul`] on the calling thread only, for callers that run several products at once.
pub(super) fn matmul_serial(
    dst: &mut [f32],
    dims: [usize; 3],
    lhs: View,
    rhs: View,
    accumulate: bool,
) {
    assert_eq!(dst.len(), dims[0] * dims[1], "matmul destination");
    product(dst, dims[1], dims, lhs, rhs, accumulate, Parallelism::None);
}

/// [`matmul`] into a row-major `dst` whose rows are `dst_row_stride` apart.
pub(super) fn matmul_strided(
    dst: &mut [f32],
    dst_row_stride: usize,
    dims: [usize; 3],
    lhs: View,
    rhs: View,
    accumulate: bool,
) {
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 && dims.iter().product::<usize>() >= 1 << 16 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    product(dst, dst_row_stride, dims, lhs, rhs, accumulate, parallelism);
}

fn product(
    dst: &mut [f32],
    dst_row_stride: usize,
    [m, n, k]: [usize; 3],
    lhs: View,
    rhs: View,
    accumulate: bool,
    parallelism: Parallelism,
) {
    assert!(
        m == 0 || dst.len() >= (m - 1) * dst_row_stride + n,
        "matmul destination"
    );
    // SAFETY: `dst` holds the m rows of n elements (checked above); callers build `lhs` and `rhs` views of
    // slices holding m·k and k·n elements with the strides given, and no view aliases `dst`.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Each image of `[n, c, h, w]` as zero-padded pixel-major rows `[n, h+2, w+2, c]`: the three
/// horizontal neighbours of a pixel are then `3·c` consecutive values.
fn padded_pixel_major(x: &[f32], dims: [usize; 4]) -> Vec<f32> {
    let [_, _, h, w] = dims;
    pad_pixel_major(x, dims, 1, [h + 2, w + 2])
}

/// Each image of `[n, c, h, w]` as pixel-major rows `[n, ph, pw, c]` with pixel `(i, j)` at
/// `(i + offset, j + offset)` and zeros around it.
fn pad_pixel_major(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    offset: usize,
    [ph, pw]: [usize; 2],
) -> Vec<f32> {
    debug_assert!(h + offset <= ph && w + offset <= pw);
    let mut out = vec![0f32; n * ph * pw * c];
    out.par_chunks_mut(pw * c)
        .enumerate()
        .for_each(|(bi, row)| {
            let (b, r) = (bi / ph, bi % ph);
            if r < offset || r >= h + offset {
                return; // padding rows stay zero
            }
            // [c, w] (rows h·w apart) → [w, c] from pixel `offset` on.
            let src = &x[(b * c * h + r - offset) * w..];
            let dst = &mut row[offset * c..][..w * c];
            // SAFETY: `dst` holds w rows of c values, the block written.
            unsafe { transpose_into(src, h * w, [c, w], dst.as_mut_ptr(), c) };
        });
    out
}

/// im2col in pixel-major order from padded pixel-major images: row `(b, i, j)` of `col`
/// `[n·h·w, 9·cin]` holds the neighbours `(i + ky − 1, j + kx − 1)` in `(ky, kx, ci)` order.
fn im2col(padded: &[f32], [n, cin, h, w]: [usize; 4], col: &mut [f32]) {
    let (pw, row_len) = (w + 2, 9 * cin);
    debug_assert_eq!(col.len(), n * h * w * row_len);
    col.par_chunks_mut(w * row_len)
        .enumerate()
        .for_each(|(bi, rows)| {
            let (b, i) = (bi / h, bi % h);
            let image = &padded[b * (h + 2) * pw * cin..];
            for (j, row) in rows.chunks_exact_mut(row_len).enumerate() {
                for (ky, dst) in row.chunks_exact_mut(3 * cin).enumerate() {
                    dst.copy_from_slice(&image[((i + ky) * pw + j) * cin..][..3 * cin]);
                }
            }
        });
}

/// The weight `[cout, cin, 3, 3]` as the matrix `[cout, 9·cin]` in im2col's `(ky, kx, ci)`
/// column order.
fn weight_matrix(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut m = vec![0f32; cout * 9 * cin];
    m.par_chunks_mut(9 * cin)
        .zip(w.par_chunks(9 * cin))
        .for_each(|(dst, src)| {
            taps_to_front(src, cin, dst);
        });
    m
}

/// One row `[cin, 9]` → `[9, cin]`. Five taps then four: with `cin` a power of two the nine
/// destination rows share cache sets, and nine streams would overflow an 8-way L1 (measured
/// five times slower at 1024 channels).
fn taps_to_front(src: &[f32], cin: usize, dst: &mut [f32]) {
    for taps in [0..5, 5..9] {
        for (ci, k) in src.chunks_exact(9).enumerate() {
            for tap in taps.clone() {
                dst[tap * cin + ci] = k[tap];
            }
        }
    }
}

/// The matrix `[cin, 9·cout]` of the input gradient's convolution: the kernel transposed
/// (`cin` ↔ `cout`) and flipped in both directions, in `(ky, kx, co)` column order.
fn flipped_weight_matrix(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut wt = vec![0f32; cin * 9 * cout]; // [cin·9, cout]
    transpose(w, [cout, cin * 9], &mut wt);
    let mut m = vec![0f32; cin * 9 * cout];
    m.par_chunks_mut(9 * cout)
        .zip(wt.par_chunks(9 * cout))
        .for_each(|(dst, src)| {
            for (tap, row) in dst.chunks_exact_mut(cout).enumerate() {
                row.copy_from_slice(&src[(8 - tap) * cout..][..cout]);
            }
        });
    m
}

/// The weight gradient stacks the images of a chunk into one product on planes below this
/// many pixels: a per-image product's inner dimension is the plane, and under 32×32 it is too
/// short to keep the `gemm` crate's threads busy. Chosen at the direct path's crossover (so
/// the small planes GEMM takes from it stack) rather than measured on its own.
const STACK_PLANES_BELOW_PIXELS: usize = 32 * 32;

/// `[n, c, plane]` → `[n·plane, c]`: each image transposed.
fn pixel_major(x: &[f32], [n, c, plane]: [usize; 3]) -> Vec<f32> {
    let mut out = vec![0f32; n * plane * c];
    for (src, dst) in x
        .chunks_exact(c * plane)
        .zip(out.chunks_exact_mut(plane * c))
    {
        transpose(src, [c, plane], dst);
    }
    out
}

/// `dst[j · dst_stride + i] = src[i · src_stride + j]` for `i < rows`, `j < cols`, in 8 × 8
/// blocks, on one thread.
///
/// # Safety
/// `dst` must be valid for writes at every index written, and no other thread may access them.
pub(super) unsafe fn transpose_into(
    src: &[f32],
    src_stride: usize,
    [rows, cols]: [usize; 2],
    dst: *mut f32,
    dst_stride: usize,
) {
    const BLOCK: usize = 8;
    for i0 in (0..rows).step_by(BLOCK) {
        for j0 in (0..cols).step_by(BLOCK) {
            for i in i0..(i0 + BLOCK).min(rows) {
                let from = &src[i * src_stride + j0..][..(j0 + BLOCK).min(cols) - j0];
                for (dj, &v) in from.iter().enumerate() {
                    // SAFETY: the caller guarantees the destination is writable here.
                    unsafe { *dst.add((j0 + dj) * dst_stride + i) = v };
                }
            }
        }
    }
}

/// `dst[cols, rows] = src[rows, cols]ᵀ`, in 8 × 8 tiles (eight streams each way fit an 8-way
/// L1 even when the row length is a power of two), in parallel over bands of destination rows.
pub(super) fn transpose(src: &[f32], [rows, cols]: [usize; 2], dst: &mut [f32]) {
    const TILE: usize = 8;
    debug_assert_eq!(src.len(), rows * cols);
    dst.par_chunks_mut(TILE * rows)
        .enumerate()
        .for_each(|(band, out)| {
            let c0 = band * TILE;
            let width = out.len() / rows.max(1);
            for r0 in (0..rows).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    let from = &src[r * cols + c0..][..width];
                    for (c, &v) in from.iter().enumerate() {
                        out[c * rows + r] = v;
                    }
                }
            }
        });
}

/// Images per im2col chunk: as many as keep `col` near [`COL_FLOATS`], at least one.
fn images_per_chunk(n: usize, pixels: usize, row_len: usize) -> usize {
    (COL_FLOATS / (pixels * row_len).max(1)).clamp(1, n.max(1))
}

/// 8 M floats (32 MB) of im2col at a time.
const COL_FLOATS: usize = 8 << 20;

thread_local! {
    /// im2col scratch, kept between calls: a fresh buffer of this size costs more in page
    /// faults than the copy that fills it.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch buffer of `len` floats (contents unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}

/// Calls `f(first image, images, col)` for chunks of the batch, `col` holding the chunk's
/// im2col `[images · h · w, 9 · cin]`.
fn for_each_im2col(x: &[f32], [n, cin, h, w]: [usize; 4], mut f: impl FnMut(usize, usize, &[f32])) {
    let (plane, row_len) = (h * w, 9 * cin);
    let chunk = images_per_chunk(n, plane, row_len);
    with_scratch(chunk * plane * row_len, |scratch| {
        for first in (0..n).step_by(chunk) {
            let m = chunk.min(n - first);
            let padded =
                padded_pixel_major(&x[first * cin * plane..][..m * cin * plane], [m, cin, h, w]);
            let col = &mut scratch[..m * plane * row_len];
            im2col(&padded, [m, cin, h, w], col);
            f(first, m, col);
        }
    });
}

/// 3×3 convolution (stride 1, zero padding 1): `y = im2col(x) · W[cout, 9·cin]ᵀ + bias`,
/// pixel-major, transposed into the NCHW output.
pub fn forward(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    convolve(x, &weight_matrix(w, cin, cout), bias, [n, cin, h, wd], cout)
}

/// The convolution with its weight already in matrix form `[cout, 9·cin]`.
fn convolve(
    x: &[f32],
    wm: &[f32],
    bias: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let plane = h * wd;
    let mut out = vec![0f32; n * cout * plane];
    for_each_im2col(x, [n, cin, h, wd], |first, m, col| {
        // One pixel-major product for the chunk (the orientation the `gemm` crate runs
        // fastest), then each image transposed into NCHW.
        let mut y = vec![0f32; m * plane * cout];
        matmul(
            &mut y,
            [m * plane, cout, 9 * cin],
            View::rows(col, 9 * cin),
            View::transposed(wm, 9 * cin),
            false,
        );
        let out = &mut out[first * cout * plane..][..m * cout * plane];
        for (ob, yb) in out
            .chunks_exact_mut(cout * plane)
            .zip(y.chunks_exact(plane * cout))
        {
            transpose(yb, [plane, cout], ob);
            ob.par_chunks_mut(plane)
                .zip(bias)
                .for_each(|(row, &b)| row.iter_mut().for_each(|v| *v += b));
        }
    });
    out
}

/// Input gradient: the convolution of `dy` with the kernel transposed (`cin` ↔ `cout`) and
/// flipped in both spatial directions.
pub fn input_grad(dy: &[f32], w: &[f32], [n, cin, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
    let wm = flipped_weight_matrix(w, cin, cout);
    convolve(dy, &wm, &vec![0.0; cin], [n, cout, h, wd], cin)
}

/// Weight gradient: `dWᵀ[9·cin, cout] = Σ im2col(x)ᵀ · dyᵀ` (the orientation the product runs
/// fastest in), then back to `[cout, cin, 3, 3]`. Large planes multiply image by image, reading
/// `dy` transposed in place; small planes stack a chunk of images into one product with a long
/// inner dimension, which needs `dy` copied to pixel-major order first.
pub fn weight_grad(dy: &[f32], x: &[f32], [n, cin, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
    let plane = h * wd;
    let mut dwt = vec![0f32; 9 * cin * cout];
    for_each_im2col(x, [n, cin, h, wd], |first, m, col| {
        let dy = &dy[first * cout * plane..][..m * cout * plane];
        if plane >= STACK_PLANES_BELOW_PIXELS {
            for (k, dyb) in dy.chunks_exact(cout * plane).enumerate() {
                matmul(
                    &mut dwt,
                    [9 * cin, cout, plane],
                    View::transposed(&col[k * plane * 9 * cin..][..plane * 9 * cin], 9 * cin),
                    View::transposed(dyb, plane),
                    first + k > 0,
                );
            }
        } else {
            let dyh = pixel_major(dy, [m, cout, plane]);
            matmul(
                &mut dwt,
                [9 * cin, cout, m * plane],
                View::transposed(col, 9 * cin),
                View::rows(&dyh, cout),
                first > 0,
            );
        }
    });
    let mut dwm = vec![0f32; cout * 9 * cin]; // [cout, 9·cin], columns in (tap, ci) order
    transpose(&dwt, [9 * cin, cout], &mut dwm);
    let mut dw = vec![0f32; cout * cin * 9];
    dw.par_chunks_mut(9 * cin)
        .zip(dwm.par_chunks(9 * cin))
        .for_each(|(dst, src)| {
            for taps in [0..5, 5..9] {
                for (ci, k) in dst.chunks_exact_mut(9).enumerate() {
                    for tap in taps.clone() {
                        k[tap] = src[tap * cin + ci];
                    }
                }
            }
        });
    dw
}

/// Up-convolution forward: per image `Z[cout·4, h·w] = Wᵀ · x[b]` with `W` read as
/// `[cin, cout·4]`, then each of the four rows of an output channel goes to its sub-pixel
/// position: `y[b, co, 2i+a, 2j+c] = bias[co] + Z[co·4 + 2a + c, i·w + j]`.
pub(crate) fn up_forward(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let plane = h * wd;
    let mut out = vec![0f32; n * cout * 4 * plane];
    let mut z = vec![0f32; cout * 4 * plane];
    for (xb, yb) in x
        .chunks_exact(cin * plane)
        .zip(out.chunks_exact_mut(cout * 4 * plane))
    {
        matmul(
            &mut z,
            [cout * 4, plane, cin],
            View::transposed(w, cout * 4),
            View::rows(xb, plane),
            false,
        );
        yb.par_chunks_mut(4 * plane)
            .zip(z.par_chunks(4 * plane))
            .zip(bias)
            .for_each(|((yc, zc), &b)| {
                for (i, rows) in yc.chunks_exact_mut(4 * wd).enumerate() {
                    for a in 0..2 {
                        let row = &mut rows[a * 2 * wd..][..2 * wd];
                        let (z0, z1) = (
                            &zc[(2 * a) * plane + i * wd..][..wd],
                            &zc[(2 * a + 1) * plane + i * wd..][..wd],
                        );
                        for ((pair, &v0), &v1) in row.chunks_exact_mut(2).zip(z0).zip(z1) {
                            pair[0] = b + v0;
                            pair[1] = b + v1;
                        }
                    }
                }
            });
    }
    out
}

/// The inverse of the up-convolution's pixel shuffle, for one image:
/// `dz[co·4 + 2a + c, i·w + j] = dy[co, 2i+a, 2j+c]`.
fn unshuffle(dyb: &[f32], dz: &mut [f32], [h, wd]: [usize; 2]) {
    let plane = h * wd;
    dz.par_chunks_mut(4 * plane)
        .zip(dyb.par_chunks(4 * plane))
        .for_each(|(zc, yc)| {
            for (i, rows) in yc.chunks_exact(4 * wd).enumerate() {
                for a in 0..2 {
                    let row = &rows[a * 2 * wd..][..2 * wd];
                    for (j, pair) in row.chunks_exact(2).enumerate() {
                        zc[(2 * a) * plane + i * wd + j] = pair[0];
                        zc[(2 * a + 1) * plane + i * wd + j] = pair[1];
                    }
                }
            }
        });
}

/// Up-convolution input gradient: `dx[b] = W[cin, cout·4] · unshuffle(dy[b])`.
pub(crate) fn up_input_grad(
    dy: &[f32],
    w: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let plane = h * wd;
    let mut dx = vec![0f32; n * cin * plane];
    let mut dz = vec![0f32; cout * 4 * plane];
    for (dyb, dxb) in dy
        .chunks_exact(cout * 4 * plane)
        .zip(dx.chunks_exact_mut(cin * plane))
    {
        unshuffle(dyb, &mut dz, [h, wd]);
        matmul(
            dxb,
            [cin, plane, cout * 4],
            View::rows(w, cout * 4),
            View::rows(&dz, plane),
            false,
        );
    }
    dx
}

/// Up-convolution weight gradient: `dW[cin, cout·4] = Σ_b x[b] · unshuffle(dy[b])ᵀ`.
pub(crate) fn up_weight_grad(
    dy: &[f32],
    x: &[f32],
    [_, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let plane = h * wd;
    let mut dw = vec![0f32; cin * cout * 4];
    let mut dz = vec![0f32; cout * 4 * plane];
    for (b, (xb, dyb)) in x
        .chunks_exact(cin * plane)
        .zip(dy.chunks_exact(cout * 4 * plane))
        .enumerate()
    {
        unshuffle(dyb, &mut dz, [h, wd]);
        matmul(
            &mut dw,
            [cin, cout * 4, plane],
            View::rows(xb, plane),
            View::transposed(&dz, plane),
            b > 0,
        );
    }
    dw
}

/// 1×1 convolution (the U-Net's head): per image `y[b] = bias + W[cout, cin] · x[b]`.
pub(crate) fn pointwise_forward(
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let plane = h * wd;
    let mut out = vec![0f32; n * cout * plane];
    for (xb, yb) in x
        .chunks_exact(cin * plane)
        .zip(out.chunks_exact_mut(cout * plane))
    {
        for (row, &b) in yb.chunks_exact_mut(plane).zip(bias) {
            row.fill(b);
        }
        matmul(
            yb,
            [cout, plane, cin],
            View::rows(w, cin),
            View::rows(xb, plane),
            true,
        );
    }
    out
}

/// 1×1 convolution input gradient: `dx[b] = Wᵀ · dy[b]`.
pub(crate) fn pointwise_input_grad(
    dy: &[f32],
    w: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let plane = h * wd;
    let mut dx = vec![0f32; n * cin * plane];
    for (dyb, dxb) in dy
        .chunks_exact(cout * plane)
        .zip(dx.chunks_exact_mut(cin * plane))
    {
        matmul(
            dxb,
            [cin, plane, cout],
            View::transposed(w, cin),
            View::rows(dyb, plane),
            false,
        );
    }
    dx
}

/// 1×1 convolution weight gradient: `dW[cout, cin] = Σ_b dy[b] · x[b]ᵀ`.
pub(crate) fn pointwise_weight_grad(
    dy: &[f32],
    x: &[f32],
    [_, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let plane = h * wd;
    let mut dw = vec![0f32; cout * cin];
    for (b, (xb, dyb)) in x
        .chunks_exact(cin * plane)
        .zip(dy.chunks_exact(cout * plane))
        .enumerate()
    {
        matmul(
            &mut dw,
            [cout, cin, plane],
            View::rows(dyb, plane),
            View::transposed(xb, plane),
            b > 0,
        );
    }
    dw
}
