//! Everyday use: overrides from the command line (`--set`, `--grid`, `--epochs`), a study's
//! page served over HTTP, and `compare` across studies.

mod common;

use common::{Study, TempDir, run_cli, run_experiment};
use serde_json::Value;

fn tasks_json(args: &[&str]) -> Vec<Value> {
    let out = run_cli(args);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn overrides_are_typed_by_the_schema_and_errors_name_the_flag() {
    let tmp = TempDir::new("override-errors");
    let file = Study::new("ov").write(&tmp, "ov.toml");
    let f = file.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--set", "train.lr=abc"],
            "error: --set train.lr=abc: key `train.lr`: expected a number, found a string\n",
        ),
        (
            &["--set", "train.lrr=1"],
            "error: --set train.lrr=1: key `train.lrr`: unknown key `lrr` (did you mean `lr`?)\n",
        ),
        (
            &["--set", "model.norm=bogus"],
            "error: --set model.norm=bogus: key `model.norm`: unknown value \"bogus\"; allowed: \
             \"none\", \"batch\", \"instance\"\n",
        ),
        (
            &["--set", "train.optimizer=sgd"],
            "error: --set train.optimizer=sgd: key `train.optimizer`: the file's [grid] varies \
             train.optimizer; change its levels with --grid train.optimizer=V1,V2\n",
        ),
        (
            &["--grid", "train.loss=mse,nope"],
            "error: --grid train.loss=mse,nope: key `train.loss`: unknown value \"nope\"; allowed: ",
        ),
        (
            &["--set", "train.lr"],
            "error: invalid value 'train.lr' for '--set <KEY=VALUE>': expected KEY=VALUE, e.g. \
             train.lr=1e-4\n",
        ),
    ];
    for (flags, expected) in cases {
        for command in ["validate", "tasks", "run", "slurm"] {
            let out = tmp.path().join("out");
            let mut args = vec![command, f, "--out", out.to_str().unwrap()];
            if command == "validate" {
                args.truncate(2);
            }
            args.extend_from_slice(flags);
            let result = run_cli(&args);
            assert_eq!(
                result.code,
                Some(2),
                "{command} {flags:?}: {}",
                result.stderr
            );
            assert!(
                result.stderr.starts_with(expected),
                "{command} {flags:?}:\n{}\nexpected it to start with\n{expected}",
                result.stderr
            );
            assert!(!out.exists(), "{command} {flags:?} wrote before failing");
        }
    }
}

#[test]
fn a_grid_from_the_command_line_adds_an_axis_and_changes_every_hash() {
    let tmp = TempDir::new("override-grid");
    let file = Study::new("ov").write(&tmp, "ov.toml");
    let f = file.to_str().unwrap();
    let base = tasks_json(&["tasks", f, "--json"]);
    assert_eq!(base.len(), 2);
    let grid = tasks_json(&["tasks", f, "--json", "--grid", "train.lr=1e-3,3e-3"]);
    let names: Vec<&str> = grid
        .iter()
        .map(|t| t["variant"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["adam-0.001", "adam-0.003", "sgd-0.001", "sgd-0.003"]
    );
    // The same variant with the file's own lr (3e-3) is the same config, in another study.
    assert_eq!(grid[1]["config_hash"], base[0]["config_hash"]);
    assert!(
        grid[1]["dir"]
            .as_str()
            .unwrap()
            .contains("ov_train.lr_1e-3_3e-3/adam-0.003/seed-0")
    );
    let epochs = tasks_json(&["tasks", f, "--json", "--epochs", "1"]);
    assert!(
        epochs
            .iter()
            .zip(&base)
            .all(|(e, b)| e["config_hash"] != b["config_hash"]),
        "--epochs changes every task's config"
    );
    assert_eq!(
        epochs,
        tasks_json(&["tasks", f, "--json", "--set", "train.epochs=1"]),
        "--epochs N is --set train.epochs=N"
    );
}

#[test]
fn an_overridden_study_has_its_own_directory_and_its_workers_see_the_overrides() {
    let tmp = TempDir::new("override-run");
    let file = Study::new("ov").epochs(2).write(&tmp, "ov.toml");
    let out = tmp.path().join("out");
    let run = run_experiment(
        &file,
        &out,
        &["--set", "train.epochs=1", "--jobs", "2", "--no-report"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!out.join("ov").exists(), "the file's own study was touched");
    let exp = out.join("ov_train.epochs_1");
    let saved = std::fs::read_to_string(exp.join("experiment.toml")).unwrap();
    assert!(
        saved.starts_with(&format!("# {} --set train.epochs=1\n", file.display())),
        "{saved}"
    );
    assert!(saved.contains("epochs = 1\n") && saved.contains("name = \"ov+train.epochs=1\""));
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(exp.join("plan.json")).unwrap()).unwrap();
    assert_eq!(
        plan["edits"],
        serde_json::json!([{ "flag": "set", "arg": "train.epochs=1" }])
    );
    // The workers trained the overridden config: one epoch per run.
    let (_, runs) = unet_lab::track::merge::read(&exp).unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter().all(|r| r.epochs.iter().all(|e| e.epoch == 1)),
        "a worker missed --set"
    );

    // Resuming with the same flags, or from the saved experiment.toml, is the same study.
    for again in [
        run_experiment(&file, &out, &["--set", "train.epochs=1"]),
        run_experiment(&exp.join("experiment.toml"), &out, &[]),
    ] {
        assert_eq!(again.code, Some(0), "{}", again.stderr);
        assert!(
            again.stderr.contains("(2 already done)") || again.stdout.contains("(2 already done)"),
            "{}{}",
            again.stdout,
            again.stderr
        );
    }
    let status = run_cli(&["status", exp.to_str().unwrap()]);
    assert_eq!(status.code, Some(0), "{}", status.stdout);
}

