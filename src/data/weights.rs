//! The paper's border weight map (Ronneberger et al. 2015, eq. 2):
//! w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / 2σ²), where d1 and d2 are the distances to the
//! nearest and second-nearest object (connected component of the mask) and w_c balances the
//! class frequencies. The border term applies to background pixels, where it separates
//! touching objects; inside an object d1 is 0 by definition and only w_c applies.

/// Class-balancing weights `[background, foreground]` from the foreground share of the
/// training masks: each class gets weight ½ / share, so both classes carry equal total weight.
pub(crate) fn class_weights(foreground_share: f64) -> [f32; 2] {
    let fg = foreground_share.clamp(1e-6, 1.0 - 1e-6);
    [(0.5 / (1.0 - fg)) as f32, (0.5 / fg) as f32]
}

/// Labels 8-connected components of a 0/1 mask: 0 for background, 1.. for objects.
fn connected_components(mask: &[u8], h: usize, w: usize) -> (Vec<u32>, u32) {
    let mut labels = vec![0u32; h * w];
    let mut next = 0;
    let mut stack = Vec::new();
    for start in 0..h * w {
        if mask[start] == 0 || labels[start] != 0 {
            continue;
        }
        next += 1;
        labels[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (y, x) = ((i / w) as isize, (i % w) as isize);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let (ny, nx) = (y + dy, x + dx);
                    if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if mask[j] != 0 && labels[j] == 0 {
                        labels[j] = next;
                        stack.push(j);
                    }
                }
            }
        }
    }
    (labels, next)
}

/// 1-D squared distance transform (Felzenszwalb & Huttenlocher) of `f` into `out`.
fn dt_1d(f: &[f32], out: &mut [f32]) {
    let n = f.len();
    let mut v = vec![0usize; n];
    let mut z = vec![0f32; n + 1];
    let mut k = 0;
    z[0] = f32::NEG_INFINITY;
    z[1] = f32::INFINITY;
    let Some(first) = f.iter().position(|v| v.is_finite()) else {
        out.iter_mut().for_each(|o| *o = f32::INFINITY);
        return;
    };
    v[0] = first;
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        loop {
            let p = v[k];
            let s =
                ((f[q] + (q * q) as f32) - (f[p] + (p * p) as f32)) / (2.0 * (q as f32 - p as f32));
            if s <= z[k] {
                if k == 0 {
                    v[0] = q;
                    z[1] = f32::INFINITY;
                    break;
                }
                k -= 1;
            } else {
                k += 1;
                v[k] = q;
                z[k] = s;
                z[k + 1] = f32::INFINITY;
                break;
            }
        }
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f32 {
            k += 1;
        }
        let p = v[k];
        *o = (q as f32 - p as f32).powi(2) + f[p];
    }
}

/// Exact Euclidean distance from every pixel to the nearest pixel where `inside` is true.
fn distance_to(inside: &[bool], h: usize, w: usize) -> Vec<f32> {
    let mut grid: Vec<f32> = inside
        .iter()
        .map(|&b| if b { 0.0 } else { f32::INFINITY })
        .collect();
    let mut col = vec![0f32; h];
    let mut col_out = vec![0f32; h];
    for x in 0..w {
        for y in 0..h {
            col[y] = grid[y * w + x];
        }
        dt_1d(&col, &mut col_out);
        for y in 0..h {
            grid[y * w + x] = col_out[y];
        }
    }
    let mut row_out = vec![0f32; w];
    for y in 0..h {
        dt_1d(&grid[y * w..(y + 1) * w], &mut row_out);
        grid[y * w..(y + 1) * w].copy_from_slice(&row_out);
    }
    grid.iter().map(|d| d.sqrt()).collect()
}

/// The weight map of one mask.
pub(crate) fn border_weight_map(
    mask: &[u8],
    h: usize,
    w: usize,
    class_weights: [f32; 2],
    w0: f32,
    sigma: f32,
) -> Vec<f32> {
    let (labels, count) = connected_components(mask, h, w);
    let mut weights: Vec<f32> = mask
        .iter()
        .map(|&m| class_weights[(m != 0) as usize])
        .collect();
    if count < 2 {
        // With fewer than two objects there is no border between objects to emphasise.
        return weights;
    }
    let mut d1 = vec![f32::INFINITY; h * w];
    let mut d2 = vec![f32::INFINITY; h * w];
    for label in 1..=count {
        let inside: Vec<bool> = labels.iter().map(|&l| l == label).collect();
        let d = distance_to(&inside, h, w);
        for i in 0..h * w {
            if d[i] < d1[i] {
                d2[i] = d1[i];
                d1[i] = d[i];
            } else if d[i] < d2[i] {
                d2[i] = d[i];
            }
        }
    }
    for i in 0..h * w {
        if mask[i] == 0 {
            let s = d1[i] + d2[i];
            weights[i] += w0 * (-(s * s) / (2.0 * sigma * sigma)).exp();
        }
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_transform_is_euclidean() {
        // One object pixel at (1, 1) in a 3×4 grid.
        let mut inside = vec![false; 12];
        inside[4 + 1] = true;
        let d = distance_to(&inside, 3, 4);
        assert_eq!(d[5], 0.0);
        assert!((d[0] - 2f32.sqrt()).abs() < 1e-6);
        assert!((d[3] - 5f32.sqrt()).abs() < 1e-6); // (0,3): dy 1, dx 2
        assert!((d[11] - 5f32.sqrt()).abs() < 1e-6); // (2,3)
    }

    #[test]
    fn two_objects_by_hand() {
        // 1 × 7 strip: objects at x = 0 and x = 6; background x = 1..=5.
        let mask = [1, 0, 0, 0, 0, 0, 1];
        let (_, n) = connected_components(&mask, 1, 7);
        assert_eq!(n, 2);
        let cw = [1.0, 2.0];
        let (w0, sigma) = (10.0f32, 5.0f32);
        let map = border_weight_map(&mask, 1, 7, cw, w0, sigma);
        // Every background pixel has d1 + d2 = 6.
        let border = w0 * (-(36.0f32) / 50.0).exp();
        assert!((map[0] - 2.0).abs() < 1e-6 && (map[6] - 2.0).abs() < 1e-6);
        for (x, &v) in map.iter().enumerate().take(6).skip(1) {
            assert!((v - (1.0 + border)).abs() < 1e-5, "x = {x}: {v}");
        }
    }

    #[test]
    fn diagonal_pixels_are_one_component_and_one_object_has_no_border_term() {
        let mask = [1, 0, 0, 1];
        assert_eq!(connected_components(&mask, 2, 2).1, 1);
        let map = border_weight_map(&mask, 2, 2, [0.5, 3.0], 10.0, 5.0);
        assert_eq!(map, vec![3.0, 0.5, 0.5, 3.0]);
        let cw = class_weights(0.25);
        assert!((cw[0] - 2.0 / 3.0).abs() < 1e-6 && (cw[1] - 2.0).abs() < 1e-6);
    }
}
