//! No command overwrites an input or another command's output: `predict` into its input
//! folder or over a file it did not write, and `compare` into an experiment directory or over
//! a page it did not write, are refused with exit 2 and write nothing; a rerun into the
//! command's own folder still works.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Study, TempDir, run_cli, run_experiment};

/// One tiny variant, one epoch: a checkpoint to predict with and a report to compare.
fn study() -> Study {
    Study::bare("tiny")
        .count(16)
        .widths(&[4, 8])
        .loss("dice_ce")
        .epochs(1)
        .samples(1)
}

/// Trains the study (with its report); its experiment directory.
fn trained(tmp: &TempDir) -> PathBuf {
    let file = study().write(tmp, "tiny.toml");
    let out = tmp.path().join("reports");
    let r = run_experiment(&file, &out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    out.join("tiny")
}

/// Every file under `dir` (relative path → bytes).
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for (rel, bytes) in contents(&path) {
                all.insert(path.strip_prefix(dir).unwrap().join(rel), bytes);
            }
        } else {
            let bytes = std::fs::read(&path).unwrap();
            all.insert(path.strip_prefix(dir).unwrap().to_path_buf(), bytes);
        }
    }
    all
}

/// A labelled input folder: `<id>.png` and its `<id>_mask.png`.
fn labelled_folder(dir: &Path) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let grey = |px: Vec<u8>| image::GrayImage::from_raw(32, 32, px).unwrap();
    let mut ids = Vec::new();
    for s in unet_lab::data::synthetic::generate(3, 1, 32, 32, 5) {
        let image: Vec<u8> = s.image.iter().map(|v| (v * 255.0) as u8).collect();
        grey(image).save(dir.join(format!("{}.png", s.id))).unwrap();
        let mask: Vec<u8> = s.mask.iter().map(|m| m * 255).collect();
        grey(mask)
            .save(dir.join(format!("{}_mask.png", s.id)))
            .unwrap();
        ids.push(s.id);
    }
    ids
}

fn predict(variant: &Path, input: &Path, out: &Path, extra: &[&str]) -> common::CliResult {
    let mut args = vec![
        "predict",
        "--run",
        variant.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_cli(&args)
}

#[test]
fn predict_refuses_its_input_folder_and_a_file_it_did_not_write() {
    let tmp = TempDir::new("no-overwrite-predict");
    let variant = trained(&tmp).join("base");
    let data = tmp.path().join("labelled");
    let ids = labelled_folder(&data);
    let labels = contents(&data);

    // --out is the input folder, by its own name or another: refused, the labels untouched.
    let alias = data.join("../labelled");
    for out in [&data, &alias] {
        let r = predict(&variant, &data, out, &[]);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(
            r.stderr.contains("is the input folder (--input)"),
            "{}",
            r.stderr
        );
        assert_eq!(contents(&data), labels, "the labels changed");
    }
    // A submission over a label: refused too.
    let label = data.join(format!("{}_mask.png", ids[0]));
    let pred = tmp.path().join("pred");
    let r = predict(
        &variant,
        &data,
        &pred,
        &["--submission", label.to_str().unwrap()],
    );
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("--submission"), "{}", r.stderr);
    assert!(!pred.exists(), "--out was created though predict refused");
    assert_eq!(contents(&data), labels);

    // A file in --out that predict did not write: refused, named, and nothing written.
    std::fs::create_dir_all(&pred).unwrap();
    let theirs = pred.join(format!("{}_mask.png", ids[1]));
    std::fs::write(&theirs, b"someone else's mask").unwrap();
    let r = predict(&variant, &data, &pred, &[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("--out: {} exists", theirs.display())),
        "{}",
        r.stderr
    );
    assert_eq!(
        contents(&pred).len(),
        1,
        "predict wrote beside the refused file"
    );
    assert_eq!(std::fs::read(&theirs).unwrap(), b"someone else's mask");
}

