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
fn bench_times_the_winners_network_and_splits_out_its_norm() {
    // BatchNorm + ELU after each of the 18 3×3 convolutions of the reduced widths: a scale, a
    // shift, a running mean and a running variance per channel (Burn counts all four), and
    // the presence head's 48 weights and bias.
    let channels = 2 * (3 + 6 + 12 + 24 + 48) + 2 * (24 + 12 + 6 + 3);
    for norm in ["batch", "instance"] {
        let v = bench_json(&[
            "--widths",
            "3,6,12,24,48",
            "--norm",
            norm,
            "--activation",
            "elu",
            "--presence-head",
            "--profile",
        ]);
        assert_eq!(
            (v["norm"].as_str(), v["activation"].as_str()),
            (Some(norm), Some("elu"))
        );
        assert_eq!(v["presence_head"], true);
        let per_channel = if norm == "batch" { 4 } else { 2 };
        assert_eq!(
            v["parameters"].as_u64(),
            Some(68_518 + per_channel * channels + 49),
            "{v}"
        );
        let layers: Vec<&str> = v["profile"]["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["layer"].as_str().unwrap())
            .collect();
        let block = format!("{norm} norm + elu");
        for want in ["conv 3×3 (encoder)", "conv 3×3 (decoder)", block.as_str()] {
            assert!(layers.contains(&want), "no {want} in {layers:?}");
        }
    }
    let out = run_cli(&["bench", "--norm", "group"]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("batch") && out.stderr.contains("instance"),
        "{}",
        out.stderr
    );
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

#[test]
fn bench_refuses_half_precision_on_the_cpu_and_backends_not_built() {
    let out = run_cli(&["bench", "--precision", "f16", "--steps", "1"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "train.precision = \"f16\": the CPU backend trains in f32 only (its kernels are f32)"
        ),
        "{}",
        out.stderr
    );
    if !cfg!(feature = "cuda") {
        let out = run_cli(&["bench", "--backend", "cuda", "--steps", "1"]);
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        assert!(
            out.stderr
                .contains("backend \"cuda\" needs a build with the `cuda` feature"),
            "{}",
            out.stderr
        );
    }
}

/// `benchmarks/gpu_check.sh` with `env` added, writing to `out`.
fn gpu_check(out: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benchmarks/gpu_check.sh"
    ))
    .arg(out)
    .env("UNET_LAB_BIN", common::BIN)
    .env("UNET_LAB_CACHE", common::test_cache());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("bash runs")
}

#[test]
fn gpu_check_says_so_without_a_gpu() {
    if std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("skipped: this machine has nvidia-smi, so gpu_check.sh would measure");
        return;
    }
    let tmp = common::TempDir::new("gpu-check-none");
    let out = gpu_check(&tmp.path().join("out"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("gpu_check: no NVIDIA GPU here (nvidia-smi is missing or lists no GPU); nothing was measured."),
        "{stderr}"
    );
    assert!(!tmp.path().join("out/gpu_check.json").exists());
}

#[test]
fn gpu_check_rehearsed_on_the_cpu_writes_its_json_and_markdown() {
    // Every step but the build and PyTorch, on the CPU backend at tiny sizes: the plumbing
    // from the measurements to the two summaries.
    let tmp = common::TempDir::new("gpu-check-cpu");
    let study = common::Study::bare("tiny")
        .count(48)
        .widths(&[3, 6])
        .epochs(2)
        .batch_size(8)
        .samples(0)
        .write(&tmp, "tiny.toml");
    let out = tmp.path().join("out");
    let result = gpu_check(
        &out,
        &[
            ("GPU_CHECK_BACKEND", "cpu"),
            ("GPU_CHECK_EXPERIMENT", study.to_str().unwrap()),
        ],
    );
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(0), "{stderr}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gpu_check.json")).unwrap())
            .unwrap();
    let tags: Vec<&str> = json["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "unet-lab reduced batch 8",
            "unet-lab paper batch 2",
            "unet-lab paper batch 4",
            "unet-lab reduced batch 8 batchnorm+elu",
            "unet-lab paper batch 2 batchnorm+elu",
            "run cpu",
            "run cpu"
        ]
    );
    let runs: Vec<&Value> = json["measurements"].as_array().unwrap()[5..]
        .iter()
        .collect();
    assert_eq!(
        runs[0]["best_dice"], runs[1]["best_dice"],
        "the CPU is deterministic"
    );
    let md = std::fs::read_to_string(out.join("gpu_check.md")).unwrap();
    assert!(
        md.contains("| unet-lab paper batch 4 | 64,128,256,512,1024 | 16 | 4 |"),
        "{md}"
    );
    assert!(md.contains("| run cpu | tiny |"), "{md}");
    assert!(
        stderr.contains("paper widths: largest batch that ran at 16x16: 4"),
        "{stderr}"
    );
}
