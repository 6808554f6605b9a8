//! Crashes, interrupts, divergence, hostile names, concurrent runs and determinism.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    Cli, Study, TempDir, assert_same_rows, run_experiment, sequential_rows, write_experiment,
};
use unet_lab::track::{RunLock, RunStatus, Tracker, VariantManifest};

/// Two variants (adam, sgd), seed 0, three epochs on 96 images of 6 subjects.
fn two_variants() -> Study {
    Study::new("crash").count(96).subjects(6)
}

fn spawn_run(file: &Path, out: &Path) -> Child {
    Cli::run(file, out)
        .arg("--no-report")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
}

/// Waits until the child has printed `epoch_lines` epoch lines (0: returns at once).
fn wait_for_epochs(child: &mut Child, epoch_lines: usize) -> BufReader<std::process::ChildStderr> {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut seen = 0;
    let mut line = String::new();
    while seen < epoch_lines {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains(" epoch ") {
            seen += 1;
        }
    }
    reader
}

/// Epochs (per variant) a resumed run must not train again: those its checkpoints hold.
fn checkpointed_epochs(exp_dir: &Path, variant: &str) -> usize {
    let dir = exp_dir.join(variant);
    if let Ok(Some(m)) = VariantManifest::load(&dir)
        && m.runs.iter().any(|r| r.status == RunStatus::Completed)
    {
        return 3;
    }
    std::fs::read(dir.join("seed-0/checkpoints/resume.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["epochs_done"].as_u64())
        .unwrap_or(0) as usize
}

#[test]
fn sigkill_at_any_point_then_rerun_gives_the_uninterrupted_rows() {
    let tmp = TempDir::new("kill");
    let file = two_variants().write(&tmp, "crash.toml");
    let reference_out = tmp.path().join("reference");
    let reference = sequential_rows(&file, &reference_out, "crash");
    assert_eq!(reference.epochs.len(), 2 * 3 * 2);

    // Kill points: during start-up, mid-variant, right after the first variant, mid second.
    for (round, (epoch_lines, extra_ms)) in [(0, 150), (1, 120), (3, 0), (4, 200), (5, 60)]
        .into_iter()
        .enumerate()
    {
        let out = tmp.path().join(format!("killed-{round}"));
        let mut child = spawn_run(&file, &out);
        let _reader = wait_for_epochs(&mut child, epoch_lines);
        std::thread::sleep(Duration::from_millis(extra_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let exp_dir = out.join("crash");
        let done: Vec<(String, usize)> = ["adam", "sgd"]
            .iter()
            .map(|v| (v.to_string(), checkpointed_epochs(&exp_dir, v)))
            .collect();
        let rerun = run_experiment(&file, &out, &["--no-report"]);
        assert_eq!(rerun.code, Some(0), "round {round}: {}", rerun.stderr);
        for (variant, epochs) in &done {
            for e in 1..=*epochs {
                let line = format!("{variant} (seed 0) epoch {e}/3");
                assert!(
                    !rerun.stderr.contains(&line),
                    "round {round}: retrained a finished epoch: {line}\n{}",
                    rerun.stderr
                );
            }
        }
        let after = Tracker::open(&exp_dir).unwrap();
        assert_same_rows(&after.epochs, &reference.epochs, &format!("round {round}"));
        let steps = |t: &Tracker| {
            let mut s: Vec<_> = t
                .steps
                .iter()
                .map(|s| (s.variant.clone(), s.global_step, s.loss.to_bits()))
                .collect();
            s.sort();
            s
        };
        assert_eq!(
            steps(&after),
            steps(&reference),
            "round {round}: step rows differ"
        );
        for v in ["adam", "sgd"] {
            let run = exp_dir.join(v).join("seed-0");
            assert!(
                RunLock::probe(&run).unwrap().is_none(),
                "{v}: lock still held"
            );
        }
    }
}

#[test]
fn ctrl_c_marks_interrupted_and_a_later_run_resumes() {
    let tmp = TempDir::new("sigint");
    let file = two_variants().write(&tmp, "crash.toml");
    let out = tmp.path().join("out");
    let mut child = spawn_run(&file, &out);
    let mut reader = wait_for_epochs(&mut child, 1);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("interrupted"), "{rest}");
    let m = VariantManifest::load(&out.join("crash/adam"))
        .unwrap()
        .unwrap();
    assert_eq!(m.runs[0].status, RunStatus::Interrupted);
    assert!(m.runs[0].best.epochs_done >= 1);

    let rerun = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(rerun.code, Some(0), "{}", rerun.stderr);
    assert!(
        !rerun.stderr.contains("adam (seed 0) epoch 1/3"),
        "{}",
        rerun.stderr
    );
    let t = Tracker::open(&out.join("crash")).unwrap();
    assert_eq!(t.epochs.len(), 12);
    let m = VariantManifest::load(&out.join("crash/adam"))
        .unwrap()
        .unwrap();
    assert_eq!(m.runs[0].status, RunStatus::Completed);
}

#[test]
fn a_diverging_variant_is_marked_and_the_others_complete() {
    let tmp = TempDir::new("diverge");
    let file = write_experiment(
        &tmp,
        "div.toml",
        r#"
name = "div"
[data]
size = [32, 32]
count = 64
subjects = 4
[train]
loss = "ce"
optimizer = "sgd"
epochs = 2
[grid]
"train.lr" = { ok = 0.01, huge = 1e12 }
"#,
    );
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &[]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("1 completed (0 already done), 1 diverged, 0 failed"),
        "{}",
        r.stderr
    );
    let huge = VariantManifest::load(&out.join("div/huge"))
        .unwrap()
        .unwrap();
    assert_eq!(huge.runs[0].status, RunStatus::Diverged);
    let d = huge.runs[0].divergence.clone().unwrap();
    assert!(d.epoch >= 1 && d.step >= 1);
    let ok = VariantManifest::load(&out.join("div/ok")).unwrap().unwrap();
    assert_eq!(ok.runs[0].status, RunStatus::Completed);
    let html = std::fs::read_to_string(out.join("div/index.html")).unwrap();
    assert!(html.contains("badge diverged"), "no diverged badge");
    // The diverged run keeps no rows of its unfinished epoch.
    let t = Tracker::open(&out.join("div")).unwrap();
    assert!(
        t.epochs
            .iter()
            .filter(|r| r.variant == "huge")
            .all(|r| r.epoch < d.epoch)
    );
}

#[test]
fn hostile_names_stay_inside_the_output_directory() {
    let tmp = TempDir::new("hostile");
    let base = tmp.path().join("a/b");
    std::fs::create_dir_all(&base).unwrap();
    let file = write_experiment(
        &tmp,
        "h.toml",
        r#"
name = "../../escaped-exp"
[data]
size = [32, 32]
count = 32
subjects = 4
[train]
epochs = 1
[report]
samples = 1
[[variant]]
name = "../../escaped"
[[variant]]
name = "/abs/olute"
"#,
    );
    let out = base.join("out");
    let r = run_experiment(&file, &out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    for outside in [
        "a/escaped",
        "a/escaped-exp",
        "escaped",
        "escaped-exp",
        "a/b/escaped",
    ] {
        assert!(!tmp.path().join(outside).exists(), "{outside} was created");
    }
    assert!(!Path::new("/abs").exists());
    let entries: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let slug = unet_lab::config::slugify;
    assert_eq!(entries, vec![slug("../../escaped-exp")]);
    assert!(!slug("../../escaped").contains('/') && !slug("../../escaped").starts_with('.'));
    let exp = out.join(slug("../../escaped-exp"));
    assert!(
        exp.join(slug("../../escaped"))
            .join("manifest.json")
            .exists()
    );
    assert!(exp.join(slug("/abs/olute")).join("manifest.json").exists());
}

#[test]
fn a_second_concurrent_run_takes_the_other_task_and_nothing_is_trained_twice() {
    let tmp = TempDir::new("lock");
    let file = two_variants().write(&tmp, "crash.toml");
    let out = tmp.path().join("out");
    let mut first = spawn_run(&file, &out);
    // Once the first has finished an epoch of task 0 (adam), it holds that task's lock.
    let mut reader = wait_for_epochs(&mut first, 1);
    let second = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(second.code, Some(0), "{}", second.stderr);
    // Task 0 was the first's: busy, or (if the first finished it meanwhile) already done.
    assert!(
        second
            .stderr
            .contains("task 0 (adam seed 0): being trained by host")
            || second.stderr.contains("adam seed 0: already completed"),
        "{}",
        second.stderr
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{rest}");
    // Each epoch of each run was trained by exactly one of the two processes.
    for v in ["adam", "sgd"] {
        for e in 1..=3 {
            let line = format!("{v} (seed 0) epoch {e}/3");
            let times = second.stderr.matches(&line).count() + rest.matches(&line).count();
            let first_epoch_line = usize::from(v == "adam" && e == 1);
            assert_eq!(
                times + first_epoch_line,
                1,
                "{line} trained {times} time(s) after the first epoch line:\nfirst: {rest}\nsecond: {}",
                second.stderr
            );
        }
    }
    assert_eq!(Tracker::open(&out.join("crash")).unwrap().epochs.len(), 12);
}

#[test]
fn same_seed_same_metrics_and_unwritable_output_is_a_clear_error() {
    let tmp = TempDir::new("determinism");
    let file = two_variants().write(&tmp, "crash.toml");
    let runs: Vec<Tracker> = ["one", "two"]
        .iter()
        .map(|name| {
            let out = tmp.path().join(name);
            let r = run_experiment(&file, &out, &["--no-report", "--variant", "adam"]);
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            Tracker::open(&out.join("crash")).unwrap()
        })
        .collect();
    assert_same_rows(&runs[0].epochs, &runs[1].epochs, "two fresh runs");

    // An output path below a regular file cannot be created.
    let blocker = tmp.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let r = run_experiment(&file, &blocker.join("out"), &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot create the output directory"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"));
}

#[test]
fn a_full_disk_gives_a_clear_error_and_keeps_earlier_results() {
    let tmp = TempDir::new("full");
    let file = two_variants().write(&tmp, "crash.toml");
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &["--no-report", "--variant", "adam"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let exp = out.join("crash");
    let before = Tracker::open(&exp).unwrap();
    let metrics_before = std::fs::read(exp.join("metrics.parquet")).unwrap();

    // The second variant runs on a "disk" that fills after a few writes.
    let result = Cli::run(&file, &out)
        .arg("--no-report")
        .env("UNET_LAB_FAIL_WRITES_AFTER", "4")
        .output();
    let stderr = &result.stderr;
    assert_ne!(result.code, Some(0), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Earlier results are intact and readable; no temporary files are left behind.
    let after = Tracker::open(&exp).unwrap();
    assert!(after.epochs.len() >= before.epochs.len());
    assert_same_rows(
        &after
            .epochs
            .iter()
            .filter(|r| r.variant == "adam")
            .cloned()
            .collect::<Vec<_>>(),
        &before.epochs,
        "adam rows after the failed run",
    );
    assert!(std::fs::read(exp.join("metrics.parquet")).unwrap().len() >= metrics_before.len() / 2);
    fn temp_files(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                found.extend(temp_files(&p));
            } else if p.to_string_lossy().contains(".tmp-") {
                found.push(p.display().to_string());
            }
        }
        found
    }
    assert!(temp_files(&exp).is_empty(), "{:?}", temp_files(&exp));
    // With space again, the run finishes the second variant.
    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(Tracker::open(&exp).unwrap().epochs.len(), 12);
}

/// A study whose `validate --json` and `tasks` print far more than a pipe holds (300
/// variants, 6000 tasks), so that the reader always leaves before the writer is done.
fn large_study(tmp: &TempDir) -> std::path::PathBuf {
    let lrs: Vec<String> = (1..=30).map(|i| format!("{}e-4", i)).collect();
    let seeds: Vec<String> = (0..20).map(|s| s.to_string()).collect();
    let text = format!(
        "seeds = [{}]\n[grid]\n\"train.lr\" = [{}]\n\"train.epochs\" = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n",
        seeds.join(", "),
        lrs.join(", ")
    );
    write_experiment(tmp, "large.toml", &text)
}

#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = TempDir::new("pipe");
    let file = large_study(&tmp);
    for args in [vec!["validate", "--json"], vec!["tasks"]] {
        // `unet-lab … | head -1`: read one line, then close the pipe.
        let mut child = Cli::new()
            .args(&args)
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!first.is_empty(), "{args:?}: no output");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        // The write after the reader left ends the process by SIGPIPE, as it would `cat`.
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn more_jobs_than_tasks_start_one_worker_per_task() {
    let tmp = TempDir::new("jobs-cap");
    let file = Study::bare("one")
        .count(16)
        .widths(&[2, 4])
        .epochs(1)
        .write(&tmp, "one.toml");
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &["--no-report", "--jobs", "3"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "note: --jobs 3 for 1 task(s): starting 1 worker process(es), one per task\n"
        ),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("1 tasks, 1 worker processes"),
        "{}",
        r.stderr
    );
}

/// Width and height of a GIF (its logical screen).
fn gif_size(path: &Path) -> (usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..3], b"GIF");
    let le = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
    (le(6), le(8))
}

