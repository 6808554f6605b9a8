//! Every malformed file in tests/configs/bad must fail with its expected message, a position,
//! exit code 2 and no panic, and write nothing.

mod common;

use std::path::{Path, PathBuf};

use common::Cli;

fn bad_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn expected(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()))
        .to_string()
}

#[test]
fn corpus_is_large_enough() {
    assert!(
        bad_files().len() >= 25,
        "only {} malformed files",
        bad_files().len()
    );
}

#[test]
fn each_bad_file_gives_its_message_and_position() {
    for path in bad_files() {
        let want = expected(&path);
        let err = match unet_lab::config::load(&path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e,
        };
        let shown = err.to_string();
        assert!(
            shown.contains(&want),
            "{}:\n  expected: {want}\n  got: {shown}",
            path.display()
        );
        assert!(shown.starts_with(&path.display().to_string()), "{shown}");
        let stem = path.file_stem().unwrap().to_string_lossy();
        if stem != "empty_file" && stem != "only_comments" {
            let (line, col) = err
                .position
                .unwrap_or_else(|| panic!("{}: no position in {shown}", path.display()));
            assert!(
                line >= 2 && col >= 1,
                "{}: position {line}:{col}",
                path.display()
            );
        }
    }
}

#[test]
fn cli_exits_2_without_panicking_or_writing() {
    let out = std::env::temp_dir().join(format!("unet-lab-bad-{}", std::process::id()));
    for path in bad_files() {
        for verb in ["validate", "run"] {
            let mut cli = Cli::new().arg(verb).arg(&path);
            if verb == "run" {
                cli = cli.arg("--out").arg(&out);
            }
            let result = cli.output();
            let stderr = &result.stderr;
            assert_eq!(result.code, Some(2), "{verb} {}: {stderr}", path.display());
            assert!(!stderr.contains("panicked"), "{stderr}");
            assert!(
                stderr.contains(&expected(&path)),
                "{verb} {}: {stderr}",
                path.display()
            );
        }
    }
    assert!(!out.exists(), "a bad config wrote {}", out.display());
}

#[test]
fn unknown_variant_selection_is_a_usage_error() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/mse_adam.toml");
    let result = Cli::new()
        .args(["run", "--variant", "nope", "--out", "/nonexistent/never"])
        .arg(&file)
        .output();
    assert_eq!(result.code, Some(2));
    assert!(result.stderr.contains("no variant named \"nope\""));
    // A near miss gets a hint.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/kaggle_tricks.toml");
    let result = Cli::new()
        .args([
            "run",
            "--variant",
            "all-trick",
            "--out",
            "/nonexistent/never",
        ])
        .arg(&file)
        .output();
    assert_eq!(result.code, Some(2));
    assert!(
        result.stderr.contains(
            "error: --variant all-trick: no variant named \"all-trick\" in this experiment (did you \
             mean \"all-tricks\"?); its variants: blog, presence-head"
        ),
        "{}",
        result.stderr
    );
}

#[test]
fn shipped_experiments_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let load =
        |name: &str| unet_lab::config::load(&dir.join(name)).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        unet_lab::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(load("mse_adam.toml").variants.len(), 1);
    assert!(load("ablation.toml").variants.len() >= 8);
    let study = load("blog_vs_paper.toml");
    // 3 seeds first, up to 5 while undecided.
    assert_eq!((study.variants.len(), study.seeds.len()), (8, 5));
    assert_eq!((study.decide.first_seeds, study.decide.step), (3, 2));
    assert_eq!(
        study.axes,
        vec!["model.widths", "train.loss", "train.optimizer"]
    );
    let faithful = load("paper_faithful.toml");
    let cfg = &faithful.variants[0].config;
    assert_eq!(cfg.model.padding, unet_lab::config::Padding::Valid);
    assert_eq!(cfg.train.loss, unet_lab::config::LossKind::WeightedCe);
    assert!(cfg.augment.elastic && cfg.model.dropout == 0.5 && cfg.train.batch_size == 1);

    // `validate --json` lists the expanded variants with their resolved settings.
    let out = Cli::new()
        .args(["validate", "--json"])
        .arg(dir.join("ablation.toml"))
        .output();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let variants = json.as_array().unwrap();
    assert!(variants.len() >= 8);
    assert_eq!(variants[0]["name"], "reduced-mse-adam");
    assert_eq!(variants[0]["train"]["loss"], "mse");
    assert_eq!(
        variants[0]["model"]["widths"],
        serde_json::json!([3, 6, 12, 24, 48])
    );
}

#[test]
fn validate_shows_what_each_variant_changes() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/kaggle_tricks.toml");
    let text = Cli::new().arg("validate").arg(&file).output();
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout.contains("6 variant(s) × 20 seed(s) = 120 task(s) at most (seeds until decided: 3 first, then 2 more per look while undecided)"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(
            "differs from the base: model.activation = \"elu\", model.norm = \"batch\"\n"
        ),
        "{}",
        text.stdout
    );
    let json = Cli::new().args(["validate", "--json"]).arg(&file).output();
    let variants: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(variants[0]["overrides"], serde_json::json!({}));
    assert_eq!(
        variants[5]["overrides"],
        serde_json::json!({
            "model.activation": "elu",
            "model.norm": "batch",
            "model.presence_head": true,
            "train.test_tta": "flips",
            "train.tune": true
        })
    );
}
