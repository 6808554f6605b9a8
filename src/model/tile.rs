//! Overlap-tile prediction (the paper's Fig. 2): with unpadded convolutions the output is
//! smaller than the input, so a whole image is predicted tile by tile from a mirror-padded copy.
//! Tile offsets are multiples of the network's pooling factor, which makes every tile's output
//! identical to the same region of a prediction of the whole padded image.

use crate::util::crop::mirror;
use crate::util::crop::window;

/// Mirror-pads an `h × w` image.
fn mirror_pad(
    img: &[f32],
    h: usize,
    w: usize,
    top: usize,
    left: usize,
    bottom: usize,
    right: usize,
) -> (Vec<f32>, usize, usize) {
    let (ph, pw) = (h + top + bottom, w + left + right);
    let mut out = vec![0f32; ph * pw];
    for y in 0..ph {
        let sy = mirror(y as isize - top as isize, h);
        for x in 0..pw {
            let sx = mirror(x as isize - left as isize, w);
            out[y * pw + x] = img[sy * w + sx];
        }
    }
    (out, ph, pw)
}

/// The tiling of one axis: the step between tiles and how many.
fn layout(size: usize, out: usize, align: usize) -> (usize, usize) {
    let step = (out / align * align).max(align);
    let tiles = if size <= out {
        1
    } else {
        (size - out).div_ceil(step) + 1
    };
    (step, tiles)
}

/// A network on a batch of input tiles: one output tile per input tile.
type TileForward<'a> = dyn FnMut(&[Vec<f32>]) -> Vec<Vec<f32>> + 'a;

/// Predicts an `h × w` image (already standardised) with a network taking `tile_in` inputs and
/// giving `tile_out` outputs. `forward` maps a batch of input tiles to output tiles.
pub(crate) fn predict_tiled(
    image: &[f32],
    [h, w]: [usize; 2],
    tile_in: [usize; 2],
    tile_out: [usize; 2],
    align: usize,
    batch: usize,
    forward: &mut TileForward,
) -> Vec<f32> {
    let (my, mx) = (
        (tile_in[0] - tile_out[0]) / 2,
        (tile_in[1] - tile_out[1]) / 2,
    );
    let (step_y, ny) = layout(h, tile_out[0], align);
    let (step_x, nx) = layout(w, tile_out[1], align);
    let (cover_h, cover_w) = (
        tile_out[0] + (ny - 1) * step_y,
        tile_out[1] + (nx - 1) * step_x,
    );
    let (padded, _, pw) = mirror_pad(image, h, w, my, mx, my + cover_h - h, mx + cover_w - w);
    let offsets: Vec<(usize, usize)> = (0..ny)
        .flat_map(|iy| (0..nx).map(move |ix| (iy * step_y, ix * step_x)))
        .collect();
    let mut result = vec![0f32; cover_h * cover_w];
    for chunk in offsets.chunks(batch.max(1)) {
        let tiles: Vec<Vec<f32>> = chunk
            .iter()
            .map(|&(ty, tx)| window(&padded, pw, [ty, tx], tile_in))
            .collect();
        for (&(ty, tx), out) in chunk.iter().zip(forward(&tiles)) {
            for y in 0..tile_out[0] {
                let row = (ty + y) * cover_w + tx;
                result[row..row + tile_out[1]]
                    .copy_from_slice(&out[y * tile_out[1]..(y + 1) * tile_out[1]]);
            }
        }
    }
    window(&result, cover_w, [0, 0], [h, w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_pad_by_hand() {
        // 1 2 3 padded by 2 on the left and 1 on the right: 2 1 | 1 2 3 | 3 (edge-inclusive mirror).
        let (p, h, w) = mirror_pad(&[1.0, 2.0, 3.0], 1, 3, 0, 2, 0, 1);
        assert_eq!((h, w), (1, 6));
        assert_eq!(p, vec![2.0, 1.0, 1.0, 2.0, 3.0, 3.0]);
    }

    #[test]
    fn overlap_tile_equals_direct_prediction_of_the_mirror_padded_image() {
        use crate::config::{LossKind, ModelConfig, Padding};
        use crate::model::UNet;
        use burn::backend::Flex;
        use burn::prelude::*;
        let device = Default::default();
        Flex::seed(&device, 3);
        let cfg = ModelConfig {
            widths: vec![2, 4, 8],
            padding: Padding::Valid,
            dropout: 0.0,
            ..ModelConfig::default()
        };
        let model = UNet::<Flex>::new(&cfg, LossKind::Bce, &device);
        let forward = |tiles: &[Vec<f32>], h: usize, w: usize| -> Vec<Vec<f32>> {
            let data: Vec<f32> = tiles.iter().flatten().copied().collect();
            let x = Tensor::<Flex, 4>::from_data(
                TensorData::new(data, [tiles.len(), 1, h, w]),
                &device,
            );
            let out = model.forward(x); // [n, 1, oh, ow]
            let [_, _, oh, ow] = out.dims();
            out.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap()
                .chunks(oh * ow)
                .map(|c| c.to_vec())
                .collect()
        };
        // 3 levels, valid: 60 → 20, so the margin is 20 on each side.
        let (h, w) = (44, 52);
        let img: Vec<f32> = (0..h * w)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let (padded, ph, pw) = mirror_pad(&img, h, w, 20, 20, 20, 20);
        let direct = forward(&[padded], ph, pw).remove(0);
        assert_eq!(direct.len(), h * w);
        let tiled = predict_tiled(
            &img,
            [h, w],
            [60, 60],
            [20, 20],
            4,
            2,
            &mut |t: &[Vec<f32>]| forward(t, 60, 60),
        );
        let worst = direct
            .iter()
            .zip(&tiled)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-5,
            "overlap-tile differs from the direct prediction by {worst}"
        );
    }

    #[test]
    fn tiles_cover_the_image_with_an_identity_network() {
        // A "network" that crops the centre: tiles must reassemble the image exactly.
        let (h, w) = (37, 50);
        let img: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
        let (tin, tout) = ([20, 20], [12, 12]);
        let mut calls = 0;
        let out = predict_tiled(&img, [h, w], tin, tout, 4, 3, &mut |tiles: &[Vec<
            f32,
        >]| {
            calls += 1;
            tiles
                .iter()
                .map(|t| window(t, 20, [4, 4], [12, 12]))
                .collect()
        });
        assert_eq!(out, img);
        assert!(calls >= 4);
    }
}
