//! The losses, each a function of the network output and the 0/1 mask, and the matching rule
//! that turns an output into a foreground probability.

pub(crate) use crate::model::infer::foreground_probability;
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

use crate::config::LossKind;

/// Smoothing of the soft Dice (added to numerator and denominator), as in most U-Net code.
const DICE_SMOOTH: f64 = 1.0;

/// The loss of `output` (`[b, c, h, w]`, c from [`LossKind::out_channels`]) against `target`
/// (`[b, 1, h, w]`, 0/1). `weights` (`[b, 1, h, w]`) is the border weight map of
/// `weighted_ce`; other losses ignore it.
pub fn loss<B: Backend>(
    kind: LossKind,
    output: Tensor<B, 4>,
    target: Tensor<B, 4>,
    weights: Option<Tensor<B, 4>>,
) -> Tensor<B, 1> {
    match kind {
        LossKind::Mse => (output - target).powi_scalar(2).mean(), // [1]
        LossKind::Ce => cross_entropy(output, target, None),
        LossKind::WeightedCe => cross_entropy(output, target, weights),
        LossKind::Bce => {
            // Stable form: max(z, 0) − z·y + log(1 + exp(−|z|)).
            let z = output; // [b, 1, h, w]
            let softplus = z.clone().abs().neg().exp().add_scalar(1.0).log(); // [b, 1, h, w]
            (relu(z.clone()) - z * target + softplus).mean()
        }
        LossKind::Dice => soft_dice(sigmoid(output), target),
        LossKind::DiceCe => {
            let fg = foreground_probability(kind, output.clone()); // [b, 1, h, w]
            cross_entropy(output, target.clone(), None) + soft_dice(fg, target)
        }
    }
}

/// The presence head's loss: binary cross-entropy of its logits (`[b, 1]`) against whether
/// each image's mask is non-empty (`[b, 1]`, 0/1), in the stable form
/// `max(z, 0) − z·y + ln(1 + e^−|z|)`.
fn presence_loss<B: Backend>(logits: Tensor<B, 2>, present: Tensor<B, 2>) -> Tensor<B, 1> {
    let softplus = logits.clone().abs().neg().exp().add_scalar(1.0).log(); // [b, 1]
    (relu(logits.clone()) - logits * present + softplus).mean()
}

/// 1 for each image (`[b, 1, h, w]` masks) with a foreground pixel, else 0: `[b, 1]`.
fn mask_present<B: Backend>(masks: Tensor<B, 4>) -> Tensor<B, 2> {
    let [b, _, _, _] = masks.dims();
    masks
        .sum_dim(3)
        .sum_dim(2)
        .greater_elem(0.0)
        .float()
        .reshape([b, 1]) // [b, 1]
}

/// Pixel-wise softmax cross-entropy over two classes, optionally weighted per pixel
/// (mean of `w · nll`). With two classes and `d = z₁ − z₀` the negative log-likelihood is
/// `softplus(d) − y·d` (`softplus(d) = max(d, 0) + ln(1 + e^−|d|)`, stable for any `d`): the
/// same value as a log-softmax over the channel axis with half the tensor traffic and no
/// reduction across channels, which Flex runs slowly on NCHW (docs/benchmarks.md).
fn cross_entropy<B: Backend>(
    logits: Tensor<B, 4>,
    target: Tensor<B, 4>,
    weights: Option<Tensor<B, 4>>,
) -> Tensor<B, 1> {
    let [b, _, h, w] = logits.dims();
    let z0 = logits.clone().slice([0..b, 0..1, 0..h, 0..w]); // [b, 1, h, w]
    let z1 = logits.slice([0..b, 1..2, 0..h, 0..w]); // [b, 1, h, w]
    let d = z1 - z0; // [b, 1, h, w]
    let softplus = relu(d.clone()) + d.clone().abs().neg().exp().add_scalar(1.0).log(); // [b, 1, h, w]
    let nll = softplus - target * d; // [b, 1, h, w]
    match weights {
        Some(w) => (nll * w).mean(),
        None => nll.mean(),
    }
}

/// 1 − (2 Σ p·y + s) / (Σ p + Σ y + s) over the whole batch.
fn soft_dice<B: Backend>(prob: Tensor<B, 4>, target: Tensor<B, 4>) -> Tensor<B, 1> {
    let intersection = (prob.clone() * target.clone()).sum(); // [1]
    let total = prob.sum() + target.sum(); // [1]
    (intersection.mul_scalar(2.0).add_scalar(DICE_SMOOTH) / total.add_scalar(DICE_SMOOTH))
        .neg()
        .add_scalar(1.0)
}

