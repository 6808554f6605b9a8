//! `metrics.parquet` (one row per variant, seed, fold, epoch and split) and `steps.parquet` (one row
//! per training step), written with polars. A run keeps its own pair in its directory;
//! Parquet files are immutable, so both are rewritten whole (temp file + rename) after every
//! epoch — they hold one run's rows, so that costs the same in a study of any size. The
//! study-wide pair is merged from them (`merge.rs`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use polars::prelude::*;

use crate::metrics::SegMetrics;
use crate::util::fs::{remove_stale_temp_files, write_atomic};

/// One row of `metrics.parquet`. Validation-only metrics are null on training rows.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochRow {
    pub variant: String,
    pub seed: u64,
    /// The cross-validation fold (null in plain studies).
    pub fold: Option<usize>,
    pub epoch: usize,
    /// "train" or "val".
    pub split: String,
    pub loss: f64,
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    pub pixel_accuracy: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub presence_accuracy: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
    pub images_per_sec: f64,
    /// Time spent preparing batches (data pipeline) and in the model steps.
    pub load_seconds: f64,
    pub step_seconds: f64,
}

#[cfg(test)]
impl EpochRow {
    /// A validation row of epoch 1 scoring `dice` (the report tests' fixture).
    pub(crate) fn val_for_test(variant: &str, seed: u64, dice: f64) -> EpochRow {
        EpochRow {
            variant: variant.into(),
            seed,
            fold: None,
            epoch: 1,
            split: "val".into(),
            loss: 0.5,
            dice: Some(dice),
            iou: None,
            pixel_accuracy: None,
            precision: None,
            recall: None,
            presence_accuracy: None,
            lr: 1e-3,
            seconds: 1.0,
            images_per_sec: 1.0,
            load_seconds: 0.0,
            step_seconds: 1.0,
        }
    }
}

/// The run and epoch a row belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowOf<'a> {
    pub variant: &'a str,
    pub seed: u64,
    pub fold: Option<usize>,
    pub epoch: usize,
}

impl<'a> RowOf<'a> {
    fn new(variant: &'a str, seed: u64, fold: Option<usize>, epoch: usize) -> Self {
        RowOf {
            variant,
            seed,
            fold,
            epoch,
        }
    }
}

/// How long one pass over a split took, and over how many images.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassTime {
    pub seconds: f64,
    pub images: usize,
    /// Preparing batches (the data pipeline); the rest of `seconds` is the model's.
    pub load_seconds: f64,
}

impl EpochRow {
    /// The row of one pass over `split`: `metrics` is absent on training rows.
    pub(crate) fn from_metrics(
        of: RowOf,
        split: &str,
        loss: f64,
        metrics: Option<SegMetrics>,
        lr: f64,
        time: PassTime,
    ) -> EpochRow {
        EpochRow {
            variant: of.variant.to_string(),
            seed: of.seed,
            fold: of.fold,
            epoch: of.epoch,
            split: split.to_string(),
            loss,
            dice: metrics.map(|m| m.dice),
            iou: metrics.map(|m| m.iou),
            pixel_accuracy: metrics.map(|m| m.pixel_accuracy),
            precision: metrics.map(|m| m.precision),
            recall: metrics.map(|m| m.recall),
            presence_accuracy: metrics.map(|m| m.presence_accuracy),
            lr,
            seconds: time.seconds,
            images_per_sec: time.images as f64 / time.seconds.max(1e-9),
            load_seconds: time.load_seconds,
            step_seconds: time.seconds - time.load_seconds,
        }
    }
}

/// One row of `steps.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    pub variant: String,
    pub seed: u64,
    pub fold: Option<usize>,
    pub epoch: usize,
    /// Step within the epoch, from 1.
    pub step: usize,
    /// Step since the start of the run, from 1.
    pub global_step: usize,
    pub loss: f64,
    pub lr: f64,
}

fn col_str(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect())
}

fn col_i64(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    Ok(df
        .column(name)?
        .i64()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect())
}

/// A nullable integer column; a file written before the column existed reads as all null.
fn col_opt_usize(df: &DataFrame, name: &str) -> Result<Vec<Option<usize>>> {
    match df.column(name) {
        Ok(c) => Ok(c.i64()?.iter().map(|v| v.map(|v| v as usize)).collect()),
        Err(_) => Ok(vec![None; df.height()]),
    }
}