#[test]
fn predict_runs_again_into_its_own_out_and_may_write_inside_its_input() {
    let tmp = TempDir::new("no-overwrite-rerun");
    let variant = trained(&tmp).join("base");
    let data = tmp.path().join("labelled");
    let ids = labelled_folder(&data);
    let labels = contents(&data);

    // Run twice into one --out: the second run replaces the files the first one wrote.
    let pred = tmp.path().join("pred");
    let sub = pred.join("submission.csv");
    for _ in 0..2 {
        let r = predict(
            &variant,
            &data,
            &pred,
            &["--submission", sub.to_str().unwrap()],
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pred.join(".unet-lab-predict.json")).unwrap())
            .unwrap();
    let files = record["files"].as_array().unwrap();
    assert_eq!(files.len(), 2 * ids.len() + 1, "{record}");
    for id in &ids {
        assert!(pred.join(format!("{id}_mask.png")).exists());
        assert!(pred.join(format!("{id}_overlay.png")).exists());
    }

    // An --out inside the input folder is allowed: predict lists only the folder itself.
    let inside = data.join("pred");
    for _ in 0..2 {
        let r = predict(&variant, &data, &inside, &[]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        assert!(r.stdout.contains("3 images"), "{}", r.stdout);
    }
    let after = contents(&data);
    assert_eq!(
        after
            .into_iter()
            .filter(|(p, _)| !p.starts_with("pred"))
            .collect::<BTreeMap<_, _>>(),
        labels
    );
}

#[test]
fn compare_never_writes_into_a_study_or_over_a_page_it_did_not_write() {
    let tmp = TempDir::new("no-overwrite-compare");
    let exp = trained(&tmp);
    let page = std::fs::read(exp.join("index.html")).unwrap();
    let study = contents(&exp);
    let compare = |dir: &Path, out: &Path| {
        run_cli(&[
            "compare",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };

    // Into the study itself: refused, its report untouched.
    let r = compare(&exp, &exp);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("is an experiment directory (it has experiment.json)"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read(exp.join("index.html")).unwrap(), page);
    assert_eq!(contents(&exp), study);

    // A directory that is no experiment: an error, and --out is not created.
    let fresh = tmp.path().join("fresh");
    let r = compare(&tmp.path().join("nope"), &fresh);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(
        !fresh.exists(),
        "compare created --out before reading its directories"
    );

    // A page compare did not write: refused and kept.
    let mine = tmp.path().join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("index.html"), b"my notes").unwrap();
    let r = compare(&exp, &mine);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(r.stderr.contains("index.html exists"), "{}", r.stderr);
    assert_eq!(std::fs::read(mine.join("index.html")).unwrap(), b"my notes");

    // Its own folder, twice: the second run replaces the page it wrote.
    for _ in 0..2 {
        let r = compare(&exp, &fresh);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    assert!(fresh.join("index.html").exists() && fresh.join(".unet-lab-compare.json").exists());
    assert_eq!(contents(&exp), study, "compare changed the study");
}

#[test]
fn report_refuses_what_is_not_a_study_and_writes_nothing_there() {
    let tmp = TempDir::new("report-not-a-study");
    let file = tmp.path().join("study.toml");
    std::fs::write(&file, "name = \"x\"\n").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (target, message) in [
        (
            file.clone(),
            format!(
                "error: {0} is a file, not an experiment directory; to train an experiment file: \
                 unet-lab run {0}",
                file.display()
            ),
        ),
        (
            empty.clone(),
            format!(
                "error: {} holds no study (no experiment.json): give the directory `unet-lab run` \
                 wrote, <out>/<experiment name>",
                empty.display()
            ),
        ),
        (
            tmp.path().join("missing"),
            format!(
                "error: {} does not exist",
                tmp.path().join("missing").display()
            ),
        ),
    ] {
        let r = run_cli(&["report", target.to_str().unwrap()]);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert_eq!(r.stderr.trim(), message);
    }
    // Nothing was left behind: no lock in the empty folder, nothing beside the file.
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
}
