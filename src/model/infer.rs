//! From a network's output to foreground probabilities: what validation during training and
//! `predict` both score and draw.

use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use super::UNet;
use crate::config::LossKind;
use crate::kernels::KernelBackend;

/// The foreground probability in [0, 1] (`[b, 1, h, w]`); a pixel is predicted foreground
/// when it is above 0.5. For `ce` that is the argmax, for `mse` the blog's `output > 0.5`.
pub(crate) fn foreground_probability<B: Backend>(
    kind: LossKind,
    output: Tensor<B, 4>,
) -> Tensor<B, 4> {
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
pub(crate) fn probabilities<B: KernelBackend>(
    model: &UNet<B>,
    kind: LossKind,
    tiles: &[Vec<f32>],
    h: usize,
    w: usize,
    device: &B::Device,
) -> Vec<Vec<f32>> {
    probabilities_and_presence(model, kind, tiles, h, w, device).0
}

/// Probability maps, one per image, and with a presence head each image's presence
/// probability.
pub(crate) type Probabilities = (Vec<Vec<f32>>, Option<Vec<f64>>);

/// [`probabilities`], and with a presence head the presence probability of each tile.
pub(crate) fn probabilities_and_presence<B: KernelBackend>(
    model: &UNet<B>,
    kind: LossKind,
    tiles: &[Vec<f32>],
    h: usize,
    w: usize,
    device: &B::Device,
) -> Probabilities {
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
    let presence = presence.map(|logits| presence_probabilities(logits).expect("f32 output"));
    (prob.chunks(oh * ow).map(|c| c.to_vec()).collect(), presence)
}

/// The presence probability of each image from the head's logits (`[n, 1]`), in `f64`.
///
/// The sigmoid is taken on the host in `f64`, not on the device: an `f32` sigmoid is exactly
/// 1.0 for every logit past about 17, so a presence threshold above 1 − 2⁻²⁴ could never empty
/// a mask. In `f64` every threshold in (0, 1) is honoured for logits up to about 36.
pub(crate) fn presence_probabilities<B: Backend>(logits: Tensor<B, 2>) -> anyhow::Result<Vec<f64>> {
    let logits = logits
        .into_data()
        .convert::<f32>() // f16 or bf16 in half precision
        .to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read presence: {e:?}"))?;
    Ok(logits.into_iter().map(|z| sigmoid_f64(z.into())).collect())
}

/// The logistic function, stable at both ends.
pub(crate) fn sigmoid_f64(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use burn::backend::Flex;

    #[test]
    fn presence_probabilities_keep_their_distance_from_one() {
        // logit(0.99999999) ≈ 18.42: an f32 sigmoid rounds both 17 and 20 to exactly 1.0.
        let logits = Tensor::<Flex, 2>::from_data(
            TensorData::new(vec![17.0f32, 20.0, 0.0, -40.0], [4, 1]),
            &Default::default(),
        );
        let p = presence_probabilities(logits).unwrap();
        assert_eq!(
            sigmoid(Tensor::<Flex, 1>::from_floats(
                [17.0, 20.0],
                &Default::default()
            ))
            .into_data()
            .to_vec::<f32>()
            .unwrap(),
            [1.0, 1.0]
        );
        assert!((p[0] - (1.0 - 4.139_937_547e-8)).abs() < 1e-15, "{}", p[0]);
        assert!(
            (p[1] - (1.0 - 2.0611536181902037e-9)).abs() < 1e-15,
            "{}",
            p[1]
        );
        assert_eq!(p[2], 0.5);
        assert!((p[3] - 4.248354255291589e-18).abs() < 1e-30, "{}", p[3]);
    }
}
