//! One sync of a run (or of a variant's parent run) with the server: read what the run's
//! directory holds and what `mlflow.json` there says the server already has, send the rest,
//! write down what arrived. Live logging and `mlflow-sync` are the same call, so a study
//! logged live and one synced afterwards end with the same content on the server.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::client::{Client, MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH, Point};
use crate::track::layout::{self, RunId};
use crate::track::tables::EpochRow;
use crate::track::{RunManifest, RunStatus, Tracker, write_atomic};
use crate::util::hash::fnv1a64;

/// The file, in a run's (or a variant's) directory, of what the server holds of it.
pub const STATE_FILE: &str = "mlflow.json";

/// Where and how a study is logged.
pub struct Target {
    pub client: Client,
    /// The MLflow experiment's name (`MLFLOW_EXPERIMENT_NAME`, else the study's name).
    pub experiment: String,
    /// Upload each run's best checkpoint too.
    pub checkpoints: bool,
}

/// What the server holds of one run (child or parent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub uri: String,
    pub experiment: String,
    pub experiment_id: String,
    pub run_id: String,
    pub artifact_uri: String,
    /// Params written (they are write-once on the server).
    #[serde(default)]
    pub params: bool,
    /// Every metric of epochs 1..=epochs_sent is on the server.
    #[serde(default)]
    pub epochs_sent: usize,
    /// A metrics call was under way and its answer never came: ask the server what it has.
    #[serde(default)]
    pub uncertain: bool,
    #[serde(default)]
    pub test_sent: bool,
    /// The last status set on the server.
    #[serde(default)]
    pub status_sent: Option<String>,
    /// Artifact path → hash of the bytes uploaded.
    #[serde(default)]
    pub artifacts: BTreeMap<String, String>,
    /// The last error, while something is still to be delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
}

impl RunState {
    /// The state for `target` in `dir`: empty when none, or when it was for another server or
    /// experiment.
    pub fn load(dir: &Path, target: &Target) -> RunState {
        let state: Option<RunState> = std::fs::read(dir.join(STATE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        state
            .filter(|s| s.uri == target.client.uri() && s.experiment == target.experiment)
            .unwrap_or_else(|| RunState {
                uri: target.client.uri().to_string(),
                experiment: target.experiment.clone(),
                ..RunState::default()
            })
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_atomic(&dir.join(STATE_FILE), &serde_json::to_vec_pretty(self)?)
    }
}

/// MLflow's status of a run's outcome.
fn mlflow_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Completed => "FINISHED",
        RunStatus::Diverged | RunStatus::Failed => "FAILED",
        RunStatus::Interrupted => "KILLED",
        RunStatus::Running => "RUNNING",
    }
}

