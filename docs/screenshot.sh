#!/usr/bin/env bash
# Makes docs/report.png, the README's picture: trains the shipped experiments/mse_adam.toml into
# a temporary directory and photographs its page in headless Chromium (top of the page, 1280 px
# wide). Prints the training's wall time, the figure the README quotes. Needs chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/unet-lab"
start=$(date +%s.%N)
"$bin" -q run experiments/mse_adam.toml --out "$out"
end=$(date +%s.%N)
echo "mse_adam: $(echo "$end - $start" | bc) s wall time on $(nproc) CPU threads ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'))"
"$bin" runs "$out/mse_adam"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1' \
    --user-data-dir="$out/profile" --hide-scrollbars --window-size=1280,1500 \
    --virtual-time-budget=5000 --screenshot="$PWD/docs/report.png" \
    "file://$out/mse_adam/index.html" 2>/dev/null
echo "wrote docs/report.png"
