//! End to end through the binary: a tiny experiment is trained, tracked and reported; the
//! report is rebuilt from files; the model learns something.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::{Study, TempDir, html_local_refs, run_cli, run_experiment, write_experiment};
use unet_lab::track::Tracker;

const TWO_LOSSES: &str = r#"
name = "two-losses"
description = "mse vs ce, and a <b>hostile</b> name"
seeds = [0]
[data]
size = [32, 32]
count = 96
subjects = 6
[train]
# Two epochs: fewer than the three all-zero epochs after which an MSE run whose ReLU head
# died is stopped, so no CPU's rounding can end the mse level early.
epochs = 2
batch_size = 8
lr = 3e-3
[report]
samples = 4
[grid]
"train.loss" = ["mse", "ce"]
[[variant]]
name = "<b>x</b>"
train = { loss = "bce" }
"#;

#[test]
fn run_tracks_reports_and_rebuilds() {
    let tmp = TempDir::new("pipeline");
    let file = write_experiment(&tmp, "two.toml", TWO_LOSSES);
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &[]);
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let dir = out.join("two-losses");

    // metrics.parquet: the columns, one row per (variant, seed, epoch, split).
    let df = unet_lab::track::tables::read_parquet(&dir.join("metrics.parquet")).unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    for col in [
        "variant",
        "seed",
        "epoch",
        "split",
        "loss",
        "dice",
        "iou",
        "presence_accuracy",
        "load_seconds",
        "step_seconds",
    ] {
        assert!(
            names.iter().any(|n| n == col),
            "missing column {col} in {names:?}"
        );
    }
    let tracker = Tracker::open(&dir).unwrap();
    assert_eq!(tracker.epochs.len(), 3 * 2 * 2);
    let keys: HashSet<_> = tracker
        .epochs
        .iter()
        .map(|r| (r.variant.clone(), r.seed, r.epoch, r.split.clone()))
        .collect();
    assert_eq!(keys.len(), tracker.epochs.len(), "duplicated rows");
    assert!(tracker.epochs.iter().all(|r| (1..=2).contains(&r.epoch)));
    assert!(
        tracker
            .epochs
            .iter()
            .filter(|r| r.split == "val")
            .all(|r| r.dice.is_some())
    );
    let info = common::dataset_info(&dir.join("mse"));
    assert_eq!(info.train_images + info.val_images, 96);
    assert_eq!(
        tracker.steps.len(),
        3 * 2 * info.train_images.div_ceil(8),
        "one row per step"
    );

    // Pictures and pages.
    for f in ["index.html", "report.md", "loss.png", "dice.png"] {
        assert!(dir.join(f).exists(), "missing {f}");
    }
    for v in ["mse", "ce", "_b_x__b_"] {
        for f in [
            "overlay.png",
            "progress.gif",
            "results.gif",
            "loss.png",
            "metrics.png",
            "manifest.json",
        ] {
            assert!(dir.join(v).join(f).exists(), "missing {v}/{f}");
        }
        let manifest = unet_lab::track::VariantManifest::load(&dir.join(v))
            .unwrap()
            .unwrap();
        assert_eq!(
            manifest.runs[0].status,
            unet_lab::track::RunStatus::Completed
        );
        assert!(dir.join(v).join("seed-0/checkpoints/best.mpk").exists());
        assert!(dir.join(v).join("seed-0/checkpoints/last.mpk").exists());
    }
    check_gif(&dir.join("mse/progress.gif"), 2);

    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    check_html(&dir, &html);
    assert!(
        html.contains("&lt;b&gt;x&lt;/b&gt;"),
        "variant name not escaped"
    );
    assert!(
        html.contains("&lt;b&gt;hostile&lt;/b&gt;"),
        "description not escaped"
    );
    assert!(
        !html.contains("<b>"),
        "raw markup from the TOML reached the page"
    );

    // Delete every picture and page; `report` rebuilds them from files alone.
    let mut deleted = 0;
    for entry in walk(&dir) {
        if ["png", "gif", "html", "md"]
            .iter()
            .any(|e| entry.extension().is_some_and(|x| x == *e))
            && !entry.to_string_lossy().contains("snapshots")
        {
            std::fs::remove_file(&entry).unwrap();
            deleted += 1;
        }
    }
    assert!(deleted >= 3 * 5 + 4);
    let result = run_cli(&["report", dir.to_str().unwrap()]);
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let rebuilt = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert_eq!(rebuilt, html, "the rebuilt page differs");
    check_html(&dir, &rebuilt);
    check_gif(&dir.join("ce/progress.gif"), 2);

    common::render_in_chromium(&dir.join("index.html"));

    // A second run finds everything done and trains nothing.
    let again = run_experiment(&file, &out, &[]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(
        again.stderr.contains("3 completed (3 already done)"),
        "{}",
        again.stderr
    );
    assert_eq!(Tracker::open(&dir).unwrap().epochs.len(), 12);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn check_html(dir: &Path, html: &str) {
    let refs = html_local_refs(html);
    assert!(refs.len() >= 3 * 5 + 2, "too few images/links: {refs:?}");
    for r in refs {
        assert!(dir.join(&r).exists(), "index.html refers to missing {r}");
    }
}

/// A GIF with at least `min_frames` frames, all of the logical screen size, looping.
fn check_gif(path: &Path, min_frames: usize) {
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    let mut dec = opts.read_info(std::fs::File::open(path).unwrap()).unwrap();
    let (w, h) = (dec.width(), dec.height());
    // 32-px panels are drawn at 4× (128 px): three panels and two gaps wide.
    assert_eq!(w as usize, 3 * 128 + 2 * 4);
    assert!(h as usize > 4 * 128);
    let mut frames = 0;
    while let Some(frame) = dec.read_next_frame().unwrap() {
        assert_eq!((frame.width, frame.height), (w, h));
        assert!(frame.delay > 0);
        frames += 1;
    }
    assert!(
        frames >= min_frames,
        "{} has {frames} frames",
        path.display()
    );
}

#[test]
fn tiny_run_learns() {
    // Dice + CE learns this small problem within a few epochs: the loss falls and validation
    // Dice climbs well above the "predict nothing" score (the share of empty masks).
    let tmp = TempDir::new("learns");
    let file = write_experiment(
        &tmp,
        "learn.toml",
        r#"
name = "learn"
[data]
size = [48, 48]
count = 320
subjects = 8
[train]
loss = "dice_ce"
epochs = 8
batch_size = 8
lr = 3e-3
[report]
samples = 0
"#,
    );
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let tracker = Tracker::open(&out.join("learn")).unwrap();
    let val: Vec<_> = tracker.epochs.iter().filter(|r| r.split == "val").collect();
    let train: Vec<_> = tracker
        .epochs
        .iter()
        .filter(|r| r.split == "train")
        .collect();
    assert!(
        train.last().unwrap().loss < 0.5 * train[0].loss,
        "training loss did not fall: {train:?}"
    );
    // Against predicting nothing, not against epoch 1: a CPU whose rounding learns faster may
    // already score well after one epoch.
    let floor = common::empty_mask_share(&out.join("learn"), "base");
    let best = val.iter().filter_map(|r| r.dice).fold(0.0, f64::max);
    assert!(
        best > floor + 0.2 && best > 0.75,
        "Dice did not rise above the all-empty {floor}: best {best}"
    );
}

#[test]
fn batch_norm_and_elu_learn() {
    // The strong Kaggle models' layer (convolution, BatchNorm, ELU) learns the same small
    // problem: validation runs on the running statistics, so this also checks inference mode.
    let tmp = TempDir::new("norm-learns");
    let file = write_experiment(
        &tmp,
        "norm.toml",
        r#"
name = "norm"
[data]
size = [48, 48]
count = 240
subjects = 8
[model]
norm = "batch"
activation = "elu"
[train]
loss = "dice_ce"
epochs = 5
batch_size = 8
lr = 3e-3
[report]
samples = 0
"#,
    );
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let tracker = Tracker::open(&out.join("norm")).unwrap();
    let val: Vec<f64> = tracker
        .epochs
        .iter()
        .filter(|r| r.split == "val")
        .filter_map(|r| r.dice)
        .collect();
    let floor = common::empty_mask_share(&out.join("norm"), "base");
    let best = val.iter().copied().fold(0.0, f64::max);
    assert!(
        best > floor + 0.2 && best > 0.75,
        "Dice did not rise above the all-empty {floor} with BatchNorm + ELU: {val:?}"
    );
}

#[test]
fn the_presence_head_learns_and_a_confident_no_empties_the_mask() {
    // "learned": the presence head trains with the network and gates at 0.5. "gated": a gate
    // that no head can pass, by construction rather than by how far training gets: the head
    // is never trained (presence_weight = 0, so it stays at its initialisation, with logits of
    // order 1) and the threshold is the largest double below 1, whose logit is about 36.7. So
    // every validation mask is emptied and each epoch scores exactly like an all-empty
    // prediction, on any CPU.
    let tmp = TempDir::new("presence");
    let file = write_experiment(
        &tmp,
        "presence.toml",
        r#"
name = "presence"
[data]
size = [48, 48]
count = 240
subjects = 8
[model]
presence_head = true
[train]
loss = "dice_ce"
epochs = 5
batch_size = 8
lr = 3e-3
[report]
samples = 0
[[variant]]
name = "learned"
[[variant]]
name = "gated"
model = { presence_threshold = 0.9999999999999999 }
train = { presence_weight = 0.0 }
"#,
    );
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    let tracker = Tracker::open(&out.join("presence")).unwrap();
    let (mut learned, mut gated) = (Vec::new(), Vec::new());
    for r in tracker.epochs.iter().filter(|r| r.split == "val") {
        let row = (
            r.dice.unwrap(),
            r.iou.unwrap(),
            r.presence_accuracy.unwrap(),
        );
        if r.variant == "gated" {
            gated.push(row)
        } else {
            learned.push(row)
        }
    }
    assert_eq!((learned.len(), gated.len()), (5, 5), "{:?}", tracker.epochs);
    let best = learned.iter().map(|r| r.0).fold(0.0, f64::max);
    let floor = common::empty_mask_share(&out.join("presence"), "learned");
    assert!(
        best > floor + 0.2 && best > 0.75,
        "did not learn: {learned:?}"
    );
    let empty_share = gated[0].2;
    for &(dice, iou, presence) in &gated {
        // All-empty predictions: Dice = IoU = presence accuracy = the share of empty masks.
        assert_eq!(
            (dice, iou, presence),
            (empty_share, empty_share, empty_share)
        );
    }
    assert!(best > empty_share + 0.2);
}

#[test]
fn the_papers_recipe_runs_end_to_end_and_predicts_whole_images() {
    // Valid padding (60 → 20 with three levels), border-weighted CE, SGD 0.99, elastic
    // deformation, dropout: every paper-faithful piece in one small run.
    let tmp = TempDir::new("faithful");
    let file = write_experiment(
        &tmp,
        "faithful.toml",
        r#"
name = "faithful"
[data]
size = [60, 60]
count = 32
subjects = 4
[model]
widths = [4, 8, 16]
padding = "valid"
dropout = 0.5
[train]
loss = "weighted_ce"
optimizer = "sgd"
lr = 0.01
momentum = 0.99
epochs = 2
batch_size = 2
[augment]
elastic = true
flip = true
rotate = 10.0
[report]
samples = 2
"#,
    );
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let run = out.join("faithful/base");
    let m = unet_lab::track::VariantManifest::load(&run)
        .unwrap()
        .unwrap();
    assert_eq!(m.runs[0].status, unet_lab::track::RunStatus::Completed);
    // Validation predicts whole images by overlap-tile: snapshots are 60×60, not 20×20.
    let strip = image::open(run.join("seed-0/snapshots/epoch-0002.png")).unwrap();
    assert_eq!((strip.width(), strip.height()), (2 * 60, 60));
    assert!(run.join("overlay.png").exists() && run.join("progress.gif").exists());

    // predict: whole images at their original size (here 90×70, resized to 60×60 and back).
    let input = tmp.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    for s in unet_lab::data::synthetic::generate(3, 1, 70, 90, 4) {
        image::GrayImage::from_raw(90, 70, s.image.iter().map(|v| (v * 255.0) as u8).collect())
            .unwrap()
            .save(input.join(format!("{}.png", s.id)))
            .unwrap();
    }
    let pred = tmp.path().join("pred");
    let r = run_cli(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        pred.to_str().unwrap(),
        "--checkpoint",
        "last",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let mask = image::open(pred.join("1_1_mask.png")).unwrap();
    assert_eq!((mask.width(), mask.height()), (90, 70));
}

fn info_test_images(run: &unet_lab::track::merge::StoredRun) -> usize {
    run.manifest.record.dataset.as_ref().unwrap().test_images
}

#[test]
fn a_test_split_is_scored_once_with_the_checkpoint_chosen_on_validation() {
    let tmp = TempDir::new("test-split");
    let file = Study::new("held_out")
        .count(96)
        .subjects(8)
        .set("data.test_fraction", "0.25")
        .set("train.test_tta", r#""flips""#)
        .samples(0)
        .write(&tmp, "held_out.toml");
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &[]);
    assert_eq!(result.code, Some(0), "{}", result.stderr);
    assert!(result.stderr.contains("test Dice"), "{}", result.stderr);
    let exp = out.join("held_out");
    let (_, runs) = unet_lab::track::merge::read(&exp).unwrap();
    assert_eq!(runs.len(), 2);
    for run in &runs {
        let record = &run.manifest.record;
        let score = record
            .test
            .expect("a completed run with a test split has a test score");
        assert_eq!(Some(score.epoch), record.best.epoch);
        let tests: Vec<_> = run.epochs.iter().filter(|r| r.split == "test").collect();
        assert_eq!(tests.len(), 1, "one test row per run");
        assert_eq!(tests[0].epoch, score.epoch);
        assert_eq!(tests[0].dice, Some(score.dice));
        assert_eq!(tests[0].iou, Some(score.iou));
        // The breakdown recomposes the test score.
        let b = score.breakdown.expect("a test score has its breakdown");
        let (e, p) = (b.empty_images as f64, b.nonempty_images as f64);
        let parts = e * b.empty_correct.unwrap_or(0.0)
            + p * b.found.unwrap_or(0.0) * b.dice_found.unwrap_or(0.0);
        assert!(
            (parts / (e + p) - score.dice).abs() < 1e-9,
            "{b:?} vs {}",
            score.dice
        );
        assert_eq!(b.empty_images + b.nonempty_images, info_test_images(run));
        assert!(record.best.breakdown.is_some());
        let info = record.dataset.as_ref().unwrap();
        assert_eq!(info.test_subjects.len(), 2);
        assert!(
            info.test_subjects
                .iter()
                .all(|s| !info.val_subjects.contains(s))
        );
        assert_eq!(
            info.train_images + info.val_images + info.test_images,
            96,
            "every image on exactly one side"
        );
    }
    // runs.parquet carries the test scores; the pages rank the effects by them.
    let frame = unet_lab::track::tables::read_parquet(&exp.join("runs.parquet")).unwrap();
    let column = frame.column("test_dice").unwrap().f64().unwrap();
    let mut from_table: Vec<f64> = (0..column.len()).filter_map(|i| column.get(i)).collect();
    let mut from_manifests: Vec<f64> = runs
        .iter()
        .map(|r| r.manifest.record.test.unwrap().dice)
        .collect();
    from_table.sort_by(f64::total_cmp);
    from_manifests.sort_by(f64::total_cmp);
    assert_eq!(from_table, from_manifests);
    let html = std::fs::read_to_string(exp.join("index.html")).unwrap();
    assert!(
        html.contains("<th class=\"sortable\">test Dice</th>"),
        "{html}"
    );
    assert!(html.contains("Difference in test Dice (held-out test subjects)"));
    assert!(html.contains("mean test Dice"));
    assert!(html.contains("What the score is made of"));
    assert!(html.contains("On the test split, mean over seeds."));
    let md = std::fs::read_to_string(exp.join("report.md")).unwrap();
    assert!(md.contains("| mean test Dice |"), "{md}");
    assert!(md.contains(" test Dice | best epoch |"), "{md}");
}

#[test]
fn half_precision_on_the_cpu_is_refused_before_anything_is_written() {
    let tmp = TempDir::new("precision-cpu");
    let file = write_experiment(
        &tmp,
        "half.toml",
        "name = \"half\"\n[data]\nsize = [32, 32]\ncount = 32\nsubjects = 4\n[train]\nprecision = \"bf16\"\n",
    );
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &[]);
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    assert!(
        result.stderr.contains(
            "train.precision = \"bf16\": the CPU backend trains in f32 only (its kernels are f32); \
             use --backend cuda or wgpu, or precision = \"f32\""
        ),
        "{}",
        result.stderr
    );
    assert!(!out.exists(), "nothing is written");
}

#[test]
fn two_float_types_on_one_gpu_in_one_process_are_refused() {
    let tmp = TempDir::new("precision-mixed");
    let file = write_experiment(
        &tmp,
        "mixed.toml",
        "name = \"mixed\"\n[data]\nsize = [32, 32]\ncount = 32\nsubjects = 4\n[train]\nepsilon = 1e-4\n[grid]\n\"train.precision\" = [\"f32\", \"f16\"]\n",
    );
    let out = tmp.path().join("out");
    let result = run_experiment(&file, &out, &["--backend", "wgpu"]);
    assert_eq!(result.code, Some(1), "{}", result.stderr);
    assert!(
        result.stderr.contains(
            "train.precision: variants train on wgpu in both f16 and f32, but Burn fixes a \
             device's float type once per process; train them separately (--variant NAME) or as \
             workers (--jobs N)"
        ),
        "{}",
        result.stderr
    );
    assert!(!out.exists(), "nothing is written");
}
