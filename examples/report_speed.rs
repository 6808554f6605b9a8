//! How long `report` takes on a study of 24 runs × 50 epochs: the full rebuild (pictures,
//! overlays, GIFs, pages) and the live refresh after an epoch (tables, curves, pages), each
//! timed several times, alternating, median reported.
//!
//! The study is trained for real once (tiny images, so that it takes a couple of minutes):
//! 12 variants (a 3 × 2 × 2 grid) × 2 seeds, 50 epochs, 4 snapshot samples per run.
//!
//! `cargo run --release --example report_speed [-- REPEATS]` (default 5).

#![deny(clippy::too_many_lines)]

use std::time::Instant;

use unet_lab::study::{Overrides, RunOptions, Study};

const STUDY: &str = r#"
name = "report_speed"
seeds = [0, 1]
[data]
size = [16, 16]
count = 32
subjects = 4
[model]
widths = [2, 4, 8]
[train]
epochs = 50
batch_size = 8
lr = 3e-3
[report]
samples = 4
[grid]
"train.loss" = ["ce", "bce", "dice_ce"]
"train.optimizer" = ["adam", "sgd"]
"train.lr" = [3e-3, 1e-3]
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let repeats: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let root = std::env::temp_dir().join(format!("unet-lab-report-speed-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let file = root.join("study.toml");
    std::fs::write(&file, STUDY).unwrap();
    let study = Study::load(&file, Overrides::default()).unwrap();
    let runs = study.tasks.len();
    let opts = RunOptions {
        out: root.join("out"),
        ..RunOptions::default()
    };
    let exp_dir = study.dir(&opts.out);
    let t0 = Instant::now();
    let summary = study.run(&opts).unwrap();
    eprintln!(
        "trained {runs} runs × 50 epochs in {:.0} s ({})",
        t0.elapsed().as_secs_f64(),
        summary.line()
    );
    let (mut full, mut live) = (Vec::new(), Vec::new());
    let mut files = 0;
    for _ in 0..repeats {
        let start = Instant::now();
        files = unet_lab::report::render_experiment(&exp_dir).unwrap().len();
        full.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        unet_lab::report::render_tables_and_curves(&exp_dir).unwrap();
        live.push(start.elapsed().as_secs_f64());
    }
    println!("report of a {runs}-run × 50-epoch study ({files} files), median of {repeats}");
    println!("| rebuild | median s | min s |");
    println!("|---|---|---|");
    for (name, times) in [
        ("full `report`", &full),
        ("live refresh (after an epoch)", &live),
    ] {
        let min = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!("| {name} | {:.3} | {min:.3} |", median(times.clone()));
    }
    let _ = std::fs::remove_dir_all(&root);
}
