//! The resolved configuration of one training run, as plain structs (Burn guide style).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schema::SectionReader;
use super::tree::{ConfigError, Node, Source, Table};

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
    pub fn out_channels(self) -> usize {
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
    pub fn is_gpu(self) -> bool {
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
    pub fn source_label(&self) -> String {
        match (self.source, self.difficulty) {
            (DataSource::Synthetic, Difficulty::Kaggle) => "synthetic, kaggle preset".into(),
            (source, _) => source.name().into(),
        }
    }
}

/// The documented defaults (README, "All keys"): what a key left out of the file means.
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

fn positive(v: f64) -> Option<String> {
    (v <= 0.0).then(|| "it must be greater than 0".to_string())
}

fn non_negative(v: f64) -> Option<String> {
    (v < 0.0).then(|| "it must be 0 or more".to_string())
}

fn unit_open(v: f64) -> Option<String> {
    (v <= 0.0 || v >= 1.0).then(|| "it must be strictly between 0 and 1".to_string())
}

fn unit_half_open(v: f64) -> Option<String> {
    (!(0.0..1.0).contains(&v)).then(|| "it must be at least 0 and below 1".to_string())
}

fn at_most(max: f64) -> impl Fn(f64) -> Option<String> {
    move |v| {
        if v < 0.0 {
            Some("it must be 0 or more".to_string())
        } else if v > max {
            Some(format!("it must be at most {max}"))
        } else {
            None
        }
    }
}

fn learning_rate_range(v: f64) -> Option<String> {
    if v <= 0.0 {
        Some("it must be greater than 0".into())
    } else if v > 1e15 {
        Some("it must be at most 1e15".into())
    } else {
        None
    }
}

const SOURCES: [(&str, DataSource); 3] = [
    ("synthetic", DataSource::Synthetic),
    ("kaggle", DataSource::Kaggle),
    ("folder", DataSource::Folder),
];

const DIFFICULTIES: [(&str, Difficulty); 2] =
    [("easy", Difficulty::Easy), ("kaggle", Difficulty::Kaggle)];

const PADDINGS: [(&str, Padding); 2] = [("same", Padding::Same), ("valid", Padding::Valid)];

const NORMS: [(&str, Norm); 3] = [
    ("none", Norm::None),
    ("batch", Norm::Batch),
    ("instance", Norm::Instance),
];

const ACTIVATIONS: [(&str, Activation); 2] = [("relu", Activation::Relu), ("elu", Activation::Elu)];

const OPTIMIZERS: [(&str, OptimizerKind); 2] =
    [("adam", OptimizerKind::Adam), ("sgd", OptimizerKind::Sgd)];

const SCHEDULES: [(&str, Schedule); 4] = [
    ("constant", Schedule::Constant),
    ("step", Schedule::Step),
    ("cosine", Schedule::Cosine),
    ("poly", Schedule::Poly),
];

/// Overrides a default with the value the file gave, if it gave one.
fn set<T>(slot: &mut T, given: Option<T>) {
    if let Some(v) = given {
        *slot = v;
    }
}

/// The reader of one run section of `root`; a missing section reads as `empty`.
fn section<'a>(
    source: &'a Source,
    root: &'a Table,
    empty: &'a Table,
    name: &'static str,
) -> Result<SectionReader<'a>, ConfigError> {
    let mut top = SectionReader::new(source, "", root, None);
    Ok(match top.table(name)? {
        Some((key, table)) => SectionReader::new(source, name, table, Some(key.span.clone())),
        None => SectionReader::new(source, name, empty, None),
    })
}

/// `[model]`: the defaults with the keys given.
fn decode_model(m: &mut SectionReader<'_>) -> Result<ModelConfig, ConfigError> {
    let mut c = ModelConfig::default();
    set(
        &mut c.widths,
        m.int_list("widths", 1, 4096, 1..9)?
            .map(|w| w.into_iter().map(|v| v as usize).collect()),
    );
    set(&mut c.padding, m.choice("padding", &PADDINGS)?);
    set(&mut c.dropout, m.float("dropout", unit_half_open)?);
    set(&mut c.norm, m.choice("norm", &NORMS)?);
    set(&mut c.activation, m.choice("activation", &ACTIVATIONS)?);
    set(&mut c.presence_head, m.boolean("presence_head")?);
    set(
        &mut c.presence_threshold,
        m.float("presence_threshold", unit_open)?,
    );
    Ok(c)
}

