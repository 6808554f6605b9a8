//! Directories written before per-run storage (one `metrics.parquet` and `steps.parquet` for
//! the whole study, `<variant>/checkpoints/seed-<s>/`, `<variant>/snapshots/seed-<s>/` and the
//! runs' records inside `<variant>/manifest.json`) are moved to the per-run layout the first
//! time a command reads them. Each run is migrated in an order that a crash cannot break: its
//! rows and directories first, its manifest — which marks it migrated — last; the study-wide
//! tables are left in place until the next merge rewrites them from the runs.

use std::path::Path;

use anyhow::{Context, Result};

use super::layout;
use super::manifest::{ExperimentManifest, RunManifest, VariantManifest};
use super::tables::Tracker;

/// Migrates the study of a trained variant directory (`predict`, `tune`) when it has the
/// single-file layout, which keeps the checkpoints elsewhere.
pub(crate) fn migrate_study_of(variant_dir: &Path) -> Result<usize> {
    match variant_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(exp_dir) => migrate_if_legacy(exp_dir),
        None => Ok(0),
    }
}

/// Migrates a directory of the single-file layout, then records the current layout version so
/// that it is never taken for one again; returns how many runs were moved (0 for a directory
/// that needs nothing). A run whose checkpoints are gone is not migrated: a record alone never
/// becomes a finished run.
pub(crate) fn migrate_if_legacy(exp_dir: &Path) -> Result<usize> {
    if !layout::is_legacy(exp_dir) {
        return Ok(0);
    }
    let mut experiment = ExperimentManifest::load(exp_dir)?;
    let mut pending = Vec::new();
    for (_, slug) in &experiment.variants {
        let variant_dir = exp_dir.join(slug);
        if let Some(manifest) = VariantManifest::load_file(&variant_dir)? {
            for record in &manifest.runs {
                let run_dir = layout::run_dir(&variant_dir, record.run_id());
                let checkpoints = variant_dir
                    .join("checkpoints")
                    .join(format!("seed-{}", record.seed));
                if RunManifest::path(&run_dir).exists() {
                    continue;
                }
                if checkpoints.is_dir() {
                    pending.push((variant_dir.clone(), manifest.clone(), record.clone()));
                } else {
                    eprintln!(
                        "note: {} {} is listed in {} but its checkpoints ({}) are gone: not \
                         migrated, it counts as missing",
                        manifest.variant,
                        record.run_id(),
                        VariantManifest::path(&variant_dir).display(),
                        checkpoints.display()
                    );
                }
            }
        }
    }
    migrate_runs(exp_dir, &pending)?;
    experiment.layout = Some(layout::LAYOUT_VERSION);
    experiment.save(exp_dir)?;
    Ok(pending.len())
}

/// Moves each pending run (its variant directory, the variant's manifest, its record) to
/// per-run storage.
fn migrate_runs(
    exp_dir: &Path,
    pending: &[(
        std::path::PathBuf,
        VariantManifest,
        super::manifest::RunRecord,
    )],
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let study = Tracker::open(exp_dir)?;
    for (variant_dir, manifest, record) in pending {
        let run_dir = layout::run_dir(variant_dir, record.run_id());
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("cannot create {}", run_dir.display()))?;
        for kind in ["checkpoints", "snapshots"] {
            let old = variant_dir.join(kind).join(format!("seed-{}", record.seed));
            let new = run_dir.join(kind);
            if old.is_dir() && !new.exists() {
                std::fs::rename(&old, &new).with_context(|| {
                    format!("cannot move {} to {}", old.display(), new.display())
                })?;
            }
            let _ = std::fs::remove_dir(variant_dir.join(kind)); // only when empty
        }
        let of_run = |variant: &str, seed: u64| variant == manifest.variant && seed == record.seed;
        Tracker::with_rows(
            &run_dir,
            study
                .epochs
                .iter()
                .filter(|r| of_run(&r.variant, r.seed))
                .cloned()
                .collect(),
            study
                .steps
                .iter()
                .filter(|r| of_run(&r.variant, r.seed))
                .cloned()
                .collect(),
        )
        .flush()?;
        RunManifest {
            experiment: manifest.experiment.clone(),
            variant: manifest.variant.clone(),
            slug: manifest.slug.clone(),
            task: None,
            levels: manifest.levels.clone(),
            config: manifest.config.clone(),
            unet_lab_version: manifest.unet_lab_version.clone(),
            burn_version: manifest.burn_version.clone(),
            git_commit: manifest.git_commit.clone(),
            host: "unknown (migrated from the single-file layout)".into(),
            pid: 0,
            slurm_job: None,
            record: record.clone(),
        }
        .save(&run_dir)?;
    }
    eprintln!(
        "note: {} was written by an earlier unet-lab (one metrics.parquet for the whole study); \
         migrated {} run(s) to per-run storage (<variant>/seed-<s>/). Nothing was removed: the \
         study-wide tables are now merged from the runs' own files.",
        exp_dir.display(),
        pending.len()
    );
    Ok(())
}
