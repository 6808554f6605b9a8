//! Real-data layouts (Kaggle, folder), the decode cache, prediction and the submission.

mod common;

use std::path::Path;

use common::{Cli, TempDir, run_experiment, write_experiment};
use image::{GrayImage, ImageBuffer, Luma};
use unet_lab::data::files::{LoadStats, load_pairs};
use unet_lab::data::synthetic;
use unet_lab::predict::rle;

const H: usize = 420;
const W: usize = 580;

/// Writes a Kaggle-layout folder: `subjects` subjects × `per` images of 580×420, about half
/// with a nerve.
fn kaggle_folder(dir: &Path, subjects: usize, per: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let samples = synthetic::generate(subjects * per, subjects, H, W, 11);
    for s in samples {
        let img = GrayImage::from_raw(
            W as u32,
            H as u32,
            s.image.iter().map(|v| (v * 255.0) as u8).collect(),
        )
        .unwrap();
        let mask =
            GrayImage::from_raw(W as u32, H as u32, s.mask.iter().map(|m| m * 255).collect())
                .unwrap();
        img.save(dir.join(format!("{}.tif", s.id))).unwrap();
        mask.save(dir.join(format!("{}_mask.tif", s.id))).unwrap();
    }
}

/// Runs the binary with its decode cache in `cache`: (exit code, stderr, stdout).
fn run_with_cache(cache: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Cli::new().args(args).env("UNET_LAB_CACHE", cache).output();
    (out.code, out.stderr, out.stdout)
}

fn experiment(path: &Path, extra: &str) -> String {
    format!(
        r#"
name = "nerve"
[data]
source = "kaggle"
path = "{}"
size = [48, 64]
val_subjects = [3]
{extra}
[train]
loss = "dice_ce"
epochs = 2
lr = 3e-3
[report]
samples = 2
"#,
        path.display()
    )
}

