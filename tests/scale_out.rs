//! Studies on several processes: tasks, per-run storage, `--task`/`--jobs` workers on one
//! directory (one killed with SIGKILL), lock races, plans, status, migration of the old layout,
//! merge errors, and the cluster checks of `validate` and `slurm`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{
    Cli, Study, TempDir, assert_same_rows, assert_same_steps, run_cli, run_cli_in, run_experiment,
    sequential_rows, write_experiment,
};
use unet_lab::track::{Tracker, merge, tables::read_parquet};

/// Two variants × two seeds: four tasks of a few seconds each.
fn study() -> Study {
    Study::new("scale").seeds(&[1, 2])
}

fn spawn_task(file: &Path, out: &Path, task: usize) -> Child {
    Cli::run(file, out)
        .args(["--task", &task.to_string(), "--no-report"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
}

/// Reads stderr until a line containing `needle`; returns the reader for the rest.
fn wait_for_line(child: &mut Child, needle: &str) -> BufReader<std::process::ChildStderr> {
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the process ended before printing {needle:?}"
        );
        if line.contains(needle) {
            return reader;
        }
    }
}

fn finish(mut child: Child, reader: Option<BufReader<std::process::ChildStderr>>) -> (i32, String) {
    let mut text = String::new();
    match reader {
        Some(mut r) => std::io::Read::read_to_string(&mut r, &mut text).unwrap(),
        None => std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut text).unwrap(),
    };
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), text)
}

/// Rows merged from the runs' own files (what `report` writes as the study-wide tables).
fn merged_rows(exp_dir: &Path) -> Tracker {
    let (_, runs) = merge::read(exp_dir).unwrap();
    Tracker::with_rows(
        exp_dir,
        runs.iter().flat_map(|r| r.epochs.clone()).collect(),
        runs.iter().flat_map(|r| r.steps.clone()).collect(),
    )
}

fn status_json(exp_dir: &Path) -> (Option<i32>, serde_json::Value) {
    let r = run_cli(&["status", exp_dir.to_str().unwrap(), "--json"]);
    let json = serde_json::from_str(&r.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json printed no JSON ({e}): {}\n{}",
            r.stdout, r.stderr
        )
    });
    (r.code, json)
}

