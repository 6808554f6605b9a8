//! Per-epoch bookkeeping cost of a run in an empty experiment directory and in one holding 200
//! finished runs, side by side (alternating, median of each), plus the single-file scheme it
//! replaced (every epoch re-encoded every row of the study).
//!
//! `cargo run --release --example bookkeeping [-- RUNS EPOCHS STEPS_PER_EPOCH]`
//! (defaults 200 50 20: a 200-run study of 50-epoch runs).

#![deny(clippy::too_many_lines)]

use std::path::Path;
use std::time::Instant;

use unet_lab::track::{EpochRow, StepRow, Tracker};

fn epoch_row(variant: &str, seed: u64, epoch: usize, split: &str) -> EpochRow {
    let x = (seed as f64 * 0.37 + epoch as f64 * 0.011).fract();
    EpochRow {
        variant: variant.into(),
        seed,
        fold: None,
        epoch,
        split: split.into(),
        loss: 0.5 - 0.3 * x,
        dice: (split == "val").then_some(x),
        iou: (split == "val").then_some(x * 0.8),
        pixel_accuracy: (split == "val").then_some(0.9 + x / 20.0),
        precision: (split == "val").then_some(x),
        recall: (split == "val").then_some(x),
        presence_accuracy: (split == "val").then_some(x),
        lr: 1e-3,
        seconds: 1.0 + x,
        images_per_sec: 100.0 + x,
        load_seconds: 0.1,
        step_seconds: 0.9,
    }
}

fn epoch_rows(
    variant: &str,
    seed: u64,
    epoch: usize,
    steps: usize,
) -> (Vec<EpochRow>, Vec<StepRow>) {
    let rows = vec![
        epoch_row(variant, seed, epoch, "train"),
        epoch_row(variant, seed, epoch, "val"),
    ];
    let steps = (1..=steps)
        .map(|step| StepRow {
            variant: variant.into(),
            seed,
            fold: None,
            epoch,
            step,
            global_step: (epoch - 1) * steps + step,
            loss: 0.3 + 0.1 / step as f64,
            lr: 1e-3,
        })
        .collect();
    (rows, steps)
}

/// A finished run of `epochs` epochs, stored as `run` stores it.
fn write_finished_run(dir: &Path, seed: u64, epochs: usize, steps: usize) {
    let mut t = Tracker::with_rows(dir, Vec::new(), Vec::new());
    for e in 1..=epochs {
        let (r, s) = epoch_rows("done", seed, e, steps);
        t.epochs.extend(r);
        t.steps.extend(s);
    }
    t.flush().unwrap();
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (runs, epochs, steps) = (
        *args.first().unwrap_or(&200),
        *args.get(1).unwrap_or(&50),
        *args.get(2).unwrap_or(&20),
    );
    let root = std::env::temp_dir().join(format!("unet-lab-bookkeeping-{}", std::process::id()));
    let empty = root.join("empty/exp");
    let full = root.join("full/exp");
    std::fs::create_dir_all(&empty).unwrap();
    let t0 = Instant::now();
    for seed in 0..runs as u64 {
        write_finished_run(
            &full.join("done").join(format!("seed-{seed}")),
            seed,
            epochs,
            steps,
        );
    }
    eprintln!(
        "wrote {runs} finished runs of {epochs} epochs in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // The new run's own tracker in each directory; epochs recorded alternately.
    let mut in_empty = Tracker::with_rows(&empty.join("new/seed-0"), Vec::new(), Vec::new());
    let mut in_full = Tracker::with_rows(&full.join("new/seed-0"), Vec::new(), Vec::new());
    // The single-file scheme: one tracker for the whole study, already holding 200 runs.
    let mut study = Tracker::with_rows(&root.join("single-file"), Vec::new(), Vec::new());
    for seed in 0..runs as u64 {
        for e in 1..=epochs {
            let (r, s) = epoch_rows("done", seed, e, steps);
            study.epochs.extend(r);
            study.steps.extend(s);
        }
    }
    let (mut t_empty, mut t_full, mut t_single) = (Vec::new(), Vec::new(), Vec::new());
    for e in 1..=epochs {
        for (tracker, times) in [
            (&mut in_empty, &mut t_empty),
            (&mut in_full, &mut t_full),
            (&mut study, &mut t_single),
        ] {
            let (r, s) = epoch_rows("new", 0, e, steps);
            let start = Instant::now();
            tracker.epochs.extend(r);
            tracker.steps.extend(s);
            tracker.flush().unwrap();
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!(
        "per-epoch bookkeeping of one run (rows appended + Parquet written), {epochs} epochs, {steps} steps/epoch"
    );
    println!("| experiment directory | median ms / epoch | last epoch ms |");
    println!("|---|---|---|");
    println!(
        "| empty | {:.2} | {:.2} |",
        median(t_empty.clone()),
        t_empty.last().unwrap()
    );
    println!(
        "| {runs} finished runs | {:.2} | {:.2} |",
        median(t_full.clone()),
        t_full.last().unwrap()
    );
    println!(
        "| {runs} finished runs, single-file scheme (before) | {:.2} | {:.2} |",
        median(t_single.clone()),
        t_single.last().unwrap()
    );
    println!(
        "ratio {runs}-run / empty: {:.2}; single-file / per-run: {:.0}×",
        median(t_full.clone()) / median(t_empty.clone()),
        median(t_single) / median(t_full)
    );
    std::fs::remove_dir_all(&root).unwrap();
}
