//! A real SLURM, not a mock: a private single-node cluster (munged, slurmctld, slurmd on a
//! config and key under a temp directory; nothing under /etc; daemons stopped by PID) runs a
//! study submitted with `unet-lab slurm --submit`. One task is cancelled mid-epoch and
//! resubmitted with the command `status` prints; the merged rows must equal a sequential run's.
//! The study is submitted from, and written into, folders whose names hold a space, a double
//! quote, a `#` and a `%`, so the real sbatch parses `#SBATCH` paths that need quoting.
//! Without SLURM's packages (Debian: slurmctld slurmd slurm-client munge) or root, the test
//! says it was skipped.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    Cli, CliResult, Study, TempDir, assert_same_rows, assert_same_steps, sequential_rows,
};
use unet_lab::track::merge;

/// Two variants × two seeds of six epochs: four tasks, long enough to be cancelled mid-run.
fn study() -> Study {
    Study::new("cluster").seeds(&[1, 2]).epochs(6)
}

fn find(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// munged + slurmctld + slurmd under a temp directory, stopped by their PID files on drop.
struct Cluster {
    dir: TempDir,
    conf: PathBuf,
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let tools = [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "scancel",
            "sinfo",
        ];
        if let Some(missing) = tools.iter().find(|t| find(t).is_none()) {
            return Err(format!("{missing} is not installed"));
        }
        // SlurmUser=root: the daemons need root.
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err(
                "the private cluster runs its daemons as root, and this is not root".into(),
            );
        }
        let dir = TempDir::new("slurm");
        let d = dir.path().to_path_buf();
        let munge = d.join("munge");
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let mut key = vec![0u8; 1024];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut key)
            .unwrap();
        std::fs::write(munge.join("munge.key"), key).unwrap();
        let chmod = |mode: &str, p: &Path| {
            Command::new("chmod").arg(mode).arg(p).status().unwrap();
        };
        chmod("400", &munge.join("munge.key"));
        chmod("700", &munge);
        let ok = Command::new(find("munged").unwrap())
            .arg("--force")
            .arg(format!("--key-file={}", munge.join("munge.key").display()))
            .arg(format!("--socket={}", munge.join("munge.sock").display()))
            .arg(format!("--pid-file={}", munge.join("munged.pid").display()))
            .arg(format!("--log-file={}", d.join("log/munged.log").display()))
            .arg(format!("--seed-file={}", munge.join("seed").display()))
            .status()
            .map_err(|e| e.to_string())?;
        if !ok.success() {
            return Err(format!("munged did not start ({ok})"));
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let conf = d.join("slurm.conf");
        let p = |s: &str| d.join(s).display().to_string();
        let lines = [
            "ClusterName=unetlabtest".to_string(),
            "SlurmctldHost=localhost".into(),
            "SlurmUser=root".into(),
            "AuthType=auth/munge".into(),
            format!("AuthInfo=socket={}", munge.join("munge.sock").display()),
            format!("SlurmctldPort={}", free_port()),
            format!("SlurmdPort={}", free_port()),
            format!("StateSaveLocation={}", p("state")),
            format!("SlurmdSpoolDir={}", p("spool")),
            format!("SlurmctldPidFile={}", p("slurmctld.pid")),
            format!("SlurmdPidFile={}", p("slurmd.pid")),
            format!("SlurmctldLogFile={}", p("log/slurmctld.log")),
            format!("SlurmdLogFile={}", p("log/slurmd.log")),
            "ProctrackType=proctrack/linuxproc".into(),
            "TaskPlugin=task/none".into(),
            "SelectType=select/cons_tres".into(),
            "SelectTypeParameters=CR_Core".into(),
            "JobAcctGatherType=jobacct_gather/none".into(),
            "EnforcePartLimits=ALL".into(),
            "MailProg=/bin/true".into(),
            "ReturnToService=2".into(),
            format!("NodeName=localhost CPUs={cpus} State=UNKNOWN"),
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP".into(),
        ];
        std::fs::write(&conf, lines.join("\n") + "\n").unwrap();
        let cluster = Cluster { dir, conf };
        for (daemon, args) in [
            ("slurmctld", vec!["-c"]),
            ("slurmd", vec!["-N", "localhost"]),
        ] {
            let ok = cluster
                .command(find(daemon).unwrap())
                .args(args)
                .status()
                .map_err(|e| e.to_string())?;
            if !ok.success() {
                return Err(format!("{daemon} did not start ({ok}): see {}", p("log")));
            }
        }
        let start = Instant::now();
        loop {
            let out = cluster
                .command("sinfo")
                .args(["-h", "-o", "%T"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "idle" {
                return Ok(cluster);
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "the node never became idle: {}",
                    String::from_utf8_lossy(&out.stdout)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// `unet-lab` on this cluster.
    fn unet_lab(&self) -> Cli {
        Cli::new().env("SLURM_CONF", &self.conf)
    }

    fn in_queue(&self, jobs: &str) -> bool {
        let out = self
            .command("squeue")
            .args(["-h", "-j", jobs])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    }

    /// Waits until no job at all is queued or running.
    fn wait_until_idle(&self, limit: Duration) {
        let start = Instant::now();
        loop {
            let out = self.command("squeue").arg("-h").output().unwrap();
            if String::from_utf8_lossy(&out.stdout).trim().is_empty() {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "jobs still queued after {limit:?}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn wait_until_gone(&self, jobs: &str, limit: Duration) {
        let start = Instant::now();
        while self.in_queue(jobs) {
            assert!(
                start.elapsed() < limit,
                "jobs {jobs} still queued after {limit:?}; slurmctld log: {}",
                std::fs::read_to_string(self.dir.path().join("log/slurmctld.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let d = self.dir.path();
        for pid_file in ["slurmd.pid", "slurmctld.pid", "munge/munged.pid"] {
            let Ok(text) = std::fs::read_to_string(d.join(pid_file)) else {
                continue;
            };
            let pid = text.trim().to_string();
            let _ = Command::new("kill").arg(&pid).status();
            let start = Instant::now();
            while Path::new(&format!("/proc/{pid}")).exists()
                && start.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        }
    }
}

fn wait_for_file_line(
    path_glob_dir: &Path,
    prefix: &str,
    needle: &str,
    limit: Duration,
) -> PathBuf {
    let start = Instant::now();
    loop {
        for entry in std::fs::read_dir(path_glob_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(prefix)
                && std::fs::read_to_string(entry.path()).is_ok_and(|t| t.contains(needle))
            {
                return entry.path();
            }
        }
        assert!(
            start.elapsed() < limit,
            "no {prefix}* log in {} showed {needle:?}",
            path_glob_dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stdout of a command that must have succeeded (its output in the failure message).
fn succeeded(out: CliResult) -> String {
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// A private cluster, or `None` after saying why `test` is skipped.
fn cluster_or_skip(test: &str) -> Option<Cluster> {
    match Cluster::start() {
        Ok(c) => Some(c),
        Err(why) => {
            eprintln!(
                "note: skipping {test}: {why} (Debian: apt-get install slurmctld slurmd slurm-client munge)"
            );
            None
        }
    }
}

/// One private cluster at a time: the tests of this file start their own.
static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_study_on_a_private_slurm_cluster_merges_to_the_sequential_rows() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cluster) = cluster_or_skip("the SLURM test") else {
        return;
    };
    let tmp = TempDir::new("slurm \"study\" #1 50%x");
    let file = study().write(&tmp, "cluster.toml");
    let reference_out = tmp.path().join("reference");
    let reference = sequential_rows(&file, &reference_out, "cluster");

    // The jobs run in the submitting directory (`--chdir`) and log under --out.
    let out = tmp.path().join("out dir");
    let submit = cluster
        .unet_lab()
        .current_dir(tmp.path())
        .args([
            "slurm",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(["--cpus-per-task", "1", "--max-parallel", "2", "--submit"])
        .output();
    let stdout = succeeded(submit);
    let ids: Vec<String> = stdout
        .split("submitted array job ")
        .nth(1)
        .expect("job ids printed")
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .map(String::from)
        .collect();
    let (array, report) = (&ids[0], &ids[1]);
    // sbatch read the quoted `--chdir` whole: a path cut at its space or `#` would leave the
    // jobs in a folder that does not exist (slurmd then runs them in /tmp, silently).
    let dirs = succeeded(
        cluster
            .command("squeue")
            .args(["-h", "-j", &format!("{array},{report}"), "-o", "%Z"])
            .output()
            .unwrap()
            .into(),
    );
    assert!(
        !dirs.trim().is_empty() && dirs.lines().all(|d| Path::new(d) == tmp.path()),
        "the jobs' working directories are {dirs:?}, not {}",
        tmp.path().display()
    );
    let exp = out.join("cluster");
    let logs = exp.join("slurm/logs");

    // Cancel task 0 once it has finished an epoch: mid-run, never to be requeued by SLURM.
    wait_for_file_line(
        &logs,
        &format!("task-{array}_0"),
        "epoch 1/6",
        Duration::from_secs(120),
    );
    let ok = cluster
        .command("scancel")
        .arg(format!("{array}_0"))
        .status()
        .unwrap();
    assert!(ok.success());
    cluster.wait_until_gone(&format!("{array},{report}"), Duration::from_secs(240));

    let status = cluster
        .unet_lab()
        .args(["status", exp.to_str().unwrap(), "--json"])
        .output();
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status.code, Some(4), "{json}");
    assert_eq!(json["unfinished"], serde_json::json!([0]), "{json}");
    assert_eq!(json["counts"]["done"], 3, "{json}");
    let resubmit = json["finish"][0].as_str().unwrap().to_string();
    assert!(resubmit.starts_with("sbatch --array=0 "), "{resubmit}");

    // The exact command `status` printed finishes the study; the task resumes.
    let printed = succeeded(
        cluster
            .command("sh")
            .args(["-c", &resubmit])
            .output()
            .unwrap()
            .into(),
    );
    let job = printed
        .trim()
        .strip_prefix("Submitted batch job ")
        .unwrap_or_else(|| panic!("sbatch printed {printed:?}"))
        .to_string();
    cluster.wait_until_gone(&job, Duration::from_secs(180));
    let resumed = std::fs::read_to_string(logs.join(format!("task-{job}_0.log"))).unwrap();
    assert!(resumed.contains("epoch 6/6"), "{resumed}");
    assert!(
        !resumed.contains("epoch 1/6"),
        "the resubmitted task started over:\n{resumed}"
    );

    let status = succeeded(
        cluster
            .unet_lab()
            .args(["status", exp.to_str().unwrap()])
            .output(),
    );
    assert!(status.contains("4/4 complete"), "{status}");
    let (_, runs) = merge::merge(&exp).unwrap();
    let epochs: Vec<_> = runs.iter().flat_map(|r| r.epochs.clone()).collect();
    let steps: Vec<_> = runs.iter().flat_map(|r| r.steps.clone()).collect();
    assert_same_rows(&epochs, &reference.epochs, "SLURM study");
    assert_same_steps(&steps, &reference.steps, "SLURM study");
    // The report job ran after the first array (afterany), though one task had been cancelled.
    assert!(
        exp.join("index.html").exists(),
        "the report job did not run"
    );
    assert!(
        runs.iter().all(|r| r.manifest.slurm_job.is_some()),
        "runs record their SLURM job"
    );
}

#[test]
fn seeds_until_decided_chains_a_decide_job_after_each_round() {
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cluster) = cluster_or_skip("the SLURM seeds-until-decided test") else {
        return;
    };
    // Twin variants train identically, so their contrast never has a spread and stays
    // undecided: each look adds a seed, up to 3, each round an array plus a decide job after
    // it. (Should both variants be settled as having learned nothing, the chain ends earlier;
    // the checks below hold either way.)
    let tmp = TempDir::new("slurm-until-decided");
    let file = common::write_experiment(
        &tmp,
        "twins.toml",
        &common::twins_text("{ min = 2, max = 3, step = 1 }"),
    );
    let out = tmp.path().join("out");
    let stdout = succeeded(
        cluster
            .unet_lab()
            .current_dir(tmp.path())
            .args([
                "slurm",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            // An override and a pass-through sbatch option travel with every round.
            .args(["--set", "report.samples=1"])
            .arg("--sbatch-arg=--comment=unet-lab-passthrough")
            .args(["--cpus-per-task", "1", "--submit"])
            .output(),
    );
    assert!(
        stdout.contains("seeds until decided: first look (2 seeds per variant)")
            && stdout.contains("(tasks 0-1,3-4)"),
        "{stdout}"
    );
    let job_after = |marker: &str| -> String {
        let rest = stdout.split(marker).nth(1).expect("job ids printed");
        rest.split_whitespace().next().unwrap().to_string()
    };
    let first_jobs = [job_after("submitted array job "), job_after("decide job ")];
    let comments = succeeded(
        cluster
            .command("squeue")
            .args(["-h", "-j", &first_jobs.join(","), "-o", "%k"])
            .output()
            .unwrap()
            .into(),
    );
    assert!(
        !comments.trim().is_empty() && comments.lines().all(|c| c == "unet-lab-passthrough"),
        "the jobs' comments are {comments:?}"
    );
    let exp = out.join("twins_report.samples_1");
    let array = std::fs::read_to_string(exp.join("slurm/array.sbatch")).unwrap();
    assert!(array.contains(" --set 'report.samples=1' "), "{array}");
    cluster.wait_until_idle(Duration::from_secs(300));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exp.join("summary.json")).unwrap()).unwrap();
    let looks = summary["verdicts"]["looks"].as_array().unwrap().len();
    let last = summary["verdicts"]["looks"][looks - 1].as_u64().unwrap() as usize;
    // One decide job per look; every round but the first was submitted by one.
    let logs: Vec<String> = std::fs::read_dir(exp.join("slurm/logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let decides = logs.iter().filter(|l| l.starts_with("decide-")).count();
    assert_eq!(decides, looks, "{logs:?}");
    let rounds = std::fs::read_to_string(exp.join("slurm/rounds.log")).unwrap_or_default();
    assert_eq!(rounds.lines().count(), looks - 1, "{rounds}");
    if looks == 2 {
        assert_eq!(rounds, "2,5\n");
    }
    let (_, runs) = merge::read(&exp).unwrap();
    assert_eq!(runs.len(), 2 * last, "runs of the looks taken");
    assert!(runs.iter().all(|r| r.manifest.slurm_job.is_some()));
    let status = cluster
        .unet_lab()
        .args(["status", exp.to_str().unwrap()])
        .output();
    assert_eq!(status.code, Some(0), "{}{}", status.stdout, status.stderr);
    assert!(
        status.stdout.contains("seeds until decided: look"),
        "{}",
        status.stdout
    );
    let manifest = std::fs::read_to_string(exp.join("experiment.toml")).unwrap();
    assert!(manifest.contains("--set report.samples=1"), "{manifest}");
    assert!(
        exp.join("index.html").exists(),
        "the last decide job renders the report"
    );
}
