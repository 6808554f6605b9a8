//! Segmentation metrics on binary masks, scored as Kaggle's Ultrasound Nerve Segmentation did:
//! the mean over images of Dice, where an empty prediction of an empty mask scores 1.

use serde::{Deserialize, Serialize};

/// What the Kaggle score (mean per-image Dice, empty/empty = 1) is made of: with E empty and
/// P non-empty images, score = (E · `empty_correct` + P · `found` · `dice_found`) / (E + P).
/// It tells presence errors (the first two) from shape errors (the third). `None` where a
/// share has no images to be taken of.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreBreakdown {
    pub empty_images: usize,
    pub nonempty_images: usize,
    /// Share of the empty images predicted empty (each scores 1; the others 0).
    pub empty_correct: Option<f64>,
    /// Share of the non-empty images with a non-empty prediction (the others score 0).
    pub found: Option<f64>,
    /// Mean Dice over the non-empty images found.
    pub dice_found: Option<f64>,
}

impl ScoreBreakdown {
    /// The score of predicting every mask empty on these images: the share of empty masks.
    pub fn empty_share(&self) -> Option<f64> {
        let images = self.empty_images + self.nonempty_images;
        (images > 0).then(|| self.empty_images as f64 / images as f64)
    }

    /// The breakdown of the images of several breakdowns taken together (the folds of a
    /// cross-validation): each share weighted by the images it was taken of.
    pub fn pooled(parts: &[ScoreBreakdown]) -> ScoreBreakdown {
        let weighted = |get: &dyn Fn(&ScoreBreakdown) -> Option<(f64, f64)>| {
            let (sum, n) = parts
                .iter()
                .filter_map(get)
                .fold((0.0, 0.0), |(s, n), (v, w)| (s + v * w, n + w));
            (n > 0.0).then(|| sum / n)
        };
        ScoreBreakdown {
            empty_images: parts.iter().map(|p| p.empty_images).sum(),
            nonempty_images: parts.iter().map(|p| p.nonempty_images).sum(),
            empty_correct: weighted(&|p| p.empty_correct.map(|v| (v, p.empty_images as f64))),
            found: weighted(&|p| p.found.map(|v| (v, p.nonempty_images as f64))),
            dice_found: weighted(&|p| {
                let found = p.found? * p.nonempty_images as f64;
                p.dice_found.map(|v| (v, found))
            }),
        }
    }
}

/// Pixel counts of one image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
}

/// The breakdown of the Kaggle score over `images` (see [`ScoreBreakdown`]).
pub fn breakdown(images: &[Confusion]) -> ScoreBreakdown {
    let (empty, nonempty): (Vec<&Confusion>, Vec<&Confusion>) =
        images.iter().partition(|c| !c.truly_present());
    let share = |part: usize, of: usize| (of > 0).then(|| part as f64 / of as f64);
    let found: Vec<&&Confusion> = nonempty.iter().filter(|c| c.predicted_present()).collect();
    ScoreBreakdown {
        empty_images: empty.len(),
        nonempty_images: nonempty.len(),
        empty_correct: share(
            empty.iter().filter(|c| !c.predicted_present()).count(),
            empty.len(),
        ),
        found: share(found.len(), nonempty.len()),
        dice_found: (!found.is_empty())
            .then(|| found.iter().map(|c| c.dice()).sum::<f64>() / found.len() as f64),
    }
}

impl Confusion {
    /// Counts a binary prediction against a 0/1 mask.
    pub fn of(pred: &[bool], truth: &[u8]) -> Self {
        let mut c = Confusion::default();
        for (&p, &t) in pred.iter().zip(truth) {
            match (p, t != 0) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        c
    }

    /// Dice = 2TP / (2TP + FP + FN); 1 when both prediction and mask are empty.
    pub fn dice(&self) -> f64 {
        let denom = 2 * self.tp + self.fp + self.fn_;
        if denom == 0 {
            1.0
        } else {
            2.0 * self.tp as f64 / denom as f64
        }
    }

    /// IoU = TP / (TP + FP + FN); 1 when both are empty.
    pub fn iou(&self) -> f64 {
        let denom = self.tp + self.fp + self.fn_;
        if denom == 0 {
            1.0
        } else {
            self.tp as f64 / denom as f64
        }
    }

    fn predicted_present(&self) -> bool {
        self.tp + self.fp > 0
    }

    fn truly_present(&self) -> bool {
        self.tp + self.fn_ > 0
    }

    fn add(&mut self, other: &Confusion) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
        self.tn += other.tn;
    }
}

/// Validation metrics over a set of images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegMetrics {
    /// Mean per-image Dice (empty/empty = 1).
    pub dice: f64,
    /// Mean per-image IoU (empty/empty = 1).
    pub iou: f64,
    /// Share of correctly classified pixels over all images.
    pub pixel_accuracy: f64,
    /// Pixel precision and recall over all images (1 when nothing was to be found or claimed).
    pub precision: f64,
    pub recall: f64,
    /// Share of images where "nerve present" was predicted correctly.
    pub presence_accuracy: f64,
}

