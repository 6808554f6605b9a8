//! Winograd F(2×2, 3×3) and F(4×4, 3×3) kernels for the wide 3×3 layers, forward and backward.
//!
//! A 3×3 convolution over a 2×2 output tile needs 36 multiplications per channel pair; Winograd's
//! minimal filtering needs 16, on transformed 4×4 input tiles: `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`.
//! Summed over input channels, each of the 16 transformed positions `ξ` becomes one matrix
//! product `M_ξ[tiles, cout] = V_ξ[tiles, cin] · U_ξ[cout, cin]ᵀ`, so the wide layers do 2.25×
//! fewer multiply-adds than im2col + GEMM ([`super::gemm`]), and the transforms (additions
//! only, O(channels) per tile against O(channels²) for the products) are cheap once there are
//! tens of channels. F(4×4, 3×3) does the same on 6×6 input tiles with 36 positions: 1.78×
//! fewer multiplications again than F(2×2, 3×3) per output, at the cost of larger transforms;
//! it runs the forward pass and the input gradient where a batch has enough 4×4 tiles
//! ([`super::policy`]).
//!
//! The backward pass uses the same transforms, transposed, which is exact algebra rather than
//! an approximation: the input gradient is the forward convolution of `dy` with the kernel
//! transposed and flipped; the weight gradient is `dU_ξ = Σ_tiles dM_ξᵀ · V_ξ` with
//! `dM = A dY Aᵀ`, brought back by `dg = Gᵀ dU G`.
//!
//! Layouts are pixel-major with channels innermost, so every transform is a handful of
//! element-wise loops over contiguous channel vectors (vectorised by the compiler):
//! transformed tiles are `[tiles, positions, channels]`, and the products read them with a row
//! stride of `positions · channels`. Work goes in chunks of whole tile rows so the transformed tiles of
//! a chunk stay in cache ([`CHUNK_FLOATS`]). Products split only over their output, so results are
//! deterministic.

use super::gemm::{View, matmul_serial, transpose_into};
use rayon::prelude::*;
use std::ops::Range;

/// Transformed positions per tile (a 4×4 input tile).
pub(crate) const XI: usize = 16;

/// About 4 MB of transformed tiles at a time, so that they are still in cache when the
/// products read them (measured: 16 MB chunks made the 64-channel layers 1.5–2× slower)...
const CHUNK_FLOATS: usize = 1 << 20;
/// ... but at least this many tiles, or the products get too short to run efficiently
/// (wide layers on small planes).
const MIN_CHUNK_TILES: usize = 256;

/// How a batch of `h × w` planes splits into square output tiles (2×2, or 4×4 for
/// [`forward_f4`]; the last row or column of tiles partly outside the plane when the side
/// does not divide the plane).
#[derive(Clone, Copy)]
struct Tiling {
    n: usize,
    h: usize,
    w: usize,
    /// Tile rows per image.
    th: usize,
    /// Tiles per tile row.
    tw: usize,
}

impl Tiling {
    fn with_side(n: usize, h: usize, w: usize, side: usize) -> Self {
        Self {
            n,
            h,
            w,
            th: h.div_ceil(side),
            tw: w.div_ceil(side),
        }
    }

    /// Tile rows of the whole batch.
    fn tile_rows(&self) -> usize {
        self.n * self.th
    }

    /// Chunks of whole tile rows, each with about [`CHUNK_FLOATS`] transformed values when
    /// a tile transforms into `per_tile` values (and at least [`MIN_CHUNK_TILES`] tiles).
    fn chunks(&self, per_tile: usize) -> impl Iterator<Item = Range<usize>> {
        let by_size = CHUNK_FLOATS / (per_tile * self.tw).max(1);
        let per_chunk = by_size.max(MIN_CHUNK_TILES.div_ceil(self.tw)).max(1);
        let rows = self.tile_rows();
        (0..rows)
            .step_by(per_chunk)
            .map(move |r0| r0..(r0 + per_chunk).min(rows))
    }
}

fn sub_into(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a - b;
    }
}

