//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("unet-lab-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn write_experiment(dir: &TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub struct CliResult {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The decode cache of the tests' runs: under the temp directory, never the user's
/// `~/.cache/unet-lab` (a test may still set its own `UNET_LAB_CACHE`).
pub fn test_cache() -> PathBuf {
    std::env::temp_dir().join("unet-lab-test-decode-cache")
}

pub fn run_cli(args: &[&str]) -> CliResult {
    run_cli_in(None, args, &[])
}

/// `unet-lab ARGS` in `dir` (else here), with `env` added to the tests' environment.
pub fn run_cli_in(
    dir: Option<&Path>,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> CliResult {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_unet-lab"));
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let out = cmd
        .args(args)
        .env("UNET_LAB_CACHE", test_cache())
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs");
    CliResult {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `unet-lab run FILE --out OUT` plus `extra` arguments.
pub fn run_experiment(file: &Path, out: &Path, extra: &[&str]) -> CliResult {
    let mut args = vec![
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_cli(&args)
}

/// Local `src` and `href` targets of a page (not anchors, not URLs with a scheme).
pub fn html_local_refs(html: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            let target = &rest[..end];
            if !target.starts_with('#') && !target.contains("://") && !target.starts_with("data:") {
                refs.push(target.to_string());
            }
        }
    }
    refs
}

/// The Chromium (or Chrome) binary, when one is installed.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new("which")
                .arg(c)
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// The DOM of `page` after headless Chromium loaded it (and ran its scripts).
pub fn chromium_dom(chromium: &str, page: &Path) -> String {
    let profile = page.with_file_name(format!(
        "chromium-profile-{}",
        page.file_stem().unwrap().to_string_lossy()
    ));
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.canonicalize().unwrap().display()))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Renders a page in headless Chromium, when installed, and checks every image loaded.
/// A copy of the page with a probe script is written next to it, so relative paths resolve
/// the same way; the probe writes its verdict into the DOM that Chromium dumps.
pub fn render_in_chromium(page: &Path) {
    let Some(chromium) = chromium() else {
        eprintln!("note: Chromium is not installed; skipping the browser rendering check");
        return;
    };
    let html = std::fs::read_to_string(page).unwrap();
    let probe = r#"<script>window.addEventListener("load",function(){var imgs=Array.from(document.images);var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0);}).map(function(i){return i.getAttribute("src");});var d=document.createElement("div");d.id="probe";d.textContent="IMAGES "+imgs.length+" BROKEN "+bad.length+" "+bad.join(",");document.body.appendChild(d);});</script>"#;
    let probed = page.with_file_name("probe-index.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let profile = page.with_file_name("chromium-profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!(
            "file://{}",
            probed.canonicalize().unwrap().display()
        ))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_file(&probed);
    let _ = std::fs::remove_dir_all(&profile);
    let verdict = dom
        .split("id=\"probe\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or_else(|| {
            panic!(
                "the probe did not run; Chromium printed:\n{dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        verdict.contains("BROKEN 0"),
        "images failed to load: {verdict}"
    );
    assert!(
        !verdict.starts_with("IMAGES 0"),
        "no images on the page: {verdict}"
    );
}

/// (variant, seed, epoch, split, loss, dice, iou) of a row.
pub type KeyValues = (String, u64, usize, String, f64, Option<f64>, Option<f64>);

/// The rows that must be identical across runs (timings excluded).
pub fn key_values(rows: &[unet_lab::track::EpochRow]) -> Vec<KeyValues> {
    let mut v: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.variant.clone(),
                r.seed,
                r.epoch,
                r.split.clone(),
                r.loss,
                r.dice,
                r.iou,
            )
        })
        .collect();
    v.sort_by(|a, b| (&a.0, a.1, a.2, &a.3).cmp(&(&b.0, b.1, b.2, &b.3)));
    v
}

/// Same keys, and losses and metrics within 1e-6 (the CPU backend is deterministic).
pub fn assert_same_rows(
    a: &[unet_lab::track::EpochRow],
    b: &[unet_lab::track::EpochRow],
    what: &str,
) {
    let (a, b) = (key_values(a), key_values(b));
    assert_eq!(a.len(), b.len(), "{what}: row counts differ");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.0, x.1, x.2, &x.3),
            (&y.0, y.1, y.2, &y.3),
            "{what}: keys differ"
        );
        assert!((x.4 - y.4).abs() <= 1e-6, "{what}: loss {x:?} vs {y:?}");
        let close = |p: Option<f64>, q: Option<f64>| match (p, q) {
            (Some(p), Some(q)) => (p - q).abs() <= 1e-6,
            (None, None) => true,
            _ => false,
        };
        assert!(
            close(x.5, y.5) && close(x.6, y.6),
            "{what}: metrics {x:?} vs {y:?}"
        );
    }
}

/// Step rows as (variant, seed, global step, loss), sorted; losses compared within 1e-6.
pub fn assert_same_steps(
    a: &[unet_lab::track::StepRow],
    b: &[unet_lab::track::StepRow],
    what: &str,
) {
    let key = |rows: &[unet_lab::track::StepRow]| {
        let mut v: Vec<(String, u64, usize, f64)> = rows
            .iter()
            .map(|s| (s.variant.clone(), s.seed, s.global_step, s.loss))
            .collect();
        v.sort_by(|x, y| (&x.0, x.1, x.2).cmp(&(&y.0, y.1, y.2)));
        v
    };
    let (a, b) = (key(a), key(b));
    assert_eq!(a.len(), b.len(), "{what}: step row counts differ");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.0, x.1, x.2),
            (&y.0, y.1, y.2),
            "{what}: step keys differ"
        );
        assert!(
            (x.3 - y.3).abs() <= 1e-6,
            "{what}: step loss {x:?} vs {y:?}"
        );
    }
}

/// Trains `file` in one process under `out` (no report): the reference rows of a study.
pub fn sequential_rows(file: &Path, out: &Path, experiment: &str) -> unet_lab::track::Tracker {
    let r = run_experiment(file, out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    unet_lab::track::Tracker::open(&out.join(experiment)).unwrap()
}

/// The dataset summary the first run of a variant recorded.
pub fn dataset_info(variant_dir: &Path) -> unet_lab::data::DatasetInfo {
    unet_lab::track::VariantManifest::load(variant_dir)
        .unwrap()
        .unwrap()
        .runs[0]
        .dataset
        .clone()
        .unwrap()
}

/// The validation Dice of predicting every mask empty (the share of empty masks) in the first
/// run of `variant`: the floor that "learned something" must clear, whatever epoch 1 scored.
pub fn empty_mask_share(exp_dir: &Path, variant: &str) -> f64 {
    let m = unet_lab::track::VariantManifest::load(&exp_dir.join(variant))
        .unwrap()
        .expect("a trained variant");
    let b = m.runs[0].best.breakdown.expect("a score breakdown");
    b.empty_images as f64 / (b.empty_images + b.nonempty_images) as f64
}
