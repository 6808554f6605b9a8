//! Data augmentation, applied identically to image and mask: the paper's elastic deformation
//! (random displacement vectors on a coarse grid, smoothly interpolated), flips, shifts,
//! rotations, brightness and contrast. Images are resampled bicubically, masks by nearest
//! neighbour so they stay binary; borders are mirrored.

use rand::RngExt;
use rand::rngs::StdRng;

use crate::config::AugmentConfig;
use crate::util::crop::mirror;
use crate::util::noise::standard_normal;

/// Catmull-Rom weights for a fractional offset `t` in [0, 1).
fn cubic_weights(t: f32) -> [f32; 4] {
    let t2 = t * t;
    let t3 = t2 * t;
    [
        -0.5 * t3 + t2 - 0.5 * t,
        1.5 * t3 - 2.5 * t2 + 1.0,
        -1.5 * t3 + 2.0 * t2 + 0.5 * t,
        0.5 * t3 - 0.5 * t2,
    ]
}

/// Bicubic sample of an `h × w` image at (y, x), mirrored borders.
fn sample_bicubic(img: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    let (y0, x0) = (y.floor(), x.floor());
    let (wy, wx) = (cubic_weights(y - y0), cubic_weights(x - x0));
    let mut acc = 0.0;
    for (j, wyj) in wy.iter().enumerate() {
        let yy = mirror(y0 as isize - 1 + j as isize, h);
        let mut row = 0.0;
        for (i, wxi) in wx.iter().enumerate() {
            let xx = mirror(x0 as isize - 1 + i as isize, w);
            row += wxi * img[yy * w + xx];
        }
        acc += wyj * row;
    }
    acc
}

/// A dense displacement field interpolated bicubically from a `g × g` grid of random vectors
/// with standard deviation `sigma` pixels.
fn elastic_field(
    h: usize,
    w: usize,
    g: usize,
    sigma: f32,
    rng: &mut StdRng,
) -> (Vec<f32>, Vec<f32>) {
    let coarse_y: Vec<f32> = (0..g * g).map(|_| sigma * standard_normal(rng)).collect();
    let coarse_x: Vec<f32> = (0..g * g).map(|_| sigma * standard_normal(rng)).collect();
    let mut dy = vec![0f32; h * w];
    let mut dx = vec![0f32; h * w];
    let clamp = |i: isize| i.clamp(0, g as isize - 1) as usize;
    for y in 0..h {
        let gy = y as f32 / (h.max(2) - 1) as f32 * (g - 1) as f32;
        let (gy0, ty) = (gy.floor(), gy - gy.floor());
        let wy = cubic_weights(ty);
        for x in 0..w {
            let gx = x as f32 / (w.max(2) - 1) as f32 * (g - 1) as f32;
            let (gx0, tx) = (gx.floor(), gx - gx.floor());
            let wx = cubic_weights(tx);
            let (mut vy, mut vx) = (0.0, 0.0);
            for (j, wyj) in wy.iter().enumerate() {
                let cy = clamp(gy0 as isize - 1 + j as isize);
                for (i, wxi) in wx.iter().enumerate() {
                    let cx = clamp(gx0 as isize - 1 + i as isize);
                    let k = wyj * wxi;
                    vy += k * coarse_y[cy * g + cx];
                    vx += k * coarse_x[cy * g + cx];
                }
            }
            dy[y * w + x] = vy;
            dx[y * w + x] = vx;
        }
    }
    (dy, dx)
}

