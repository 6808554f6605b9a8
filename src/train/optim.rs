//! Optimizers (Adam, SGD with momentum) behind one type, their state as bytes for resumable
//! checkpoints, and the learning-rate schedules.

use anyhow::{Context, Result};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer, Sgd, SgdConfig};
use burn::record::Recorder;
use burn::tensor::backend::AutodiffBackend;

use crate::config::{OptimizerKind, Schedule, TrainConfig};
use crate::model::record::recorder;
pub(crate) use crate::model::record::{model_from_bytes, model_to_bytes};

/// Adam or SGD for a module `M` on the autodiff backend `B`.
pub(crate) enum AnyOptimizer<M: AutodiffModule<B>, B: AutodiffBackend> {
    Adam(OptimizerAdaptor<Adam, M, B>),
    Sgd(OptimizerAdaptor<Sgd<B::InnerBackend>, M, B>),
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> AnyOptimizer<M, B> {
    pub fn new(config: &TrainConfig) -> Self {
        let clip = config
            .grad_clip
            .map(|c| GradientClippingConfig::Norm(c as f32));
        let decay =
            (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
        match config.optimizer {
            OptimizerKind::Adam => AnyOptimizer::Adam(
                AdamConfig::new()
                    .with_beta_1(config.beta1 as f32)
                    .with_beta_2(config.beta2 as f32)
                    // Burn's default is 1e-5; PyTorch's (and the blog's Keras 1e-7 era) is 1e-8.
                    .with_epsilon(config.epsilon as f32)
                    .with_weight_decay(decay)
                    .with_grad_clipping(clip)
                    .init(),
            ),
            OptimizerKind::Sgd => AnyOptimizer::Sgd(
                SgdConfig::new()
                    .with_momentum((config.momentum > 0.0).then(|| {
                        // Burn's default dampening is 0.1; the paper (Caffe) and PyTorch use 0.
                        MomentumConfig::new()
                            .with_momentum(config.momentum)
                            .with_dampening(0.0)
                            .with_nesterov(config.nesterov)
                    }))
                    .with_weight_decay(decay)
                    .with_gradient_clipping(clip)
                    .init(),
            ),
        }
    }

    pub fn step(&mut self, lr: f64, model: M, grads: GradientsParams) -> M {
        match self {
            AnyOptimizer::Adam(o) => o.step(lr, model, grads),
            AnyOptimizer::Sgd(o) => o.step(lr, model, grads),
        }
    }

    /// The optimizer state (moments, velocities) as bytes.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(match self {
            AnyOptimizer::Adam(o) => recorder().record(o.to_record(), ())?,
            AnyOptimizer::Sgd(o) => recorder().record(o.to_record(), ())?,
        })
    }

    /// Restores the state; load the model record first so parameter ids line up.
    pub(crate) fn load_bytes(self, bytes: Vec<u8>, device: &B::Device) -> Result<Self> {
        Ok(match self {
            AnyOptimizer::Adam(o) => {
                let record = Recorder::<B>::load(&recorder(), bytes, device)
                    .context("the optimizer state in the checkpoint cannot be read")?;
                AnyOptimizer::Adam(o.load_record(record))
            }
            AnyOptimizer::Sgd(o) => {
                let record = Recorder::<B>::load(&recorder(), bytes, device)
                    .context("the optimizer state in the checkpoint cannot be read")?;
                AnyOptimizer::Sgd(o.load_record(record))
            }
        })
    }
}

/// The learning rate at `step` of `total_steps` (0-based; per step, so a resumed run gets the
/// same rates as an uninterrupted one).
pub(crate) fn learning_rate(
    config: &TrainConfig,
    epoch: usize,
    step: usize,
    total_steps: usize,
) -> f64 {
    let t = step as f64 / total_steps.max(1) as f64;
    match config.schedule {
        Schedule::Constant => config.lr,
        Schedule::Step => config.lr * config.gamma.powi(((epoch - 1) / config.step_size) as i32),
        Schedule::Cosine => {
            config.min_lr
                + 0.5 * (config.lr - config.min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
        }
        Schedule::Poly => config.lr * (1.0 - t).max(0.0).powf(config.power),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(schedule: Schedule) -> TrainConfig {
        let exp = crate::config::parse_str(
            std::path::Path::new("t.toml"),
            "[train]\nlr = 0.1\nstep_size = 2\ngamma = 0.5\n".into(),
        )
        .unwrap();
        let mut t = exp.variants[0].config.train.clone();
        t.schedule = schedule;
        t
    }

    #[test]
    fn schedules_by_hand() {
        let c = config(Schedule::Constant);
        assert_eq!(learning_rate(&c, 5, 40, 100), 0.1);
        let s = config(Schedule::Step);
        assert_eq!(learning_rate(&s, 1, 0, 100), 0.1);
        assert_eq!(learning_rate(&s, 2, 0, 100), 0.1);
        assert_eq!(learning_rate(&s, 3, 0, 100), 0.05);
        assert_eq!(learning_rate(&s, 5, 0, 100), 0.025);
        let cos = config(Schedule::Cosine);
        assert!((learning_rate(&cos, 1, 0, 100) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&cos, 1, 50, 100) - 0.05).abs() < 1e-12);
        let p = config(Schedule::Poly);
        assert!((learning_rate(&p, 1, 50, 100) - 0.1 * 0.5f64.powf(0.9)).abs() < 1e-12);
    }
}
