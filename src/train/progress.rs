//! Progress output: a bar (epoch, loss, images/s, ETA) on a terminal, one plain line per
//! epoch otherwise (logs, CI).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::train::{EpochSummary, Progress};

/// A bar on a terminal, plain lines otherwise — and always plain lines with
/// `UNET_LAB_PROGRESS=plain` (the worker processes of `--jobs` share one terminal).
pub(crate) fn make_progress() -> Box<dyn Progress> {
    if crate::util::say::quiet() {
        return Box::new(NoProgress);
    }
    let plain = std::env::var("UNET_LAB_PROGRESS").is_ok_and(|v| v == "plain");
    if std::io::stderr().is_terminal() && !plain {
        Box::new(BarProgress::default())
    } else {
        Box::new(LogProgress)
    }
}

fn epoch_line(s: &EpochSummary) -> String {
    format!(
        "{} epoch {}/{}: train loss {:.4}, val loss {:.4}, Dice {:.4}, IoU {:.4}, presence {:.3} ({:.1} img/s, {:.1} s)",
        s.run,
        s.epoch,
        s.epochs,
        s.train_loss,
        s.val_loss,
        s.val.dice,
        s.val.iou,
        s.val.presence_accuracy,
        s.images_per_sec,
        s.seconds
    )
}

#[derive(Default)]
struct BarProgress {
    bar: Option<ProgressBar>,
    steps_per_epoch: usize,
    epochs: usize,
}

impl Progress for BarProgress {
    fn start(&mut self, run: &str, epochs: usize, steps_per_epoch: usize, first_epoch: usize) {
        let bar = ProgressBar::with_draw_target(
            Some((epochs * steps_per_epoch) as u64),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} steps · {msg} · ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(run.to_string());
        bar.set_position(((first_epoch - 1) * steps_per_epoch) as u64);
        bar.enable_steady_tick(Duration::from_millis(250));
        self.bar = Some(bar);
        self.steps_per_epoch = steps_per_epoch;
        self.epochs = epochs;
    }

    fn step(&mut self, epoch: usize, loss: f64, images_per_sec: f64) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!(
                "epoch {epoch}/{} · loss {loss:.4} · {images_per_sec:.1} img/s",
                self.epochs
            ));
        }
    }

    fn epoch(&mut self, summary: &EpochSummary) {
        if let Some(bar) = &self.bar {
            bar.println(epoch_line(summary));
        }
    }

    fn finish(&mut self, message: &str) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        eprintln!("{message}");
    }
}

/// Quiet when not on a terminal: one line per epoch, no bar redraws.
struct LogProgress;

impl Progress for LogProgress {
    fn start(&mut self, _run: &str, _epochs: usize, _steps: usize, _first_epoch: usize) {}
    fn step(&mut self, _epoch: usize, _loss: f64, _images_per_sec: f64) {}
    fn epoch(&mut self, summary: &EpochSummary) {
        eprintln!("{}", epoch_line(summary));
    }
    fn finish(&mut self, message: &str) {
        eprintln!("{message}");
    }
}

/// `-q`: nothing per step or epoch; only a run that did not finish well is told.
struct NoProgress;

impl Progress for NoProgress {
    fn start(&mut self, _run: &str, _epochs: usize, _steps: usize, _first_epoch: usize) {}
    fn step(&mut self, _epoch: usize, _loss: f64, _images_per_sec: f64) {}
    fn epoch(&mut self, _summary: &EpochSummary) {}
    fn finish(&mut self, message: &str) {
        if [": diverged", ": stopped", ": interrupted"]
            .iter()
            .any(|bad| message.contains(bad))
        {
            eprintln!("{message}");
        }
    }
}

/// What a live view is told of: an epoch was recorded, or a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveEvent {
    Epoch,
    RunEnded,
}

/// Called as training goes (the `run` command refreshes the report with it).
pub(crate) type LiveHook = std::sync::Arc<dyn Fn(LiveEvent) + Send + Sync>;

/// A progress output that also tells `hook` of every recorded epoch.
pub(crate) struct WithHook {
    pub inner: Box<dyn Progress>,
    pub hook: LiveHook,
}

impl Progress for WithHook {
    fn start(&mut self, run: &str, epochs: usize, steps: usize, first_epoch: usize) {
        self.inner.start(run, epochs, steps, first_epoch);
    }
    fn step(&mut self, epoch: usize, loss: f64, images_per_sec: f64) {
        self.inner.step(epoch, loss, images_per_sec);
    }
    fn epoch(&mut self, summary: &EpochSummary) {
        self.inner.epoch(summary);
        (self.hook)(LiveEvent::Epoch);
    }
    fn finish(&mut self, message: &str) {
        self.inner.finish(message);
    }
}