fn add_into(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

/// The four `c`-long vectors of a `[4, c]` block, mutably.
fn quarters(block: &mut [f32], c: usize) -> [&mut [f32]; 4] {
    let (a, rest) = block.split_at_mut(c);
    let (b, rest) = rest.split_at_mut(c);
    let (d, e) = rest.split_at_mut(c);
    [a, b, d, &mut e[..c]]
}

/// Kernel transform `G` of F(2×2, 3×3).
const G2: [[f32; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// `U = G g Gᵀ` for every channel pair, as `[cout, 16, cin]`.
fn transform_weight(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    transform_weight_with(&G2, w, cin, cout)
}

/// `U = G g Gᵀ` (`R × R`) for every channel pair, as `[cout, R·R, cin]`: per output channel,
/// the nine taps as vectors over input channels, then each `U` row as a combination of them
/// (element-wise loops; computing channel pair by channel pair and transposing was 3× slower
/// and, on the deepest layers, cost two thirds of the products' time).
fn transform_weight_with<const R: usize>(
    g: &[[f32; 3]; R],
    w: &[f32],
    cin: usize,
    cout: usize,
) -> Vec<f32> {
    let mut u = vec![0f32; cout * R * R * cin];
    u.par_chunks_mut(R * R * cin)
        .zip(w.par_chunks(9 * cin))
        .for_each_init(
            || (vec![0f32; 9 * cin], vec![0f32; R * 3 * cin]),
            |(taps, gk), (uc, wc)| {
                // [cin, 9] → [9, cin].
                // SAFETY: `taps` holds 9 rows of cin values, the block written.
                unsafe { transpose_into(wc, 9, [cin, 9], taps.as_mut_ptr(), cin) };
                let tap = |a: usize, b: usize| &taps[(a * 3 + b) * cin..][..cin];
                // G g: gk[i, b] = Σ_a G[i, a] g[a, b].
                for (i, coef) in g.iter().enumerate() {
                    for b in 0..3 {
                        combine(
                            coef,
                            [tap(0, b), tap(1, b), tap(2, b)],
                            &mut gk[(i * 3 + b) * cin..][..cin],
                        );
                    }
                }
                // (G g) Gᵀ: U[i, j] = Σ_b G[j, b] gk[i, b].
                for i in 0..R {
                    let row: [&[f32]; 3] = std::array::from_fn(|b| &gk[(i * 3 + b) * cin..][..cin]);
                    for (j, coef) in g.iter().enumerate() {
                        combine(coef, row, &mut uc[(i * R + j) * cin..][..cin]);
                    }
                }
            },
        );
    u
}

/// `dg = Gᵀ dU G` for every channel pair: `[16, cout, cin]` → `[cout, cin, 3, 3]`, vectorised
/// over input channels as in [`transform_weight_with`].
fn weight_from_transformed(du: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    // The columns of G: gt[a][i] = G[i][a].
    let gt: [[f32; 4]; 3] = std::array::from_fn(|a| std::array::from_fn(|i| G2[i][a]));
    let mut dw = vec![0f32; cout * cin * 9];
    dw.par_chunks_mut(9 * cin).enumerate().for_each_init(
        || (vec![0f32; 12 * cin], vec![0f32; 9 * cin]),
        |(p, taps), (co, dwc)| {
            let du_at = |i: usize, j: usize| &du[((i * 4 + j) * cout + co) * cin..][..cin];
            // Gᵀ dU: p[a, j] = Σ_i G[i, a] dU[i, j].
            for (a, coef) in gt.iter().enumerate() {
                for j in 0..4 {
                    let col = [du_at(0, j), du_at(1, j), du_at(2, j), du_at(3, j)];
                    combine(coef, col, &mut p[(a * 4 + j) * cin..][..cin]);
                }
            }
            // (Gᵀ dU) G: dg[a, b] = Σ_j G[j, b] p[a, j].
            for a in 0..3 {
                let row: [&[f32]; 4] = std::array::from_fn(|j| &p[(a * 4 + j) * cin..][..cin]);
                for (b, coef) in gt.iter().enumerate() {
                    combine(coef, row, &mut taps[(a * 3 + b) * cin..][..cin]);
                }
            }
            // [9, cin] → [cin, 9].
            // SAFETY: `dwc` holds cin rows of 9 values, the block written.
            unsafe { transpose_into(taps, cin, [9, cin], dwc.as_mut_ptr(), 9) };
        },
    );
    dw
}

/// Rows `first .. first + count` of image `b` of the NCHW `x` (rows outside the plane read as
/// zeros) as pixel-major `[count, pw, c]` in `local`, pixel `j` at column `j + offset`, zeros
/// around it. Gathered per tile row so that the copy stays in cache for the transform.
fn gather_rows(
    x: &[f32],
    tiling: Tiling,
    c: usize,
    (b, first): (usize, isize),
    offset: usize,
    pw: usize,
    local: &mut [f32],
) {
    let (h, w) = (tiling.h, tiling.w);
    for (r, row) in local.chunks_exact_mut(pw * c).enumerate() {
        let i = first + r as isize;
        if i < 0 || i >= h as isize {
            row.fill(0.0);
            continue;
        }
        // Only the padding columns need zeros; the rest is overwritten.
        row[..offset * c].fill(0.0);
        row[(offset + w) * c..].fill(0.0);
        let src = &x[(b * c * h + i as usize) * w..];
        let dst = &mut row[offset * c..][..w * c];
        // SAFETY: `dst` holds w pixels of c values, the block written.
        unsafe { transpose_into(src, h * w, [c, w], dst.as_mut_ptr(), c) };
    }
}

/// The input rows a tile row reads: `side + 2` rows from `side · ty − 1` (zero padding 1),
/// pixel-major in `window` `[side + 2, pw, c]`. Consecutive tile rows share two rows: when the
/// window last held tile row `ty − 1` of the same image, those two are moved up and only
/// `side` new rows are gathered (halving the gathering for F(2×2, 3×3), whose windows overlap
/// by half).
#[allow(clippy::too_many_arguments)]
fn gather_window(
    x: &[f32],
    tiling: Tiling,
    c: usize,
    side: usize,
    (b, ty): (usize, usize),
    pw: usize,
    window: &mut [f32],
    last: &mut Option<(usize, usize)>,
) {
    let row = pw * c;
    if ty > 0 && *last == Some((b, ty - 1)) {
        window.copy_within(side * row.., 0);
        let first = (side * ty + 1) as isize;
        gather_rows(x, tiling, c, (b, first), 1, pw, &mut window[2 * row..]);
    } else {
        gather_rows(x, tiling, c, (b, (side * ty) as isize - 1), 1, pw, window);
    }
    *last = Some((b, ty));
}

/// `V = Bᵀ d B` for the tiles of tile rows `rows`, from the NCHW input `[n, c, h, w]` (zero
/// padding 1), into `v` `[tiles, 16, c]`.
fn transform_input(x: &[f32], tiling: Tiling, c: usize, rows: Range<usize>, v: &mut [f32]) {
    let pw = 2 * tiling.tw + 2;
    v.par_chunks_mut(tiling.tw * XI * c)
        .enumerate()
        .for_each_init(
            || (vec![0f32; 4 * pw * c], vec![0f32; XI * c], None),
            |(local, db, last), (k, vrow)| {
                let (b, ty) = ((rows.start + k) / tiling.th, (rows.start + k) % tiling.th);
                gather_window(x, tiling, c, 2, (b, ty), pw, local, last);
                for (tx, vt) in vrow.chunks_exact_mut(XI * c).enumerate() {
                    // d B, along each of the tile's four rows: db[r, j].
                    for (r, dbr) in db.chunks_exact_mut(4 * c).enumerate() {
                        let d = &local[(r * pw + 2 * tx) * c..][..4 * c];
                        let (d0, d1, d2, d3) =
                            (&d[..c], &d[c..2 * c], &d[2 * c..3 * c], &d[3 * c..]);
                        let [o0, o1, o2, o3] = quarters(dbr, c);
                        sub_into(o0, d0, d2);
                        add_into(o1, d1, d2);
                        sub_into(o2, d2, d1);
                        sub_into(o3, d1, d3);
                    }
                    // Bᵀ (d B), along each column j.
                    let [v0, v1, v2, v3] = quarters(vt, 4 * c);
                    for j in 0..4 {
                        let row = |r: usize| &db[(r * 4 + j) * c..][..c];
                        let at = j * c..(j + 1) * c;
                        sub_into(&mut v0[at.clone()], row(0), row(2));
                        add_into(&mut v1[at.clone()], row(1), row(2));
                        sub_into(&mut v2[at.clone()], row(2), row(1));
                        sub_into(&mut v3[at], row(1), row(3));
                    }
                }
            },
        );
}

/// A pointer the output transform's tasks write through, each to its own pixels.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint elements (one tile row each) and the buffer outlives them.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `Y = Aᵀ M A + bias` for the tiles of tile rows `rows`, from `m` `[16, tiles, c]` into the
/// NCHW output `[n, c, h, w]` (pixels outside the plane dropped). Each tile row is assembled
/// pixel-major, then transposed into its two rows of every output channel.
fn transform_output(
    m: &[f32],
    bias: &[f32],
    tiling: Tiling,
    c: usize,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let Tiling { w, tw, .. } = tiling;
    let tiles = rows.len() * tw;
    write_tile_rows(
        out,
        tiling,
        [2, c],
        rows,
        || vec![0f32; 8 * c],
        |s, local, k, pixel_rows| {
            for tx in 0..tw {
                let tile = k * tw + tx;
                let at = |i: usize, j: usize| &m[((i * 4 + j) * tiles + tile) * c..][..c];
                // M A, along each row i: s[i, 0..2].
                for (i, si) in s.chunks_exact_mut(2 * c).enumerate() {
                    let (s0, s1) = si.split_at_mut(c);
                    let (m0, m1, m2, m3) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
                    for ((((a, b), &x0), &x1), (&x2, &x3)) in s0
                        .iter_mut()
                        .zip(s1.iter_mut())
                        .zip(m0)
                        .zip(m1)
                        .zip(m2.iter().zip(m3))
                    {
                        *a = x0 + x1 + x2;
                        *b = x1 - x2 - x3;
                    }
                }
                // Aᵀ (M A), along each column j, plus the bias: row 0 is s0 + s1 + s2,
                // row 1 is s1 − s2 − s3.
                for j in 0..2.min(w - 2 * tx) {
                    let sv = |i: usize| &s[(i * 2 + j) * c..][..c];
                    for i in 0..pixel_rows {
                        let y = &mut local[(i * w + 2 * tx + j) * c..][..c];
                        let (p, q, r) = (sv(i), sv(i + 1), sv(i + 2));
                        let sign = if i == 0 { 1.0 } else { -1.0 };
                        for ((((y, &p), &q), &r), &b) in y.iter_mut().zip(p).zip(q).zip(r).zip(bias)
                        {
                            *y = p + sign * (q + r) + b;
                        }
                    }
                }
            }
        },
    );
}

/// The output side of both tilings: in parallel over the tile rows `rows`, `fill(scratch,
/// local, k, pixel_rows)` assembles the `k`-th tile row's output rows pixel-major in `local`
/// `[side, w, c]` (`pixel_rows` of them inside the plane), which are then transposed into
/// every channel's rows of the NCHW `out` `[n, c, h, w]`.
fn write_tile_rows<S>(
    out: &mut [f32],
    tiling: Tiling,
    [side, c]: [usize; 2],
    rows: Range<usize>,
    scratch: impl Fn() -> S + Send + Sync,
    fill: impl Fn(&mut S, &mut [f32], usize, usize) + Send + Sync,
) {
    let Tiling { h, w, th, .. } = tiling;
    assert_eq!(out.len(), tiling.n * c * h * w, "output size");
    let shared = SharedOut(out.as_mut_ptr());
    (0..rows.len()).into_par_iter().for_each_init(
        || (scratch(), vec![0f32; side * w * c]),
        |(s, local), k| {
            let _ = &shared;
            let (b, ty) = ((rows.start + k) / th, (rows.start + k) % th);
            let pixel_rows = (h - side * ty).min(side);
            fill(s, local, k, pixel_rows);
            for i in 0..pixel_rows {
                // SAFETY: row side·ty + i of every channel of image b lies inside `out` (size
                // checked above) and only this tile row's task writes it.
                unsafe {
                    let dst = shared.0.add((b * c * h + side * ty + i) * w);
                    transpose_into(&local[i * w * c..][..w * c], c, [w, c], dst, h * w);
                }
            }
        },
    );
}

/// `dM = A dY Aᵀ` for the tiles of tile rows `rows`, from the NCHW output gradient
/// `[n, c, h, w]`, into `dm` `[tiles, 16, c]`.
fn transform_output_grad(dy: &[f32], tiling: Tiling, c: usize, rows: Range<usize>, dm: &mut [f32]) {
    let pw = 2 * tiling.tw;
    dm.par_chunks_mut(tiling.tw * XI * c)
        .enumerate()
        .for_each_init(
            || (vec![0f32; 2 * pw * c], vec![0f32; 8 * c]),
            |(local, e), (k, dmrow)| {
                let (b, ty) = ((rows.start + k) / tiling.th, (rows.start + k) % tiling.th);
                gather_rows(dy, tiling, c, (b, 2 * ty as isize), 0, pw, local);
                for (tx, dmt) in dmrow.chunks_exact_mut(XI * c).enumerate() {
                    // dY Aᵀ, along each of the two rows: e[i, 0..4] = (y0, y0 + y1, y0 − y1, −y1).
                    for (i, ei) in e.chunks_exact_mut(4 * c).enumerate() {
                        let y = &local[(i * pw + 2 * tx) * c..][..2 * c];
                        let (y0, y1) = y.split_at(c);
                        let [o0, o1, o2, o3] = quarters(ei, c);
                        o0.copy_from_slice(y0);
                        add_into(o1, y0, y1);
                        sub_into(o2, y0, y1);
                        o3.iter_mut().zip(y1).for_each(|(o, &v)| *o = -v);
                    }
                    // A (dY Aᵀ), along each column j.
                    let (e0, e1) = e.split_at(4 * c);
                    let [d0, d1, d2, d3] = quarters(dmt, 4 * c);
                    d0.copy_from_slice(e0);
                    add_into(d1, e0, e1);
                    sub_into(d2, e0, e1);
                    d3.iter_mut().zip(e1).for_each(|(o, &v)| *o = -v);
                }
            },
        );
}

/// The rows of `ξ`'s matrix in a `[tiles, 16, c]` buffer: `tiles × c`, row stride `16 · c`.
fn position(buf: &[f32], xi: usize, c: usize) -> View {
    strided(buf, xi, c, XI)
}

/// The transpose of [`position`]: `c × tiles`.
fn position_transposed(buf: &[f32], xi: usize, c: usize) -> View {
    strided_transposed(buf, xi, c, XI)
}

/// [`position`] in a `[tiles, positions, c]` buffer.
fn strided(buf: &[f32], xi: usize, c: usize, positions: usize) -> View {
    View {
        ptr: buf[xi * c..].as_ptr(),
        row_stride: (positions * c) as isize,
        col_stride: 1,
    }
}

/// [`position_transposed`] in a `[tiles, positions, c]` buffer.
fn strided_transposed(buf: &[f32], xi: usize, c: usize, positions: usize) -> View {
    View {
        ptr: buf[xi * c..].as_ptr(),
        row_stride: 1,
        col_stride: (positions * c) as isize,
    }
}

/// 3×3 convolution (stride 1, zero padding 1) with bias: `x` `[n, cin, h, w]`, `w`
/// `[cout, cin, 3, 3]` → `[n, cout, h, w]`.
pub fn forward(x: &[f32], w: &[f32], bias: &[f32], dims: [usize; 4], cout: usize) -> Vec<f32> {
    convolve(&F2, x, w, bias, dims, cout)
}

/// A Winograd tiling: output tile side, transformed values per tile, and its transforms.
struct Scheme {
    side: usize,
    positions: usize,
    weight: fn(&[f32], usize, usize) -> Vec<f32>,
    input: fn(&[f32], Tiling, usize, Range<usize>, &mut [f32]),
    output: OutputTransform,
}

/// `(products, bias, tiling, channels, tile rows, out)`: the products back to pixels.
type OutputTransform = fn(&[f32], &[f32], Tiling, usize, Range<usize>, &mut [f32]);

/// F(2×2, 3×3).
const F2: Scheme = Scheme {
    side: 2,
    positions: XI,
    weight: transform_weight,
    input: transform_input,
    output: transform_output,
};

/// F(4×4, 3×3).
const F4: Scheme = Scheme {
    side: 4,
    positions: f4::XI,
    weight: transform_weight_f4,
    input: transform_input_f4,
    output: transform_output_f4,
};

/// The forward convolution with `scheme`'s tiling.
fn convolve(
    scheme: &Scheme,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let positions = scheme.positions;
    let tiling = Tiling::with_side(n, h, wd, scheme.side);
    let u = (scheme.weight)(w, cin, cout);
    let mut out = vec![0f32; n * cout * h * wd];
    for rows in tiling.chunks(positions * cin.max(cout)) {
        let tiles = rows.len() * tiling.tw;
        let lens = [tiles * positions * cin, tiles * positions * cout];
        with_scratch(lens, |v, m| {
            (scheme.input)(x, tiling, cin, rows.clone(), v);
            // M_ξ[tiles, cout] = V_ξ[tiles, cin] · U_ξ[cout, cin]ᵀ, the products side by side
            // (one thread each beats splitting every product: they are short).
            m.par_chunks_mut(tiles * cout)
                .enumerate()
                .for_each(|(xi, m_xi)| {
                    matmul_serial(
                        m_xi,
                        [tiles, cout, cin],
                        strided(v, xi, cin, positions),
                        strided_transposed(&u, xi, cin, positions),
                        false,
                    )
                });
            (scheme.output)(m, bias, tiling, cout, rows, &mut out);
        });
    }
    out
}

thread_local! {
    /// A chunk's transformed tiles and products, kept between calls: fresh buffers cost a
    /// zeroing pass (or page faults) every call.
    static SCRATCH: std::cell::RefCell<[Vec<f32>; 2]> =
        const { std::cell::RefCell::new([Vec::new(), Vec::new()]) };
}

/// Runs `f` on two scratch buffers of the given lengths (contents unspecified).
fn with_scratch<R>([a, b]: [usize; 2], f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|s| {
        let [va, vb] = &mut *s.borrow_mut();
        for (buf, len) in [(&mut *va, a), (&mut *vb, b)] {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
        f(&mut va[..a], &mut vb[..b])
    })
}

/// Input gradient: the convolution of `dy` with the kernel transposed (`cin` ↔ `cout`) and
/// flipped in both spatial directions.
pub fn input_grad(dy: &[f32], w: &[f32], dims: [usize; 4], cout: usize) -> Vec<f32> {
    input_grad_with(&F2, dy, w, dims, cout)
}

fn input_grad_with(
    scheme: &Scheme,
    dy: &[f32],
    w: &[f32],
    [n, cin, h, wd]: [usize; 4],
    cout: usize,
) -> Vec<f32> {
    let flipped = flip(w, cin, cout);
    convolve(scheme, dy, &flipped, &vec![0.0; cin], [n, cout, h, wd], cin)
}

/// The kernel `[cout, cin, 3, 3]` transposed to `[cin, cout, 3, 3]` and flipped in both
/// spatial directions.
fn flip(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    let mut flipped = vec![0f32; cin * cout * 9];
    flipped
        .par_chunks_mut(cout * 9)
        .enumerate()
        .for_each(|(ci, row)| {
            for (co, k) in row.chunks_exact_mut(9).enumerate() {
                let src = &w[(co * cin + ci) * 9..][..9];
                for (tap, v) in k.iter_mut().enumerate() {
                    *v = src[8 - tap];
                }
            }
        });
    flipped
}

/// Weight gradient: `dU_ξ[cout, cin] = Σ_tiles dM_ξᵀ · V_ξ`, then `dg = Gᵀ dU G`.
pub fn weight_grad(dy: &[f32], x: &[f32], [n, cin, h, wd]: [usize; 4], cout: usize) -> Vec<f32> {
    let tiling = Tiling::with_side(n, h, wd, 2);
    let mut du = vec![0f32; XI * cout * cin]; // [16, cout, cin]
    for rows in tiling.chunks(XI * cin.max(cout)) {
        let tiles = rows.len() * tiling.tw;
        with_scratch([tiles * XI * cin, tiles * XI * cout], |v, dm| {
            transform_input(x, tiling, cin, rows.clone(), v);
            transform_output_grad(dy, tiling, cout, rows.clone(), dm);
            // dU_ξ[cout, cin] += dM_ξ[tiles, cout]ᵀ · V_ξ[tiles, cin]
            du.par_chunks_mut(cout * cin)
                .enumerate()
                .for_each(|(xi, du_xi)| {
                    matmul_serial(
                        du_xi,
                        [cout, cin, tiles],
                        position_transposed(dm, xi, cout),
                        position(v, xi, cin),
                        rows.start > 0,
                    )
                });
        });
    }
    weight_from_transformed(&du, cin, cout)
}

/// F(4×4, 3×3): 36 products for 16 outputs, 1.78× fewer than F(2×2, 3×3), with 2.25
/// transformed values per output instead of 4. Its transforms have larger coefficients, so
/// it runs the forward pass and the input gradient only (rounding stays at the 1e-6 level
/// relative to the output there); the weight gradient sums over every tile of the batch and
/// stays on F(2×2, 3×3).
mod f4 {
    /// Input transform `Bᵀ` (Lavin & Gray, 2016); [`super::input_1d_f4`] applies it with the
    /// common terms shared, and a test checks it against this matrix.
    #[cfg(test)]
    pub(crate) const BT: [[f32; 6]; 6] = [
        [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
        [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
        [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ];
    /// Kernel transform `G`.
    pub(crate) const G: [[f32; 3]; 6] = [
        [1.0 / 4.0, 0.0, 0.0],
        [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
        [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
        [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        [0.0, 0.0, 1.0],
    ];
    /// Output transform `Aᵀ`, applied by [`super::output_1d_f4`].
    #[cfg(test)]
    pub(crate) const AT: [[f32; 6]; 4] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ];
    /// Transformed positions per tile (a 6×6 input tile).
    pub(crate) const XI: usize = 36;
}

/// `out = Σ_k coef[k] · inputs[k]` over channel vectors, zero terms skipped.
fn combine<const K: usize>(coef: &[f32; K], inputs: [&[f32]; K], out: &mut [f32]) {
    out.fill(0.0);
    for (&a, input) in coef.iter().zip(inputs) {
        if a != 0.0 {
            for (o, &x) in out.iter_mut().zip(input) {
                *o += a * x;
            }
        }
    }
}

/// `Bᵀ d` for one row or column `d` of a 6×6 tile (six channel vectors), in one pass with
/// the common terms shared (a loop of [`combine`] per output made 17 passes).
fn input_1d_f4(d: [&[f32]; 6], out: [&mut [f32]; 6]) {
    let n = out[0].len();
    let [d0, d1, d2, d3, d4, d5] = d.map(|v| &v[..n]);
    let [o0, o1, o2, o3, o4, o5] = out.map(|v| &mut v[..n]);
    for i in 0..n {
        let (a0, a1, a2, a3, a4, a5) = (d0[i], d1[i], d2[i], d3[i], d4[i], d5[i]);
        let (t1, t2) = (a4 - 4.0 * a2, a3 - 4.0 * a1);
        let (t3, t4) = (a4 - a2, 2.0 * (a3 - a1));
        o0[i] = 4.0 * a0 - 5.0 * a2 + a4;
        o1[i] = t1 + t2;
        o2[i] = t1 - t2;
        o3[i] = t3 + t4;
        o4[i] = t3 - t4;
        o5[i] = 4.0 * a1 - 5.0 * a3 + a5;
    }
}

/// `Aᵀ m` for one row or column `m` of a 6×6 transformed tile, in one pass.
fn output_1d_f4(m: [&[f32]; 6], out: [&mut [f32]; 4]) {
    let n = out[0].len();
    let [m0, m1, m2, m3, m4, m5] = m.map(|v| &v[..n]);
    let [o0, o1, o2, o3] = out.map(|v| &mut v[..n]);
    for i in 0..n {
        let (a, b) = (m1[i] + m2[i], m1[i] - m2[i]);
        let (c, d) = (m3[i] + m4[i], m3[i] - m4[i]);
        o0[i] = m0[i] + a + c;
        o1[i] = b + 2.0 * d;
        o2[i] = a + 4.0 * c;
        o3[i] = b + 8.0 * d + m5[i];
    }
}

/// `K` of the `c`-long vectors of `buf`, from the `first`-th on, `step` apart.
fn vectors_mut<const K: usize>(
    buf: &mut [f32],
    c: usize,
    first: usize,
    step: usize,
) -> [&mut [f32]; K] {
    let mut it = buf.chunks_exact_mut(c).skip(first).step_by(step);
    std::array::from_fn(|_| it.next().expect("enough vectors"))
}

/// `U = G g Gᵀ` (6×6) for every channel pair, as `[cout, 36, cin]`.
fn transform_weight_f4(w: &[f32], cin: usize, cout: usize) -> Vec<f32> {
    transform_weight_with(&f4::G, w, cin, cout)
}

/// `V = Bᵀ d B` (6×6 tiles at a stride of 4) for the tiles of tile rows `rows`, from the NCHW
/// input (zero padding 1), into `v` `[tiles, 36, c]`.
fn transform_input_f4(x: &[f32], tiling: Tiling, c: usize, rows: Range<usize>, v: &mut [f32]) {
    let pw = 4 * tiling.tw + 2;
    v.par_chunks_mut(tiling.tw * f4::XI * c)
        .enumerate()
        .for_each_init(
            || (vec![0f32; 6 * pw * c], vec![0f32; f4::XI * c], None),
            |(local, db, last), (k, vrow)| {
                let (b, ty) = ((rows.start + k) / tiling.th, (rows.start + k) % tiling.th);
                gather_window(x, tiling, c, 4, (b, ty), pw, local, last);
                for (tx, vt) in vrow.chunks_exact_mut(f4::XI * c).enumerate() {
                    // d B, along each of the tile's six rows: db[r, j].
                    for (r, dbr) in db.chunks_exact_mut(6 * c).enumerate() {
                        let d = &local[(r * pw + 4 * tx) * c..][..6 * c];
                        let d: [&[f32]; 6] = std::array::from_fn(|k| &d[k * c..][..c]);
                        input_1d_f4(d, vectors_mut(dbr, c, 0, 1));
                    }
                    // Bᵀ (d B), along each column j.
                    for j in 0..6 {
                        let col: [&[f32]; 6] = std::array::from_fn(|r| &db[(r * 6 + j) * c..][..c]);
                        input_1d_f4(col, vectors_mut(vt, c, j, 6));
                    }
                }
            },
        );
}

/// `Y = Aᵀ M A + bias` (4×4 from 6×6) for the tiles of tile rows `rows`, from `m`
/// `[36, tiles, c]` into the NCHW output.
fn transform_output_f4(
    m: &[f32],
    bias: &[f32],
    tiling: Tiling,
    c: usize,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let Tiling { w, tw, .. } = tiling;
    let tiles = rows.len() * tw;
    write_tile_rows(
        out,
        tiling,
        [4, c],
        rows,
        || (vec![0f32; 24 * c], vec![0f32; 4 * c]),
        |(s, y), local, k, pixel_rows| {
            for tx in 0..tw {
                let tile = k * tw + tx;
                let at = |i: usize, j: usize| &m[((i * 6 + j) * tiles + tile) * c..][..c];
                // M A, along each row i: s[i, 0..4].
                for i in 0..6 {
                    let row: [&[f32]; 6] = std::array::from_fn(|j| at(i, j));
                    output_1d_f4(row, vectors_mut(&mut s[i * 4 * c..], c, 0, 1));
                }
                // Aᵀ (M A), along each column j, plus the bias.
                for j in 0..4.min(w - 4 * tx) {
                    let col: [&[f32]; 6] = std::array::from_fn(|i| &s[(i * 4 + j) * c..][..c]);
                    output_1d_f4(col, vectors_mut(y, c, 0, 1));
                    for (i, yi) in y.chunks_exact(c).take(pixel_rows).enumerate() {
                        let dst = &mut local[(i * w + 4 * tx + j) * c..][..c];
                        for ((d, &v), &b) in dst.iter_mut().zip(yi).zip(bias) {
                            *d = v + b;
                        }
                    }
                }
            }
        },
    );
}

/// [`forward`] with F(4×4, 3×3).
pub fn forward_f4(x: &[f32], w: &[f32], bias: &[f32], dims: [usize; 4], cout: usize) -> Vec<f32> {
    convolve(&F4, x, w, bias, dims, cout)
}

/// [`input_grad`] with F(4×4, 3×3).
pub fn input_grad_f4(dy: &[f32], w: &[f32], dims: [usize; 4], cout: usize) -> Vec<f32> {
    input_grad_with(&F4, dy, w, dims, cout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
            / scale
    }

    #[test]
    fn f4_one_dimensional_transforms_apply_their_matrices() {
        let d: Vec<Vec<f32>> = (0..6).map(|k| values(5, k)).collect();
        let inputs: [&[f32]; 6] = std::array::from_fn(|k| d[k].as_slice());
        let mut out = vec![0f32; 6 * 5];
        input_1d_f4(inputs, vectors_mut(&mut out, 5, 0, 1));
        for (row, o) in f4::BT.iter().zip(out.chunks_exact(5)) {
            for (e, &got) in o.iter().enumerate() {
                let want: f32 = row.iter().zip(&d).map(|(a, v)| a * v[e]).sum();
                assert!((got - want).abs() <= 1e-5, "Bᵀ: {got} vs {want}");
            }
        }
        let mut out = vec![0f32; 4 * 5];
        output_1d_f4(inputs, vectors_mut(&mut out, 5, 0, 1));
        for (row, o) in f4::AT.iter().zip(out.chunks_exact(5)) {
            for (e, &got) in o.iter().enumerate() {
                let want: f32 = row.iter().zip(&d).map(|(a, v)| a * v[e]).sum();
                assert!((got - want).abs() <= 1e-5, "Aᵀ: {got} vs {want}");
            }
        }
    }

    #[test]
    fn f4_matches_the_im2col_convolution() {
        // Sides that 4 does not divide, a single tile, and enough channels for the products.
        for [n, cin, cout, h, w] in [
            [2, 3, 5, 9, 7],
            [1, 16, 8, 4, 4],
            [2, 64, 32, 13, 18],
            [1, 7, 3, 1, 6],
            [3, 96, 64, 16, 16],
        ] {
            let x = values(n * cin * h * w, 1);
            let dy = values(n * cout * h * w, 2);
            let k = values(cout * cin * 9, 3);
            let bias = values(cout, 4);
            let dims = [n, cin, h, w];
            let err = max_rel_err(
                &forward_f4(&x, &k, &bias, dims, cout),
                &super::super::gemm::forward(&x, &k, &bias, dims, cout),
            );
            assert!(err <= 1e-4, "forward {dims:?}→{cout}: {err}");
            let err = max_rel_err(
                &input_grad_f4(&dy, &k, dims, cout),
                &super::super::gemm::input_grad(&dy, &k, dims, cout),
            );
            assert!(err <= 1e-4, "input gradient {dims:?}→{cout}: {err}");
        }
    }
}
