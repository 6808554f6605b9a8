//! From a probability map to a mask: the threshold, the minimum area and (with a presence
//! head) the presence threshold. Validation, the test score and `predict` apply the same rule;
//! `unet-lab tune` (or `train.tune`) chooses its values on validation.

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;

/// Where `tune` writes a run's chosen values: beside its checkpoints.
pub(crate) const FILE_NAME: &str = "postprocess.json";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostProcess {
    /// A pixel is foreground when its probability is above this.
    pub threshold: f32,
    /// A mask covering less than this share of the image is emptied. A share rather than a
    /// pixel count, so the value tuned at the training size holds at any resolution.
    pub min_area_share: f64,
    /// With a presence head: a mask is emptied when the presence probability is below this.
    pub presence_threshold: Option<f64>,
}

impl PostProcess {
    /// The rule before tuning: 0.5, no minimum area, the configured presence threshold.
    pub fn untuned(model: &ModelConfig) -> PostProcess {
        PostProcess {
            threshold: 0.5,
            min_area_share: 0.0,
            presence_threshold: model.presence_head.then_some(model.presence_threshold),
        }
    }

    /// The smallest kept mask of an image of `pixels` pixels.
    pub(crate) fn min_area(&self, pixels: usize) -> usize {
        (self.min_area_share * pixels as f64).ceil() as usize
    }

    /// Whether the presence head empties the mask.
    pub(crate) fn absent(&self, presence: Option<f64>) -> bool {
        matches!((self.presence_threshold, presence), (Some(t), Some(p)) if p < t)
    }

    /// The mask of one probability map (`presence`: the image's presence probability, if any).
    pub fn mask(&self, probability: &[f32], presence: Option<f64>) -> Vec<u8> {
        if self.absent(presence) {
            return vec![0; probability.len()];
        }
        let mut mask: Vec<u8> = probability
            .iter()
            .map(|&p| (p > self.threshold) as u8)
            .collect();
        let area = mask.iter().filter(|&&m| m != 0).count();
        if area > 0 && area < self.min_area(mask.len()) {
            mask.iter_mut().for_each(|m| *m = 0);
        }
        mask
    }

    /// "threshold 0.45, min area 0.30% of the image, presence threshold 0.60".
    pub fn describe(&self) -> String {
        self.describe_with_area(&format!("{:.2}% of the image", 100.0 * self.min_area_share))
    }

    /// [`describe`](Self::describe) with the minimum area given in other words.
    pub(crate) fn describe_with_area(&self, area: &str) -> String {
        let mut s = format!("threshold {:.2}, min area {area}", self.threshold);
        if let Some(t) = self.presence_threshold {
            s.push_str(&format!(", presence threshold {t:.2}"));
        }
        s
    }

    /// The values stored in a checkpoint directory by `tune`, if any.
    pub fn load(checkpoint_dir: &std::path::Path) -> anyhow::Result<Option<PostProcess>> {
        let path = checkpoint_dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{} is corrupt: {e}", path.display()))
    }

    /// The mean of several runs' values (the folds of an ensemble).
    pub fn mean(all: &[PostProcess]) -> Option<PostProcess> {
        let n = all.len() as f64;
        let first = all.first()?;
        let presence: Option<Vec<f64>> = all.iter().map(|p| p.presence_threshold).collect();
        Some(PostProcess {
            threshold: (all.iter().map(|p| f64::from(p.threshold)).sum::<f64>() / n) as f32,
            min_area_share: all.iter().map(|p| p.min_area_share).sum::<f64>() / n,
            presence_threshold: presence
                .map(|v| v.iter().sum::<f64>() / n)
                .or(first.presence_threshold),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_min_area_and_presence() {
        let post = PostProcess {
            threshold: 0.4,
            min_area_share: 0.5,
            presence_threshold: Some(0.5),
        };
        // 2 of 4 pixels above 0.4: exactly the minimum area (ceil(0.5 · 4) = 2), kept.
        assert_eq!(
            post.mask(&[0.41, 0.9, 0.4, 0.1], Some(0.5)),
            vec![1, 1, 0, 0]
        );
        // 1 of 4: below the minimum area, emptied.
        assert_eq!(post.mask(&[0.41, 0.3, 0.4, 0.1], Some(0.9)), vec![0; 4]);
        // Presence below its threshold empties a large mask.
        assert_eq!(post.mask(&[0.9; 4], Some(0.49)), vec![0; 4]);
        // No presence head: no gate.
        assert_eq!(post.mask(&[0.9; 4], None), vec![1; 4]);
        assert_eq!(
            post.describe(),
            "threshold 0.40, min area 50.00% of the image, presence threshold 0.50"
        );
    }

    #[test]
    fn a_threshold_near_one_is_honoured_for_logits_an_f32_sigmoid_saturates() {
        use crate::model::infer::sigmoid_f64;
        // logit(0.99999999) = ln(0.99999999 / 1e-8) ≈ 18.42. In f32 the sigmoid of every logit
        // here is exactly 1.0, which no threshold below 1 could ever gate.
        let post = PostProcess {
            threshold: 0.5,
            min_area_share: 0.0,
            presence_threshold: Some(0.99999999),
        };
        let gate = |logit: f64| post.mask(&[0.9; 4], Some(sigmoid_f64(logit)));
        assert_eq!(
            gate(17.0),
            vec![0; 4],
            "σ(17) ≈ 1 − 4.1e-8 is below the threshold"
        );
        assert_eq!(
            gate(18.4),
            vec![0; 4],
            "σ(18.4) ≈ 1 − 1.02e-8 is below the threshold"
        );
        assert_eq!(gate(18.5), vec![1; 4], "σ(18.5) ≈ 1 − 9.2e-9 is above it");
        assert_eq!(gate(20.0), vec![1; 4], "σ(20) ≈ 1 − 2.1e-9 is above it");
        // The largest threshold below 1 still separates logits 36 and 37.
        let top = PostProcess {
            presence_threshold: Some(1.0 - f64::EPSILON / 2.0),
            ..post
        };
        assert!(top.absent(Some(sigmoid_f64(36.0))));
        assert!(!top.absent(Some(sigmoid_f64(37.0))));
    }
}