/// Applies a random augmentation drawn from `rng` to an image (values in [0, 1]) and its mask.
pub(crate) fn apply(
    cfg: &AugmentConfig,
    image: &[f32],
    mask: &[u8],
    h: usize,
    w: usize,
    rng: &mut StdRng,
) -> (Vec<f32>, Vec<u8>) {
    let flip_x = cfg.flip && rng.random_bool(0.5);
    let angle = if cfg.rotate > 0.0 {
        (rng.random_range(-cfg.rotate..=cfg.rotate) as f32).to_radians()
    } else {
        0.0
    };
    let (shift_y, shift_x) = if cfg.shift > 0.0 {
        (
            rng.random_range(-cfg.shift..=cfg.shift) as f32 * h as f32,
            rng.random_range(-cfg.shift..=cfg.shift) as f32 * w as f32,
        )
    } else {
        (0.0, 0.0)
    };
    let field = cfg
        .elastic
        .then(|| elastic_field(h, w, cfg.elastic_grid, cfg.elastic_sigma as f32, rng));
    let brightness = if cfg.brightness > 0.0 {
        rng.random_range(-cfg.brightness..=cfg.brightness) as f32
    } else {
        0.0
    };
    let contrast = if cfg.contrast > 0.0 {
        1.0 + rng.random_range(-cfg.contrast..=cfg.contrast) as f32
    } else {
        1.0
    };

    let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    let mut out_img = vec![0f32; h * w];
    let mut out_mask = vec![0u8; h * w];
    for y in 0..h {
        for x in 0..w {
            // Where this output pixel comes from in the input (inverse mapping).
            let (mut sy, mut sx) = (y as f32, x as f32);
            if let Some((dy, dx)) = &field {
                sy += dy[y * w + x];
                sx += dx[y * w + x];
            }
            let (ry, rx) = (sy - cy - shift_y, sx - cx - shift_x);
            let mut src_y = cos * ry - sin * rx + cy;
            let mut src_x = sin * ry + cos * rx + cx;
            if flip_x {
                src_x = w as f32 - 1.0 - src_x;
            }
            let v = sample_bicubic(image, h, w, src_y, src_x);
            out_img[y * w + x] = ((v - 0.5) * contrast + 0.5 + brightness).clamp(0.0, 1.0);
            src_y = src_y.round();
            src_x = src_x.round();
            let (my, mx) = (mirror(src_y as isize, h), mirror(src_x as isize, w));
            out_mask[y * w + x] = mask[my * w + mx];
        }
    }
    (out_img, out_mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn checkerboard(h: usize, w: usize, cell: usize) -> (Vec<f32>, Vec<u8>) {
        let mask: Vec<u8> = (0..h * w)
            .map(|i| (((i / w) / cell + (i % w) / cell) % 2) as u8)
            .collect();
        (mask.iter().map(|&m| m as f32).collect(), mask)
    }

    #[test]
    fn identity_when_nothing_is_enabled() {
        let cfg = AugmentConfig::default();
        let (img, mask) = checkerboard(16, 20, 4);
        let (a, m) = apply(&cfg, &img, &mask, 16, 20, &mut StdRng::seed_from_u64(1));
        assert_eq!(m, mask);
        assert!(a.iter().zip(&img).all(|(x, y)| (x - y).abs() < 1e-5));
    }

    #[test]
    fn elastic_keeps_masks_binary_and_aligned_with_images() {
        let cfg = AugmentConfig {
            elastic: true,
            elastic_sigma: 6.0,
            elastic_grid: 3,
            flip: true,
            shift: 0.1,
            rotate: 15.0,
            brightness: 0.0,
            contrast: 0.0,
        };
        let (h, w) = (48, 64);
        let (img, mask) = checkerboard(h, w, 8);
        for seed in 0..5 {
            let (a, m) = apply(&cfg, &img, &mask, h, w, &mut StdRng::seed_from_u64(seed));
            assert!(m.iter().all(|&v| v == 0 || v == 1));
            assert_ne!(m, mask, "seed {seed}: the deformation did nothing");
            // Image and mask moved together: where the image is clearly white or black, the
            // mask agrees (the bicubic image is soft only at the checker edges).
            let (mut agree, mut total) = (0, 0);
            for (v, &mv) in a.iter().zip(&m) {
                if *v > 0.9 || *v < 0.1 {
                    total += 1;
                    agree += ((*v > 0.5) == (mv == 1)) as usize;
                }
            }
            assert!(total > h * w / 3);
            assert!(
                agree as f64 / total as f64 > 0.97,
                "seed {seed}: {agree}/{total}"
            );
        }
    }

    #[test]
    fn same_seed_same_augmentation() {
        let cfg = AugmentConfig {
            elastic: true,
            elastic_sigma: 10.0,
            elastic_grid: 3,
            flip: true,
            shift: 0.05,
            rotate: 10.0,
            brightness: 0.1,
            contrast: 0.1,
        };
        let (img, mask) = checkerboard(32, 32, 4);
        let a = apply(&cfg, &img, &mask, 32, 32, &mut StdRng::seed_from_u64(9));
        let b = apply(&cfg, &img, &mask, 32, 32, &mut StdRng::seed_from_u64(9));
        assert_eq!(a, b);
    }
}