fn fold_column(folds: impl Iterator<Item = Option<usize>>) -> Column {
    Column::new(
        "fold".into(),
        folds.map(|f| f.map(|f| f as i64)).collect::<Vec<_>>(),
    )
}

/// The columns both tables start with: which run and epoch each row belongs to.
fn key_columns(keys: &[RowOf]) -> Vec<Column> {
    let column = |name: &str, values: Vec<i64>| Column::new(name.into(), values);
    vec![
        Column::new(
            "variant".into(),
            keys.iter().map(|k| k.variant).collect::<Vec<_>>(),
        ),
        column("seed", keys.iter().map(|k| k.seed as i64).collect()),
        fold_column(keys.iter().map(|k| k.fold)),
        column("epoch", keys.iter().map(|k| k.epoch as i64).collect()),
    ]
}

/// [`key_columns`], read back.
struct KeyColumns {
    variant: Vec<String>,
    seed: Vec<i64>,
    fold: Vec<Option<usize>>,
    epoch: Vec<i64>,
}

impl KeyColumns {
    fn read(df: &DataFrame) -> Result<KeyColumns> {
        Ok(KeyColumns {
            variant: col_str(df, "variant")?,
            seed: col_i64(df, "seed")?,
            fold: col_opt_usize(df, "fold")?,
            epoch: col_i64(df, "epoch")?,
        })
    }
}

fn col_f64(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    Ok(df.column(name)?.f64()?.iter().collect())
}

pub(crate) fn epoch_rows_to_frame(rows: &[EpochRow]) -> Result<DataFrame> {
    let f = |get: fn(&EpochRow) -> f64| rows.iter().map(get).collect::<Vec<f64>>();
    let o = |get: fn(&EpochRow) -> Option<f64>| rows.iter().map(get).collect::<Vec<Option<f64>>>();
    let keys: Vec<RowOf> = rows
        .iter()
        .map(|r| RowOf::new(&r.variant, r.seed, r.fold, r.epoch))
        .collect();
    let mut columns = key_columns(&keys);
    columns.extend([
        Column::new(
            "split".into(),
            rows.iter().map(|r| r.split.clone()).collect::<Vec<_>>(),
        ),
        Column::new("loss".into(), f(|r| r.loss)),
        Column::new("dice".into(), o(|r| r.dice)),
        Column::new("iou".into(), o(|r| r.iou)),
        Column::new("pixel_accuracy".into(), o(|r| r.pixel_accuracy)),
        Column::new("precision".into(), o(|r| r.precision)),
        Column::new("recall".into(), o(|r| r.recall)),
        Column::new("presence_accuracy".into(), o(|r| r.presence_accuracy)),
        Column::new("lr".into(), f(|r| r.lr)),
        Column::new("seconds".into(), f(|r| r.seconds)),
        Column::new("images_per_sec".into(), f(|r| r.images_per_sec)),
        Column::new("load_seconds".into(), f(|r| r.load_seconds)),
        Column::new("step_seconds".into(), f(|r| r.step_seconds)),
    ]);
    Ok(DataFrame::new(rows.len(), columns)?)
}

fn epoch_rows_from_frame(df: &DataFrame) -> Result<Vec<EpochRow>> {
    let key = KeyColumns::read(df)?;
    let split = col_str(df, "split")?;
    let loss = col_f64(df, "loss")?;
    let dice = col_f64(df, "dice")?;
    let iou = col_f64(df, "iou")?;
    let pixel_accuracy = col_f64(df, "pixel_accuracy")?;
    let precision = col_f64(df, "precision")?;
    let recall = col_f64(df, "recall")?;
    let presence_accuracy = col_f64(df, "presence_accuracy")?;
    let lr = col_f64(df, "lr")?;
    let seconds = col_f64(df, "seconds")?;
    let images_per_sec = col_f64(df, "images_per_sec")?;
    let load_seconds = col_f64(df, "load_seconds")?;
    let step_seconds = col_f64(df, "step_seconds")?;
    Ok((0..df.height())
        .map(|i| EpochRow {
            variant: key.variant[i].clone(),
            seed: key.seed[i] as u64,
            fold: key.fold[i],
            epoch: key.epoch[i] as usize,
            split: split[i].clone(),
            loss: loss[i].unwrap_or(f64::NAN),
            dice: dice[i],
            iou: iou[i],
            pixel_accuracy: pixel_accuracy[i],
            precision: precision[i],
            recall: recall[i],
            presence_accuracy: presence_accuracy[i],
            lr: lr[i].unwrap_or(f64::NAN),
            seconds: seconds[i].unwrap_or(f64::NAN),
            images_per_sec: images_per_sec[i].unwrap_or(f64::NAN),
            load_seconds: load_seconds[i].unwrap_or(f64::NAN),
            step_seconds: step_seconds[i].unwrap_or(f64::NAN),
        })
        .collect())
}

