//! The resolved configuration of one training run, as plain structs (Burn guide style).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::schema::SectionReader;
use super::tree::{ConfigError, Source, Table};

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
}

impl BackendKind {
    pub const ALL: [(&'static str, BackendKind); 2] =
        [("cpu", BackendKind::Cpu), ("cuda", BackendKind::Cuda)];

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
    pub limit: Option<usize>,
    /// Seed of the data: synthetic images and the split. The same for every training seed, so
    /// seeds vary only the training.
    pub seed: u64,
    /// Synthetic: number of images and of subjects.
    pub count: usize,
    pub subjects: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub widths: Vec<usize>,
    pub padding: Padding,
    /// Dropout at the end of the contracting path (the paper: 0.5).
    pub dropout: f64,
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
    pub grad_clip: Option<f64>,
    /// A training loss above this (or not finite) marks the run diverged.
    pub divergence_threshold: f64,
    /// Border weight map of `weighted_ce`: w0 and σ in pixels.
    pub border_w0: f64,
    pub border_sigma: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportConfig {
    /// Validation samples whose predictions are stored every epoch.
    pub samples: usize,
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

/// Everything one variant needs to train, after grid and overrides are applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl RunConfig {
    /// Decodes the run sections of a (merged) config tree.
    pub fn decode(source: &Source, root: &Table) -> Result<RunConfig, ConfigError> {
        let empty = Table::default();
        let section = |name: &'static str| -> Result<SectionReader<'_>, ConfigError> {
            let mut top = SectionReader::new(source, "", root, None);
            Ok(match top.table(name)? {
                Some((key, table)) => {
                    SectionReader::new(source, name, table, Some(key.span.clone()))
                }
                None => SectionReader::new(source, name, &empty, None),
            })
        };

        // [model] first: the data size is checked against the number of levels.
        let mut m = section("model")?;
        let widths_node = m.node("widths");
        let widths = m
            .int_list("widths", 1, 4096, 1..9)?
            .map(|w| w.into_iter().map(|v| v as usize).collect())
            .unwrap_or_else(|| vec![3, 6, 12, 24, 48]);
        let padding = m
            .choice(
                "padding",
                &[("same", Padding::Same), ("valid", Padding::Valid)],
            )?
            .unwrap_or(Padding::Same);
        let dropout = m.float("dropout", unit_half_open)?.unwrap_or(0.0);
        m.finish()?;
        let model = ModelConfig {
            widths,
            padding,
            dropout,
        };

        let mut d = section("data")?;
        let data_source = d
            .choice(
                "source",
                &[
                    ("synthetic", DataSource::Synthetic),
                    ("kaggle", DataSource::Kaggle),
                    ("folder", DataSource::Folder),
                ],
            )?
            .unwrap_or(DataSource::Synthetic);
        let path = d.string("path")?.map(PathBuf::from);
        if data_source != DataSource::Synthetic && path.is_none() {
            return Err(d.error_here(
                "path",
                format!(
                    "source = \"{}\" needs `path`, the dataset directory",
                    match data_source {
                        DataSource::Kaggle => "kaggle",
                        _ => "folder",
                    }
                ),
            ));
        }
        let size_node = d.node("size");
        let size = d
            .int_list("size", 8, 8192, 2..3)?
            .map(|s| [s[0] as usize, s[1] as usize])
            .unwrap_or([96, 128]);
        let val_fraction = d.float("val_fraction", unit_open)?.unwrap_or(0.2);
        let val_subjects = d
            .int_list("val_subjects", 0, u32::MAX as i64, 1..100_000)?
            .map(|v| v.into_iter().map(|s| s as u32).collect());
        let limit = d.int("limit", 2, 10_000_000)?.map(|v| v as usize);
        let seed = d.int("seed", 0, i64::MAX)?.unwrap_or(42) as u64;
        let count = d.int("count", 4, 1_000_000)?.unwrap_or(600) as usize;
        let subjects = d.int("subjects", 2, 100_000)?.unwrap_or(20) as usize;
        if subjects > count {
            return Err(d.error_here(
                "subjects",
                format!("{subjects} subjects cannot share {count} images"),
            ));
        }
        // A size that does not fit is reported where it was given: at `data.size`, else at
        // `model.widths`, else at the section.
        if let Err(msg) = super::geometry::check_input_size(size, &model.widths, model.padding) {
            return Err(match (size_node, widths_node) {
                (Some(node), _) => d.error_at(node, "size", msg),
                (None, Some(node)) => m_error(source, node, "model.widths", &msg),
                (None, None) => d.error_here("size", msg),
            });
        }
        d.finish()?;
        let data = DataConfig {
            source: data_source,
            path,
            size,
            val_fraction,
            val_subjects,
            limit,
            seed,
            count,
            subjects,
        };

        let mut t = section("train")?;
        let loss = t.choice("loss", &LossKind::ALL)?.unwrap_or(LossKind::Mse);
        let optimizer = t
            .choice(
                "optimizer",
                &[("adam", OptimizerKind::Adam), ("sgd", OptimizerKind::Sgd)],
            )?
            .unwrap_or(OptimizerKind::Adam);
        let lr = t
            .float("lr", |v| {
                if v <= 0.0 {
                    Some("it must be greater than 0".into())
                } else if v > 1e15 {
                    Some("it must be at most 1e15".into())
                } else {
                    None
                }
            })?
            .unwrap_or(1e-3);
        let momentum = t.float("momentum", unit_half_open)?.unwrap_or(0.99);
        let nesterov = t.boolean("nesterov")?.unwrap_or(false);
        let weight_decay = t.float("weight_decay", at_most(1.0))?.unwrap_or(0.0);
        let beta1 = t.float("beta1", unit_half_open)?.unwrap_or(0.9);
        let beta2 = t.float("beta2", unit_half_open)?.unwrap_or(0.999);
        let epsilon = t.float("epsilon", positive)?.unwrap_or(1e-8);
        let schedule = t
            .choice(
                "schedule",
                &[
                    ("constant", Schedule::Constant),
                    ("step", Schedule::Step),
                    ("cosine", Schedule::Cosine),
                    ("poly", Schedule::Poly),
                ],
            )?
            .unwrap_or(Schedule::Constant);
        let step_size = t.int("step_size", 1, 1_000_000)?.unwrap_or(10) as usize;
        let gamma = t.float("gamma", positive)?.unwrap_or(0.1);
        let min_lr = t.float("min_lr", non_negative)?.unwrap_or(0.0);
        let power = t.float("power", positive)?.unwrap_or(0.9);
        let epochs = t.int("epochs", 1, 100_000)?.unwrap_or(20) as usize;
        let batch_size = t.int("batch_size", 1, 4096)?.unwrap_or(8) as usize;
        let backend = t
            .choice("backend", &BackendKind::ALL)?
            .unwrap_or(BackendKind::Cpu);
        let grad_clip = t.float("grad_clip", positive)?;
        let divergence_threshold = t.float("divergence_threshold", positive)?.unwrap_or(1e4);
        let border_w0 = t.float("border_w0", non_negative)?.unwrap_or(10.0);
        let border_sigma = t.float("border_sigma", positive)?.unwrap_or(5.0);
        t.finish()?;
        let train = TrainConfig {
            loss,
            optimizer,
            lr,
            momentum,
            nesterov,
            weight_decay,
            beta1,
            beta2,
            epsilon,
            schedule,
            step_size,
            gamma,
            min_lr,
            power,
            epochs,
            batch_size,
            backend,
            grad_clip,
            divergence_threshold,
            border_w0,
            border_sigma,
        };

        let mut r = section("report")?;
        let samples = r.int("samples", 0, 32)?.unwrap_or(4) as usize;
        r.finish()?;
        let report = ReportConfig { samples };

        let mut a = section("augment")?;
        let augment = AugmentConfig {
            elastic: a.boolean("elastic")?.unwrap_or(false),
            elastic_sigma: a.float("elastic_sigma", at_most(1000.0))?.unwrap_or(10.0),
            elastic_grid: a.int("elastic_grid", 2, 64)?.unwrap_or(3) as usize,
            flip: a.boolean("flip")?.unwrap_or(false),
            shift: a.float("shift", at_most(0.5))?.unwrap_or(0.0),
            rotate: a.float("rotate", at_most(180.0))?.unwrap_or(0.0),
            brightness: a.float("brightness", at_most(1.0))?.unwrap_or(0.0),
            contrast: a.float("contrast", at_most(1.0))?.unwrap_or(0.0),
        };
        a.finish()?;

        Ok(RunConfig {
            data,
            model,
            train,
            report,
            augment,
        })
    }
}

fn m_error(source: &Source, node: &super::tree::Node, key: &str, msg: &str) -> ConfigError {
    source.error(Some(&node.span), Some(key), msg.to_string())
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
    fn choice_names_agree_everywhere() {
        same_names(&LossKind::ALL, |k| k.name());
        same_names(&BackendKind::ALL, |k| k.name());
        same_names(
            &[("adam", OptimizerKind::Adam), ("sgd", OptimizerKind::Sgd)],
            |k| match k {
                OptimizerKind::Adam => "adam",
                OptimizerKind::Sgd => "sgd",
            },
        );
    }
}
