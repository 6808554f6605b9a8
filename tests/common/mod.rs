//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

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

/// The tests' small study on synthetic data, rendered as an experiment file. [`Study::new`] is
/// the two-variant study most tests train: a grid over `train.optimizer` (adam, sgd) of Dice +
/// CE runs of 3 epochs at lr 3e-3 on 64 images of 32×32 from 4 subjects, seed 0 (unet-lab's
/// default), reporting 2 samples. [`Study::bare`] holds only the name and that data, every other
/// setting being unet-lab's default. The methods change what a test varies; a setting is
/// written once, where it was first set, in the order name, top-level keys, `[data]`,
/// `[model]`, `[train]`, `[augment]`, `[report]`, `[grid]`.
pub struct Study {
    /// (table, key, TOML value); the table is "" for top-level keys.
    entries: Vec<(&'static str, String, String)>,
}

const STUDY_TABLES: [&str; 7] = ["", "data", "model", "train", "augment", "report", "grid"];

impl Study {
    /// `name` and the synthetic data (64 images of 32×32, 4 subjects); all else by default.
    pub fn bare(name: &str) -> Study {
        Study {
            entries: Vec::new(),
        }
        .set("name", format!("{name:?}"))
        .set("data.size", "[32, 32]")
        .count(64)
        .subjects(4)
    }

    /// The small two-variant study (see [`Study`]).
    pub fn new(name: &str) -> Study {
        Study::bare(name)
            .loss("dice_ce")
            .epochs(3)
            .lr(3e-3)
            .samples(2)
            .grid("train.optimizer", r#"["adam", "sgd"]"#)
    }

    /// Sets `key` (`table.key`, or a top-level key) to the TOML `value`, in place if it is set.
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Study {
        let (table, key) = match key.split_once('.') {
            Some((table, key)) => (table, key.to_string()),
            None => ("", key.to_string()),
        };
        let table = *STUDY_TABLES
            .iter()
            .find(|t| **t == table)
            .unwrap_or_else(|| panic!("no table [{table}] in a study"));
        let value = value.into();
        match self.entries.iter_mut().find(|e| e.0 == table && e.1 == key) {
            Some(entry) => entry.2 = value,
            None => self.entries.push((table, key, value)),
        }
        self
    }

    pub fn seeds(self, seeds: &[u64]) -> Study {
        let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
        self.set("seeds", format!("[{}]", list.join(", ")))
    }

    pub fn count(self, images: usize) -> Study {
        self.set("data.count", images.to_string())
    }

    pub fn subjects(self, subjects: usize) -> Study {
        self.set("data.subjects", subjects.to_string())
    }

    pub fn widths(self, widths: &[usize]) -> Study {
        let list: Vec<String> = widths.iter().map(usize::to_string).collect();
        self.set("model.widths", format!("[{}]", list.join(", ")))
    }

    pub fn loss(self, loss: &str) -> Study {
        self.set("train.loss", format!("{loss:?}"))
    }

    pub fn epochs(self, epochs: usize) -> Study {
        self.set("train.epochs", epochs.to_string())
    }

    /// The learning rate, written as `3e-3`.
    pub fn lr(self, lr: f64) -> Study {
        self.set("train.lr", format!("{lr:e}"))
    }

    pub fn batch_size(self, batch: usize) -> Study {
        self.set("train.batch_size", batch.to_string())
    }

    /// Validation samples drawn in the report's pictures.
    pub fn samples(self, samples: usize) -> Study {
        self.set("report.samples", samples.to_string())
    }

    /// A grid axis: `axis` (e.g. `train.optimizer`) over the TOML `levels` (a list or a table).
    pub fn grid(self, axis: &str, levels: &str) -> Study {
        self.set(&format!("grid.\"{axis}\""), levels)
    }

    /// No grid: the one variant `base`.
    pub fn one_variant(mut self) -> Study {
        self.entries.retain(|e| e.0 != "grid");
        self
    }

    /// The experiment file's text.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for table in STUDY_TABLES {
            let mut entries = self.entries.iter().filter(|e| e.0 == table).peekable();
            if entries.peek().is_some() && !table.is_empty() {
                text.push_str(&format!("[{table}]\n"));
            }
            for (_, key, value) in entries {
                text.push_str(&format!("{key} = {value}\n"));
            }
        }
        text
    }

    /// Writes the file `name` in `dir`; its path.
    pub fn write(&self, dir: &TempDir, name: &str) -> PathBuf {
        write_experiment(dir, name, &self.text())
    }
}

/// Two variants with the same settings, "base" and "twin", trained for seeds until decided
/// (`seeds` is the plan, e.g. `{ min = 2, max = 4, step = 1 }`): every seed trains them
/// identically, so their contrast has no spread and stays undecided. Tiny and quick (128
/// images of 32×32, widths 4 and 8, 6 epochs), enough to start learning on some seeds.
pub fn twins_text(seeds: &str) -> String {
    format!(
        r#"name = "twins"
seeds = {seeds}
[data]
size = [32, 32]
count = 128
subjects = 4
[model]
widths = [4, 8]
[train]
loss = "dice_ce"
epochs = 6
batch_size = 8
lr = 3e-3
[report]
samples = 0
[[variant]]
name = "base"
[[variant]]
name = "twin"
"#
    )
}