/// A running `unet-lab serve`, stopped when dropped.
struct Served {
    child: std::process::Child,
    addr: String,
    /// Kept open: the server ends quietly, like `cat`, when its standard output is closed.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Served {
    fn start(dirs: &[&std::path::Path]) -> Served {
        use std::io::BufRead;
        let mut child = common::Cli::new()
            .arg("serve")
            .args(dirs)
            .args(["--port", "0"])
            .stdout(std::process::Stdio::piped())
            .spawn();
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .strip_prefix("serving at http://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("serve printed {line:?}"))
            .to_string();
        Served {
            child,
            addr,
            _stdout: stdout,
        }
    }

    /// (status, headers, body) of one request (HTTP/1.0: the body comes whole, not chunked).
    fn request(&self, method: &str, path: &str) -> (u16, String, Vec<u8>) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("{method} {path}: answered {answer:?}"));
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, head, answer[split + 4..].to_vec())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-epoch study `name` trained under `tmp/out`: its directory.
fn trained_study(tmp: &TempDir, name: &str) -> std::path::PathBuf {
    let file = Study::new(name)
        .epochs(1)
        .write(tmp, &format!("{name}.toml"));
    let out = tmp.path().join("out");
    let run = run_experiment(&file, &out, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    out.join(name)
}

#[test]
fn serve_answers_the_page_and_its_pictures_read_only_and_chromium_renders_it() {
    let tmp = TempDir::new("serve");
    let exp = trained_study(&tmp, "served");
    let served = Served::start(&[&exp]);

    let (status, head, page) = served.request("GET", "/");
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains("Content-Type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        page == std::fs::read(exp.join("index.html")).unwrap(),
        "the page differs"
    );
    let html = String::from_utf8(page).unwrap();
    let picture = common::html_local_refs(&html)
        .into_iter()
        .find(|r| r.ends_with(".png"))
        .expect("the page shows a picture");
    let (status, head, png) = served.request("GET", &format!("/{picture}"));
    assert_eq!(status, 200, "{picture}: {head}");
    assert!(head.contains("Content-Type: image/png"), "{head}");
    assert!(
        png == std::fs::read(exp.join(&picture)).unwrap(),
        "{picture} differs"
    );
    assert_eq!(served.request("HEAD", "/").0, 200);
    assert_eq!(served.request("GET", "/../served.toml").0, 404);
    assert_eq!(served.request("GET", "/%2e%2e/served.toml").0, 404);
    assert_eq!(served.request("GET", "/nothing.png").0, 404);
    assert_eq!(served.request("POST", "/").0, 405);
    assert_eq!(served.request("DELETE", "/index.html").0, 405);
    assert!(exp.join("index.html").exists());

    let addr = served.addr.clone();
    common::render_served_in_chromium(&exp.join("index.html"), |probe| {
        format!(
            "http://{addr}/{}",
            probe.file_name().unwrap().to_string_lossy()
        )
    });
    drop(served);

    // Several studies: a listing at /, each under its name.
    let both = Served::start(&[&exp, &tmp.path().join("out")]);
    let (status, _, listing) = both.request("GET", "/");
    assert_eq!(status, 200);
    let listing = String::from_utf8(listing).unwrap();
    assert!(
        listing.contains("href=\"served/\"") && listing.contains("href=\"out/\""),
        "{listing}"
    );
    let (status, head, _) = both.request("GET", "/served");
    assert_eq!(status, 301);
    assert!(head.contains("Location: /served/"), "{head}");
    assert!(both.request("GET", "/served/").2 == html.as_bytes());
}

#[test]
fn serve_answers_a_burst_of_connections_beside_idle_ones() {
    use std::io::{Read, Write};
    let tmp = TempDir::new("serve-burst");
    let exp = trained_study(&tmp, "burst");
    let page = std::fs::read(exp.join("index.html")).unwrap();
    let served = Served::start(&[&exp]);
    // A browser's spare connections: open, silent.
    let idle: Vec<_> = (0..8)
        .map(|_| std::net::TcpStream::connect(&served.addr).unwrap())
        .collect();
    // Then a burst of keep-alive requests, all at once, as a page asks for its pictures.
    let start = std::sync::Arc::new(std::sync::Barrier::new(24));
    let answers: Vec<_> = (0..24)
        .map(|_| {
            let (addr, start) = (served.addr.clone(), std::sync::Arc::clone(&start));
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(&addr).unwrap();
                stream
                    .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                    .unwrap();
                start.wait();
                write!(
                    stream,
                    "GET /index.html HTTP/1.1\r\nHost: {addr}\r\nConnection: keep-alive\r\n\r\n"
                )
                .unwrap();
                let mut answer = Vec::new();
                stream
                    .read_to_end(&mut answer)
                    .expect("answered and closed within 5 s");
                answer
            })
        })
        .collect();
    for answer in answers {
        let answer = answer.join().unwrap();
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&answer[..split]);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Connection: close"), "{head}");
        assert!(answer[split + 4..] == page[..], "the page differs");
    }
    drop(idle);
}

