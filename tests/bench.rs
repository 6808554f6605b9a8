//! `unet-lab bench`: the JSON contract of the issue (train_img_s, infer_img_s, peak_rss_mb) on
//! both width sets' code paths, each kernel choice, and bad arguments.

mod common;

use common::run_cli;
use serde_json::Value;

fn bench_json(extra: &[&str]) -> Value {
    let mut args = vec![
        "bench", "--size", "32", "--batch", "2", "--steps", "2", "--warmup", "1", "--json",
    ];
    args.extend_from_slice(extra);
    let out = run_cli(&args);
    assert_eq!(out.code, Some(0), "bench {extra:?} failed: {}", out.stderr);
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", out.stdout))
}

#[test]
fn bench_json_reports_throughput_memory_and_the_setup() {
    // Narrow widths take the direct kernels on 32×32 planes; wide ones the GEMM path.
    for widths in ["3,6,12", "64,128"] {
        for kernels in ["auto", "generic"] {
            let v = bench_json(&["--widths", widths, "--kernels", kernels]);
            for key in ["train_img_s", "infer_img_s", "peak_rss_mb"] {
                let x = v[key]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{key} missing: {v}"));
                assert!(
                    x.is_finite() && x > 0.0,
                    "{key} = {x} for widths {widths}, {kernels}"
                );
            }
            assert_eq!(v["kernels"], kernels);
            assert_eq!(
                v["backend"].as_str().map(|b| b.starts_with("cpu")),
                Some(true)
            );
            assert!(v["threads"].as_u64().unwrap_or(0) >= 1);
            assert!(v["parameters"].as_u64().unwrap_or(0) > 0);
        }
    }
}

#[test]
fn bench_parameter_counts_match_the_pytorch_network() {
    // The same counts as benchmarks/pytorch_unet.py (and the figures).
    let v = bench_json(&["--widths", "3,6,12,24,48", "--loss", "mse"]);
    assert_eq!(v["parameters"].as_u64(), Some(68_518));
    let v = bench_json(&["--widths", "3,6,12,24,48", "--loss", "ce", "--optim", "sgd"]);
    assert_eq!(v["parameters"].as_u64(), Some(68_522));
}

#[test]
fn bench_rejects_bad_arguments_with_a_clear_error() {
    let out = run_cli(&["bench", "--widths", "3,0,12"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--widths"), "{}", out.stderr);
    let out = run_cli(&["bench", "--widths", "3,6,12", "--size", "30"]);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("--size"), "{}", out.stderr);
    let out = run_cli(&["bench", "--kernels", "fastest"]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("auto") && out.stderr.contains("generic"),
        "{}",
        out.stderr
    );
}
