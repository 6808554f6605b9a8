//! Ordinary actions on an experiment directory never lose, fake or overwrite a result: a
//! copied file is refused, a changed one supersedes (never deletes), a deleted run is missing,
//! a transient error is resumed, a damaged checkpoint is retrained, and training never waits
//! for a report.

mod common;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use common::{Cli, CliResult, Study, TempDir, run_cli, run_experiment, write_experiment};
use unet_lab::track::{RunManifest, RunStatus, Tracker};

/// One variant, two seeds of two epochs on 48 images; no pictures.
fn small() -> Study {
    Study::new("t")
        .one_variant()
        .seeds(&[0, 1])
        .count(48)
        .epochs(2)
        .samples(0)
}

fn status(exp: &Path) -> CliResult {
    run_cli(&["status", exp.to_str().unwrap()])
}

/// Every file under `dir` with its bytes (the lock files' contents say who held them last).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(snapshot(&p));
        } else if !p.ends_with(".lock") {
            found.push((p.clone(), std::fs::read(&p).unwrap()));
        }
    }
    found.sort();
    found
}

fn record(exp: &Path, run: &str) -> RunManifest {
    RunManifest::load(&exp.join("base").join(run))
        .unwrap()
        .expect("a run manifest")
}

/// The small study trained once in a fresh temp dir: (dir, file, --out, experiment dir).
fn trained_study(tag: &str) -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = TempDir::new(tag);
    let file = small().write(&tmp, "t.toml");
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let exp = out.join("t");
    (tmp, file, out, exp)
}

