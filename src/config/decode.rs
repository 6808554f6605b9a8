//! The decoders of the run sections: each key read from the config tree, checked, and set
//! over its section's `Default` (errors name the file, line and key).

use std::path::PathBuf;

use super::schema::SectionReader;
use super::tree::{ConfigError, Node, Source, Table};
use super::types::*;

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

pub(super) const OPTIMIZERS: [(&str, OptimizerKind); 2] =
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
const MAX_FOLDS: usize = 100;

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