#[test]
fn tasks_are_numbered_in_file_order() {
    let tmp = TempDir::new("tasks");
    let file = study().write(&tmp, "scale.toml");
    let out = tmp.path().join("out");
    let r = run_cli(&[
        "tasks",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let tasks: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let got: Vec<(u64, String, u64)> = tasks
        .iter()
        .map(|t| {
            (
                t["index"].as_u64().unwrap(),
                t["variant"].as_str().unwrap().to_string(),
                t["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "adam".into(), 1),
            (1, "adam".into(), 2),
            (2, "sgd".into(), 1),
            (3, "sgd".into(), 2)
        ]
    );
    assert!(
        tasks[3]["dir"]
            .as_str()
            .unwrap()
            .ends_with("scale/sgd/seed-2")
    );
    assert_eq!(tasks[0]["config_hash"].as_str().unwrap().len(), 16);
    let plain = run_cli(&["tasks", file.to_str().unwrap()]);
    assert!(
        plain
            .stdout
            .contains("4 task(s) (2 variant(s) × 2 seed(s))"),
        "{}",
        plain.stdout
    );
    // Listing tasks plans nothing and writes nothing.
    assert!(!out.exists());
    let bad = run_cli(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--task",
        "4",
    ]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("--task 4: the study has 4 task(s), numbered 0 to 3"),
        "{}",
        bad.stderr
    );
    let bad = run_cli(&["run", file.to_str().unwrap(), "--shard", "2/2"]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("--shard"), "{}", bad.stderr);
}

#[test]
fn four_task_workers_one_killed_and_jobs_two_end_with_the_sequential_rows() {
    let tmp = TempDir::new("workers");
    let file = study().write(&tmp, "scale.toml");

    let reference_out = tmp.path().join("reference");
    let reference = sequential_rows(&file, &reference_out, "scale");
    assert_eq!(reference.epochs.len(), 4 * 3 * 2);

    // runs.parquet: one row per run, a column per grid axis holding the level label.
    let runs = read_parquet(&reference_out.join("scale/runs.parquet")).unwrap();
    assert_eq!(runs.height(), 4);
    for col in [
        "variant",
        "seed",
        "train.optimizer",
        "status",
        "best_dice",
        "final_dice",
        "best_epoch",
        "epochs_done",
        "seconds",
        "config_hash",
        "host",
        "backend",
        "device",
    ] {
        assert!(runs.column(col).is_ok(), "runs.parquet lacks {col}");
    }
    let levels: Vec<Option<&str>> = runs
        .column("train.optimizer")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        levels,
        vec![Some("adam"), Some("adam"), Some("sgd"), Some("sgd")]
    );
    let statuses: Vec<Option<&str>> = runs
        .column("status")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .collect();
    assert!(
        statuses.iter().all(|s| *s == Some("completed")),
        "{statuses:?}"
    );

    // Four workers on one directory at once; task 2's is killed with SIGKILL mid-run.
    let out = tmp.path().join("workers");
    let mut children: Vec<Child> = (0..4).map(|i| spawn_task(&file, &out, i)).collect();
    let mut victim = children.remove(2);
    let _reader = wait_for_line(&mut victim, "sgd (seed 1) epoch 1/3");
    victim.kill().unwrap();
    victim.wait().unwrap();
    for (k, child) in children.into_iter().enumerate() {
        let (code, text) = finish(child, None);
        assert_eq!(code, 0, "worker {k}: {text}");
    }
    let exp = out.join("scale");
    let (code, json) = status_json(&exp);
    assert_eq!(code, Some(4), "{json}");
    assert_eq!(json["complete"], false);
    assert_eq!(json["tasks"][2]["state"], "interrupted", "{json}");
    assert_eq!(json["unfinished"], serde_json::json!([2]));
    assert!(
        json["finish"][0].as_str().unwrap().ends_with("--task 2"),
        "{json}"
    );
    // Started again, it resumes after its checkpointed epoch.
    let again = spawn_task(&file, &out, 2);
    let (code, text) = finish(again, None);
    assert_eq!(code, 0, "{text}");
    assert!(
        !text.contains("sgd (seed 1) epoch 1/3"),
        "retrained a checkpointed epoch: {text}"
    );
    let (code, json) = status_json(&exp);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["counts"]["done"], 4);
    let plain = run_cli(&["status", exp.to_str().unwrap()]);
    assert!(plain.stdout.contains("4/4 complete"), "{}", plain.stdout);

    let merged = merged_rows(&exp);
    assert_same_rows(&merged.epochs, &reference.epochs, "four workers");
    assert_same_steps(&merged.steps, &reference.steps, "four workers");

    // --jobs 2: two worker processes on one machine, the same rows as one process.
    let jobs_out = tmp.path().join("jobs");
    let r = run_experiment(&file, &jobs_out, &["--no-report", "--jobs", "2"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("4 tasks, 2 worker processes"),
        "{}",
        r.stderr
    );
    let jobs = Tracker::open(&jobs_out.join("scale")).unwrap();
    assert_same_rows(&jobs.epochs, &reference.epochs, "--jobs 2");
    assert_same_steps(&jobs.steps, &reference.steps, "--jobs 2");
    // Every run was trained once: one "epoch 1/3" line per task over both workers.
    for v in ["adam", "sgd"] {
        for seed in [1, 2] {
            let line = format!("{v} (seed {seed}) epoch 1/3");
            assert_eq!(r.stderr.matches(&line).count(), 1, "{line}: {}", r.stderr);
        }
    }
}

#[test]
fn two_workers_racing_for_one_task_one_trains_one_moves_on() {
    let tmp = TempDir::new("race");
    // Long enough that the loser's retries end while the winner still trains.
    let file = study().epochs(12).write(&tmp, "scale.toml");
    let out = tmp.path().join("out");
    let a = spawn_task(&file, &out, 0);
    let b = spawn_task(&file, &out, 0);
    let (code_a, text_a) = finish(a, None);
    let (code_b, text_b) = finish(b, None);
    assert_eq!((code_a, code_b), (0, 0), "{text_a}\n---\n{text_b}");
    let trained = |t: &str| t.contains("adam (seed 1) epoch 1/12");
    let moved_on = |t: &str| t.contains("task 0 (adam seed 1): being trained by host");
    assert!(
        (trained(&text_a) && moved_on(&text_b)) || (trained(&text_b) && moved_on(&text_a)),
        "one must train and one move on:\n{text_a}\n---\n{text_b}"
    );
    let rows = merged_rows(&out.join("scale"));
    assert_eq!(rows.epochs.len(), 12 * 2);
}

#[test]
fn a_worker_refuses_a_changed_file_and_the_planner_replans() {
    let tmp = TempDir::new("plan");
    let file = study().write(&tmp, "scale.toml");
    let out = tmp.path().join("out");
    // `slurm` plans the study and writes the scripts (without --submit, no SLURM is needed).
    let r = run_cli(&[
        "slurm",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-parallel",
        "2",
        "--cpus-per-task",
        "2",
        "--time",
        "1:00:00",
        "--account",
        "lab42",
        "--qos",
        "normal",
        "--mem",
        "16G",
        "--sbatch-arg=--constraint=a100",
        "--sbatch-arg",
        "--comment=two words",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let exp = out.join("scale");
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exp.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["tasks"].as_array().unwrap().len(), 4);
    assert!(exp.join("experiment.json").exists() && exp.join("experiment.toml").exists());
    let array = std::fs::read_to_string(exp.join("slurm/array.sbatch")).unwrap();
    for want in [
        "#SBATCH --array=0-3%2",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=1:00:00",
        "#SBATCH --account=lab42",
        "#SBATCH --qos=normal",
        "#SBATCH --mem=16G",
        "#SBATCH --constraint=a100",
        "#SBATCH --comment=\"two words\"",
        "export RAYON_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-1}\"",
        "--task \"$SLURM_ARRAY_TASK_ID\" --no-report",
    ] {
        assert!(array.contains(want), "array.sbatch lacks {want}:\n{array}");
    }
    assert!(
        !array.contains("--gres"),
        "--gres only when asked:\n{array}"
    );
    let report = std::fs::read_to_string(exp.join("slurm/report.sbatch")).unwrap();
    assert!(
        report.contains(" report ") && report.contains(" status "),
        "{report}"
    );

    // A GPU request for a CPU study, and impossible values, are refused before anything is queued.
    for (args, message) in [
        (
            vec!["--gres", "gpu:1"],
            "asks SLURM for GPUs, but the study trains on the CPU",
        ),
        (vec!["--time", "2h"], "--time \"2h\""),
        (
            vec!["--max-parallel", "0"],
            "--max-parallel must be at least 1",
        ),
        (
            vec!["--mem", "16GB"],
            "--mem \"16GB\": expected a whole number",
        ),
        (
            vec!["--account", "my lab"],
            "--account \"my lab\": a SLURM name has no spaces",
        ),
        (
            vec!["--sbatch-arg=--output=x.log"],
            "unet-lab writes that option itself",
        ),
    ] {
        let mut all = vec![
            "slurm",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        all.extend(args);
        let r = run_cli(&all);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(r.stderr.contains(message), "{}", r.stderr);
    }

    // The file changes: a worker refuses, naming the difference; nothing is trained.
    std::fs::write(&file, study().lr(1e-2).text()).unwrap();
    let r = run_experiment(&file, &out, &["--task", "0", "--no-report"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("no longer matches the plan"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("task 0 was \"adam\" seed 1"),
        "{}",
        r.stderr
    );
    assert!(!exp.join("adam/seed-1/manifest.json").exists());
    // A planner (no --task) plans the study again.
    let r = run_experiment(&file, &out, &["--variant", "adam", "--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let replanned: serde_json::Value =
        serde_json::from_slice(&std::fs::read(exp.join("plan.json")).unwrap()).unwrap();
    assert_ne!(
        replanned["tasks"][0]["config_hash"],
        plan["tasks"][0]["config_hash"]
    );
    let r = run_experiment(&file, &out, &["--task", "2", "--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

/// Every file and folder under `dir`, relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.strip_prefix(dir).unwrap().display().to_string();
        if path.is_dir() {
            all.extend(tree(&path).into_iter().map(|n| format!("{name}/{n}")));
        }
        all.push(name);
    }
    all.sort();
    all
}

#[test]
fn slurm_refuses_a_path_with_a_control_character_and_writes_nothing() {
    let tmp = TempDir::new("slurm-control");
    let file = study().write(&tmp, "scale.toml");
    let odd = study().write(&tmp, "odd\nname.toml");
    let work = tmp.path().join("tab\there");
    std::fs::create_dir_all(&work).unwrap();
    let before = tree(tmp.path());
    let (f, o) = (file.to_str().unwrap(), odd.to_str().unwrap());
    let bad_out = tmp.path().join("out\n#SBATCH --wrap=x");
    let good_out = tmp.path().join("out");
    for (dir, args, message) in [
        (
            None,
            [f, "--out", bad_out.to_str().unwrap()],
            "--out: the path contains a control character (newline)",
        ),
        (
            None,
            [o, "--out", good_out.to_str().unwrap()],
            "the experiment file: the path contains a control character (newline)",
        ),
        (
            Some(work.as_path()),
            [f, "--out", "out"],
            "the working directory: the path contains a control character (tab)",
        ),
    ] {
        let mut all = vec!["slurm"];
        all.extend(args);
        let r = run_cli_in(dir, &all, &[]);
        assert_eq!(r.code, Some(2), "{all:?}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{all:?}: {}", r.stderr);
        assert!(r.stderr.contains("nothing was written"), "{}", r.stderr);
        assert_eq!(tree(tmp.path()), before, "{all:?} wrote something");
    }
}

#[test]
fn the_single_file_layout_is_migrated_and_duplicate_rows_are_refused() {
    let tmp = TempDir::new("legacy");
    let file = study().seeds(&[1]).write(&tmp, "scale.toml");
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &["--no-report"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let exp = out.join("scale");
    let reference = Tracker::open(&exp).unwrap();

    // Turn it into what unet-lab wrote before per-run storage.
    for v in ["adam", "sgd"] {
        let vdir = exp.join(v);
        let run = vdir.join("seed-1");
        std::fs::create_dir_all(vdir.join("checkpoints")).unwrap();
        std::fs::create_dir_all(vdir.join("snapshots")).unwrap();
        std::fs::rename(run.join("checkpoints"), vdir.join("checkpoints/seed-1")).unwrap();
        std::fs::rename(run.join("snapshots"), vdir.join("snapshots/seed-1")).unwrap();
        std::fs::remove_dir_all(&run).unwrap();
        assert!(vdir.join("manifest.json").exists());
    }
    std::fs::remove_file(exp.join("plan.json")).unwrap();
    std::fs::remove_file(exp.join("runs.parquet")).unwrap();
    // Those builds recorded no layout version either.
    let manifest = exp.join("experiment.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("layout");
    std::fs::write(&manifest, serde_json::to_vec(&json).unwrap()).unwrap();

    let r = run_cli(&["report", exp.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains("migrated 2 run(s) to per-run storage"),
        "{}",
        r.stderr
    );
    for v in ["adam", "sgd"] {
        assert!(exp.join(v).join("seed-1/checkpoints/best.mpk").exists());
        assert!(exp.join(v).join("seed-1/snapshots/epoch-0003.png").exists());
        assert!(!exp.join(v).join("checkpoints").exists());
    }
    assert_same_rows(&merged_rows(&exp).epochs, &reference.epochs, "migrated");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(
        json["layout"], 2,
        "the migrated directory records its layout"
    );
    assert!(exp.join("index.html").exists() && exp.join("runs.parquet").exists());
    // A second report has nothing to migrate.
    let r = run_cli(&["report", exp.to_str().unwrap()]);
    assert!(!r.stderr.contains("migrated"), "{}", r.stderr);
    // A run dir copied by hand duplicates keys: the merge names both files.
    let copy = exp.join("adam/seed-9");
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["manifest.json", "metrics.parquet", "steps.parquet"] {
        std::fs::copy(exp.join("adam/seed-1").join(f), copy.join(f)).unwrap();
    }
    let r = run_cli(&["report", exp.to_str().unwrap()]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr.contains("is in both")
            && r.stderr.contains("adam/seed-1/metrics.parquet")
            && r.stderr.contains("adam/seed-9/metrics.parquet"),
        "{}",
        r.stderr
    );
}

#[test]
fn validate_checks_the_data_path_and_the_cluster_options() {
    let tmp = TempDir::new("validate");
    let missing = tmp.path().join("no-such-dataset");
    let file = write_experiment(
        &tmp,
        "k.toml",
        &format!(
            "[data]\nsource = \"kaggle\"\npath = \"{}\"\nsize = [64, 80]\n",
            missing.display()
        ),
    );
    let r = run_cli(&["validate", file.to_str().unwrap()]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "the data directory {} does not exist",
            missing.display()
        )),
        "{}",
        r.stderr
    );
    // `run` rejects it too, before writing anything.
    let out = tmp.path().join("out");
    let r = run_experiment(&file, &out, &[]);
    assert_ne!(r.code, Some(0));
    assert!(!out.exists());

    let ok = study().write(&tmp, "s.toml");
    let r = run_cli(&["validate", ok.to_str().unwrap()]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("data (synthetic): 64 images of 4 subjects"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("= 4 task(s)"), "{}", r.stdout);
    for (args, message) in [
        (
            vec!["--devices", "0"],
            "--devices: GPUs are handed out only to GPU training (cuda, wgpu), but the study trains on the CPU",
        ),
        (vec!["--gres", "gpu:0"], "--gres \"gpu:0\""),
        (vec!["--gres", "gpu:1"], "asks SLURM for GPUs"),
    ] {
        let mut all = vec!["validate", ok.to_str().unwrap()];
        all.extend(args);
        let r = run_cli(&all);
        assert_eq!(r.code, Some(2), "{}", r.stderr);
        assert!(r.stderr.contains(message), "{}", r.stderr);
    }
}