/// `[data]`: the defaults with the keys given (the size is checked against the model apart).
fn decode_data(d: &mut SectionReader<'_>) -> Result<DataConfig, ConfigError> {
    let mut c = DataConfig::default();
    set(&mut c.source, d.choice("source", &SOURCES)?);
    set(
        &mut c.path,
        d.string("path")?.map(|p| Some(PathBuf::from(p))),
    );
    if c.source != DataSource::Synthetic && c.path.is_none() {
        return Err(d.error_here(
            "path",
            format!(
                "source = \"{}\" needs `path`, the dataset directory",
                c.source.name()
            ),
        ));
    }
    set(
        &mut c.size,
        d.int_list("size", 8, 8192, 2..3)?
            .map(|s| [s[0] as usize, s[1] as usize]),
    );
    set(&mut c.val_fraction, d.float("val_fraction", unit_open)?);
    set(
        &mut c.val_subjects,
        d.int_list("val_subjects", 0, u32::MAX as i64, 1..100_000)?
            .map(|v| Some(v.into_iter().map(|s| s as u32).collect())),
    );
    set(
        &mut c.test_fraction,
        d.float("test_fraction", unit_open)?.map(Some),
    );
    set(
        &mut c.test_subjects,
        d.int_list("test_subjects", 0, u32::MAX as i64, 1..100_000)?
            .map(|v| Some(v.into_iter().map(|s| s as u32).collect())),
    );
    set(
        &mut c.limit,
        d.int("limit", 2, 10_000_000)?.map(|v| Some(v as usize)),
    );
    set(&mut c.seed, d.int("seed", 0, i64::MAX)?.map(|v| v as u64));
    set(
        &mut c.count,
        d.int("count", 4, 1_000_000)?.map(|v| v as usize),
    );
    set(
        &mut c.subjects,
        d.int("subjects", 2, 100_000)?.map(|v| v as usize),
    );
    if c.subjects > c.count {
        return Err(d.error_here(
            "subjects",
            format!("{} subjects cannot share {} images", c.subjects, c.count),
        ));
    }
    set(&mut c.difficulty, d.choice("difficulty", &DIFFICULTIES)?);
    if c.difficulty != Difficulty::Easy && c.source != DataSource::Synthetic {
        let msg = format!(
            "difficulty applies to source = \"synthetic\" only (this is \"{}\")",
            c.source.name()
        );
        return Err(match d.peek("difficulty") {
            Some(node) => d.error_at(node, "difficulty", msg),
            None => d.error_here("difficulty", msg),
        });
    }
    decode_folds(d, &mut c)?;
    check_fractions(d, &c)?;
    Ok(c)
}

/// `val_fraction` and `test_fraction` share the subjects: together they must leave some for
/// training. Only when both are in force — subject lists override them, and cross-validation
/// does not use `val_fraction`.
fn check_fractions(d: &SectionReader<'_>, c: &DataConfig) -> Result<(), ConfigError> {
    let Some(test) = c.test_fraction else {
        return Ok(());
    };
    let val_in_force = c.folds.is_none() && c.val_subjects.is_none();
    // A tolerance, so that 0.7 + 0.3 (0.999…9 in binary) counts as the 1 it was meant to be.
    if !val_in_force || c.test_subjects.is_some() || c.val_fraction + test < 1.0 - 1e-9 {
        return Ok(());
    }
    let message = format!(
        "data.val_fraction ({}) + data.test_fraction ({test}) leaves no subject for training: \
         their sum must be below 1",
        c.val_fraction
    );
    // Reported at the key given last in the file (the default val_fraction has no line).
    let at = ["test_fraction", "val_fraction"]
        .into_iter()
        .filter_map(|k| d.peek(k).map(|n| (k, n)))
        .max_by_key(|(_, n)| n.span.start);
    Err(match at {
        Some((key, node)) => d.error_at(node, key, message),
        None => d.error_here("test_fraction", message),
    })
}

