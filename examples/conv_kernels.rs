//! Times each 3×3 convolution kernel (direct, im2col + GEMM, Winograd F(2×2,3×3) and
//! F(4×4,3×3)) at the shapes of the U-Net's layers: the measurements behind the crossover
//! rules in `src/kernels/policy.rs` (docs/benchmarks.md).
//!
//! ```sh
//! cargo run --release --example conv_kernels                 # every layer, batch 2
//! cargo run --release --example conv_kernels -- 128,64,128   # cin,cout,side[;…]
//! ```
//! Best of three calls after one warm-up, in milliseconds; "-" where a kernel does not apply.

#![deny(clippy::too_many_lines)]

use std::time::Instant;
use unet_lab::kernels::{direct, gemm, winograd};

const BATCH: usize = 2;

/// The paper widths' 3×3 layers at 128×128 input, then the reduced widths'.
const LAYERS: [[usize; 3]; 21] = [
    [1, 64, 128],
    [64, 64, 128],
    [64, 128, 64],
    [128, 128, 64],
    [128, 256, 32],
    [256, 256, 32],
    [256, 512, 16],
    [512, 512, 16],
    [512, 1024, 8],
    [1024, 1024, 8],
    [1024, 512, 16],
    [512, 256, 32],
    [256, 128, 64],
    [128, 64, 128],
    [3, 6, 128],
    [6, 6, 128],
    [12, 24, 32],
    [24, 24, 32],
    [24, 48, 16],
    [48, 48, 16],
    [48, 24, 16],
];

fn best_ms(mut f: impl FnMut() -> Vec<f32>) -> f64 {
    std::hint::black_box(f());
    (0..3)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::MAX, f64::min)
}

fn pseudo_random(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

fn parse_layers(arg: &str) -> Result<Vec<[usize; 3]>, String> {
    arg.split(';')
        .map(|layer| {
            let v: Vec<usize> = layer
                .split(',')
                .map(|x| x.trim().parse().map_err(|e| format!("{layer:?}: {e}")))
                .collect::<Result<_, _>>()?;
            <[usize; 3]>::try_from(v).map_err(|_| format!("{layer:?}: expected cin,cout,side"))
        })
        .collect()
}

fn main() -> Result<(), String> {
    unet_lab::memory::keep_freed_memory();
    let layers = match std::env::args().nth(1) {
        Some(arg) => parse_layers(&arg)?,
        None => LAYERS.to_vec(),
    };
    println!(
        "{:>18} | {:^35} | {:^26} | {:^17}",
        "cin→cout @ side", "forward ms", "input gradient ms", "weight gradient ms"
    );
    println!(
        "{:>18} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8}",
        "", "direct", "gemm", "wino2", "wino4", "gemm", "wino2", "wino4", "gemm", "wino2"
    );
    for [cin, cout, side] in layers {
        let dims = [BATCH, cin, side, side];
        let x = pseudo_random(BATCH * cin * side * side, 1);
        let dy = pseudo_random(BATCH * cout * side * side, 2);
        let w = pseudo_random(cout * cin * 9, 3);
        let b = pseudo_random(cout, 4);
        // The direct kernels are far off the pace beyond a few thousand channel pairs.
        let direct = if cin * cout <= 4096 {
            format!(
                "{:8.2}",
                best_ms(|| direct::forward(&x, &w, &b, dims, cout))
            )
        } else {
            format!("{:>8}", "-")
        };
        println!(
            "{:>18} | {direct} {:8.2} {:8.2} {:8.2} | {:8.2} {:8.2} {:8.2} | {:8.2} {:8.2}",
            format!("{cin}→{cout} @ {side}"),
            best_ms(|| gemm::forward(&x, &w, &b, dims, cout)),
            best_ms(|| winograd::forward(&x, &w, &b, dims, cout)),
            best_ms(|| winograd::forward_f4(&x, &w, &b, dims, cout)),
            best_ms(|| gemm::input_grad(&dy, &w, dims, cout)),
            best_ms(|| winograd::input_grad(&dy, &w, dims, cout)),
            best_ms(|| winograd::input_grad_f4(&dy, &w, dims, cout)),
            best_ms(|| gemm::weight_grad(&dy, &x, dims, cout)),
            best_ms(|| winograd::weight_grad(&dy, &x, dims, cout)),
        );
    }
    Ok(())
}
