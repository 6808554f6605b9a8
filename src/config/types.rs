//! The resolved configuration of one training run, as plain structs (Burn guide style).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    Synthetic,
    Kaggle,
    Folder,
}

impl DataSource {
    pub fn name(self) -> &'static str {
        match self {
            DataSource::Synthetic => "synthetic",
            DataSource::Kaggle => "kaggle",
            DataSource::Folder => "folder",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// 3×3 convolutions padded by one pixel: output size = input size.
    Same,
    /// The paper's unpadded convolutions: the output is smaller than the input.
    Valid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum LossKind {
    /// Two-channel softmax cross-entropy (the paper).
    Ce,
    /// One channel, ReLU output, mean squared error (the blog).
    Mse,
    /// One-channel logits, sigmoid binary cross-entropy.
    Bce,
    /// Soft Dice on the sigmoid.
    Dice,
    /// Soft Dice on the softmax foreground plus cross-entropy (nnU-Net's default).
    DiceCe,
    /// The paper's cross-entropy weighted by class balance and distance to object borders.
    WeightedCe,
}

impl LossKind {
    pub const ALL: [(&'static str, LossKind); 6] = [
        ("ce", LossKind::Ce),
        ("mse", LossKind::Mse),
        ("bce", LossKind::Bce),
        ("dice", LossKind::Dice),
        ("dice_ce", LossKind::DiceCe),
        ("weighted_ce", LossKind::WeightedCe),
    ];

    /// Number of output channels of the head this loss needs.
    pub(crate) fn out_channels(self) -> usize {
        match self {
            LossKind::Ce | LossKind::DiceCe | LossKind::WeightedCe => 2,
            LossKind::Mse | LossKind::Bce | LossKind::Dice => 1,
        }
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).unwrap().0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum OptimizerKind {
    Adam,
    Sgd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step,
    /// Cosine from `lr` to `min_lr` over the run.
    Cosine,
    /// `lr · (1 − t)^power` (nnU-Net).
    Poly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum BackendKind {
    Cpu,
    Cuda,
    /// Burn's wgpu backend: Vulkan on Linux and Windows, Metal on macOS.
    Wgpu,
}

impl BackendKind {
    pub const ALL: [(&'static str, BackendKind); 3] = [
        ("cpu", BackendKind::Cpu),
        ("cuda", BackendKind::Cuda),
        ("wgpu", BackendKind::Wgpu),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).unwrap().0
    }

    /// Whether the backend runs on a GPU (or a GPU-like adapter) chosen with `--device`.
    pub(crate) fn is_gpu(self) -> bool {
        self != BackendKind::Cpu
    }
}

/// The float type of weights, activations, gradients and optimizer state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub const ALL: [(&'static str, Precision); 3] = [
        ("f32", Precision::F32),
        ("f16", Precision::F16),
        ("bf16", Precision::Bf16),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).unwrap().0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub source: DataSource,
    /// Dataset directory for `kaggle` and `folder`.
    pub path: Option<PathBuf>,
    /// `[height, width]` images are resized to (synthetic images are drawn at this size).
    pub size: [usize; 2],
    pub val_fraction: f64,
    /// Explicit validation subjects; overrides `val_fraction`.
    pub val_subjects: Option<Vec<u32>>,
    /// Share of subjects held out as the test split, scored once after training. Both test
    /// keys are left out of the serialised config when unset, so studies without a test split
    /// keep their config hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
    /// Explicit test subjects; override `test_fraction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_subjects: Option<Vec<u32>>,
    pub limit: Option<usize>,
    /// Seed of the data: synthetic images and the split. The same for every training seed, so
    /// seeds vary only the training.
    pub seed: u64,
    /// Synthetic: number of images and of subjects.
    pub count: usize,
    pub subjects: usize,
    /// Subject-wise K-fold cross-validation: every variant × seed is trained once per fold,
    /// each fold validating on its own share of the (non-test) subjects. Both fold keys are
    /// left out of the serialised config when unset, so other studies keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// The fold this configuration trains (0-based): set in the file to train one fold only,
    /// and by the study for each of its fold tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<usize>,
    /// Synthetic: the generator's preset. Left out of the serialised config at its default,
    /// so that older studies keep their config hashes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub difficulty: Difficulty,
}

/// The preset of the synthetic generator (`data.difficulty`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Difficulty {
    /// The original generator: contrasted nerves, one rimless vessel as the distractor.
    #[default]
    Easy,
    /// Modelled on the Kaggle Ultrasound Nerve data: faint, smaller and variable nerves,
    /// unannotated nerve-like ovals, near-duplicate images with contradictory labels.
    Kaggle,
}

impl DataConfig {
    /// The data's source as the manifest and the report name it (`synthetic`, `synthetic,
    /// kaggle preset`, `kaggle`, `folder`).
    pub(crate) fn source_label(&self) -> String {
        match (self.source, self.difficulty) {
            (DataSource::Synthetic, Difficulty::Kaggle) => "synthetic, kaggle preset".into(),
            (source, _) => source.name().into(),
        }
    }
}

/// The documented defaults (docs/experiments.md, "All keys"): what a key left out of the file means.
impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: DataSource::Synthetic,
            path: None,
            size: [96, 128],
            val_fraction: 0.2,
            val_subjects: None,
            test_fraction: None,
            test_subjects: None,
            limit: None,
            seed: 42,
            count: 600,
            subjects: 20,
            folds: None,
            fold: None,
            difficulty: Difficulty::Easy,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub widths: Vec<usize>,
    pub padding: Padding,
    /// Dropout at the end of the contracting path (the paper: 0.5).
    pub dropout: f64,
    /// Normalisation after each 3×3 convolution (the paper has none). Left out of the
    /// serialised config at its default, as is `activation`, so that older studies keep
    /// their config hashes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub norm: Norm,
    /// The activation after each 3×3 convolution (and its normalisation).
    #[serde(default, skip_serializing_if = "is_default")]
    pub activation: Activation,
    /// A second head, from the pooled bottleneck, that predicts whether the image holds a
    /// nerve; a predicted mask is emptied when it says no.
    #[serde(default, skip_serializing_if = "is_default")]
    pub presence_head: bool,
    /// Below this presence probability the predicted mask is emptied.
    #[serde(default = "half", skip_serializing_if = "is_half")]
    pub presence_threshold: f64,
}

fn half() -> f64 {
    0.5
}

fn is_half(v: &f64) -> bool {
    *v == 0.5
}

fn one() -> f64 {
    1.0
}

fn is_one(v: &f64) -> bool {
    *v == 1.0
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            widths: vec![3, 6, 12, 24, 48],
            padding: Padding::Same,
            dropout: 0.0,
            norm: Norm::None,
            activation: Activation::Relu,
            presence_head: false,
            presence_threshold: 0.5,
        }
    }
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// Normalisation after a 3×3 convolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Norm {
    /// None, as in the paper.
    #[default]
    None,
    /// BatchNorm (batch statistics in training, running ones at inference).
    Batch,
    /// InstanceNorm (each image's own statistics, with a learned scale and shift).
    Instance,
}

