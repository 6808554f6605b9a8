//! The one crop of row-major buffers, and the mirror that pads them.

/// The `ch × cw` window at `[top, left]` of a row-major buffer `w` wide.
pub fn window<T: Copy>(v: &[T], w: usize, [top, left]: [usize; 2], [ch, cw]: [usize; 2]) -> Vec<T> {
    let mut out = Vec::with_capacity(ch * cw);
    for y in top..top + ch {
        out.extend_from_slice(&v[y * w + left..y * w + left + cw]);
    }
    out
}

/// The centre `oh × ow` of a row-major `h × w` buffer (the paper's cropped skip connections and
/// masks; odd margins leave the extra row and column at the bottom right).
pub(crate) fn centre<T: Copy>(v: &[T], [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> Vec<T> {
    if oh == h && ow == w {
        return v.to_vec();
    }
    window(v, w, [(h - oh) / 2, (w - ow) / 2], [oh, ow])
}

/// Mirror an index into `0..n` (…, 1, 0, 0, 1, …, n−1, n−1, n−2, …).
pub(crate) fn mirror(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * n;
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - 1 - m;
    }
    m as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_centres() {
        let v: Vec<u8> = (0..20).collect(); // 4 × 5
        assert_eq!(window(&v, 5, [1, 2], [2, 2]), vec![7, 8, 12, 13]);
        assert_eq!(centre(&v, [4, 5], [2, 3]), vec![6, 7, 8, 11, 12, 13]);
        assert_eq!(centre(&v, [4, 5], [4, 5]), v);
    }
}