/// Accumulates per-image confusions.
#[derive(Debug, Default, Clone)]
pub(crate) struct MetricAccumulator {
    per_image: Vec<Confusion>,
}

impl MetricAccumulator {
    pub fn push(&mut self, c: Confusion) {
        self.per_image.push(c);
    }

    pub(crate) fn per_image(&self) -> &[Confusion] {
        &self.per_image
    }

    pub fn finish(&self) -> SegMetrics {
        let n = self.per_image.len().max(1) as f64;
        let mut total = Confusion::default();
        for c in &self.per_image {
            total.add(c);
        }
        let pixels = (total.tp + total.fp + total.fn_ + total.tn).max(1) as f64;
        let ratio = |num: u64, den: u64| {
            if den == 0 {
                1.0
            } else {
                num as f64 / den as f64
            }
        };
        SegMetrics {
            dice: self.per_image.iter().map(Confusion::dice).sum::<f64>() / n,
            iou: self.per_image.iter().map(Confusion::iou).sum::<f64>() / n,
            pixel_accuracy: (total.tp + total.tn) as f64 / pixels,
            precision: ratio(total.tp, total.tp + total.fp),
            recall: ratio(total.tp, total.tp + total.fn_),
            presence_accuracy: self
                .per_image
                .iter()
                .filter(|c| c.predicted_present() == c.truly_present())
                .count() as f64
                / n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breakdown_recomposes_the_kaggle_score() {
        let image = |tp, fp, fn_| Confusion {
            tp,
            fp,
            fn_,
            tn: 100,
        };
        let images = [
            image(0, 0, 0),  // empty, predicted empty: 1
            image(0, 0, 0),  // empty, predicted empty: 1
            image(0, 5, 0),  // empty, predicted a nerve: 0
            image(0, 0, 10), // a nerve missed: 0
            image(6, 2, 2),  // found: Dice 12/16 = 0.75
            image(4, 0, 0),  // found: Dice 1
        ];
        let b = breakdown(&images);
        assert_eq!((b.empty_images, b.nonempty_images), (3, 3));
        assert_eq!(b.empty_correct, Some(2.0 / 3.0));
        assert_eq!(b.found, Some(2.0 / 3.0));
        assert_eq!(b.dice_found, Some(0.875));
        let mut acc = MetricAccumulator::default();
        images.iter().for_each(|&c| acc.push(c));
        // (3 · 2/3 + 3 · 2/3 · 0.875) / 6 = (2 + 1.75) / 6
        let recomposed =
            (3.0 * b.empty_correct.unwrap() + 3.0 * b.found.unwrap() * b.dice_found.unwrap()) / 6.0;
        assert!((acc.finish().dice - recomposed).abs() < 1e-12);
        assert!((recomposed - 3.75 / 6.0).abs() < 1e-12);
        let none = breakdown(&[image(0, 0, 0)]);
        assert_eq!((none.found, none.dice_found), (None, None));
    }

    #[test]
    fn dice_by_hand() {
        // pred 1 1 0 0, truth 1 0 1 0: TP 1, FP 1, FN 1 → Dice 2/4, IoU 1/3.
        let c = Confusion::of(&[true, true, false, false], &[1, 0, 1, 0]);
        assert_eq!(
            c,
            Confusion {
                tp: 1,
                fp: 1,
                fn_: 1,
                tn: 1
            }
        );
        assert!((c.dice() - 0.5).abs() < 1e-12);
        assert!((c.iou() - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn empty_vs_empty_scores_one_and_false_alarm_zero() {
        let empty = Confusion::of(&[false; 4], &[0; 4]);
        assert_eq!(empty.dice(), 1.0);
        assert_eq!(empty.iou(), 1.0);
        let false_alarm = Confusion::of(&[true, false, false, false], &[0; 4]);
        assert_eq!(false_alarm.dice(), 0.0);
        let missed = Confusion::of(&[false; 4], &[0, 1, 1, 0]);
        assert_eq!(missed.dice(), 0.0);
    }

    #[test]
    fn mean_over_images_with_kaggle_rule() {
        let mut acc = MetricAccumulator::default();
        acc.push(Confusion::of(&[false; 4], &[0; 4])); // empty/empty: 1
        acc.push(Confusion::of(&[true, true, false, false], &[1, 0, 1, 0])); // 0.5
        acc.push(Confusion::of(&[true, false, false, false], &[0; 4])); // 0
        acc.push(Confusion::of(&[true, true, false, false], &[1, 1, 0, 0])); // 1
        let m = acc.finish();
        assert!((m.dice - 2.5 / 4.0).abs() < 1e-12);
        // Presence: right, right, wrong, right.
        assert!((m.presence_accuracy - 0.75).abs() < 1e-12);
        // Totals: TP 3, FP 2, FN 1, TN 10.
        assert!((m.pixel_accuracy - 13.0 / 16.0).abs() < 1e-12);
        assert!((m.precision - 3.0 / 5.0).abs() < 1e-12);
        assert!((m.recall - 3.0 / 4.0).abs() < 1e-12);
    }
}