fn millis(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// The run's params: its resolved config flattened (`train.lr`, `model.widths`) and its hash.
fn params(manifest: &RunManifest) -> Vec<(String, String)> {
    let config = serde_json::to_value(&manifest.config).unwrap_or_default();
    let mut out = crate::util::flatten_json_text(&config);
    out.push(("config_hash".into(), manifest.record.config_hash.clone()));
    for (_, value) in &mut out {
        // MLflow's limit on a param's value.
        crate::util::truncate_chars(value, 6000);
    }
    out
}

/// The tags of a child run at creation.
fn child_tags(
    manifest: &RunManifest,
    run: RunId,
    key: &str,
    parent: &str,
) -> Vec<(String, String)> {
    let r = &manifest.record;
    let mut tags = vec![
        ("mlflow.parentRunId".to_string(), parent.to_string()),
        ("unet_lab.key".into(), key.to_string()),
        ("unet_lab.variant".into(), manifest.variant.clone()),
        ("unet_lab.seed".into(), run.seed.to_string()),
        ("unet_lab.backend".into(), r.backend.clone()),
        ("unet_lab.device".into(), r.device.clone()),
        ("unet_lab.version".into(), manifest.unet_lab_version.clone()),
        ("unet_lab.host".into(), manifest.host.clone()),
    ];
    if let Some(fold) = run.fold {
        tags.push(("unet_lab.fold".into(), fold.to_string()));
    }
    for (axis, level) in &manifest.levels {
        tags.push((format!("unet_lab.level.{axis}"), level.clone()));
    }
    if let Some(commit) = &manifest.git_commit {
        tags.push(("mlflow.source.git.commit".into(), commit.clone()));
    }
    if let Some(job) = &manifest.slurm_job {
        tags.push(("unet_lab.slurm_job".into(), job.clone()));
    }
    tags
}

/// Each finished epoch's metrics (step = epoch; timestamps from the run's start and its epochs'
/// durations, so that they are the same whenever they are sent).
fn epoch_points(rows: &[EpochRow], started_ms: i64) -> Vec<(usize, Vec<Point>)> {
    let mut epochs: Vec<usize> = rows
        .iter()
        .filter(|r| r.split == "val")
        .map(|r| r.epoch)
        .collect();
    epochs.sort_unstable();
    epochs.dedup();
    let mut elapsed = 0.0;
    epochs
        .into_iter()
        .map(|epoch| {
            let of = |split: &str| rows.iter().find(|r| r.epoch == epoch && r.split == split);
            let (train, val) = (of("train"), of("val"));
            elapsed += train.map_or(0.0, |r| r.seconds) + val.map_or(0.0, |r| r.seconds);
            let timestamp = started_ms + (elapsed * 1000.0).round() as i64;
            let mut values: Vec<(&str, Option<f64>)> = Vec::new();
            if let Some(t) = train {
                values.extend([
                    ("train_loss", Some(t.loss)),
                    ("lr", Some(t.lr)),
                    ("train_images_per_sec", Some(t.images_per_sec)),
                ]);
            }
            if let Some(v) = val {
                values.extend([
                    ("val_loss", Some(v.loss)),
                    ("val_dice", v.dice),
                    ("val_iou", v.iou),
                    ("val_presence_accuracy", v.presence_accuracy),
                    ("val_precision", v.precision),
                    ("val_recall", v.recall),
                ]);
            }
            let points = values
                .into_iter()
                .filter_map(|(key, value)| value.filter(|v| v.is_finite()).map(|v| (key, v)))
                .map(|(key, value)| Point {
                    key: key.to_string(),
                    value,
                    timestamp,
                    step: epoch as i64,
                })
                .collect();
            (epoch, points)
        })
        .collect()
}

/// The test scores, at the step of the checkpoint they were scored with.
fn test_points(manifest: &RunManifest) -> Vec<Point> {
    let r = &manifest.record;
    let Some(test) = r.test else {
        return Vec::new();
    };
    let timestamp = r.ended.as_deref().map_or(0, millis);
    let mut values = vec![
        ("test_dice", test.dice),
        ("test_iou", test.iou),
        ("test_presence_accuracy", test.presence_accuracy),
    ];
    if let Some(after) = r.tuned.and_then(|t| t.test_after) {
        values.push(("test_dice_tuned", after));
    }
    values
        .into_iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(key, value)| Point {
            key: key.into(),
            value,
            timestamp,
            step: test.epoch as i64,
        })
        .collect()
}

/// The first start and last end among a variant's runs (ms): the parent run's times, the same
/// whenever they are sent.
fn variant_times(variant_dir: &Path) -> (i64, Option<i64>) {
    let manifests: Vec<RunManifest> = layout::run_dirs(variant_dir)
        .into_iter()
        .filter_map(|(_, dir)| RunManifest::load(&dir).ok().flatten())
        .collect();
    let start = manifests
        .iter()
        .map(|m| millis(&m.record.started))
        .min()
        .unwrap_or(0);
    let end = manifests
        .iter()
        .filter_map(|m| m.record.ended.as_deref().map(millis))
        .max();
    (start, end)
}

/// The parent run of a variant: found by its key, or created (under the variant's lock, so
/// that two workers never create two).
pub fn parent_run(
    target: &Target,
    experiment_id: &str,
    variant_dir: &Path,
    name: &str,
) -> Result<RunState> {
    let _one = crate::track::lock::Exclusive::wait(&variant_dir.join(".mlflow.lock"))?;
    let mut state = RunState::load(variant_dir, target);
    if !state.run_id.is_empty() {
        return Ok(state);
    }
    let key = layout_key(variant_dir, None);
    let (run_id, artifact_uri) = match target.client.find_run(experiment_id, &key)? {
        Some(run) => run,
        None => target.client.create_run(
            experiment_id,
            name,
            variant_times(variant_dir).0,
            &[
                ("unet_lab.key".into(), key.clone()),
                ("unet_lab.variant".into(), name.to_string()),
            ],
        )?,
    };
    state.experiment_id = experiment_id.to_string();
    state.run_id = run_id;
    state.artifact_uri = artifact_uri;
    state.save(variant_dir)?;
    Ok(state)
}