/// The activation after a 3×3 convolution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Activation {
    /// The paper's ReLU.
    #[default]
    Relu,
    /// ELU (α = 1), used by the strong Kaggle models.
    Elu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub loss: LossKind,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    pub schedule: Schedule,
    pub step_size: usize,
    pub gamma: f64,
    pub min_lr: f64,
    pub power: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub backend: BackendKind,
    /// The float type on GPU backends (left out of the serialised config at `f32`, so older
    /// studies keep their config hashes).
    #[serde(default, skip_serializing_if = "is_default")]
    pub precision: Precision,
    /// The GPU (CUDA index) or wgpu adapter to train on; where a run trains is not what it
    /// trains, so it is not part of the config hash (the run records the adapter).
    #[serde(default, skip_serializing)]
    pub device: Option<usize>,
    pub grad_clip: Option<f64>,
    /// A training loss above this (or not finite) marks the run diverged.
    pub divergence_threshold: f64,
    /// Border weight map of `weighted_ce`: w0 and σ in pixels.
    pub border_w0: f64,
    pub border_sigma: f64,
    /// Test-time augmentation of the test score (left out of the serialised config at its
    /// default, so older studies keep their config hashes).
    #[serde(default, skip_serializing_if = "is_default")]
    pub test_tta: Tta,
    /// Weight of the presence head's BCE in the loss (`model.presence_head`).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub presence_weight: f64,
    /// After training, tune the threshold, the minimum area and the presence threshold on
    /// validation (as `unet-lab tune` does) and score the test split with them too.
    #[serde(default, skip_serializing_if = "is_default")]
    pub tune: bool,
}

