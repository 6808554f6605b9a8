#!/usr/bin/env bash
# Makes docs/report.png, the README's picture: trains the shipped experiments/mse_adam.toml into
# a temporary directory and photographs its page in headless Chromium (top of the page, 1280 px
# wide). Prints the training's wall time, the figure the README quotes. Needs chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
source docs/chromium_shot.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/unet-lab"
start=$(date +%s.%N)
"$bin" -q run experiments/mse_adam.toml --out "$out"
end=$(date +%s.%N)
echo "mse_adam: $(echo "$end - $start" | bc) s wall time on $(nproc) CPU threads ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
"$bin" runs "$out/mse_adam"
shot "file://$out/mse_adam/index.html" "$PWD/docs/report.png" 1280,1500 5000 "$out/profile"
echo "wrote docs/report.png"