#[test]
fn serve_refuses_a_file_and_a_taken_port() {
    let tmp = TempDir::new("serve-errors");
    let file = Study::new("x").write(&tmp, "x.toml");
    let out = run_cli(&["serve", file.to_str().unwrap(), "--port", "0"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert_eq!(
        out.stderr,
        format!(
            "error: {} is a file; serve takes a study's directory (the one holding index.html)\n",
            file.display()
        )
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run_cli(&["serve", tmp.path().to_str().unwrap(), "--port", &port]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!(
            "error: --port {port}: cannot listen on 127.0.0.1:{port}: "
        )),
        "{}",
        out.stderr
    );
}

/// (seed → test Dice, seed → best validation Dice) of a one-run-per-seed variant.
/// (seed, score) pairs.
type BySeed = Vec<(u64, f64)>;

fn scores_by_seed(exp: &std::path::Path, variant: &str) -> (BySeed, BySeed) {
    let (_, runs) = unet_lab::track::merge::read(exp).unwrap();
    let runs: Vec<_> = runs
        .into_iter()
        .filter(|r| r.manifest.variant == variant)
        .collect();
    let test = runs
        .iter()
        .map(|r| (r.manifest.record.seed, r.manifest.record.test.unwrap().dice))
        .collect();
    let val = runs
        .iter()
        .map(|r| {
            let best = r
                .epochs
                .iter()
                .filter(|e| e.split == "val")
                .filter_map(|e| e.dice)
                .fold(f64::NEG_INFINITY, f64::max);
            (r.manifest.record.seed, best)
        })
        .collect();
    (test, val)
}

#[test]
fn compare_matches_variants_lists_the_differing_key_and_pairs_the_seeds() {
    let tmp = TempDir::new("compare");
    let file = Study::new("cmp")
        .epochs(1)
        .seeds(&[0, 1, 2])
        .set("data.test_fraction", "0.25")
        .write(&tmp, "cmp.toml");
    let out = tmp.path().join("out");
    for extra in [&[][..], &["--set", "train.lr=1e-2"][..]] {
        let run = run_experiment(&file, &out, extra);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
    let (a, b) = (out.join("cmp"), out.join("cmp_train.lr_1e-2"));
    let page = tmp.path().join("page");
    let args = |json: bool| {
        let mut v = vec![
            "compare".to_string(),
            a.display().to_string(),
            b.display().to_string(),
            "--out".into(),
            page.display().to_string(),
        ];
        if json {
            v.push("--json".into());
        }
        v
    };
    let json_out = common::Cli::new().args(args(true)).output();
    assert_eq!(json_out.code, Some(0), "{}", json_out.stderr);
    let diffs: Value = serde_json::from_str(&json_out.stdout).unwrap();
    let d = &diffs[0];
    assert_eq!(d["reference"], "cmp");
    assert_eq!(d["other"], "cmp+train.lr=1e-2");
    assert_eq!(d["unmatched"], serde_json::json!([]));
    let adam = &d["matches"][0];
    assert_eq!(adam["other_variant"], "adam");
    assert_eq!(adam["matched_by"], "name");
    assert_eq!(
        adam["differing_keys"],
        serde_json::json!([{ "key": "train.lr", "reference": "0.003", "other": "0.01" }])
    );

    // By hand: the paired differences (B − A) per seed, their mean and t(0.975, 2) interval.
    let (test_a, val_a) = scores_by_seed(&a, "adam");
    let (test_b, val_b) = scores_by_seed(&b, "adam");
    for (key, sa, sb) in [
        ("test_dice", &test_a, &test_b),
        ("val_dice", &val_a, &val_b),
    ] {
        let d: Vec<f64> = sb
            .iter()
            .map(|(seed, x)| x - sa.iter().find(|(s, _)| s == seed).unwrap().1)
            .collect();
        assert_eq!(d.len(), 3);
        let mean = d.iter().sum::<f64>() / 3.0;
        let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        let half = 4.302652729749464 * sd / 3f64.sqrt();
        let got = &adam[key];
        assert_eq!(got["paired_seeds"], 3, "{got}");
        assert!(
            (got["difference"].as_f64().unwrap() - mean).abs() < 1e-12,
            "{got}"
        );
        let interval = got["interval"].as_array().unwrap();
        assert!(
            (interval[0].as_f64().unwrap() - (mean - half)).abs() < 1e-9,
            "{got}"
        );
        assert!(
            (interval[1].as_f64().unwrap() - (mean + half)).abs() < 1e-9,
            "{got}"
        );
    }

    // The terminal table and the page say the same.
    let text = common::Cli::new().args(args(false)).output();
    assert_eq!(text.code, Some(0), "{}", text.stderr);
    assert!(
        text.stdout
            .starts_with("cmp+train.lr=1e-2 (B) against cmp (A):\nvariant"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("train.lr 0.003 → 0.01"),
        "{}",
        text.stdout
    );
    let html = std::fs::read_to_string(page.join("index.html")).unwrap();
    assert!(html.contains("train.lr 0.003 → 0.01"));
    assert!(html.contains("cmp+train.lr=1e-2 (B) against cmp (A)"));
}

#[test]
fn quiet_says_nothing_but_problems_and_verbose_shows_the_workers() {
    let tmp = TempDir::new("verbosity");
    let file = Study::new("talk").epochs(1).write(&tmp, "talk.toml");
    let out = tmp.path().join("out");
    let quiet = common::Cli::new()
        .args([
            "-q",
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output();
    assert_eq!(quiet.code, Some(0), "{}", quiet.stderr);
    assert_eq!(quiet.stderr, "", "-q printed on standard error");
    assert!(out.join("talk/index.html").exists());
    let verbose = run_experiment(
        &file,
        &out,
        &["-v", "--fresh", "--jobs", "2", "--no-report"],
    );
    assert_eq!(verbose.code, Some(0), "{}", verbose.stderr);
    assert!(
        verbose.stderr.contains("worker 0: '") && verbose.stderr.contains(" --worker --no-report"),
        "{}",
        verbose.stderr
    );
}
