//! The wgpu backend on a real Vulkan driver: Mesa's software rasteriser (lavapipe, adapter
//! "llvmpipe", `mesa-vulkan-drivers libvulkan1`) in CI, any GPU elsewhere. `.ci/run` runs
//! these with `--features wgpu`; without the feature, or without a Vulkan driver, each test
//! says it was skipped.

mod common;

#[cfg(not(feature = "wgpu"))]
#[test]
fn wgpu_tests_need_the_wgpu_feature() {
    eprintln!(
        "skipped: built without the `wgpu` feature (cargo test --release --features wgpu --test wgpu)"
    );
}

#[cfg(feature = "wgpu")]
mod on_wgpu {
    use std::ffi::OsStr;
    use std::path::{Path, PathBuf};

    use super::common::{CliResult, TempDir, run_cli_in, write_experiment};
    use unet_lab::track::Tracker;

    /// Runs the binary in `sandbox`, with the driver's and cubecl's caches under one temp
    /// directory the wgpu tests share (Mesa keeps compiled shaders in `$XDG_CACHE_HOME`, cubecl
    /// its autotune results there or beside the nearest Cargo.toml above the working
    /// directory): compiling the kernels on lavapipe costs minutes, so later runs reuse them.
    fn cli(sandbox: &Path, args: &[&str]) -> CliResult {
        cli_with(sandbox, args, &[])
    }

