//! Kaggle run-length encoding: pixels numbered from 1, top to bottom then left to right
//! (column-major); pairs of start and run length; an empty mask is the empty string.

use anyhow::{Result, bail};

/// Encodes a row-major `h × w` 0/1 mask.
pub fn encode(mask: &[u8], h: usize, w: usize) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for x in 0..w {
        for y in 0..h {
            let index = x * h + y + 1;
            if mask[y * w + x] != 0 {
                current = match current {
                    Some((start, len)) if start + len == index => Some((start, len + 1)),
                    Some(run) => {
                        runs.push(run);
                        Some((index, 1))
                    }
                    None => Some((index, 1)),
                };
            }
        }
    }
    runs.extend(current);
    runs.iter()
        .map(|(s, l)| format!("{s} {l}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes into a row-major `h × w` 0/1 mask.
pub fn decode(rle: &str, h: usize, w: usize) -> Result<Vec<u8>> {
    let numbers: Vec<usize> = rle
        .split_whitespace()
        .map(|t| {
            t.parse::<usize>()
                .map_err(|_| anyhow::anyhow!("not a number in the RLE: {t:?}"))
        })
        .collect::<Result<_>>()?;
    if !numbers.len().is_multiple_of(2) {
        bail!(
            "an RLE needs pairs of start and length, found {} numbers",
            numbers.len()
        );
    }
    let mut mask = vec![0u8; h * w];
    for pair in numbers.chunks(2) {
        let (start, len) = (pair[0], pair[1]);
        if start == 0 || start - 1 + len > h * w {
            bail!("RLE run {start} {len} lies outside a {h}×{w} image");
        }
        for index in start - 1..start - 1 + len {
            let (x, y) = (index / h, index % h);
            mask[y * w + x] = 1;
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_major_one_based_by_hand() {
        // 3 × 2 image:  1 0
        //               1 1
        //               0 1   → column 0: pixels 1, 2; column 1: pixels 5, 6 → "1 2 5 2"
        let mask = [1, 0, 1, 1, 0, 1];
        assert_eq!(encode(&mask, 3, 2), "1 2 5 2");
        assert_eq!(decode("1 2 5 2", 3, 2).unwrap(), mask);
    }

    #[test]
    fn runs_cross_column_boundaries() {
        // Column 0 ends with 1 and column 1 starts with 1: one run across the boundary.
        let mask = [0, 1, 1, 0]; // 2 × 2: (0,0)=0 (0,1)=1 / (1,0)=1 (1,1)=0 → column-major 0,1,1,0
        assert_eq!(encode(&mask, 2, 2), "2 2");
    }

    #[test]
    fn round_trip_edges_and_empty() {
        let (h, w) = (7, 5);
        assert_eq!(encode(&vec![0; h * w], h, w), "");
        assert_eq!(decode("", h, w).unwrap(), vec![0; h * w]);
        let full = vec![1; h * w];
        assert_eq!(encode(&full, h, w), format!("1 {}", h * w));
        let mut corners = vec![0u8; h * w];
        for (y, x) in [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1)] {
            corners[y * w + x] = 1;
        }
        let rle = encode(&corners, h, w);
        assert_eq!(
            rle,
            format!("1 1 {} 1 {} 1 {} 1", h, (w - 1) * h + 1, h * w)
        );
        assert_eq!(decode(&rle, h, w).unwrap(), corners);
        let mut state = 12345u64;
        for _ in 0..20 {
            let m: Vec<u8> = (0..h * w)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (state >> 33).is_multiple_of(3) as u8
                })
                .collect();
            assert_eq!(decode(&encode(&m, h, w), h, w).unwrap(), m);
        }
    }

    #[test]
    fn bad_rle_is_an_error() {
        assert!(decode("1", 2, 2).is_err());
        assert!(decode("4 2", 2, 2).is_err());
        assert!(decode("0 1", 2, 2).is_err());
        assert!(decode("a b", 2, 2).is_err());
    }
}
