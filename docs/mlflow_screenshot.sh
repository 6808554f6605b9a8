#!/usr/bin/env bash
# Makes docs/mlflow.png, the picture in docs/tracking.md: starts a real MLflow server (the venv
# .ci/run installs, or MLFLOW=path/to/mlflow) in a temporary directory, trains the shipped
# experiments/mse_adam.toml with Adam and SGD (--grid, 6 epochs) logging to it, and photographs
# MLflow's page comparing the two child runs in headless Chromium. Needs chromium and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source docs/chromium_shot.sh
mlflow="${MLFLOW:-$HOME/.cache/unet-lab/mlflow-venv/bin/mlflow}"
out=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
uri="http://127.0.0.1:$port"
setsid "$mlflow" server --host 127.0.0.1 --port "$port" --workers 1 \
    --backend-store-uri "sqlite:///$out/mlflow.db" --artifacts-destination "$out/artifacts" \
    >"$out/server.log" 2>&1 &
server=$!
disown
trap 'kill -TERM -- -$server 2>/dev/null || true; sleep 2; kill -KILL -- -$server 2>/dev/null || true; rm -rf "$out"' EXIT
until curl -sf "$uri/health" >/dev/null; do
    kill -0 "$server" 2>/dev/null || { cat "$out/server.log"; exit 1; }
    sleep 1
done
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/unet-lab"
"$bin" -q run experiments/mse_adam.toml --grid train.optimizer=adam,sgd --epochs 6 \
    --out "$out/reports" --mlflow "$uri"
# The child runs (one per variant here: one seed), and their experiment.
read -r experiment runs < <(curl -sf -X POST "$uri/api/2.0/mlflow/runs/search" \
    -H 'Content-Type: application/json' -d '{"experiment_ids": ["1"]}' | python3 -c '
import json, sys
runs = json.load(sys.stdin)["runs"]
children = sorted((r for r in runs if any(t["key"] == "mlflow.parentRunId" for t in r["data"]["tags"])),
                  key=lambda r: r["info"]["run_name"])
print(children[0]["info"]["experiment_id"], json.dumps([r["info"]["run_id"] for r in children], separators=(",", ":")))')
shot "$uri/#/compare-runs?runs=$runs&experiments=[\"$experiment\"]" "$PWD/docs/mlflow.png" 1400,2800 \
    20000 "$out/profile"
echo "wrote docs/mlflow.png"