    fn cli_with(sandbox: &Path, args: &[&str], env: &[(&str, &str)]) -> CliResult {
        let shared = std::env::temp_dir().join("unet-lab-test-wgpu-cache");
        let (cache, runtime) = (shared.join("cache"), sandbox.join("runtime"));
        for dir in [&cache, &runtime] {
            std::fs::create_dir_all(dir).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut all: Vec<(&str, &OsStr)> = vec![
            ("HOME", shared.as_os_str()),
            ("XDG_CACHE_HOME", cache.as_os_str()),
            ("XDG_RUNTIME_DIR", runtime.as_os_str()),
        ];
        all.extend(env.iter().map(|(k, v)| (*k, OsStr::new(v))));
        run_cli_in(Some(sandbox), args, &all)
    }

    /// The adapter, or `None` (and a note) when this machine has no Vulkan driver.
    fn adapter(sandbox: &Path) -> Option<String> {
        let r = cli(
            sandbox,
            &[
                "bench",
                "--backend",
                "wgpu",
                "--widths",
                "2,4",
                "--size",
                "8",
                "--batch",
                "1",
                "--steps",
                "1",
                "--warmup",
                "0",
                "--json",
            ],
        );
        if r.code != Some(0) && r.stderr.contains("no Vulkan adapter") {
            eprintln!(
                "skipped: no Vulkan driver here (install mesa-vulkan-drivers libvulkan1): {}",
                r.stderr.trim()
            );
            return None;
        }
        assert_eq!(r.code, Some(0), "bench on wgpu failed: {}", r.stderr);
        let json: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
        Some(json["device"].as_str().unwrap().to_string())
    }

    fn bench(sandbox: &Path, backend: &str, widths: &str) -> serde_json::Value {
        let r = cli(
            sandbox,
            &[
                "bench",
                "--backend",
                backend,
                "--widths",
                widths,
                "--size",
                "16",
                "--batch",
                "1",
                "--steps",
                "1",
                "--warmup",
                "1",
                "--json",
            ],
        );
        assert_eq!(r.code, Some(0), "bench --backend {backend}: {}", r.stderr);
        serde_json::from_str(r.stdout.trim()).unwrap()
    }

    #[test]
    fn bench_runs_both_width_sets_on_wgpu() {
        let tmp = TempDir::new("wgpu-bench");
        let Some(adapter) = adapter(tmp.path()) else {
            return;
        };
        for widths in ["3,6,12,24,48", "64,128,256,512,1024"] {
            let gpu = bench(tmp.path(), "wgpu", widths);
            let cpu = bench(tmp.path(), "cpu", widths);
            assert!(
                gpu["backend"]
                    .as_str()
                    .unwrap()
                    .starts_with("wgpu (burn-wgpu, Vulkan)")
            );
            assert_eq!(gpu["device"].as_str().unwrap(), adapter);
            assert_eq!(gpu["parameters"], cpu["parameters"], "widths {widths}");
            for key in ["train_img_s", "infer_img_s"] {
                let v = gpu[key].as_f64().unwrap();
                assert!(v.is_finite() && v > 0.0, "widths {widths}: {key} = {v}");
            }
        }
        // Half precision where the adapter has it (lavapipe has f16, not bf16).
        let r = cli(
            tmp.path(),
            &[
                "bench",
                "--backend",
                "wgpu",
                "--precision",
                "f16",
                "--widths",
                "3,6,12",
                "--size",
                "16",
                "--batch",
                "2",
                "--steps",
                "2",
                "--warmup",
                "1",
                "--json",
            ],
        );
        if r.stderr.contains("the device has no f16 arithmetic") {
            eprintln!("skipped the f16 bench: {}", r.stderr.trim());
        } else {
            assert_eq!(r.code, Some(0), "bench --precision f16: {}", r.stderr);
            let v: serde_json::Value = serde_json::from_str(r.stdout.trim()).unwrap();
            assert_eq!(v["precision"], "f16");
            assert!(v["train_img_s"].as_f64().unwrap() > 0.0);
        }
        let r = cli(
            tmp.path(),
            &[
                "bench",
                "--backend",
                "wgpu",
                "--precision",
                "bf16",
                "--widths",
                "3,6",
                "--size",
                "16",
                "--steps",
                "1",
            ],
        );
        if r.code == Some(0) {
            eprintln!("note: this adapter has bf16");
        } else {
            assert!(
                r.stderr.contains(
                    "cannot train: the device has no bf16 arithmetic (train.precision = \"bf16\")"
                ),
                "{}",
                r.stderr
            );
        }
    }

    #[test]
    fn without_a_vulkan_driver_nothing_is_written() {
        let tmp = TempDir::new("wgpu-no-driver");
        if adapter(tmp.path()).is_none() {
            return;
        }
        // The Vulkan loader reads only the drivers listed here: none.
        let none = [("VK_ICD_FILENAMES", "/nonexistent/icd.json")];
        let file = learning_config(&tmp, "[0]");
        let out = tmp.path().join("out");
        let r = cli_with(
            tmp.path(),
            &[
                "run",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--backend",
                "wgpu",
            ],
            &none,
        );
        assert_eq!(r.code, Some(1), "{}", r.stderr);
        assert!(
            r.stderr.contains(
                "error: no Vulkan adapter: wgpu found no driver or device (on Linux install a \
                 Vulkan driver, e.g. Debian's mesa-vulkan-drivers and libvulkan1), or use --backend cpu"
            ),
            "{}",
            r.stderr
        );
        assert!(!out.exists(), "nothing is written");
    }

    /// A problem the CPU learns in 96 steps (best validation Dice 0.81 ± 0.07 over seeds 0–2,
    /// against 0.58 for predicting every mask empty): lavapipe takes about a second a step.
    fn learning_config(tmp: &TempDir, seeds: &str) -> PathBuf {
        write_experiment(
            tmp,
            "learn.toml",
            &format!(
                r#"
name = "learn"
seeds = {seeds}
[data]
size = [32, 32]
count = 256
subjects = 8
[model]
widths = [4, 8, 16]
[train]
loss = "dice_ce"
epochs = 8
batch_size = 16
lr = 3e-3
[report]
samples = 2
"#
            ),
        )
    }

    fn train(tmp: &TempDir, file: &Path, out: &Path, backend: &str) -> Tracker {
        let r = cli(
            tmp.path(),
            &[
                "run",
                file.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--backend",
                backend,
            ],
        );
        assert_eq!(r.code, Some(0), "run --backend {backend}: {}", r.stderr);
        Tracker::open(&out.join("learn")).unwrap()
    }

    /// (first training loss, last training loss, first val Dice, best val Dice) of a seed.
    fn curve(tracker: &Tracker, seed: u64) -> (f64, f64, f64, f64) {
        let rows = |split: &str| -> Vec<_> {
            let mut rows: Vec<_> = tracker
                .epochs
                .iter()
                .filter(|r| r.split == split && r.seed == seed)
                .collect();
            rows.sort_by_key(|r| r.epoch);
            rows
        };
        let (train, val) = (rows("train"), rows("val"));
        let best = val.iter().filter_map(|r| r.dice).fold(0.0, f64::max);
        (
            train[0].loss,
            train.last().unwrap().loss,
            val[0].dice.unwrap(),
            best,
        )
    }

    #[test]
    fn training_on_wgpu_learns_as_the_cpu_does_and_its_checkpoints_predict_the_same_on_cpu() {
        let tmp = TempDir::new("wgpu-learns");
        if adapter(tmp.path()).is_none() {
            return;
        }
        // Both backends start seed 0 from the same weights (drawn on the CPU); the CPU's
        // spread over three seeds is the noise the wgpu run's Dice is compared with.
        let cpu = train(
            &tmp,
            &learning_config(&tmp, "[0, 1, 2]"),
            &tmp.path().join("cpu"),
            "cpu",
        );
        let cpu_best: Vec<f64> = (0..3).map(|s| curve(&cpu, s).3).collect();
        let mean = cpu_best.iter().sum::<f64>() / 3.0;
        let sd = (cpu_best.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / 2.0).sqrt();

        let out = tmp.path().join("wgpu");
        let gpu = train(&tmp, &learning_config(&tmp, "[0]"), &out, "wgpu");
        let (loss_first, loss_last, dice_first, dice_best) = curve(&gpu, 0);
        assert!(
            loss_last < 0.7 * loss_first,
            "training loss did not fall on wgpu: {loss_first} → {loss_last}"
        );
        assert!(
            dice_best > dice_first + 0.1 && dice_best > 0.68,
            "Dice did not rise on wgpu: first {dice_first}, best {dice_best}"
        );
        eprintln!(
            "wgpu: loss {loss_first:.4} → {loss_last:.4}, Dice {dice_first:.4} → best \
             {dice_best:.4}; CPU best Dice {mean:.4} ± {sd:.4} over seeds {cpu_best:?}"
        );
        // The same initial weights and batches: the first steps' losses agree to float
        // rounding (they drift apart later, as sums in another order do).
        let first_losses = |tracker: &Tracker| -> Vec<f64> {
            let mut steps: Vec<_> = tracker.steps.iter().filter(|r| r.seed == 0).collect();
            steps.sort_by_key(|r| r.global_step);
            steps.iter().take(3).map(|r| r.loss).collect()
        };
        let (cpu_first, gpu_first) = (first_losses(&cpu), first_losses(&gpu));
        assert_eq!(gpu_first.len(), 3);
        for (c, g) in cpu_first.iter().zip(&gpu_first) {
            assert!(
                (c - g).abs() <= 1e-4 * c.abs(),
                "seed 0's first losses: CPU {cpu_first:?}, wgpu {gpu_first:?}"
            );
        }
        let tolerance = (3.0 * sd).max(0.05);
        assert!(
            (dice_best - mean).abs() <= tolerance,
            "wgpu best Dice {dice_best:.4} vs CPU {mean:.4} ± {sd:.4} over seeds {cpu_best:?}"
        );
        let manifest = unet_lab::track::VariantManifest::load(&out.join("learn").join("base"))
            .unwrap()
            .unwrap();
        let record = &manifest.runs[0];
        assert!(
            record.backend.starts_with("wgpu (burn-wgpu, Vulkan)"),
            "{}",
            record.backend
        );
        assert!(
            record.device.contains(" · "),
            "adapter and type: {}",
            record.device
        );
        let page = std::fs::read_to_string(out.join("learn").join("index.html")).unwrap();
        assert!(
            page.contains(&record.device),
            "the report names the adapter"
        );

        // The checkpoint written on wgpu, loaded on the CPU and on wgpu, gives the same masks.
        let images = tmp.path().join("images");
        predict_same_masks(&tmp, &out.join("learn").join("base"), &images);
    }

    /// Writes a few synthetic images, predicts them on both backends, and compares the masks.
    fn predict_same_masks(tmp: &TempDir, variant: &Path, images: &Path) {
        std::fs::create_dir_all(images).unwrap();
        let ds = unet_lab::data::load(
            &unet_lab::track::VariantManifest::load(variant)
                .unwrap()
                .unwrap()
                .config
                .data,
        )
        .unwrap();
        let [h, w] = [32usize, 32];
        for (k, &i) in ds.val.iter().take(12).enumerate() {
            let px: Vec<u8> = ds.samples[i]
                .image
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            image::GrayImage::from_raw(w as u32, h as u32, px)
                .unwrap()
                .save(images.join(format!("{k}.png")))
                .unwrap();
        }
        let mut masks = Vec::new();
        for backend in ["cpu", "wgpu"] {
            let out = tmp.path().join(format!("pred-{backend}"));
            let r = cli(
                tmp.path(),
                &[
                    "predict",
                    "--run",
                    variant.to_str().unwrap(),
                    "--input",
                    images.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                    "--backend",
                    backend,
                ],
            );
            assert_eq!(r.code, Some(0), "predict --backend {backend}: {}", r.stderr);
            let mut pixels = Vec::new();
            for k in 0..12 {
                let m = image::open(out.join(format!("{k}_mask.png")))
                    .unwrap()
                    .to_luma8();
                pixels.extend(m.into_raw());
            }
            masks.push(pixels);
        }
        let differ = masks[0]
            .iter()
            .zip(&masks[1])
            .filter(|(a, b)| a != b)
            .count();
        let share = differ as f64 / masks[0].len() as f64;
        let foreground = masks[0].iter().filter(|&&p| p > 0).count();
        assert!(foreground > 0, "the CPU predicted no foreground at all");
        eprintln!(
            "predict: {differ} of {} mask pixels differ between CPU and wgpu ({foreground} \
             foreground on the CPU)",
            masks[0].len()
        );
        // Same parameters, different summation orders: only pixels within float rounding of
        // the threshold may flip.
        assert!(
            share <= 1e-3,
            "{differ} of {} mask pixels differ between CPU and wgpu ({foreground} foreground)",
            masks[0].len()
        );
    }
}
