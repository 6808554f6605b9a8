//! The command line of a worker of a planned study, or of the run that finishes it: the one
//! place where `--out`, `--backend`, the variants and the task selection are written — for the
//! processes of `--jobs`, the SLURM array script and the finishing command `status` prints.

use std::path::PathBuf;

use crate::config::{BackendKind, Edit};
use crate::util::shell_quote;

/// The program a command starts.
#[derive(Debug, Clone)]
pub(crate) enum Program {
    /// `unet-lab`, found on the PATH (commands printed for a person to type).
    OnPath,
    /// This binary, by its path (worker processes and scripts).
    Exe(PathBuf),
}

/// Which share of the study the command trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Share {
    /// Every task that is not finished (a planner: merges and reports at the end).
    Whole,
    /// One task, `--task I`.
    Task(usize),
    /// The task of the SLURM array index, `--task "$SLURM_ARRAY_TASK_ID"` (scripts only).
    ArrayTask,
    /// A worker of `--jobs`: claims tasks until none is left.
    Worker,
}

/// `unet-lab run FILE --out OUT …` for one worker.
#[derive(Debug, Clone)]
pub(crate) struct WorkerCommand {
    pub program: Program,
    pub file: PathBuf,
    pub out: PathBuf,
    pub backend: Option<BackendKind>,
    /// `--set`, `--grid`, `--epochs`, as the planner was given them.
    pub edits: Vec<Edit>,
    pub variants: Vec<String>,
    pub share: Share,
    /// `--no-report`: a worker leaves merging and the report to the planner.
    pub no_report: bool,
    /// `--device N`: the GPU of this worker.
    pub device: Option<usize>,
    /// `--mlflow URI`: the tracking server the runs log to.
    pub mlflow: Option<String>,
}

/// A word of the command: `Shell` marks text already written for a shell.
enum Word {
    Plain(String),
    Path(PathBuf),
    Shell(&'static str),
}

impl WorkerCommand {
    /// The command of a study's file and output directory, training the whole study.
    pub fn new(program: Program, file: impl Into<PathBuf>, out: impl Into<PathBuf>) -> Self {
        WorkerCommand {
            program,
            file: file.into(),
            out: out.into(),
            backend: None,
            edits: Vec::new(),
            variants: Vec::new(),
            share: Share::Whole,
            no_report: false,
            device: None,
            mlflow: None,
        }
    }

    fn words(&self) -> Vec<Word> {
        let plain = |s: &str| Word::Plain(s.to_string());
        let mut words = vec![
            plain("run"),
            Word::Path(self.file.clone()),
            plain("--out"),
            Word::Path(self.out.clone()),
        ];
        if let Some(b) = self.backend {
            words.extend([plain("--backend"), plain(b.name())]);
        }
        for e in &self.edits {
            words.extend([plain(e.flag_name()), plain(&e.arg)]);
        }
        for v in &self.variants {
            words.extend([plain("--variant"), plain(v)]);
        }
        match self.share {
            Share::Whole => {}
            Share::Task(i) => words.extend([plain("--task"), plain(&i.to_string())]),
            Share::ArrayTask => {
                words.extend([plain("--task"), Word::Shell("\"$SLURM_ARRAY_TASK_ID\"")])
            }
            Share::Worker => words.push(plain("--worker")),
        }
        if self.no_report {
            words.push(plain("--no-report"));
        }
        if let Some(d) = self.device {
            words.extend([plain("--device"), plain(&d.to_string())]);
        }
        if let Some(uri) = &self.mlflow {
            words.extend([plain("--mlflow"), plain(uri)]);
        }
        words
    }

    /// The command for a POSIX shell, every path and name quoted.
    pub(crate) fn shell(&self) -> String {
        let program = match &self.program {
            Program::OnPath => "unet-lab".to_string(),
            Program::Exe(path) => shell_quote(&path.display().to_string()),
        };
        let words = self.words().into_iter().map(|w| match w {
            // Flags and numbers need no quotes; names and paths do.
            Word::Plain(s)
                if s.starts_with("--") || s.chars().all(|c| c.is_ascii_alphanumeric()) =>
            {
                s
            }
            Word::Plain(s) => shell_quote(&s),
            Word::Path(p) => shell_quote(&p.display().to_string()),
            Word::Shell(s) => s.to_string(),
        });
        std::iter::once(program)
            .chain(words)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command as a process to start (a `--jobs` worker); `ArrayTask` is for scripts only.
    pub fn process(&self) -> std::process::Command {
        let program = match &self.program {
            Program::OnPath => PathBuf::from("unet-lab"),
            Program::Exe(path) => path.clone(),
        };
        let mut cmd = std::process::Command::new(program);
        for w in self.words() {
            match w {
                Word::Plain(s) => cmd.arg(s),
                Word::Path(p) => cmd.arg(p),
                Word::Shell(s) => cmd.arg(s),
            };
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_writes_the_same_flags_in_the_same_order() {
        let mut c = WorkerCommand::new(Program::OnPath, "my study.toml", "out");
        assert_eq!(c.shell(), "unet-lab run 'my study.toml' --out 'out'");
        c.backend = Some(BackendKind::Cuda);
        c.share = Share::Task(2);
        assert_eq!(
            c.shell(),
            "unet-lab run 'my study.toml' --out 'out' --backend cuda --task 2"
        );
        c.program = Program::Exe(PathBuf::from("/opt/bin's/unet-lab"));
        c.share = Share::ArrayTask;
        c.no_report = true;
        assert_eq!(
            c.shell(),
            r#"'/opt/bin'\''s/unet-lab' run 'my study.toml' --out 'out' --backend cuda --task "$SLURM_ARRAY_TASK_ID" --no-report"#
        );
        c.share = Share::Worker;
        c.variants = vec!["lr 1e-3".into()];
        c.device = Some(1);
        let args: Vec<String> = c
            .process()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "run",
                "my study.toml",
                "--out",
                "out",
                "--backend",
                "cuda",
                "--variant",
                "lr 1e-3",
                "--worker",
                "--no-report",
                "--device",
                "1"
            ]
        );
        assert!(
            c.shell().contains("--variant 'lr 1e-3' --worker"),
            "{}",
            c.shell()
        );
    }
}
