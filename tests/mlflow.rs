//! The MLflow sink against a real `mlflow server` (SQLite store, artifact serving) started by
//! the test on a free localhost port — from the virtual environment `.ci/run` installs under
//! the cache, `UNET_LAB_MLFLOW`, or the PATH; without one the test says it was skipped. Read
//! back over the REST API: experiments, parent and child runs, params, every epoch's metrics
//! once, statuses, artifacts; a run killed and resumed; a server stopped mid-study, then
//! `mlflow-sync`. The bad-input tests need no server.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cli, Study, TempDir, run_experiment};
use serde_json::{Value, json};

fn mlflow_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("UNET_LAB_MLFLOW") {
        return Some(PathBuf::from(path));
    }
    let cached = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/unet-lab/mlflow-venv/bin/mlflow"))
        .filter(|p| p.exists());
    cached.or_else(|| {
        Command::new("which")
            .arg("mlflow")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `mlflow server`, in its own process group (stopped with its workers by PID).
struct Server {
    child: Child,
    uri: String,
}

impl Server {
    fn start(mlflow: &Path, dir: &Path, port: u16) -> Server {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
        let child = Command::new(mlflow)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.join("artifacts"))
            .args(["--workers", "1"])
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let server = Server {
            child,
            uri: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        while ureq::get(format!("{}/health", server.uri)).call().is_err() {
            assert!(
                Instant::now() < deadline,
                "mlflow server did not answer /health in 180 s; its log: {}",
                std::fs::read_to_string(dir.join(format!("server-{port}.log"))).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        server
    }

    /// SIGTERM to the group, SIGKILL after 10 s (uvicorn's graceful stop can hang).
    fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn post(uri: &str, call: &str, body: Value) -> Value {
    let text = ureq::post(format!("{uri}/api/2.0/mlflow/{call}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("{call}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn get(uri: &str, path: &str) -> Value {
    let text = ureq::get(format!("{uri}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn enc(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Every run of an experiment.
fn runs(uri: &str, experiment: &str) -> (String, Vec<Value>) {
    let e = get(
        uri,
        &format!(
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            enc(experiment)
        ),
    );
    let id = e["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let found = post(
        uri,
        "runs/search",
        json!({ "experiment_ids": [id], "max_results": 1000 }),
    );
    (id, found["runs"].as_array().cloned().unwrap_or_default())
}

fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

fn history(uri: &str, run_id: &str, key: &str) -> Vec<Value> {
    let v = get(
        uri,
        &format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}"),
    );
    let mut points = v["metrics"].as_array().cloned().unwrap_or_default();
    points.sort_by_key(|p| (p["step"].as_i64(), p["timestamp"].as_i64()));
    points
}

fn artifacts(uri: &str, experiment_id: &str, run_id: &str) -> Vec<String> {
    let v = get(
        uri,
        &format!("/api/2.0/mlflow-artifacts/artifacts?path={experiment_id}/{run_id}/artifacts"),
    );
    let mut names: Vec<String> = v["files"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f["path"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// What the server holds of an experiment, without its ids: each run's name, status, times,
/// params, tags (but the parent's id), every metric's history and its artifacts.
fn content(uri: &str, experiment: &str) -> Value {
    let (id, runs) = runs(uri, experiment);
    let mut out: Vec<Value> = runs
        .iter()
        .map(|run| {
            let info = &run["info"];
            let run_id = info["run_id"].as_str().unwrap();
            let mut params: Vec<Value> = run["data"]["params"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            params.sort_by_key(|p| p["key"].as_str().unwrap_or_default().to_string());
            let mut tags: Vec<Value> = run["data"]["tags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t["key"] != "mlflow.parentRunId")
                .collect();
            tags.sort_by_key(|t| t["key"].as_str().unwrap_or_default().to_string());
            let mut keys: Vec<String> = run["data"]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m["key"].as_str().map(str::to_string))
                .collect();
            keys.sort();
            let metrics: Vec<Value> = keys
                .iter()
                .map(|k| json!({ "key": k, "history": history(uri, run_id, k) }))
                .collect();
            json!({
                "name": info["run_name"],
                "status": info["status"],
                "start_time": info["start_time"],
                "end_time": info["end_time"],
                "params": params,
                "tags": tags,
                "metrics": metrics,
                "artifacts": artifacts(uri, &id, run_id),
            })
        })
        .collect();
    out.sort_by_key(|r| r["name"].as_str().unwrap_or_default().to_string());
    Value::Array(out)
}

/// `mlflow-sync DIR --uri URI` into the MLflow experiment `experiment`; it must succeed.
fn sync_study(uri: &str, dir: &Path, experiment: &str) {
    let sync = Cli::new()
        .args(["mlflow-sync", dir.to_str().unwrap(), "--uri", uri])
        .env("MLFLOW_EXPERIMENT_NAME", experiment)
        .output();
    assert_eq!(sync.code, Some(0), "{}", sync.stderr);
}

fn state(run_dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("mlflow.json")).unwrap()).unwrap()
}

#[test]
fn a_study_logs_to_a_real_mlflow_server_resumes_and_syncs_after_an_outage() {
    let Some(mlflow) = mlflow_binary() else {
        eprintln!(
            "note: skipped: no mlflow (`.ci/run` installs it in ~/.cache/unet-lab/mlflow-venv; \
             or set UNET_LAB_MLFLOW)"
        );
        return;
    };
    let tmp = TempDir::new("mlflow");
    let port = free_port();
    let mut server = Server::start(&mlflow, tmp.path(), port);
    let uri = server.uri.clone();

    // Live: 2 variants × 2 seeds, into an experiment with a unicode name.
    let file = Study::new("tracked")
        .epochs(2)
        .seeds(&[0, 1])
        .set("data.test_fraction", "0.25")
        .write(&tmp, "tracked.toml");
    let out = tmp.path().join("live");
    let live_name = "Nerv-Studie ü 神经";
    let run = Cli::run(&file, &out)
        .args(["--mlflow", &uri])
        .env("MLFLOW_EXPERIMENT_NAME", live_name)
        .output();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("warning: MLflow"), "{}", run.stderr);
    let (experiment_id, found) = runs(&uri, live_name);
    assert_eq!(found.len(), 6, "2 parents + 4 children: {found:#?}");
    let parents: Vec<&Value> = found
        .iter()
        .filter(|r| tag(r, "mlflow.parentRunId").is_none())
        .collect();
    let children: Vec<&Value> = found
        .iter()
        .filter(|r| tag(r, "mlflow.parentRunId").is_some())
        .collect();
    assert_eq!((parents.len(), children.len()), (2, 4));
    let parent_ids: Vec<&str> = parents
        .iter()
        .map(|p| p["info"]["run_id"].as_str().unwrap())
        .collect();
    for child in &children {
        assert!(parent_ids.contains(&tag(child, "mlflow.parentRunId").unwrap()));
        assert_eq!(child["info"]["status"], "FINISHED");
        let params = child["data"]["params"].as_array().unwrap();
        let param = |k: &str| {
            params
                .iter()
                .find(|p| p["key"] == k)
                .and_then(|p| p["value"].as_str())
        };
        assert_eq!(param("train.lr"), Some("0.003"));
        assert_eq!(param("train.epochs"), Some("2"));
        assert!(param("config_hash").is_some_and(|h| h.len() == 16));
        let run_id = child["info"]["run_id"].as_str().unwrap();
        for key in ["train_loss", "val_loss", "val_dice"] {
            let steps: Vec<i64> = history(&uri, run_id, key)
                .iter()
                .map(|p| p["step"].as_i64().unwrap())
                .collect();
            assert_eq!(steps, [1, 2], "{key} of {}", child["info"]["run_name"]);
        }
        assert_eq!(history(&uri, run_id, "test_dice").len(), 1);
        assert!(tag(child, "unet_lab.level.train.optimizer").is_some());
    }
    for parent in &parents {
        assert_eq!(parent["info"]["status"], "FINISHED");
        let names = artifacts(
            &uri,
            &experiment_id,
            parent["info"]["run_id"].as_str().unwrap(),
        );
        assert!(
            names.contains(&"overlay.png".to_string()) && names.contains(&"study".to_string()),
            "{names:?}"
        );
    }

    // The live study synced into a fresh experiment holds exactly what live logging sent.
    let synced_name = "tracked, synced";
    sync_study(&uri, &out.join("tracked"), synced_name);
    assert_eq!(content(&uri, live_name), content(&uri, synced_name));

    // Killed mid-way and resumed: the same MLflow run, every epoch once.
    let long = Study::new("resumed")
        .one_variant()
        .epochs(6)
        .count(256)
        .write(&tmp, "resumed.toml");
    let out_r = tmp.path().join("resumed");
    let run_dir = out_r.join("resumed/base/seed-0");
    let mut child = Cli::run(&long, &out_r)
        .args(["--mlflow", &uri])
        .stderr(Stdio::null())
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(120);
    let before = loop {
        let s = std::fs::read_to_string(run_dir.join("mlflow.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        if let Some(s) = s.filter(|s| s["epochs_sent"].as_u64().is_some_and(|e| e >= 2)) {
            break s;
        }
        assert!(Instant::now() < deadline, "no epoch reached the server");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        before["epochs_sent"].as_u64().unwrap() < 6,
        "the run ended before the kill"
    );
    let resumed = run_experiment(&long, &out_r, &["--mlflow", &uri]);
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    let after = state(&run_dir);
    assert_eq!(
        after["run_id"], before["run_id"],
        "the resumed run logged into another MLflow run"
    );
    let steps: Vec<i64> = history(&uri, after["run_id"].as_str().unwrap(), "val_loss")
        .iter()
        .map(|p| p["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6]);

    // The server stops mid-study: the study completes, one warning per run at most, and
    // `mlflow-sync` afterwards gives what a sync of the whole study gives.
    // Slower runs than above, so that the study is still training when the server stops.
    let slow = Study::new("outage")
        .epochs(4)
        .count(256)
        .seeds(&[0, 1])
        .write(&tmp, "outage.toml");
    let out_o = tmp.path().join("outage");
    let outage_name = "outage, live then synced";
    let training = Cli::run(&slow, &out_o)
        .args(["--mlflow", &uri])
        .env("MLFLOW_EXPERIMENT_NAME", outage_name)
        .stderr(Stdio::piped())
        .spawn();
    let first = out_o.join("outage/adam/seed-0");
    let deadline = Instant::now() + Duration::from_secs(120);
    let first_delivered = || {
        std::fs::read_to_string(first.join("mlflow.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|s| s["epochs_sent"].as_u64())
            .unwrap_or(0)
    };
    while first_delivered() == 0 {
        assert!(Instant::now() < deadline, "no epoch reached the server");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.stop();
    let ended = training.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&ended.stderr);
    assert_eq!(ended.status.code(), Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: MLflow"))
        .collect();
    assert!(!warnings.is_empty(), "{stderr}");
    for run in ["adam/seed-0", "adam/seed-1", "sgd/seed-0", "sgd/seed-1"] {
        assert!(
            warnings.iter().filter(|w| w.contains(run)).count() <= 1,
            "{stderr}"
        );
    }
    let last = out_o.join("outage/sgd/seed-1");
    assert!(
        std::fs::read_to_string(last.join("mlflow.json"))
            .unwrap()
            .contains("\"pending\""),
        "the undelivered run records it"
    );
    server = Server::start(&mlflow, tmp.path(), port);
    sync_study(&uri, &out_o.join("outage"), outage_name);
    let full_name = "outage, all synced";
    sync_study(&uri, &out_o.join("outage"), full_name);
    assert_eq!(content(&uri, outage_name), content(&uri, full_name));
    drop(server);
}

#[test]
fn a_bad_tracking_address_is_refused_before_anything_is_written() {
    let tmp = TempDir::new("mlflow-bad-uri");
    let file = Study::new("bad").epochs(1).write(&tmp, "bad.toml");
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &["--mlflow", "ftp://tracker:21"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "error: --mlflow: \"ftp://tracker:21\": unet-lab logs to an MLflow tracking server over \
         its REST API, so the address must start with http:// or https:// (not \"ftp\"); for a \
         local store, start `mlflow server` and give its http://HOST:PORT\n"
    );
    let r = Cli::run(&file, &out)
        .env("MLFLOW_TRACKING_URI", "file:///tmp/mlruns")
        .output();
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with("error: MLFLOW_TRACKING_URI: \"file:///tmp/mlruns\""),
        "{}",
        r.stderr
    );
    let in_file = common::write_experiment(
        &tmp,
        "track.toml",
        &format!("{}[track]\nmlflow = \"mlruns\"\n", Study::new("t").text()),
    );
    let r = run_experiment(&in_file, &out, &[]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains("track.toml:") && r.stderr.contains("key `track.mlflow`"),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "a refused run wrote {}", out.display());
}

/// A server that answers every request with 500 and MLflow's error body.
fn failing_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            use std::io::{BufRead, Read, Write};
            let mut stream = stream;
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let answer = r#"{"error_code": "INTERNAL_ERROR", "message": "database is locked"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn an_unreachable_or_failing_server_costs_a_warning_and_loses_nothing() {
    let tmp = TempDir::new("mlflow-down");
    let file = Study::new("down").epochs(2).write(&tmp, "down.toml");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let failing = failing_server();
    for (uri, says) in [
        (closed.as_str(), "cannot reach the MLflow server at"),
        (
            failing.as_str(),
            "answered 500 to experiments/create: database is locked",
        ),
    ] {
        let out = tmp
            .path()
            .join(format!("out-{}", uri.rsplit(':').next().unwrap()));
        let r = run_experiment(&file, &out, &["--mlflow", uri]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        let warnings: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning: MLflow"))
            .collect();
        assert!(warnings.iter().any(|w| w.contains(says)), "{}", r.stderr);
        // One per run at most, plus the end's summary: never one per epoch.
        assert!(warnings.len() <= 3, "{}", r.stderr);
        assert!(r.stderr.contains("mlflow-sync"), "{}", r.stderr);
        let (_, stored) = unet_lab::track::merge::read(&out.join("down")).unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored.iter().all(|s| s.epochs.iter().any(|e| e.epoch == 2)));
        let pending = state(&out.join("down/adam/seed-0"));
        assert!(
            pending["pending"]
                .as_str()
                .is_some_and(|p| p.contains(says)),
            "{pending}"
        );
    }
}
