#!/usr/bin/env bash
# Side by side, alternating: unet-lab bench and the same network in PyTorch, twice each, for
# the configurations of docs/benchmarks.md. One JSON line per measurement goes to stdout.
#   benchmarks/compare.sh [path/to/unet-lab] > results.jsonl   (PYTHON=... picks the interpreter with torch)
set -euo pipefail
BIN=${1:-target/release/unet-lab}
HERE=$(cd "$(dirname "$0")" && pwd)
run_pair() {
    local args=("$@")
    for round in 1 2; do
        "$BIN" bench "${args[@]}" --json
        "${PYTHON:-python3}" "$HERE/pytorch_unet.py" "${args[@]}" --threads 2 2>/dev/null
    done
}
# The plain network (the paper's block) and the Kaggle winners' (BatchNorm + ELU), at both
# width sets.
for block in "--norm none --activation relu" "--norm batch --activation elu"; do
    # shellcheck disable=SC2086
    run_pair --widths 3,6,12,24,48 --size 128 --batch 8 --loss mse --optim adam --steps 20 --warmup 3 $block
    # shellcheck disable=SC2086
    run_pair --widths 64,128,256,512,1024 --size 128 --batch 2 --loss mse --optim adam --steps 4 --warmup 1 $block
done
run_pair --widths 3,6,12,24,48 --size 128 --batch 8 --loss ce --optim sgd --steps 20 --warmup 3