/// What a finished run of the binary left: its exit, stdout and stderr.
pub struct CliResult {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for CliResult {
    fn from(out: Output) -> CliResult {
        CliResult {
            status: out.status,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The decode cache of the tests' runs: under the temp directory, never the user's
/// `~/.cache/unet-lab` (a test may still set its own `UNET_LAB_CACHE`).
pub fn test_cache() -> PathBuf {
    std::env::temp_dir().join("unet-lab-test-decode-cache")
}

/// The binary under test (for scripts that start it themselves; tests start it with [`Cli`]).
pub const BIN: &str = env!("CARGO_BIN_EXE_unet-lab");

/// One start of the unet-lab binary, the one way the tests start it: arguments, working
/// directory (else the tests'), environment (the tests', with `UNET_LAB_CACHE` set to
/// [`test_cache`] unless the test sets its own) and standard streams; then either
/// [`output`](Cli::output) waits for it to end, or [`spawn`](Cli::spawn) hands over the running
/// process (to read its stderr as it goes, signal or kill it, or race it against another).
pub struct Cli(Command);

impl Cli {
    /// `unet-lab` with no arguments yet.
    pub fn new() -> Cli {
        let mut cmd = Command::new(BIN);
        cmd.env("UNET_LAB_CACHE", test_cache());
        Cli(cmd)
    }

    /// `unet-lab run FILE --out OUT`; further arguments follow.
    pub fn run(file: &Path, out: &Path) -> Cli {
        Cli::new().arg("run").arg(file).arg("--out").arg(out)
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cli {
        self.0.arg(arg);
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Cli {
        self.0.args(args);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cli {
        self.0.current_dir(dir);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cli {
        self.0.env(key, value);
        self
    }

    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Cli {
        self.0.envs(vars);
        self
    }

    /// Where its stdout goes when spawned (captured by `output` unless set).
    pub fn stdout(mut self, to: Stdio) -> Cli {
        self.0.stdout(to);
        self
    }

    /// Where its stderr goes when spawned (captured by `output` unless set).
    pub fn stderr(mut self, to: Stdio) -> Cli {
        self.0.stderr(to);
        self
    }

    /// Runs it to the end: its exit, stdout and stderr.
    pub fn output(mut self) -> CliResult {
        self.0.output().expect("the binary runs").into()
    }

    /// Starts it and returns the running process; its streams are as set (else inherited).
    pub fn spawn(mut self) -> Child {
        self.0.spawn().expect("the binary starts")
    }
}

pub fn run_cli(args: &[&str]) -> CliResult {
    Cli::new().args(args).output()
}

/// `unet-lab ARGS` in `dir` (else here), with `env` added to the tests' environment.
pub fn run_cli_in(dir: Option<&Path>, args: &[&str], env: &[(&str, &OsStr)]) -> CliResult {
    let mut cli = Cli::new().args(args).envs(env.iter().copied());
    if let Some(dir) = dir {
        cli = cli.current_dir(dir);
    }
    cli.output()
}

/// `unet-lab run FILE --out OUT` plus `extra` arguments.
pub fn run_experiment(file: &Path, out: &Path, extra: &[&str]) -> CliResult {
    Cli::run(file, out).args(extra).output()
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

/// Headless Chromium dumping the DOM of the URL added last, with a profile of its own, at most
/// two minutes. Offline: every host name but localhost fails at once, so the browser's own
/// calls home (time, updates, accounts) cannot hold the page's load up while DNS times out.
fn headless_chromium(chromium: &str, profile: &Path) -> Command {
    let mut command = Command::new("timeout");
    command
        .args(["120", chromium])
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--allow-file-access-from-files",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// The DOM of `page` after headless Chromium loaded it (and ran its scripts).
pub fn chromium_dom(chromium: &str, page: &Path) -> String {
    let profile = page.with_file_name(format!(
        "chromium-profile-{}",
        page.file_stem().unwrap().to_string_lossy()
    ));
    let out = headless_chromium(chromium, &profile)
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
    probe_in_chromium(page, |probed| {
        format!("file://{}", probed.canonicalize().unwrap().display())
    });
}

/// [`render_in_chromium`] of a page served over HTTP: `url_of` turns the probe's path (next to
/// `page`, inside the served directory) into its URL.
pub fn render_served_in_chromium(page: &Path, url_of: impl Fn(&Path) -> String) {
    probe_in_chromium(page, url_of);
}

fn probe_in_chromium(page: &Path, url_of: impl Fn(&Path) -> String) {
    let Some(chromium) = chromium() else {
        eprintln!("note: Chromium is not installed; skipping the browser rendering check");
        return;
    };
    let html = std::fs::read_to_string(page).unwrap();
    let probe = r#"<script>window.addEventListener("load",function(){var imgs=Array.from(document.images);var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0);}).map(function(i){return i.getAttribute("src");});var d=document.createElement("div");d.id="probe";d.textContent="IMAGES "+imgs.length+" BROKEN "+bad.length+" "+bad.join(",");document.body.appendChild(d);});</script>"#;
    let probed = page.with_file_name("probe-index.html");
    std::fs::write(&probed, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let profile = page.with_file_name("chromium-profile");
    let out = headless_chromium(chromium, &profile)
        .arg("--virtual-time-budget=10000")
        .arg(url_of(&probed))
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