#[test]
fn pictures_of_tall_images_are_scaled_to_fit_their_format() {
    // Two validation samples of 8192 × 8, enlarged 4× for legibility, would make a
    // progress.gif 65588 pixels tall: past GIF's 65535.
    let tmp = TempDir::new("tall");
    let file = write_experiment(
        &tmp,
        "tall.toml",
        "name = \"tall\"\n[data]\nsize = [8192, 8]\ncount = 8\nsubjects = 2\n[model]\nwidths = [2]\n\
         [train]\nepochs = 2\nbatch_size = 4\n[report]\nsamples = 2\n",
    );
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let note = "note: progress.gif would be 104×65588 pixels, more than a GIF picture may be here \
                (65535 a side, 16 megapixels): its panels are drawn at 32×32741 instead of \
                32×32768 (aspect ratio kept), as are those of any other picture too large\n";
    assert_eq!(r.stderr.matches(note).count(), 1, "{}", r.stderr);
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    let (w, h) = gif_size(&out.join("tall/base/progress.gif"));
    assert_eq!((w, h), (3 * 32 + 8, 44 + 2 * (32741 + 4)));
    // `report` draws the same pictures, and says so once too.
    let r = common::run_cli(&["report", out.join("tall").to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stderr.matches(note).count(), 1, "{}", r.stderr);
    assert_eq!(gif_size(&out.join("tall/base/progress.gif")), (w, h));
}

#[test]
fn a_checkpoint_of_another_network_is_refused_naming_the_file() {
    let tmp = TempDir::new("ckpt-shape");
    let file = Study::bare("two")
        .count(16)
        .epochs(1)
        .samples(1)
        .grid("model.widths", "{ small = [2, 4], wide = [3, 6] }")
        .write(&tmp, "two.toml");
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let best = |v: &str| out.join(format!("two/{v}/seed-0/checkpoints/best.mpk"));
    std::fs::copy(best("wide"), best("small")).unwrap();
    let input = tmp.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let png = unet_lab::util::png::encode(&[128; 40 * 30], 40, 30, false).unwrap();
    std::fs::write(input.join("a.png"), png).unwrap();
    let want = format!(
        "error: cannot load {}: parameter `inc.conv1.weight` has shape [3, 1, 3, 3] in the \
         checkpoint but [2, 1, 3, 3] in the network: it was saved by another network \
         (model.widths, model.presence_head, model.norm and train.loss decide the shapes)\n",
        best("small").display()
    );
    let run = out.join("two/small");
    let predict = common::run_cli(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        tmp.path().join("preds").to_str().unwrap(),
    ]);
    assert_eq!(predict.code, Some(1), "{}", predict.stderr);
    assert!(predict.stderr.ends_with(&want), "{}", predict.stderr);
    let tune = common::run_cli(&["tune", "--run", run.to_str().unwrap()]);
    assert_eq!(tune.code, Some(1), "{}", tune.stderr);
    assert!(tune.stderr.ends_with(&want), "{}", tune.stderr);
}