pub(crate) fn step_rows_to_frame(rows: &[StepRow]) -> Result<DataFrame> {
    let keys: Vec<RowOf> = rows
        .iter()
        .map(|r| RowOf::new(&r.variant, r.seed, r.fold, r.epoch))
        .collect();
    let mut columns = key_columns(&keys);
    columns.extend([
        Column::new(
            "step".into(),
            rows.iter().map(|r| r.step as i64).collect::<Vec<_>>(),
        ),
        Column::new(
            "global_step".into(),
            rows.iter()
                .map(|r| r.global_step as i64)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "loss".into(),
            rows.iter().map(|r| r.loss).collect::<Vec<_>>(),
        ),
        Column::new("lr".into(), rows.iter().map(|r| r.lr).collect::<Vec<_>>()),
    ]);
    Ok(DataFrame::new(rows.len(), columns)?)
}

fn step_rows_from_frame(df: &DataFrame) -> Result<Vec<StepRow>> {
    let key = KeyColumns::read(df)?;
    let step = col_i64(df, "step")?;
    let global_step = col_i64(df, "global_step")?;
    let loss = col_f64(df, "loss")?;
    let lr = col_f64(df, "lr")?;
    Ok((0..df.height())
        .map(|i| StepRow {
            variant: key.variant[i].clone(),
            seed: key.seed[i] as u64,
            fold: key.fold[i],
            epoch: key.epoch[i] as usize,
            step: step[i] as usize,
            global_step: global_step[i] as usize,
            loss: loss[i].unwrap_or(f64::NAN),
            lr: lr[i].unwrap_or(f64::NAN),
        })
        .collect())
}

/// Writes a frame to Parquet atomically.
pub(crate) fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<()> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(df)
        .map_err(|e| anyhow::anyhow!("cannot encode {}: {e}", path.display()))?;
    write_atomic(path, &bytes)
}

/// Reads a Parquet file. polars panics on some corrupt files (an `unwrap` in its page
/// decoder) instead of returning an error: that panic is caught here and reported as the file
/// being unreadable, and its message is kept off stderr.
pub fn read_parquet(path: &Path) -> Result<DataFrame> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    quiet_polars_panics();
    READS_IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ParquetReader::new(file).finish()
    }));
    READS_IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    match read {
        Ok(frame) => frame
            .map_err(|e| anyhow::anyhow!("{} is not a readable Parquet file: {e}", path.display())),
        Err(_) => anyhow::bail!(
            "{} is not a readable Parquet file: it is corrupt (the Parquet reader failed on it)",
            path.display()
        ),
    }
}

/// Parquet reads under way, during which a panic inside polars is an unreadable file.
static READS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Wraps the panic hook (once) so that a panic in polars' code during a read is not printed:
/// [`read_parquet`] reports it as an error. Every other panic is printed as before.
fn quiet_polars_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_polars = info
                .location()
                .is_some_and(|l| l.file().contains("/polars-"));
            if !(in_polars && READS_IN_FLIGHT.load(Ordering::SeqCst) > 0) {
                previous(info);
            }
        }));
    });
}

/// The rows of one directory (a run's, or a merged study's), kept in memory and flushed to
/// disk after every epoch.
#[derive(Debug, Default)]
pub struct Tracker {
    dir: PathBuf,
    pub epochs: Vec<EpochRow>,
    pub steps: Vec<StepRow>,
}

