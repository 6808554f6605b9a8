//! SLURM job arrays: one array task per study task (`unet-lab run … --task
//! $SLURM_ARRAY_TASK_ID --no-report`), and a report job that runs after the array whatever
//! became of its tasks (`afterany`: with `afterok`, one failed task would leave it pending
//! forever). SLURM requeues tasks by default; a requeued task resumes from its checkpoint.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::command::{Program, Share, WorkerCommand};
use crate::config::BackendKind;
use crate::track::{Plan, write_atomic};
use crate::util::shell_quote;

/// Everything `unet-lab slurm` puts into the scripts.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlurmOptions {
    pub partition: Option<String>,
    /// `--account`, `--qos`, `--mem` as clusters require them.
    pub account: Option<String>,
    pub qos: Option<String>,
    pub mem: Option<String>,
    /// Further `#SBATCH` options, each written as given (`--constraint=a100`).
    pub sbatch_args: Vec<String>,
    pub time: Option<String>,
    pub cpus_per_task: usize,
    pub gres: Option<String>,
    pub max_parallel: Option<usize>,
    pub backend: Option<BackendKind>,
    /// `--mlflow URI`: the tracking server every task logs to.
    pub mlflow: Option<String>,
}

/// SLURM's default `MaxArraySize`: array indices must stay below it.
const DEFAULT_MAX_ARRAY_SIZE: usize = 1001;

/// `--gres` is `name[:type][:count]`, e.g. `gpu:1` or `gpu:a100:2`; several joined by commas.
fn check_gres(spec: &str) -> Result<(), String> {
    for one in spec.split(',') {
        let parts: Vec<&str> = one.split(':').collect();
        let ok_word = |w: &str| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        let count_ok = match parts.last() {
            Some(last) if last.chars().all(|c| c.is_ascii_digit()) && parts.len() > 1 => {
                last.parse::<u32>().is_ok_and(|n| n > 0)
            }
            _ => true,
        };
        if parts.len() > 3 || !parts.iter().all(|p| ok_word(p)) || !count_ok {
            return Err(format!(
                "--gres \"{spec}\": expected name[:type][:count] with a positive count, e.g. gpu:1 or gpu:a100:2"
            ));
        }
    }
    Ok(())
}

/// Whether a `--gres` asks for GPUs.
fn gres_has_gpu(spec: &str) -> bool {
    spec.split(',').any(|g| g.split(':').next() == Some("gpu"))
}

/// `--mem` as sbatch takes it: a whole number with an optional unit K, M, G or T.
fn check_mem(spec: &str) -> Result<(), String> {
    let digits = spec.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    let unit = spec.len() - digits.len();
    if digits.is_empty() || unit > 1 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "--mem \"{spec}\": expected a whole number with an optional unit K, M, G or T (e.g. 16G)"
        ));
    }
    Ok(())
}

/// `--sbatch-arg`: one long option for an `#SBATCH` line, e.g. `--constraint=a100`.
fn check_sbatch_arg(arg: &str) -> Result<(), String> {
    if !arg.starts_with("--") || arg.len() < 3 || arg.chars().any(|c| c.is_control()) {
        return Err(format!(
            "--sbatch-arg {arg:?}: expected one long sbatch option on one line, e.g. \
             --sbatch-arg=--constraint=a100"
        ));
    }
    if [
        "--array",
        "--output",
        "--job-name",
        "--chdir",
        "--dependency",
    ]
    .iter()
    .any(|own| arg == *own || arg.starts_with(&format!("{own}=")))
    {
        return Err(format!(
            "--sbatch-arg {arg}: unet-lab writes that option itself; the scripts depend on it"
        ));
    }
    Ok(())
}