#[test]
fn a_copied_file_with_other_settings_is_refused_and_deletes_nothing() {
    let (tmp, original, out, exp) = trained_study("copied");
    let before = snapshot(&exp);

    // The same name (the stem) from another folder, with another learning rate.
    std::fs::create_dir_all(tmp.path().join("mine")).unwrap();
    let copy = small().lr(1e-3).write(&tmp, "mine/t.toml");
    let r = run_experiment(&copy, &out, &["--no-report"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    for part in [
        "belongs to the study planned from",
        original.canonicalize().unwrap().to_str().unwrap(),
        copy.canonicalize().unwrap().to_str().unwrap(),
        "is a different file and expands to a different study",
        "Nothing was written and nothing was deleted",
        "--out OTHER_DIR",
        "name = \"…\"",
    ] {
        assert!(r.stderr.contains(part), "missing {part:?} in {}", r.stderr);
    }
    assert_eq!(snapshot(&exp), before, "the study was touched");

    // An identical copy describes the same study: accepted, nothing retrained.
    let same = write_experiment(
        &tmp,
        "mine/same.toml",
        &format!("{}\n# a comment\n", small().text()),
    );
    let r = run_experiment(&same, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("already completed"), "{}", r.stderr);
}

#[test]
fn a_changed_file_says_what_changed_and_supersedes_instead_of_deleting() {
    let (_tmp, file, out, exp) = trained_study("changed");
    let old_seed1 = record(&exp, "seed-1");
    let old_best = std::fs::read(exp.join("base/seed-1/checkpoints/best.mpk")).unwrap();

    std::fs::write(&file, small().lr(1e-3).text()).unwrap();
    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("2 of 2 runs change"), "{}", r.stderr);
    assert!(
        r.stderr.contains("base seed 1: train.lr 0.003 → 0.001"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("its earlier results were moved to"),
        "{}",
        r.stderr
    );

    // The old runs are kept whole under superseded/<time>/base/seed-…/.
    let superseded: Vec<PathBuf> = std::fs::read_dir(exp.join("superseded"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("base/seed-1"))
        .collect();
    assert_eq!(superseded.len(), 1, "{superseded:?}");
    let kept = &superseded[0];
    assert_eq!(
        std::fs::read(kept.join("checkpoints/best.mpk")).unwrap(),
        old_best
    );
    let kept_record = RunManifest::load(kept).unwrap().unwrap();
    assert_eq!(kept_record.record.config_hash, old_seed1.record.config_hash);
    assert_ne!(
        record(&exp, "seed-1").record.config_hash,
        old_seed1.record.config_hash
    );

    // status lists them; the report too.
    let s = status(&exp);
    assert_eq!(s.code, Some(0), "{}", s.stdout);
    assert!(s.stdout.contains("superseded (kept in"), "{}", s.stdout);
    assert!(s.stdout.contains("base  seed 1  set aside"), "{}", s.stdout);
    let r = run_cli(&["report", exp.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let page = std::fs::read_to_string(exp.join("index.html")).unwrap();
    assert!(page.contains("Superseded runs"), "no superseded section");

    // Moving a run back (with the old file) restores it as it was.
    std::fs::write(&file, small().text()).unwrap();
    std::fs::remove_dir_all(exp.join("base/seed-1")).unwrap();
    std::fs::rename(kept, exp.join("base/seed-1")).unwrap();
    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("base seed 1: already completed (same config), skipped"),
        "{}",
        r.stderr
    );
    assert_eq!(
        std::fs::read(exp.join("base/seed-1/checkpoints/best.mpk")).unwrap(),
        old_best
    );

    // prune is the one command that deletes them.
    let r = run_cli(&["prune", exp.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // seed 0 of each earlier config (seed 1's first config was moved back into place).
    assert!(
        r.stdout.contains("deleted 2 superseded run(s)"),
        "{}",
        r.stdout
    );
    assert!(!exp.join("superseded").exists());
}

#[test]
fn fresh_moves_the_old_run_aside() {
    let (_tmp, file, out, exp) = trained_study("fresh");
    let r = run_experiment(&file, &out, &["--no-report", "--fresh", "--task", "0"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("--fresh trains it again"), "{}", r.stderr);
    let s = status(&exp);
    assert!(s.stdout.contains("base  seed 0  set aside"), "{}", s.stdout);
}

#[test]
fn a_deleted_run_is_missing_and_trained_again() {
    let (_tmp, file, out, exp) = trained_study("deleted");
    // Every merge writes base/manifest.json; it must not bring the run back.
    assert!(exp.join("base/manifest.json").exists());
    std::fs::remove_dir_all(exp.join("base/seed-1")).unwrap();
    for _ in 0..2 {
        let s = status(&exp);
        assert_eq!(s.code, Some(4), "{}", s.stdout);
        assert!(
            s.stdout.contains("1/2 complete (1 missing)"),
            "{}",
            s.stdout
        );
        assert!(!exp.join("base/seed-1/manifest.json").exists());
    }
    let r = run_cli(&["report", exp.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(!exp.join("base/seed-1/manifest.json").exists());

    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stderr.contains("base seed 1"), "{}", r.stderr);
    assert_eq!(record(&exp, "seed-1").record.status, RunStatus::Completed);
    assert_eq!(status(&exp).code, Some(0));
}

#[test]
fn a_transient_write_error_leaves_the_run_interrupted_and_the_next_run_resumes_it() {
    let tmp = TempDir::new("transient");
    let file = small().seeds(&[0]).epochs(3).write(&tmp, "t.toml");
    let out = tmp.path().join("out");
    // The checkpoint of epoch 2 fails to write once, as on a flaky network filesystem.
    let r = Cli::run(&file, &out)
        .arg("--no-report")
        .env("UNET_LAB_FAIL_WRITE_ONCE", "epoch-0002.model.mpk")
        .output();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("stopped by an error"), "{}", r.stderr);
    assert!(r.stderr.contains("simulated once"), "{}", r.stderr);
    let exp = out.join("t");
    let m = record(&exp, "seed-0");
    assert_eq!(m.record.status, RunStatus::Interrupted);
    let s = status(&exp);
    assert_eq!(s.code, Some(4), "{}", s.stdout);
    assert!(
        s.stdout.contains("interrupted after epoch 1/3"),
        "{}",
        s.stdout
    );

    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(record(&exp, "seed-0").record.status, RunStatus::Completed);
    let rows = Tracker::open(&exp.join("base/seed-0")).unwrap();
    let val: Vec<usize> = rows
        .epochs
        .iter()
        .filter(|r| r.split == "val")
        .map(|r| r.epoch)
        .collect();
    assert_eq!(val, [1, 2, 3], "each epoch exactly once");
    assert_eq!(status(&exp).code, Some(0));
}

#[test]
fn a_damaged_resume_checkpoint_restarts_the_run_with_a_warning() {
    let tmp = TempDir::new("damaged");
    let file = small().seeds(&[0]).write(&tmp, "t.toml");
    let out = tmp.path().join("out");
    // Fail the manifest's last write so the run stays resumable with its epoch-2 state.
    let r = Cli::run(&file, &out)
        .arg("--no-report")
        .env("UNET_LAB_FAIL_WRITE_ONCE", "epoch-0002.optim.mpk")
        .output();
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let ckpt = out.join("t/base/seed-0/checkpoints");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("resume.json")).unwrap()).unwrap();
    let model = ckpt.join(state["model_file"].as_str().unwrap());
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();

    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot be loaded") && r.stderr.contains("from its first epoch"),
        "{}",
        r.stderr
    );
    assert_eq!(
        record(&out.join("t"), "seed-0").record.status,
        RunStatus::Completed
    );
}

#[test]
fn training_goes_on_while_another_process_holds_the_merge_lock() {
    let tmp = TempDir::new("merge-lock");
    let file = small().write(&tmp, "t.toml");
    let out = tmp.path().join("out");
    let exp = out.join("t");
    std::fs::create_dir_all(&exp).unwrap();
    // A report (another process) holds the merge lock for the whole study.
    let lock = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(exp.join(".merge.lock"))
        .unwrap();
    lock.lock().unwrap();
    let started = std::time::Instant::now();
    let r = Cli::run(&file, &out)
        .env("UNET_LAB_MERGE_WAIT", "2")
        .output();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    // Both runs trained every epoch; only the final merge waited, boundedly, and said so.
    for run in ["seed-0", "seed-1"] {
        assert_eq!(record(&exp, run).record.status, RunStatus::Completed);
    }
    assert!(r.stderr.contains("waiting up to 2 s"), "{}", r.stderr);
    assert!(r.stderr.contains("were not updated"), "{}", r.stderr);
    assert!(started.elapsed().as_secs() < 120);
    drop(lock);
    let r = run_cli(&["report", exp.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(exp.join("index.html").exists());
}
