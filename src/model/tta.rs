//! Test-time augmentation: the mean of the probabilities predicted for an image and for its
//! horizontal and vertical mirror images (each flipped back), as the strong Kaggle entries did.
//! Flips only, so no pixel is resampled and the mean is exact.

pub(crate) use crate::config::Tta;

/// A mirror axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    /// Left ↔ right.
    Horizontal,
    /// Top ↔ bottom.
    Vertical,
}

/// `map` (`h × w`, row-major) mirrored; a flip is its own inverse.
pub fn flip(map: &[f32], [h, w]: [usize; 2], axis: Flip) -> Vec<f32> {
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        let row = match axis {
            Flip::Horizontal => y,
            Flip::Vertical => h - 1 - y,
        };
        let src = &map[row * w..][..w];
        match axis {
            Flip::Horizontal => out.extend(src.iter().rev()),
            Flip::Vertical => out.extend_from_slice(src),
        }
    }
    out
}

/// A predictor of whole probability maps from whole standardised images.
pub(crate) type Predict<'a> = dyn FnMut(&[Vec<f32>]) -> Vec<Vec<f32>> + 'a;

/// The probabilities of `images` (each `h × w`) under `tta`, given those of the images as they
/// are (`plain`) and the predictor that produced them (whole images in, whole maps out).
pub(crate) fn apply(
    tta: Tta,
    plain: Vec<Vec<f32>>,
    images: &[Vec<f32>],
    size: [usize; 2],
    predict: &mut Predict,
) -> Vec<Vec<f32>> {
    if tta == Tta::None {
        return plain;
    }
    let mut sum = plain;
    for axis in [Flip::Horizontal, Flip::Vertical] {
        let flipped: Vec<Vec<f32>> = images.iter().map(|x| flip(x, size, axis)).collect();
        for (acc, p) in sum.iter_mut().zip(predict(&flipped)) {
            let back = flip(&p, size, axis);
            acc.iter_mut().zip(back).for_each(|(a, b)| *a += b);
        }
    }
    for p in &mut sum {
        p.iter_mut().for_each(|v| *v /= 3.0);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_mirror_and_undo_themselves() {
        let map = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
        assert_eq!(
            flip(&map, [2, 3], Flip::Horizontal),
            [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]
        );
        assert_eq!(
            flip(&map, [2, 3], Flip::Vertical),
            [4.0, 5.0, 6.0, 1.0, 2.0, 3.0]
        );
        for axis in [Flip::Horizontal, Flip::Vertical] {
            assert_eq!(flip(&flip(&map, [2, 3], axis), [2, 3], axis), map);
        }
    }

    #[test]
    fn a_flip_equivariant_predictor_is_unchanged_by_flip_tta() {
        // A pixel-wise predictor commutes with every flip: TTA must give exactly its output.
        let mut pixelwise = |xs: &[Vec<f32>]| -> Vec<Vec<f32>> {
            xs.iter()
                .map(|x| x.iter().map(|v| v * 0.25).collect())
                .collect()
        };
        let images = vec![vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0], vec![2.0; 6]];
        let plain = pixelwise(&images);
        let tta = apply(Tta::Flips, plain.clone(), &images, [2, 3], &mut pixelwise);
        assert_eq!(tta, plain);
    }

    #[test]
    fn flip_tta_averages_the_flipped_back_predictions() {
        // A predictor that ignores the image and answers its column index: flipped back, the
        // horizontal pass answers (w − 1 − column), the vertical one the column again.
        let mut columns = |xs: &[Vec<f32>]| -> Vec<Vec<f32>> {
            xs.iter()
                .map(|_| vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
                .collect()
        };
        let images = vec![vec![0.0; 6]];
        let plain = columns(&images);
        let tta = apply(Tta::Flips, plain, &images, [2, 3], &mut columns);
        // Column 0: (0 + 2 + 0) / 3; column 1: 1; column 2: (2 + 0 + 2) / 3.
        let expected = [2.0 / 3.0, 1.0, 4.0 / 3.0, 2.0 / 3.0, 1.0, 4.0 / 3.0];
        for (a, e) in tta[0].iter().zip(expected) {
            assert!((a - e).abs() < 1e-6, "{:?}", tta[0]);
        }
        let none = apply(Tta::None, columns(&images), &images, [2, 3], &mut columns);
        assert_eq!(none[0], [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    }
}