/// `--time` in one of SLURM's forms: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`, or
/// `UNLIMITED`/`INFINITE`.
fn check_time(spec: &str) -> Result<(), String> {
    if matches!(spec, "UNLIMITED" | "INFINITE" | "unlimited" | "infinite") {
        return Ok(());
    }
    let numbers = |s: &str, max: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= max
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    };
    let ok = match spec.split_once('-') {
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(spec, 3),
    };
    if !ok {
        return Err(format!(
            "--time \"{spec}\": expected minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S (e.g. 2:00:00 or 1-12)"
        ));
    }
    Ok(())
}

/// Checks the options against the study: what `sbatch` would refuse, or a GPU asked for a CPU
/// study (and the reverse), is an error here, before anything is queued.
pub(crate) fn check_options(
    opts: &SlurmOptions,
    backends: &[BackendKind],
    tasks: usize,
) -> Result<()> {
    if opts.cpus_per_task == 0 {
        bail!("--cpus-per-task must be at least 1");
    }
    if opts.max_parallel == Some(0) {
        bail!("--max-parallel must be at least 1");
    }
    if let Some(t) = &opts.time {
        check_time(t).map_err(anyhow::Error::msg)?;
    }
    for (flag, value) in [
        ("--partition", &opts.partition),
        ("--account", &opts.account),
        ("--qos", &opts.qos),
    ] {
        if let Some(v) = value
            && (v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            bail!("{flag} \"{v}\": a SLURM name has no spaces");
        }
    }
    if let Some(m) = &opts.mem {
        check_mem(m).map_err(anyhow::Error::msg)?;
    }
    for a in &opts.sbatch_args {
        check_sbatch_arg(a).map_err(anyhow::Error::msg)?;
    }
    let gpu = backends.iter().find(|b| b.is_gpu());
    if let Some(g) = &opts.gres {
        check_gres(g).map_err(anyhow::Error::msg)?;
        if gres_has_gpu(g) && gpu.is_none() {
            bail!(
                "--gres {g} asks SLURM for GPUs, but the study trains on the CPU; add --backend cuda \
                 (or train.backend = \"cuda\") or drop --gres"
            );
        }
    } else if let Some(b) = gpu {
        eprintln!(
            "note: the study trains on {} but no --gres was given: SLURM will not hand the tasks a \
             GPU unless the partition does by default (e.g. --gres gpu:1)",
            b.name()
        );
    }
    if tasks == 0 {
        bail!("the study has no tasks");
    }
    if tasks > DEFAULT_MAX_ARRAY_SIZE - 1 {
        eprintln!(
            "note: {tasks} tasks: array indices up to {} exceed SLURM's default MaxArraySize ({}); \
             the cluster must allow it, or split the study (run --shard I/N inside fewer tasks)",
            tasks - 1,
            DEFAULT_MAX_ARRAY_SIZE
        );
    }
    Ok(())
}

/// The scripts `unet-lab slurm` writes.
#[derive(Debug, Clone)]
pub struct Scripts {
    pub array: PathBuf,
    pub report: PathBuf,
    /// A study with seeds until decided: the job that takes the verdicts after each round's
    /// array and submits the next round (or renders the report).
    pub decide: Option<PathBuf>,
    pub tasks: usize,
}

/// Quotes the value of an `#SBATCH` directive. sbatch splits a directive line on whitespace,
/// takes an unquoted `#` as the start of a comment, groups characters in double quotes and
/// drops a backslash before the character it escapes: a space or `#` in a path would otherwise
/// cut the value short.
fn sbatch_quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', r"\\").replace('"', r#"\""#))
}

/// `--name=value` with the value quoted for sbatch when it needs it (a space or a `#`).
fn sbatch_option(arg: &str) -> String {
    match arg.split_once('=') {
        Some((name, value)) if value.contains([' ', '#', '"', '\\']) => {
            format!("{name}={}", sbatch_quote(value))
        }
        _ => arg.to_string(),
    }
}

/// A name for a control character in an error message.
fn control_name(c: char) -> String {
    match c {
        '\n' => "newline".into(),
        '\r' => "carriage return".into(),
        '\t' => "tab".into(),
        c => format!("U+{:04X}", c as u32),
    }
}