/// Which test-time augmentation to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Tta {
    /// The image as it is.
    #[default]
    None,
    /// The mean over the image and its horizontal and vertical flips.
    Flips,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            loss: LossKind::Mse,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            momentum: 0.99,
            nesterov: false,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            schedule: Schedule::Constant,
            step_size: 10,
            gamma: 0.1,
            min_lr: 0.0,
            power: 0.9,
            epochs: 20,
            batch_size: 8,
            backend: BackendKind::Cpu,
            precision: Precision::F32,
            device: None,
            grad_clip: None,
            divergence_threshold: 1e4,
            border_w0: 10.0,
            border_sigma: 5.0,
            test_tta: Tta::None,
            presence_weight: 1.0,
            tune: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportConfig {
    /// Validation samples whose predictions are stored every epoch.
    pub samples: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self { samples: 4 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Elastic deformation (the paper): displacements on a coarse grid, σ in pixels.
    pub elastic: bool,
    pub elastic_sigma: f64,
    pub elastic_grid: usize,
    pub flip: bool,
    /// Maximum shift as a fraction of the size.
    pub shift: f64,
    /// Maximum rotation in degrees.
    pub rotate: f64,
    /// Maximum relative brightness and contrast change.
    pub brightness: f64,
    pub contrast: f64,
}

/// Every augmentation off; the elastic parameters are those used once `elastic` is on.
impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            elastic: false,
            elastic_sigma: 10.0,
            elastic_grid: 3,
            flip: false,
            shift: 0.0,
            rotate: 0.0,
            brightness: 0.0,
            contrast: 0.0,
        }
    }
}

impl AugmentConfig {
    pub fn any(&self) -> bool {
        self.elastic
            || self.flip
            || self.shift > 0.0
            || self.rotate > 0.0
            || self.brightness > 0.0
            || self.contrast > 0.0
    }
}

/// Everything one variant needs to train, after grid and overrides are applied. Its `Default`
/// is the configuration of a file that sets no run key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub report: ReportConfig,
    pub augment: AugmentConfig,
}

/// The sections a run config is made of: the keys grid axes and variants may override.
pub const SECTIONS: [&str; 5] = ["data", "model", "train", "report", "augment"];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// The names the config file (serde), the command line (clap) and the messages (`name`)
    /// use are one set.
    fn same_names<T: ValueEnum + Serialize>(named: &[(&str, T)], name_of: impl Fn(&T) -> &str) {
        for (name, v) in named {
            let serde = serde_json::to_value(v).unwrap();
            let clap = v.to_possible_value().unwrap();
            assert_eq!(serde.as_str(), Some(*name));
            assert_eq!(clap.get_name(), *name);
            assert_eq!(name_of(v), *name);
        }
        assert_eq!(
            T::value_variants().len(),
            named.len(),
            "a variant is missing"
        );
    }

    #[test]
    fn the_default_difficulty_is_left_out_of_the_serialised_config() {
        // The config hash is taken of the serialised config: studies from before the key keep
        // theirs.
        let easy = serde_json::to_value(DataConfig::default()).unwrap();
        assert!(easy.get("difficulty").is_none(), "{easy}");
        let kaggle = DataConfig {
            difficulty: Difficulty::Kaggle,
            ..DataConfig::default()
        };
        let kaggle = serde_json::to_value(kaggle).unwrap();
        assert_eq!(kaggle["difficulty"], "kaggle");
        let back: DataConfig = serde_json::from_value(easy).unwrap();
        assert_eq!(back, DataConfig::default());
    }

    #[test]
    fn choice_names_agree_everywhere() {
        same_names(&LossKind::ALL, |k| k.name());
        same_names(&BackendKind::ALL, |k| k.name());
        same_names(&Precision::ALL, |k| k.name());
        same_names(&super::super::decode::OPTIMIZERS, |k| match k {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Sgd => "sgd",
        });
    }
}