/// `<variant slug>` for a parent, `<variant slug>/<run dir>` for a child: unique in a study.
fn layout_key(variant_dir: &Path, run: Option<RunId>) -> String {
    let slug = variant_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match run {
        Some(run) => format!("{slug}/{}", run.dir_name()),
        None => slug,
    }
}

/// Sends what the server lacks of one run. `Ok(false)` when the run has no manifest yet.
pub fn sync_run(target: &Target, experiment_id: &str, run_dir: &Path) -> Result<bool> {
    let Some(manifest) = RunManifest::load(run_dir)? else {
        return Ok(false);
    };
    let variant_dir = run_dir.parent().context("a run directory has a parent")?;
    let run = RunId::new(manifest.record.seed, manifest.record.fold);
    let parent = parent_run(target, experiment_id, variant_dir, &manifest.variant)?;
    let mut state = RunState::load(run_dir, target);
    let result = deliver(
        target,
        experiment_id,
        run_dir,
        run,
        &manifest,
        &parent,
        &mut state,
    );
    state.pending = result.as_ref().err().map(|e| format!("{e:#}"));
    state.save(run_dir)?;
    result.map(|()| true)
}

fn deliver(
    target: &Target,
    experiment_id: &str,
    run_dir: &Path,
    run: RunId,
    manifest: &RunManifest,
    parent: &RunState,
    state: &mut RunState,
) -> Result<()> {
    let client = &target.client;
    let started_ms = millis(&manifest.record.started);
    if state.run_id.is_empty() {
        let key = layout_key(run_dir.parent().unwrap_or(run_dir), Some(run));
        let (run_id, artifact_uri) = match client.find_run(experiment_id, &key)? {
            Some(found) => found,
            None => {
                let tags = child_tags(manifest, run, &key, &parent.run_id);
                let name = format!("{} {}", manifest.variant, run.dir_name());
                client.create_run(experiment_id, &name, started_ms, &tags)?
            }
        };
        state.experiment_id = experiment_id.to_string();
        state.run_id = run_id;
        state.artifact_uri = artifact_uri;
        // Re-found by its key: ask the server which epochs it has.
        state.uncertain = true;
        state.save(run_dir)?;
    }
    if !state.params {
        for chunk in params(manifest).chunks(MAX_PARAMS_PER_BATCH) {
            client.log_batch(&state.run_id, &[], chunk, &[])?;
        }
        state.params = true;
    }
    send_epochs(target, run_dir, started_ms, state)?;
    finish_run(target, run_dir, manifest, state)
}

/// The metrics of the epochs the server does not have, whole epochs per call.
fn send_epochs(
    target: &Target,
    run_dir: &Path,
    started_ms: i64,
    state: &mut RunState,
) -> Result<()> {
    let client = &target.client;
    if state.uncertain {
        let steps = client.metric_steps(&state.run_id, "val_loss")?;
        state.epochs_sent = steps.into_iter().max().unwrap_or(0).max(0) as usize;
        state.uncertain = false;
    }
    let rows = Tracker::open(run_dir)?.epochs;
    let pending: Vec<(usize, Vec<Point>)> = epoch_points(&rows, started_ms)
        .into_iter()
        .filter(|(epoch, _)| *epoch > state.epochs_sent)
        .collect();
    let mut batch: Vec<Point> = Vec::new();
    for (i, (epoch, points)) in pending.iter().enumerate() {
        batch.extend(points.iter().cloned());
        let next = pending.get(i + 1).map_or(0, |(_, p)| p.len());
        if i + 1 == pending.len() || batch.len() + next > MAX_METRICS_PER_BATCH {
            state.uncertain = true;
            state.save(run_dir)?;
            client.log_batch(&state.run_id, &batch, &[], &[])?;
            state.epochs_sent = *epoch;
            state.uncertain = false;
            batch.clear();
        }
    }
    Ok(())
}