/// Refuses a path the scripts cannot hold: a newline would end an `#SBATCH` line or a comment
/// early (putting a shell line above the directives, after which sbatch ignores the rest), and
/// no other control character belongs in a path a person has to read and type. `what` names
/// the flag or argument.
pub(crate) fn check_script_path(what: &str, path: &Path) -> Result<()> {
    let text = path.to_string_lossy();
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        bail!(
            "{what}: the path contains a control character ({}): {:?}; the SLURM scripts could \
             not name it safely, so nothing was written: choose a path without one",
            control_name(c),
            text
        );
    }
    Ok(())
}

/// Refuses a log directory sbatch would not expand `%A`/`%a`/`%j` under: SLURM leaves every
/// replacement symbol of an `--output` path as it is when the path holds a backslash, so each
/// task would write the same literal `task-%A_%a.log`.
pub(crate) fn check_log_dir(what: &str, logs: &Path) -> Result<()> {
    let text = logs.to_string_lossy();
    if text.contains('\\') {
        bail!(
            "{what}: the log directory {:?} contains a backslash, and SLURM does not expand %A, %a \
             or %j in an --output path with one (every task would share one log): choose a path \
             without a backslash",
            text
        );
    }
    Ok(())
}

/// A literal path in an `--output` pattern: `%` doubled, as SLURM reads `%%` as one `%`.
fn output_pattern_dir(dir: &Path) -> String {
    dir.display().to_string().replace('%', "%%")
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Writes `<exp>/slurm/array.sbatch` and `<exp>/slurm/report.sbatch` (and the log folder);
/// the jobs run in `cwd`. The paths must have passed [`check_script_path`].
pub(crate) fn write_scripts(
    exp_dir: &Path,
    plan: &Plan,
    exe: &Path,
    cwd: &Path,
    opts: &SlurmOptions,
    sequential: bool,
) -> Result<Scripts> {
    let slurm_dir = absolute(&exp_dir.join("slurm"));
    let logs = slurm_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut common = vec![format!(
        "#SBATCH --chdir={}",
        sbatch_quote(&cwd.display().to_string())
    )];
    if let Some(p) = &opts.partition {
        common.push(format!("#SBATCH --partition={p}"));
    }
    if let Some(t) = &opts.time {
        common.push(format!("#SBATCH --time={t}"));
    }
    if let Some(a) = &opts.account {
        common.push(format!("#SBATCH --account={a}"));
    }
    if let Some(q) = &opts.qos {
        common.push(format!("#SBATCH --qos={q}"));
    }
    if let Some(m) = &opts.mem {
        common.push(format!("#SBATCH --mem={m}"));
    }
    for a in &opts.sbatch_args {
        common.push(format!("#SBATCH {}", sbatch_option(a)));
    }
    common.push(format!("#SBATCH --cpus-per-task={}", opts.cpus_per_task));
    let job_name: String = plan
        .experiment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let parts = ScriptParts {
        exe: exe.to_path_buf(),
        job_name,
        logs,
        common,
    };
    let scripts = Scripts {
        array: slurm_dir.join("array.sbatch"),
        report: slurm_dir.join("report.sbatch"),
        decide: sequential.then(|| slurm_dir.join("decide.sbatch")),
        tasks: plan.tasks.len(),
    };
    let array = array_script(&parts, plan, &scripts.array, opts);
    write_atomic(&scripts.array, array.as_bytes())?;
    let report = report_script(&parts, plan, &absolute(exp_dir));
    write_atomic(&scripts.report, report.as_bytes())?;
    if let Some(decide) = &scripts.decide {
        write_atomic(
            decide,
            decide_script(&parts, plan, &absolute(exp_dir)).as_bytes(),
        )?;
    }
    Ok(scripts)
}

/// What both scripts share.
struct ScriptParts {
    /// This binary.
    exe: PathBuf,
    job_name: String,
    /// Absolute; `%` in it is doubled where it goes into an `--output` pattern.
    logs: PathBuf,
    /// `#SBATCH` lines of both jobs.
    common: Vec<String>,
}

/// The study's name inside a comment: a control character would end the comment line.
fn comment_text(name: &str) -> String {
    name.replace(|c: char| c.is_control(), " ")
}

fn array_script(parts: &ScriptParts, plan: &Plan, path: &Path, opts: &SlurmOptions) -> String {
    let n = plan.tasks.len();
    let array_spec = match opts.max_parallel {
        Some(k) => format!("0-{}%{k}", n - 1),
        None => format!("0-{}", n - 1),
    };
    let run = WorkerCommand {
        backend: opts.backend,
        edits: plan.edits.clone(),
        mlflow: opts.mlflow.clone(),
        share: Share::ArrayTask,
        no_report: true,
        ..WorkerCommand::new(
            Program::Exe(parts.exe.clone()),
            &plan.source_file,
            &plan.out,
        )
    }
    .shell();
    let output = format!("{}/task-%A_%a.log", output_pattern_dir(&parts.logs));
    let mut text = format!(
        "#!/bin/bash\n\
         # Written by `unet-lab slurm` for the study \"{}\" ({n} tasks, one per variant x seed).\n\
         # Each array task trains the task of its index; a requeued or resubmitted task resumes\n\
         # from its last epoch. Resubmit part of the study with: sbatch --array=3,7-9 {}\n\
         #SBATCH --job-name=unet-lab-{}\n\
         #SBATCH --array={array_spec}\n\
         #SBATCH --output={}\n\
         #SBATCH --requeue\n",
        comment_text(&plan.experiment),
        shell_quote(&path.display().to_string()),
        parts.job_name,
        sbatch_quote(&output)
    );
    for line in &parts.common {
        text.push_str(line);
        text.push('\n');
    }
    if let Some(g) = &opts.gres {
        text.push_str(&format!("#SBATCH --gres={g}\n"));
    }
    text.push_str(&format!(
        "set -euo pipefail\n\
         # task/none does not confine a task to its CPUs: use the allocation's count.\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\n\
         export UNET_LAB_PROGRESS=plain\n\
         exec {run}\n"
    ));
    text
}

fn report_script(parts: &ScriptParts, plan: &Plan, exp_dir: &Path) -> String {
    let why = format!(
        "merges the runs of \"{}\" and renders its report. Submitted\n\
         # with --dependency=afterany:<array job>, so it runs however the tasks ended.",
        comment_text(&plan.experiment)
    );
    after_array_script(parts, exp_dir, "report", &why, "report")
}

/// The decide job of a study with seeds until decided: after each round's array (afterany),
/// `unet-lab next-round` takes the verdicts and submits the next round with another decide job
/// after it, or renders the report when nothing is left to train.
fn decide_script(parts: &ScriptParts, plan: &Plan, exp_dir: &Path) -> String {
    let why = format!(
        "takes the verdicts of \"{}\" after a round of its seeds\n\
         # and submits the next round (array + this job after it), or renders the report when\n\
         # every contrast is decided or the most seeds are used. Submitted with\n\
         # --dependency=afterany:<the round's array job>.",
        comment_text(&plan.experiment)
    );
    after_array_script(parts, exp_dir, "decide", &why, "next-round")
}

/// A one-step job that runs after an array: it prints the study's status, then `unet-lab
/// <command> <exp_dir>`. `kind` names the job and its log.
fn after_array_script(
    parts: &ScriptParts,
    exp_dir: &Path,
    kind: &str,
    why: &str,
    command: &str,
) -> String {
    let mut text = format!(
        "#!/bin/bash\n\
         # Written by `unet-lab slurm`: {why}\n\
         #SBATCH --job-name=unet-lab-{}-{kind}\n\
         #SBATCH --output={}\n",
        parts.job_name,
        sbatch_quote(&format!(
            "{}/{kind}-%j.log",
            output_pattern_dir(&parts.logs)
        ))
    );
    for line in &parts.common {
        text.push_str(line);
        text.push('\n');
    }
    let exp_q = shell_quote(&exp_dir.display().to_string());
    text.push_str(&format!(
        "set -uo pipefail\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"\n\
         {exe} status {exp_q} || true\n\
         exec {exe} {command} {exp_q}\n",
        exe = shell_quote(&parts.exe.display().to_string())
    ));
    text
}

/// `sbatch --parsable` for the array, then for the job after it (the report job, or for a study
/// with seeds until decided the decide job, the array then holding the first round's
/// `indices`); the two job ids.
pub fn submit(scripts: &Scripts, indices: Option<&str>) -> Result<(String, String)> {
    match (&scripts.decide, indices) {
        (Some(decide), Some(indices)) => submit_round(&scripts.array, decide, indices),
        _ => {
            let array = sbatch(&[], &scripts.array)?;
            let report = sbatch(&[format!("--dependency=afterany:{array}")], &scripts.report)?;
            Ok((array, report))
        }
    }
}

/// One round of a study with seeds until decided: the array over `indices` (`0-3,7`), then the
/// decide job after it.
pub(crate) fn submit_round(array: &Path, decide: &Path, indices: &str) -> Result<(String, String)> {
    let array = sbatch(&[format!("--array={indices}")], array)?;
    let decide = sbatch(&[format!("--dependency=afterany:{array}")], decide)?;
    Ok((array, decide))
}

fn sbatch(extra: &[String], script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(extra)
        .arg(script)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run sbatch ({e}): is this a SLURM login node with sbatch on the PATH? The \
                 scripts are written; submit them by hand with: sbatch {}",
                shell_quote(&script.display().to_string())
            )
        })?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable` prints `<job id>` or `<job id>;<cluster>`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() {
        bail!("sbatch {} printed no job id", script.display());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gres_and_time_forms() {
        for ok in ["gpu:1", "gpu:a100:2", "gpu", "gpu:1,shard:2"] {
            assert!(check_gres(ok).is_ok(), "{ok}");
        }
        for bad in ["", "gpu:0", "gpu::1", "gpu:a:b:1", "gpu 1"] {
            assert!(check_gres(bad).is_err(), "{bad}");
        }
        for ok in [
            "30",
            "30:00",
            "2:00:00",
            "1-12",
            "1-12:30",
            "1-12:30:00",
            "UNLIMITED",
        ] {
            assert!(check_time(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2h", "1-", "1:2:3:4", "-5"] {
            assert!(check_time(bad).is_err(), "{bad}");
        }
        for ok in ["16G", "4000", "512M", "1t"] {
            assert!(check_mem(ok).is_ok(), "{ok}");
        }
        for bad in ["", "G", "16GB", "1.5G", "-1"] {
            assert!(check_mem(bad).is_err(), "{bad}");
        }
        assert!(check_sbatch_arg("--constraint=a100").is_ok());
        assert!(check_sbatch_arg("--exclusive").is_ok());
        assert_eq!(
            check_sbatch_arg("--array=0-3").unwrap_err(),
            "--sbatch-arg --array=0-3: unet-lab writes that option itself; the scripts depend on it"
        );
        assert!(check_sbatch_arg("-C a100").is_err() && check_sbatch_arg("--x=a\nb").is_err());
        assert_eq!(sbatch_option("--comment=a b"), "--comment=\"a b\"");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    /// A directive's value as sbatch reads it (`_get_argument` in sbatch's opt.c): quotes group
    /// characters, a backslash keeps the next one as it is, and outside quotes whitespace or a
    /// `#` ends the value.
    fn sbatch_reads(line: &str) -> String {
        let (mut value, mut quote, mut escaped) = (String::new(), None, false);
        for c in line.chars() {
            match (escaped, quote) {
                (true, _) => escaped = false,
                (false, _) if c == '\\' => {
                    escaped = true;
                    continue;
                }
                (false, Some(q)) if c == q => {
                    quote = None;
                    continue;
                }
                (false, Some(_)) => {}
                (false, None) if c == '"' || c == '\'' => {
                    quote = Some(c);
                    continue;
                }
                (false, None) if c == '#' || c.is_whitespace() => break,
                (false, None) => {}
            }
            value.push(c);
        }
        value
    }

    fn directive<'a>(script: &'a str, key: &str) -> &'a str {
        let prefix = format!("#SBATCH --{key}=");
        script
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{script}"))
    }

    fn task(index: usize) -> crate::track::PlannedTask {
        crate::track::PlannedTask {
            index,
            variant: "base".into(),
            slug: "base".into(),
            seed: index as u64,
            fold: None,
            config_hash: "0".into(),
        }
    }

    #[test]
    fn paths_with_a_space_a_quote_and_a_hash_survive_sbatch_and_the_shell() {
        let root = std::env::temp_dir().join(format!(
            "unet-lab slurm \"q\" #1 50%-{}",
            std::process::id()
        ));
        let (cwd, exp_dir) = (root.join("work dir"), root.join("my out/study"));
        let plan = Plan {
            experiment: "study".into(),
            source_file: root.join("my study.toml").display().to_string(),
            file_hash: "0".into(),
            study_hash: String::new(),
            out: root.join("my out").display().to_string(),
            planned_at: String::new(),
            backend: None,
            edits: Vec::new(),
            tasks: vec![task(0), task(1)],
        };
        let exe = root.join("bin's dir/unet-lab");
        let opts = SlurmOptions::default();
        let scripts = write_scripts(&exp_dir, &plan, &exe, &cwd, &opts, true).unwrap();
        let array = std::fs::read_to_string(&scripts.array).unwrap();
        let report = std::fs::read_to_string(&scripts.report).unwrap();
        let decide = std::fs::read_to_string(scripts.decide.as_ref().unwrap()).unwrap();
        let logs = exp_dir.join("slurm/logs").display().to_string();
        for script in [&array, &report, &decide] {
            assert_eq!(
                sbatch_reads(directive(script, "chdir")),
                cwd.display().to_string()
            );
            // Every line above the directives is a comment: sbatch stops at the first command.
            let first = script
                .lines()
                .position(|l| l.starts_with("#SBATCH"))
                .unwrap();
            assert!(
                script.lines().take(first).all(|l| l.starts_with('#')),
                "{script}"
            );
        }
        // SLURM reads `%%` in an --output path as one `%`.
        let doubled = logs.replace('%', "%%");
        assert_eq!(
            sbatch_reads(directive(&array, "output")),
            format!("{doubled}/task-%A_%a.log")
        );
        assert_eq!(
            sbatch_reads(directive(&report, "output")),
            format!("{doubled}/report-%j.log")
        );
        let quoted = |p: &str| shell_quote(p);
        assert!(array.contains(&format!(
            "sbatch --array=3,7-9 {}",
            quoted(&scripts.array.display().to_string())
        )));
        assert!(array.contains(&format!(
            "exec {} run {} --out {} --task",
            quoted(&exe.display().to_string()),
            quoted(&plan.source_file),
            quoted(&plan.out)
        )));
        let exp_q = quoted(&exp_dir.display().to_string());
        assert!(report.contains(&format!("report {exp_q}\n")), "{report}");
        assert!(
            decide.contains(&format!("next-round {exp_q}\n")),
            "{decide}"
        );
        assert_eq!(
            sbatch_reads(directive(&decide, "output")),
            format!("{doubled}/decide-%j.log")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn control_characters_and_backslashed_log_paths_are_refused() {
        for (path, name) in [("a\nb", "newline"), ("a\tb", "tab"), ("a\u{1b}b", "U+001B")] {
            let e = check_script_path("--out", Path::new(path)).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!(
                    "--out: the path contains a control character ({name})"
                )),
                "{e}"
            );
        }
        assert!(check_script_path("--out", Path::new("a b\"c'#%")).is_ok());
        assert!(check_log_dir("--out", Path::new(r"a\b")).is_err());
        assert_eq!(sbatch_quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
    }
}
