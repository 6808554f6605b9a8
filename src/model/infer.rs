//! From a network's output to foreground probabilities: what validation during training and
//! `predict` both score and draw.

use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use super::UNet;
use crate::config::LossKind;
use crate::kernels::KernelBackend;

/// The foreground probability in [0, 1] (`[b, 1, h, w]`); a pixel is predicted foreground
/// when it is above 0.5. For `ce` that is the argmax, for `mse` the blog's `output > 0.5`.
pub fn foreground_probability<B: Backend>(kind: LossKind, output: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, _, h, w] = output.dims();
    match kind {
        LossKind::Ce | LossKind::DiceCe | LossKind::WeightedCe => {
            // The softmax's second channel: sigmoid(z₁ − z₀) for two classes.
            let z0 = output.clone().slice([0..b, 0..1, 0..h, 0..w]); // [b, 1, h, w]
            sigmoid(output.slice([0..b, 1..2, 0..h, 0..w]) - z0) // [b, 1, h, w]
        }
        LossKind::Mse => output.clamp(0.0, 1.0),
        LossKind::Bce | LossKind::Dice => sigmoid(output),
    }
}

/// Foreground probabilities of standardised `tiles` (each `h × w`), one map per tile at the
/// network's output size.
pub fn probabilities<B: KernelBackend>(
    model: &UNet<B>,
    kind: LossKind,
    tiles: &[Vec<f32>],
    h: usize,
    w: usize,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    probabilities_and_presence(model, kind, tiles, h, w, device).0
}

/// [`probabilities`], and with a presence head the presence probability of each tile.
pub fn probabilities_and_presence<B: KernelBackend>(
    model: &UNet<B>,
    kind: LossKind,
    tiles: &[Vec<f32>],
    h: usize,
    w: usize,
    device: &B::Device,
) -> (Vec<Vec<f32>>, Option<Vec<f32>>) {
    let n = tiles.len();
    let data: Vec<f32> = tiles.iter().flatten().copied().collect();
    let x = Tensor::<B, 4>::from_data(TensorData::new(data, [n, 1, h, w]), device);
    let (out, presence) = model.forward_heads(x); // [n, classes, oh, ow], [n, 1]
    let [_, _, oh, ow] = out.dims();
    let prob = foreground_probability(kind, out) // [n, 1, oh, ow]
        .into_data()
        .convert::<f32>() // f16 or bf16 in half precision
        .to_vec::<f32>()
        .expect("f32 output");
    let presence = presence.map(|logits| {
        sigmoid(logits) // [n, 1]
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 output")
    });
    (prob.chunks(oh * ow).map(|c| c.to_vec()).collect(), presence)
}

/// Empties the probability map of each image whose presence probability is below `threshold`
/// (what `model.presence_head` is for: a confident "no nerve" wins over stray pixels).
pub fn gate_by_presence(maps: &mut [Vec<f32>], presence: &[f32], threshold: f64) {
    for (map, &p) in maps.iter_mut().zip(presence) {
        if f64::from(p) < threshold {
            map.iter_mut().for_each(|v| *v = 0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_below_the_threshold_empties_the_map() {
        let mut maps = vec![vec![0.9, 0.2], vec![0.9, 0.2], vec![0.7, 0.6]];
        gate_by_presence(&mut maps, &[0.49, 0.5, 0.8], 0.5);
        assert_eq!(maps, [vec![0.0, 0.0], vec![0.9, 0.2], vec![0.7, 0.6]]);
    }
}