#[test]
fn kaggle_layout_trains_predicts_and_submits() {
    let tmp = TempDir::new("kaggle");
    let data = tmp.path().join("train");
    kaggle_folder(&data, 3, 6);
    let cache = tmp.path().join("cache");
    let file = write_experiment(&tmp, "nerve.toml", &experiment(&data, ""));
    let out = tmp.path().join("out");
    let run = |args: &[&str]| run_with_cache(&cache, args);
    let (code, stderr, _) = run(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("18 decoded, 0 from the cache"), "{stderr}");
    let manifest = unet_lab::track::VariantManifest::load(&out.join("nerve/base"))
        .unwrap()
        .unwrap();
    let info = manifest.runs[0].dataset.clone().unwrap();
    assert_eq!(
        (info.images, info.subjects, info.val_subjects.clone()),
        (18, 3, vec![3])
    );
    assert_eq!((info.train_images, info.val_images), (12, 6));
    assert!(info.empty_mask_share > 0.2 && info.empty_mask_share < 0.8);

    // The second run (fresh, so it trains again) reads every image from the cache.
    let (code, stderr, _) = run(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--fresh",
        "--no-report",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("0 decoded, 18 from the cache"), "{stderr}");

    // Predict on the labelled folder, with a submission.
    let pred = tmp.path().join("pred");
    let sub = tmp.path().join("sub.csv");
    let (code, stderr, stdout) = run(&[
        "predict",
        "--run",
        out.join("nerve/base").to_str().unwrap(),
        "--input",
        data.to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
        "--submission",
        sub.to_str().unwrap(),
        "--min-area",
        "10",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("Kaggle score") && stdout.contains("over 18 labelled images"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(&sub).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("img,pixels"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 18);
    for row in rows {
        let (stem, pixels) = row.split_once(',').unwrap();
        let mask = image::open(pred.join(format!("{stem}_mask.png")))
            .unwrap()
            .into_luma8();
        assert_eq!((mask.width() as usize, mask.height() as usize), (W, H));
        let expected: Vec<u8> = mask
            .into_raw()
            .into_iter()
            .map(|v| (v > 127) as u8)
            .collect();
        assert_eq!(
            rle::decode(pixels, H, W).unwrap(),
            expected,
            "{stem}: RLE and mask PNG differ"
        );
        assert!(pred.join(format!("{stem}_overlay.png")).exists());
    }

    // With flip TTA the labelled input is scored both ways: the plain score is the one above.
    let plain_score = stdout
        .lines()
        .find(|l| l.starts_with("Kaggle score"))
        .and_then(|l| l.rsplit(": ").next())
        .unwrap()
        .to_string();
    let (code, stderr, stdout) = run(&[
        "predict",
        "--run",
        out.join("nerve/base").to_str().unwrap(),
        "--input",
        data.to_str().unwrap(),
        "--out",
        tmp.path().join("pred-tta").to_str().unwrap(),
        "--min-area",
        "10",
        "--tta",
        "flips",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("({plain_score} without TTA)")),
        "plain {plain_score}: {stdout}"
    );

    // A missing mask is named.
    std::fs::remove_file(data.join("2_3_mask.tif")).unwrap();
    let (code, stderr, _) = run(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        tmp.path().join("out2").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("2_3_mask.tif"), "{stderr}");
    assert!(
        !tmp.path().join("out2").exists(),
        "a failed data load wrote output"
    );
}

#[test]
fn data_errors_name_the_file() {
    let tmp = TempDir::new("data-errors");
    let data = tmp.path().join("d");
    kaggle_folder(&data, 2, 2);
    let check = |toml: String, want: &str| {
        let file = write_experiment(&tmp, "e.toml", &toml);
        let r = run_experiment(&file, &tmp.path().join("o"), &[]);
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(r.stderr.contains(want), "want {want:?} in {}", r.stderr);
        assert!(!r.stderr.contains("panicked"));
    };
    check(
        experiment(&tmp.path().join("missing"), ""),
        "does not exist",
    );
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    check(experiment(&empty, ""), "no images found");
    check(
        experiment(&data, "").replace("val_subjects = [3]", "val_subjects = [9]"),
        "subject(s) 9 that have no images",
    );
    std::fs::write(data.join("1_2.tif"), b"not a tiff").unwrap();
    check(experiment(&data, ""), "1_2.tif is not a readable image");
    // Size mismatch between an image and its mask.
    kaggle_folder(&data, 2, 2);
    GrayImage::new(10, 10)
        .save(data.join("2_1_mask.tif"))
        .unwrap();
    check(experiment(&data, ""), "image and mask sizes differ");
    // An orphan mask.
    kaggle_folder(&data, 2, 2);
    std::fs::remove_file(data.join("2_2.tif")).unwrap();
    check(experiment(&data, ""), "2_2_mask.tif has no image");
}

#[test]
fn folder_layout_with_16_bit_images_and_subjects() {
    let tmp = TempDir::new("folder");
    let root = tmp.path().join("ds");
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("masks")).unwrap();
    let samples = synthetic::generate(12, 3, 64, 64, 5);
    let mut csv = String::from("stem,subject\n");
    for s in &samples {
        let img: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_raw(
            64,
            64,
            s.image.iter().map(|v| (v * 65535.0) as u16).collect(),
        )
        .unwrap();
        img.save(root.join(format!("images/case{}.png", s.id)))
            .unwrap();
        GrayImage::from_raw(64, 64, s.mask.iter().map(|m| m * 7).collect())
            .unwrap()
            .save(root.join(format!("masks/case{}.png", s.id)))
            .unwrap();
        csv.push_str(&format!("case{},{}\n", s.id, s.subject));
    }
    std::fs::write(root.join("subjects.csv"), csv).unwrap();
    let pairs = unet_lab::data::folder::list(&root).unwrap();
    assert_eq!(pairs.len(), 12);
    let stats = LoadStats::default();
    let cache = tmp.path().join("cache");
    let loaded = load_pairs(&pairs, [32, 32], &cache, &stats).unwrap();
    // Masks stored as 7 are binarised to 1; subjects come from subjects.csv.
    let original = synthetic::generate(12, 3, 64, 64, 5);
    for (a, b) in loaded.iter().zip(&original) {
        assert_eq!(a.subject, b.subject);
        assert!(a.mask.iter().all(|&m| m <= 1));
        assert_eq!(a.mask.contains(&1), b.mask.contains(&1));
    }
    // 16-bit values survive: at the stored size every pixel is the 16-bit value, which an
    // 8-bit path would miss by up to 1/255.
    let full = load_pairs(
        &pairs,
        [64, 64],
        &tmp.path().join("cache-full"),
        &LoadStats::default(),
    )
    .unwrap();
    let mut worst = 0f32;
    for (a, b) in full.iter().zip(&original) {
        for (x, v) in a.image.iter().zip(&b.image) {
            let stored = (v * 65535.0).floor() / 65535.0;
            worst = worst.max((x - stored).abs());
        }
    }
    assert!(worst < 1e-5, "16-bit values changed by up to {worst}");
    let again = LoadStats::default();
    let cached = load_pairs(&pairs, [32, 32], &cache, &again).unwrap();
    assert_eq!(again.decoded.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(again.cached.load(std::sync::atomic::Ordering::Relaxed), 12);
    assert!(
        cached
            .iter()
            .zip(&loaded)
            .all(|(a, b)| a.image == b.image && a.mask == b.mask)
    );

    // The split keeps subjects apart.
    let file = write_experiment(
        &tmp,
        "f.toml",
        &format!(
            "[data]\nsource = \"folder\"\npath = \"{}\"\nsize = [32, 32]\nval_fraction = 0.34\n[train]\nepochs = 1\n[report]\nsamples = 1\n",
            root.display()
        ),
    );
    let r = run_experiment(&file, &tmp.path().join("o"), &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let info = common::dataset_info(&tmp.path().join("o/f/base"));
    // Every image of a validation subject is in validation, every other one in training.
    assert!(!info.val_subjects.is_empty() && info.val_subjects.len() < 3);
    let of_val = original
        .iter()
        .filter(|s| info.val_subjects.contains(&s.subject))
        .count();
    assert_eq!(info.val_images, of_val);
    assert_eq!(info.train_images, 12 - of_val);
    // A missing mask is named.
    std::fs::remove_file(root.join("masks/case1_2.png")).unwrap();
    let err = unet_lab::data::folder::list(&root).unwrap_err().to_string();
    assert!(err.contains("case1_2.png has no mask"), "{err}");
}

#[test]
fn cross_validated_study_tunes_then_submits_with_the_fold_ensemble() {
    let tmp = TempDir::new("kaggle-cv");
    let data = tmp.path().join("train");
    kaggle_folder(&data, 4, 4);
    let cache = tmp.path().join("cache");
    let text =
        experiment(&data, "folds = 2\ntest_subjects = [4]").replace("val_subjects = [3]\n", "");
    let file = write_experiment(&tmp, "nerve.toml", &text);
    let out = tmp.path().join("out");
    let run = |args: &[&str]| run_with_cache(&cache, args);
    let (code, stderr, _) = run(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let variant = out.join("nerve/base");

    // One run per fold; the test subject is held out of both; subjects 1–3 are validated once.
    let mut validated = Vec::new();
    for fold in 0..2 {
        let m = unet_lab::track::RunManifest::load(&variant.join(format!("seed-0-fold-{fold}")))
            .unwrap()
            .unwrap();
        assert_eq!(m.record.fold, Some(fold));
        let info = m.record.dataset.unwrap();
        assert_eq!(info.test_subjects, vec![4]);
        validated.extend(info.val_subjects);
    }
    validated.sort_unstable();
    assert_eq!(validated, vec![1, 2, 3]);
    let runs = unet_lab::track::tables::read_parquet(&out.join("nerve/runs.parquet")).unwrap();
    let folds: Vec<Option<i64>> = runs.column("fold").unwrap().i64().unwrap().iter().collect();
    assert_eq!(folds, vec![Some(0), Some(1)]);

    // Tuning pools the folds' out-of-fold images and writes one rule beside both checkpoints.
    let (code, stderr, stdout) = run(&["tune", "--run", variant.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout
            .contains("seed 0 (2 folds, out-of-fold images pooled): tuned on 12 validation images"),
        "{stdout}"
    );
    let rule =
        |fold: usize| variant.join(format!("seed-0-fold-{fold}/checkpoints/postprocess.json"));
    let tuned: unet_lab::model::postprocess::PostProcess =
        serde_json::from_slice(&std::fs::read(rule(0)).unwrap()).unwrap();
    assert_eq!(
        std::fs::read(rule(0)).unwrap(),
        std::fs::read(rule(1)).unwrap()
    );
    let m = unet_lab::track::RunManifest::load(&variant.join("seed-0-fold-1"))
        .unwrap()
        .unwrap();
    assert_eq!(m.record.tuned.unwrap().post, tuned);
    assert!(m.record.tuned.unwrap().val_after >= m.record.tuned.unwrap().val_before);

    // predict: the mean of both folds, with the tuned rule.
    let predict = |extra: &[&str], name: &str| {
        let sub = tmp.path().join(format!("{name}.csv"));
        let mut args = vec![
            "predict",
            "--run",
            variant.to_str().unwrap(),
            "--input",
            data.to_str().unwrap(),
            "--out",
        ];
        let pred = tmp.path().join(name);
        args.push(pred.to_str().unwrap());
        args.extend(["--submission", sub.to_str().unwrap()]);
        args.extend(extra);
        let (code, stderr, _) = run(&args);
        (
            code,
            stderr,
            std::fs::read_to_string(&sub).unwrap_or_default(),
        )
    };
    let (code, stderr, _) = predict(&[], "ensemble");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("(seed 0, mean of folds 0, 1, Best checkpoint)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "post-processing: {} (tuned on validation)",
            tuned.describe()
        )),
        "{stderr}"
    );
    // The submission follows the stored rule: threshold 0 makes every pixel a nerve.
    let everything = unet_lab::model::postprocess::PostProcess {
        threshold: 0.0,
        ..tuned
    };
    for fold in 0..2 {
        std::fs::write(rule(fold), serde_json::to_vec(&everything).unwrap()).unwrap();
    }
    let (code, stderr, csv) = predict(&["--fold", "1"], "everything");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("(seed 0 fold 1, Best checkpoint)"),
        "{stderr}"
    );
    let full = format!("1 {}", H * W);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 16);
    assert!(
        rows.iter().all(|r| r.ends_with(&format!(",{full}"))),
        "{csv}"
    );
    // --untuned ignores it.
    let (code, stderr, csv) = predict(&["--untuned"], "untuned");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("(untuned (--untuned))"), "{stderr}");
    assert!(
        !csv.lines()
            .skip(1)
            .all(|r| r.ends_with(&format!(",{full}"))),
        "{csv}"
    );
    // A fold that does not exist is named.
    let (code, stderr, _) = predict(&["--fold", "3"], "none");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("no Best checkpoint for seed 0 fold 3 in")
            && stderr.contains("(runs with one: seed 0 fold 0, seed 0 fold 1)"),
        "{stderr}"
    );
}