/// `folds` and `fold`: a fold needs `folds`, and cross-validation chooses the validation
/// subjects itself.
fn decode_folds(d: &mut SectionReader<'_>, c: &mut DataConfig) -> Result<(), ConfigError> {
    set(
        &mut c.folds,
        d.int("folds", 2, MAX_FOLDS as i64)?
            .map(|v| Some(v as usize)),
    );
    // Declared known even without `folds`, so that the error below is the one reported.
    let fold_node = d.node("fold");
    match (c.folds, fold_node) {
        (Some(folds), _) => set(
            &mut c.fold,
            d.int("fold", 0, folds as i64 - 1)?
                .map(|v| Some(v as usize)),
        ),
        (None, Some(node)) => {
            return Err(d.error_at(
                node,
                "fold",
                "`fold` picks one fold of a cross-validation: set `folds` (the number of folds) too",
            ));
        }
        (None, None) => {}
    }
    if c.folds.is_some() {
        for key in ["val_subjects", "val_fraction"] {
            if let Some(node) = d.peek(key) {
                return Err(d.error_at(
                    node,
                    key,
                    format!(
                        "`{key}` cannot be combined with `folds`: cross-validation validates each \
                         subject in exactly one fold (the test subjects are held out of all)"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The most folds a cross-validation may have.
pub const MAX_FOLDS: usize = 100;

/// A size that does not fit the network is reported where it was given: at `data.size`, else
/// at `model.widths`, else at the `[data]` section.
fn check_size_fits(
    d: &SectionReader<'_>,
    data: &DataConfig,
    model: &ModelConfig,
    widths_node: Option<&Node>,
) -> Result<(), ConfigError> {
    let Err(msg) = super::geometry::check_input_size(data.size, &model.widths, model.padding)
    else {
        return Ok(());
    };
    Err(match (d.peek("size"), widths_node) {
        (Some(node), _) => d.error_at(node, "size", msg),
        (None, Some(node)) => d
            .source()
            .error(Some(&node.span), Some("model.widths"), msg),
        (None, None) => d.error_here("size", msg),
    })
}

/// `[train]`: the defaults with the keys given.
fn decode_train(t: &mut SectionReader<'_>) -> Result<TrainConfig, ConfigError> {
    let mut c = TrainConfig::default();
    set(&mut c.loss, t.choice("loss", &LossKind::ALL)?);
    set(&mut c.optimizer, t.choice("optimizer", &OPTIMIZERS)?);
    set(&mut c.lr, t.float("lr", learning_rate_range)?);
    set(&mut c.momentum, t.float("momentum", unit_half_open)?);
    set(&mut c.nesterov, t.boolean("nesterov")?);
    set(&mut c.weight_decay, t.float("weight_decay", at_most(1.0))?);
    set(&mut c.beta1, t.float("beta1", unit_half_open)?);
    set(&mut c.beta2, t.float("beta2", unit_half_open)?);
    set(&mut c.epsilon, t.float("epsilon", positive)?);
    set(&mut c.schedule, t.choice("schedule", &SCHEDULES)?);
    let usize_in = |v: Option<i64>| v.map(|v| v as usize);
    set(
        &mut c.step_size,
        usize_in(t.int("step_size", 1, 1_000_000)?),
    );
    set(&mut c.gamma, t.float("gamma", positive)?);
    set(&mut c.min_lr, t.float("min_lr", non_negative)?);
    set(&mut c.power, t.float("power", positive)?);
    set(&mut c.epochs, usize_in(t.int("epochs", 1, 100_000)?));
    set(&mut c.batch_size, usize_in(t.int("batch_size", 1, 4096)?));
    set(&mut c.backend, t.choice("backend", &BackendKind::ALL)?);
    set(&mut c.precision, t.choice("precision", &Precision::ALL)?);
    set(&mut c.device, usize_in(t.int("device", 0, 1023)?).map(Some));
    set(&mut c.grad_clip, t.float("grad_clip", positive)?.map(Some));
    set(
        &mut c.divergence_threshold,
        t.float("divergence_threshold", positive)?,
    );
    set(&mut c.border_w0, t.float("border_w0", non_negative)?);
    set(&mut c.border_sigma, t.float("border_sigma", positive)?);
    set(
        &mut c.test_tta,
        t.choice("test_tta", &[("none", Tta::None), ("flips", Tta::Flips)])?,
    );
    set(
        &mut c.presence_weight,
        t.float("presence_weight", non_negative)?,
    );
    set(&mut c.tune, t.boolean("tune")?);
    // Below f16's smallest normal number Adam's epsilon is 0 in f16, and the first parameter
    // whose gradient is 0 divides 0 by 0 (the run diverges at once).
    const F16_SMALLEST_NORMAL: f64 = 6.103_515_625e-5;
    if c.precision == Precision::F16
        && c.optimizer == OptimizerKind::Adam
        && c.epsilon < F16_SMALLEST_NORMAL
    {
        let message = format!(
            "{:e} is 0 in f16 (its smallest normal number is 6.1e-5), and Adam divides by it; \
             with precision = \"f16\" use epsilon >= 1e-4",
            c.epsilon
        );
        return Err(match t.peek("epsilon").or(t.peek("precision")) {
            Some(node) => t.error_at(node, "epsilon", message),
            None => t.error_here("epsilon", message),
        });
    }
    Ok(c)
}

/// `[report]`: the defaults with the keys given.
fn decode_report(r: &mut SectionReader<'_>) -> Result<ReportConfig, ConfigError> {
    let mut c = ReportConfig::default();
    set(&mut c.samples, r.int("samples", 0, 32)?.map(|v| v as usize));
    Ok(c)
}

/// `[augment]`: the defaults with the keys given.
fn decode_augment(a: &mut SectionReader<'_>) -> Result<AugmentConfig, ConfigError> {
    let mut c = AugmentConfig::default();
    set(&mut c.elastic, a.boolean("elastic")?);
    set(
        &mut c.elastic_sigma,
        a.float("elastic_sigma", at_most(1000.0))?,
    );
    set(
        &mut c.elastic_grid,
        a.int("elastic_grid", 2, 64)?.map(|v| v as usize),
    );
    set(&mut c.flip, a.boolean("flip")?);
    set(&mut c.shift, a.float("shift", at_most(0.5))?);
    set(&mut c.rotate, a.float("rotate", at_most(180.0))?);
    set(&mut c.brightness, a.float("brightness", at_most(1.0))?);
    set(&mut c.contrast, a.float("contrast", at_most(1.0))?);
    Ok(c)
}

/// Decodes one whole section: its keys, then a check that no other key is there.
fn decode_section<'a, T>(
    source: &'a Source,
    root: &'a Table,
    empty: &'a Table,
    name: &'static str,
    decode: fn(&mut SectionReader<'a>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let mut reader = section(source, root, empty, name)?;
    let value = decode(&mut reader)?;
    reader.finish()?;
    Ok(value)
}

impl RunConfig {
    /// Decodes the run sections of a (merged) config tree: each section starts from its
    /// `Default` and takes the keys the tree gives.
    pub fn decode(source: &Source, root: &Table) -> Result<RunConfig, ConfigError> {
        let empty = Table::default();
        // [model] first: the data size is checked against the number of levels.
        let mut m = section(source, root, &empty, "model")?;
        let model = decode_model(&mut m)?;
        let widths_node = m.peek("widths");
        m.finish()?;
        let mut d = section(source, root, &empty, "data")?;
        let data = decode_data(&mut d)?;
        check_size_fits(&d, &data, &model, widths_node)?;
        d.finish()?;
        Ok(RunConfig {
            data,
            model,
            train: decode_section(source, root, &empty, "train", decode_train)?,
            report: decode_section(source, root, &empty, "report", decode_report)?,
            augment: decode_section(source, root, &empty, "augment", decode_augment)?,
        })
    }

    /// Every `section.key` the run sections accept, section by section in [`SECTIONS`] order:
    /// the keys the decoders read, so this list cannot drift from the parser.
    pub fn known_keys() -> Vec<String> {
        let source = Source::new(std::path::Path::new("defaults"), String::new());
        let empty = Table::default();
        let mut keys = [
            keys_read(&source, &empty, "data", decode_data),
            keys_read(&source, &empty, "model", decode_model),
            keys_read(&source, &empty, "train", decode_train),
            keys_read(&source, &empty, "report", decode_report),
            keys_read(&source, &empty, "augment", decode_augment),
        ]
        .concat();
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        keys
    }
}

/// The keys one section decoder reads, as `section.key`.
fn keys_read<'a, T>(
    source: &'a Source,
    empty: &'a Table,
    name: &'static str,
    decode: fn(&mut SectionReader<'a>) -> Result<T, ConfigError>,
) -> Vec<String> {
    let mut reader = SectionReader::new(source, name, empty, None);
    decode(&mut reader).expect("the defaults decode");
    reader.known().iter().map(|k| reader.full_key(k)).collect()
}

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
        same_names(&OPTIMIZERS, |k| match k {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Sgd => "sgd",
        });
    }
}
