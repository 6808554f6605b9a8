#!/usr/bin/env bash
# GPU evidence in one command, on a machine with an NVIDIA GPU:
#   benchmarks/gpu_check.sh [OUT]            (default OUT: gpu_check/)
# 1. builds `--features cuda,fusion` (Burn's kernel fusion and autotuning, as Burn ships them);
# 2. `unet-lab bench --backend cuda` for the reduced widths (batch 8) and the paper widths at
#    batch 2 and at the largest batch that fits (doubling until a run fails); then the Kaggle
#    winners' network (BatchNorm + ELU) at the reduced widths (batch 8) and the paper widths
#    (batch 2);
# 3. the same network in PyTorch on the same GPU (benchmarks/pytorch_unet.py --device cuda),
#    eager and torch.compile, when PyTorch with CUDA is installed;
# 4. `unet-lab run EXPERIMENT --backend cuda` against the CPU run of the same file (default
#    experiments/mse_adam.toml): best validation Dice and wall time of each;
# 5. writes OUT/gpu_check.json (every measurement) and OUT/gpu_check.md (the summary).
# Without a GPU it stops at once with a message and exit status 3. Sized for under 10 minutes on
# an H100-class GPU, build included.
#
# For testing the script itself without a GPU: GPU_CHECK_BACKEND=cpu runs every step on the
# CPU backend at tiny sizes (UNET_LAB_BIN skips the build, GPU_CHECK_EXPERIMENT picks the
# study).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${1:-gpu_check}
BACKEND=${GPU_CHECK_BACKEND:-cuda}
EXPERIMENT=${GPU_CHECK_EXPERIMENT:-$ROOT/experiments/mse_adam.toml}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.jsonl"
: > "$LOG"
note() { echo "gpu_check: $*" >&2; }

if [ "$BACKEND" = cuda ]; then
    if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        note "no NVIDIA GPU here (nvidia-smi is missing or lists no GPU); nothing was measured."
        note "Run this on a machine with an NVIDIA GPU and its driver; without one, unet-lab trains on the CPU."
        exit 3
    fi
    GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
    SIZE=128 STEPS=10 WARMUP=3 MAX_BATCH=256
else
    GPU="none (rehearsal on the CPU backend)"
    SIZE=16 STEPS=1 WARMUP=0 MAX_BATCH=4
fi
note "device: $GPU"

if [ -n "${UNET_LAB_BIN:-}" ]; then
    BIN=$UNET_LAB_BIN
else
    start=$SECONDS
    (cd "$ROOT" && cargo build --release --features cuda,fusion)
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/unet-lab"
    note "build took $((SECONDS - start)) s"
fi

# One JSON object per measurement, tagged with what it measured.
record() { # tag json
    python3 -c 'import json,sys; d=json.loads(sys.argv[2]); d["tag"]=sys.argv[1]; print(json.dumps(d))' "$1" "$2" >> "$LOG"
}
bench() { # tag args...
    local tag=$1; shift
    local out
    if out=$("$BIN" bench --backend "$BACKEND" --size "$SIZE" --steps "$STEPS" --warmup "$WARMUP" --json "$@" 2>"$OUT/last_error.txt"); then
        record "$tag" "$out"
        return 0
    fi
    return 1
}

REDUCED=3,6,12,24,48
PAPER=64,128,256,512,1024
bench "unet-lab reduced batch 8" --widths $REDUCED --batch 8 || note "bench failed: $(tail -3 "$OUT/last_error.txt")"
bench "unet-lab paper batch 2" --widths $PAPER --batch 2 || note "bench failed: $(tail -3 "$OUT/last_error.txt")"
largest=2
batch=4
while [ "$batch" -le "$MAX_BATCH" ] && bench "unet-lab paper batch $batch" --widths $PAPER --batch "$batch"; do
    largest=$batch
    batch=$((batch * 2))
done
note "paper widths: largest batch that ran at ${SIZE}x${SIZE}: $largest"
# The Kaggle winners' network: BatchNorm + ELU after every 3x3 convolution.
WINNERS="--norm batch --activation elu"
# shellcheck disable=SC2086
bench "unet-lab reduced batch 8 batchnorm+elu" --widths $REDUCED --batch 8 $WINNERS || note "bench failed: $(tail -3 "$OUT/last_error.txt")"
# shellcheck disable=SC2086
bench "unet-lab paper batch 2 batchnorm+elu" --widths $PAPER --batch 2 $WINNERS || note "bench failed: $(tail -3 "$OUT/last_error.txt")"

if [ "$BACKEND" = cuda ] && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    for compile in "" "--compile"; do
        for cfg in "reduced 8 $REDUCED none relu" "paper 2 $PAPER none relu" "paper $largest $PAPER none relu" \
            "reduced 8 $REDUCED batch elu" "paper 2 $PAPER batch elu"; do
            set -- $cfg
            tag="pytorch${compile:+ compiled} $1 batch $2"
            [ "$4" = none ] || tag="$tag batchnorm+elu"
            if out=$(python3 "$HERE/pytorch_unet.py" --device cuda --widths "$3" --batch "$2" --size "$SIZE" \
                --steps "$STEPS" --warmup "$WARMUP" --norm "$4" --activation "$5" $compile 2>"$OUT/last_error.txt"); then
                record "$tag" "$out"
            else
                note "$tag failed: $(tail -1 "$OUT/last_error.txt")"
            fi
        done
    done
else
    note "PyTorch with CUDA is not installed: the PyTorch comparison is left out"
fi

train() { # tag backend
    local dir="$OUT/runs-$2" start=$SECONDS
    rm -rf "$dir"
    "$BIN" run "$EXPERIMENT" --backend "$2" --out "$dir" >"$OUT/run-$2.log" 2>&1 || { note "run --backend $2 failed: $(tail -3 "$OUT/run-$2.log")"; return; }
    local summary
    summary=$(find "$dir" -name summary.json | head -1)
    record "$1" "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); v=s["variants"][0]; print(json.dumps({"experiment": s["experiment"], "best_dice": v["best_dice"]["mean"], "seconds": int(sys.argv[2]), "backend": sys.argv[3]}))' "$summary" $((SECONDS - start)) "$2")"
}
train "run $BACKEND" "$BACKEND"
train "run cpu" cpu

python3 - "$LOG" "$OUT" "$GPU" <<'EOF'
import json, sys
log, out, gpu = sys.argv[1:4]
rows = [json.loads(l) for l in open(log) if l.strip()]
json.dump({"device": gpu, "measurements": rows}, open(f"{out}/gpu_check.json", "w"), indent=2)
md = [f"# GPU check\n", f"Device: {gpu}\n",
      "| measurement | widths | size | batch | train img/s | inference img/s | device |",
      "|---|---|---|---|---|---|---|"]
for r in rows:
    if "train_img_s" in r:
        md.append(f"| {r['tag']} | {','.join(map(str, r['widths']))} | {r['size']} | {r['batch']} | "
                  f"{r['train_img_s']:.1f} | {r['infer_img_s']:.1f} | {r.get('device', '')} |")
runs = [r for r in rows if "best_dice" in r]
if runs:
    md += ["", "| run | experiment | best val Dice | wall s |", "|---|---|---|---|"]
    md += [f"| {r['tag']} | {r['experiment']} | {r['best_dice']:.4f} | {r['seconds']} |" for r in runs]
open(f"{out}/gpu_check.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF
note "wrote $OUT/gpu_check.json and $OUT/gpu_check.md"