impl Tracker {
    pub(crate) fn metrics_path(dir: &Path) -> PathBuf {
        dir.join("metrics.parquet")
    }

    pub(crate) fn steps_path(dir: &Path) -> PathBuf {
        dir.join("steps.parquet")
    }

    /// A tracker for `dir` holding the given rows (nothing is read or written).
    pub fn with_rows(dir: &Path, epochs: Vec<EpochRow>, steps: Vec<StepRow>) -> Tracker {
        Tracker {
            dir: dir.to_path_buf(),
            epochs,
            steps,
        }
    }

    /// Opens the tracker of a directory, reading rows written before.
    pub fn open(dir: &Path) -> Result<Tracker> {
        let mut tracker = Tracker {
            dir: dir.to_path_buf(),
            ..Default::default()
        };
        let metrics = Self::metrics_path(dir);
        if metrics.exists() {
            tracker.epochs = epoch_rows_from_frame(&read_parquet(&metrics)?)
                .with_context(|| format!("{} has unexpected columns", metrics.display()))?;
        }
        let steps = Self::steps_path(dir);
        if steps.exists() {
            tracker.steps = step_rows_from_frame(&read_parquet(&steps)?)
                .with_context(|| format!("{} has unexpected columns", steps.display()))?;
        }
        Ok(tracker)
    }

    /// Removes the temp files a crash between two writes left in `dir` (they are never read).
    /// Only for the run's trainer, holding its lock: a reader (the MLflow sink, a merge) must
    /// not touch a write in flight.
    pub(crate) fn remove_stale_temp_files(dir: &Path) {
        for path in [Self::metrics_path(dir), Self::steps_path(dir)] {
            remove_stale_temp_files(&path);
        }
    }

    /// Drops the rows of `(variant, seed)` after `last_epoch` (all of them for 0): the rows a
    /// resumed run will write again.
    pub(crate) fn truncate_run(&mut self, variant: &str, seed: u64, last_epoch: usize) {
        self.epochs
            .retain(|r| !(r.variant == variant && r.seed == seed && r.epoch > last_epoch));
        self.steps
            .retain(|r| !(r.variant == variant && r.seed == seed && r.epoch > last_epoch));
    }

    pub fn flush(&self) -> Result<()> {
        let mut epochs = epoch_rows_to_frame(&self.epochs)?;
        write_parquet(&Self::metrics_path(&self.dir), &mut epochs)?;
        let mut steps = step_rows_to_frame(&self.steps)?;
        write_parquet(&Self::steps_path(&self.dir), &mut steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_round_trip_keeps_rows_and_nulls() {
        let dir = std::env::temp_dir().join(format!("unet-lab-tables-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = Tracker::open(&dir).unwrap();
        let row = |epoch, split: &str, dice| EpochRow {
            variant: "a<b>".into(),
            seed: 3,
            fold: Some(2),
            epoch,
            split: split.into(),
            loss: 0.25,
            dice,
            iou: dice,
            pixel_accuracy: dice,
            precision: None,
            recall: Some(0.5),
            presence_accuracy: None,
            lr: 1e-3,
            seconds: 1.5,
            images_per_sec: 10.0,
            load_seconds: 0.1,
            step_seconds: 1.2,
        };
        t.epochs = vec![
            row(1, "train", None),
            row(1, "val", Some(0.75)),
            row(2, "val", Some(0.8)),
        ];
        t.steps = vec![StepRow {
            variant: "a<b>".into(),
            seed: 3,
            fold: None,
            epoch: 1,
            step: 1,
            global_step: 1,
            loss: 0.5,
            lr: 1e-3,
        }];
        t.flush().unwrap();
        let mut back = Tracker::open(&dir).unwrap();
        assert_eq!(back.epochs, t.epochs);
        assert_eq!(back.steps, t.steps);
        back.truncate_run("a<b>", 3, 1);
        assert_eq!(back.epochs.len(), 2);

        // A reader opening the directory while the trainer writes (the MLflow sink's thread)
        // never breaks a write.
        let reader = {
            let dir = dir.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    Tracker::open(&dir).unwrap();
                }
            })
        };
        for _ in 0..100 {
            t.flush().unwrap();
        }
        reader.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