/// The segmentation loss plus, with a presence head, its weighted BCE against whether each
/// whole mask (`[b, 1, h, w]`, before any centre crop) is non-empty.
pub(crate) fn with_presence<B: Backend>(
    seg: Tensor<B, 1>,
    presence: Option<Tensor<B, 2>>,
    masks: Tensor<B, 4>,
    weight: f64,
) -> Tensor<B, 1> {
    match presence {
        Some(logits) => seg + presence_loss(logits, mask_present(masks)).mul_scalar(weight),
        None => seg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    #[test]
    fn presence_loss_is_the_binary_cross_entropy_of_the_logits() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::from_data(TensorData::new(vec![0.0f32, 2.0], [2, 1]), &device);
        let present =
            Tensor::<B, 2>::from_data(TensorData::new(vec![1.0f32, 0.0], [2, 1]), &device);
        // (−ln σ(0) − ln(1 − σ(2))) / 2 = (ln 2 + 2 + ln(1 + e^−2)) / 2
        let expected = (2f64.ln() + 2.0 + (1.0 + (-2f64).exp()).ln()) / 2.0;
        let got = presence_loss(logits, present).into_scalar().elem::<f64>();
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        // One image with a foreground pixel, one without.
        let masks = t(&[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [2, 1, 2, 2]);
        let present = mask_present(masks).into_data().to_vec::<f32>().unwrap();
        assert_eq!(present, [1.0, 0.0]);
    }

    fn t(values: &[f32], shape: [usize; 4]) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(values.to_vec(), shape), &Default::default())
    }

    fn scalar(x: Tensor<B, 1>) -> f64 {
        x.into_scalar().elem::<f64>()
    }

    #[test]
    fn mse_by_hand() {
        // ((0.5-1)² + (0-0)² + (2-0)² + (1-1)²) / 4 = (0.25 + 4) / 4
        let l = loss(
            LossKind::Mse,
            t(&[0.5, 0.0, 2.0, 1.0], [1, 1, 2, 2]),
            t(&[1.0, 0.0, 0.0, 1.0], [1, 1, 2, 2]),
            None,
        );
        assert!((scalar(l) - 1.0625).abs() < 1e-6);
    }

    #[test]
    fn ce_by_hand() {
        // Two pixels; logits (0, 0) → p = 0.5 → nll = ln 2; logits (0, ln 3) with y = 1 → p1 = 3/4.
        let logits = t(&[0.0, 0.0, 0.0, 3f32.ln()], [1, 2, 1, 2]); // channel-major
        let target = t(&[0.0, 1.0], [1, 1, 1, 2]);
        let expected = (2f64.ln() + (4.0f64 / 3.0).ln()) / 2.0;
        assert!(
            (scalar(loss(LossKind::Ce, logits.clone(), target.clone(), None)) - expected).abs()
                < 1e-6
        );
        // Weighted: weights 1 and 3 → (ln 2 + 3 ln(4/3)) / 2.
        let weights = t(&[1.0, 3.0], [1, 1, 1, 2]);
        let expected_w = (2f64.ln() + 3.0 * (4.0f64 / 3.0).ln()) / 2.0;
        assert!(
            (scalar(loss(LossKind::WeightedCe, logits, target, Some(weights))) - expected_w).abs()
                < 1e-6
        );
    }

    #[test]
    fn bce_by_hand() {
        // z = 0 → ln 2; z = 2, y = 1 → ln(1 + e^-2); z = -3, y = 0 → ln(1 + e^-3).
        let l = loss(
            LossKind::Bce,
            t(&[0.0, 2.0, -3.0], [1, 1, 1, 3]),
            t(&[1.0, 1.0, 0.0], [1, 1, 1, 3]),
            None,
        );
        let expected = (2f64.ln() + (1.0 + (-2f64).exp()).ln() + (1.0 + (-3f64).exp()).ln()) / 3.0;
        assert!((scalar(l) - expected).abs() < 1e-6);
        // Large logits stay finite.
        let l = loss(
            LossKind::Bce,
            t(&[100.0, -100.0], [1, 1, 1, 2]),
            t(&[0.0, 1.0], [1, 1, 1, 2]),
            None,
        );
        assert!((scalar(l) - 100.0).abs() < 1e-3);
    }

    #[test]
    fn dice_by_hand() {
        // z = 0 → p = 0.5 everywhere; y = (1, 0): 1 − (2·0.5 + 1) / (1 + 1 + 1) = 1/3.
        let l = loss(
            LossKind::Dice,
            t(&[0.0, 0.0], [1, 1, 1, 2]),
            t(&[1.0, 0.0], [1, 1, 1, 2]),
            None,
        );
        assert!((scalar(l) - 1.0 / 3.0).abs() < 1e-6);
        // Dice + CE with equal logits: ln 2 + 1/3.
        let l = loss(
            LossKind::DiceCe,
            t(&[0.0, 0.0, 0.0, 0.0], [1, 2, 1, 2]),
            t(&[1.0, 0.0], [1, 1, 1, 2]),
            None,
        );
        assert!((scalar(l) - (2f64.ln() + 1.0 / 3.0)).abs() < 1e-6);
    }

    #[test]
    fn probability_rules() {
        let p = foreground_probability(LossKind::Mse, t(&[-1.0, 0.3, 2.0], [1, 1, 1, 3]));
        assert_eq!(p.into_data().to_vec::<f32>().unwrap(), vec![0.0, 0.3, 1.0]);
        let p = foreground_probability(LossKind::Ce, t(&[0.0, 1.0, 1.0, 0.0], [1, 2, 1, 2]));
        let p = p.into_data().to_vec::<f32>().unwrap();
        // softmax([0, 1])₁ = e / (1 + e); softmax([1, 0])₁ = 1 / (1 + e).
        let e = std::f32::consts::E;
        assert!((p[0] - e / (1.0 + e)).abs() < 1e-6 && (p[1] - 1.0 / (1.0 + e)).abs() < 1e-6);
    }
}