/// Test scores, status and artifacts once the run has ended (status RUNNING again on resume).
fn finish_run(
    target: &Target,
    run_dir: &Path,
    manifest: &RunManifest,
    state: &mut RunState,
) -> Result<()> {
    let client = &target.client;
    let record = &manifest.record;
    let status = mlflow_status(record.status);
    if record.status == RunStatus::Running {
        if state.status_sent.as_deref().is_some_and(|s| s != "RUNNING") {
            client.update_run(&state.run_id, "RUNNING", None)?;
            state.status_sent = Some("RUNNING".into());
        }
        return Ok(());
    }
    if !state.test_sent {
        let points = test_points(manifest);
        if !points.is_empty() {
            client.log_batch(&state.run_id, &points, &[], &[])?;
        }
        state.test_sent = true;
    }
    if target.checkpoints {
        let best = run_dir.join("checkpoints").join("best.mpk");
        upload_if_changed(client, state, &best, "checkpoints/best.mpk")?;
    }
    if state.status_sent.as_deref() != Some(status) {
        let tag = [(
            "unet_lab.status".to_string(),
            record.status.as_str().to_string(),
        )];
        client.log_batch(&state.run_id, &[], &[], &tag)?;
        client.update_run(&state.run_id, status, record.ended.as_deref().map(millis))?;
        state.status_sent = Some(status.to_string());
    }
    Ok(())
}

/// Uploads `path` as `artifact` unless the same bytes were uploaded before; a missing file is
/// nothing to upload.
pub fn upload_if_changed(
    client: &Client,
    state: &mut RunState,
    path: &Path,
    artifact: &str,
) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    let hash = format!("{:016x}", fnv1a64(&bytes));
    if state.artifacts.get(artifact) == Some(&hash) {
        return Ok(());
    }
    client.upload(&state.artifact_uri, artifact, &bytes)?;
    state.artifacts.insert(artifact.to_string(), hash);
    Ok(())
}

/// A variant's parent run after its runs: the variant's pictures and the study's page and
/// `summary.json` as artifacts, and its status from its runs' (FINISHED when every run
/// completed, FAILED when one failed or diverged, KILLED when one was stopped).
pub fn sync_parent(
    target: &Target,
    experiment_id: &str,
    exp_dir: &Path,
    slug: &str,
    name: &str,
) -> Result<()> {
    let variant_dir = exp_dir.join(slug);
    let mut state = parent_run(target, experiment_id, &variant_dir, name)?;
    let statuses: Vec<RunStatus> = layout::run_dirs(&variant_dir)
        .into_iter()
        .filter_map(|(_, dir)| RunManifest::load(&dir).ok().flatten())
        .map(|m| m.record.status)
        .collect();
    let result = (|| -> Result<()> {
        for picture in [
            "overlay.png",
            "progress.gif",
            "results.gif",
            "loss.png",
            "metrics.png",
        ] {
            upload_if_changed(
                &target.client,
                &mut state,
                &variant_dir.join(picture),
                picture,
            )?;
        }
        for file in ["index.html", "summary.json"] {
            upload_if_changed(
                &target.client,
                &mut state,
                &exp_dir.join(file),
                &format!("study/{file}"),
            )?;
        }
        let status = if statuses.is_empty() || statuses.contains(&RunStatus::Running) {
            "RUNNING"
        } else if statuses
            .iter()
            .any(|s| matches!(s, RunStatus::Failed | RunStatus::Diverged))
        {
            "FAILED"
        } else if statuses.contains(&RunStatus::Interrupted) {
            "KILLED"
        } else {
            "FINISHED"
        };
        if state.status_sent.as_deref() != Some(status) {
            let end = (status != "RUNNING")
                .then(|| variant_times(&variant_dir).1)
                .flatten();
            target.client.update_run(&state.run_id, status, end)?;
            state.status_sent = Some(status.to_string());
        }
        Ok(())
    })();
    state.pending = result.as_ref().err().map(|e| format!("{e:#}"));
    state.save(&variant_dir)?;
    result
}