#[test]
fn edited_or_corrupt_run_files_are_errors_not_panics() {
    let tmp = TempDir::new("edited");
    let file = Study::bare("e")
        .count(16)
        .widths(&[2, 4])
        .epochs(1)
        .samples(1)
        .write(&tmp, "e.toml");
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let (exp, variant) = (out.join("e"), out.join("e/base"));
    let run = variant.join("seed-0");

    // A snapshot strip of another size than the run's images.
    let strip = run.join("snapshots/epoch-0001.png");
    let saved = std::fs::read(&strip).unwrap();
    std::fs::write(
        &strip,
        unet_lab::util::png::encode(&[0; 16], 4, 4, false).unwrap(),
    )
    .unwrap();
    // The report is rendered without the run's pictures, and says why.
    let r = common::run_cli(&["report", exp.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let want = format!(
        "warning: {} holds panels of 4×4, but images.png of 32×32: the snapshots of this run do \
         not belong together; the run's pictures are left out\n",
        strip.display()
    );
    assert_eq!(r.stderr.matches(&want).count(), 1, "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(!variant.join("overlay.png").exists());
    std::fs::write(&strip, saved).unwrap();

    // A Parquet file with a page header polars' reader unwraps (it panics on it).
    let metrics = run.join("metrics.parquet");
    let corrupt =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corrupt-page-header.parquet");
    std::fs::copy(corrupt, &metrics).unwrap();
    // polars decodes columns in parallel and reports the first failure: on one thread the
    // panicking column is always the first.
    let one_thread = [("POLARS_MAX_THREADS", std::ffi::OsStr::new("1"))];
    let r = common::run_cli_in(None, &["report", exp.to_str().unwrap()], &one_thread);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let want = format!(
        "error: {} is not a readable Parquet file: it is corrupt (the Parquet reader failed on \
         it)\n",
        metrics.display()
    );
    assert_eq!(r.stderr, want);

    // A manifest whose config no longer describes a network.
    for manifest in [variant.join("manifest.json"), run.join("manifest.json")] {
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        m["config"]["model"]["widths"] = serde_json::json!([]);
        std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    }
    let input = tmp.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let png = unet_lab::util::png::encode(&[128; 40 * 30], 40, 30, false).unwrap();
    std::fs::write(input.join("a.png"), png).unwrap();
    let predict = common::run_cli(&[
        "predict",
        "--run",
        variant.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--out",
        tmp.path().join("preds").to_str().unwrap(),
    ]);
    assert_eq!(predict.code, Some(1), "{}", predict.stderr);
    let want = format!(
        "error: {}: the config its manifest.json records does not describe a U-Net: \
         model.widths []: a U-Net has 1 to 8 levels of 1 to 4096 channels\n",
        variant.display()
    );
    assert!(predict.stderr.ends_with(&want), "{}", predict.stderr);
}

#[test]
fn flags_past_their_limits_are_usage_errors() {
    let widths = vec!["1"; 70].join(",");
    let cases: [(&[&str], &str); 4] = [
        (
            &["bench", "--widths", &widths],
            "error: --widths: 1 to 8 levels of 1 to 4096 channels\n",
        ),
        (
            &["bench", "--size", "1048576"],
            "error: --size 1048576: must be 8 to 8192\n",
        ),
        (
            &["bench", "--batch", "100000"],
            "error: --batch 100000: must be 1 to 4096\n",
        ),
        (
            &[
                "augment-preview",
                "experiments/mse_adam.toml",
                "--draws",
                "100000",
            ],
            "error: --samples must be 1 to 64 and --draws 0 to 64\n",
        ),
    ];
    for (args, want) in cases {
        let r = common::run_cli_in(Some(Path::new(env!("CARGO_MANIFEST_DIR"))), args, &[]);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr, want, "{args:?}");
    }
}
