#!/usr/bin/env bash
# GPU check: trains nano for a few hundred steps on CUDA and on wgpu, in f32 and bf16, and prints
# one table (backend, precision, steps, tokens/s, first and last loss) plus the card's name.
# Meant for a GPU machine with no registry access: build the binary elsewhere and carry it.
#
#   cargo build --release -p berthash-cli --features cuda,wgpu
#   strip target/release/berthash
#   BERTHASH_BIN=target/release/berthash scripts/gpu_check.sh [OUT_DIR]
#
# Environment: BERTHASH_BIN (default target/release/berthash), STEPS (default 300),
# BATCH (default 256), BACKENDS (default "cuda wgpu"), PRECISIONS (default "f32 bf16").
set -uo pipefail
BIN="${BERTHASH_BIN:-target/release/berthash}"
OUT="${1:-${OUT:-/tmp/berthash-gpu-check}}"
STEPS="${STEPS:-300}"
BATCH="${BATCH:-256}"
mkdir -p "$OUT"
[ -x "$BIN" ] || { echo "gpu_check: no berthash binary at $BIN (set BERTHASH_BIN)" >&2; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

rows=()
status=0
for backend in ${BACKENDS:-cuda wgpu}; do
  for precision in ${PRECISIONS:-f32 bf16}; do
    run="$OUT/nano-$backend-$precision"
    echo "== $backend $precision"
    if "$BIN" pretrain --size nano --backend "$backend" --precision "$precision" \
        --max-steps "$STEPS" --batch-size "$BATCH" --warmup-steps 30 \
        --save-every 0 --eval-every 0 --log-every 25 --out "$run" --overwrite >"$run.log" 2>&1; then
      rows+=("$(python3 - "$run" "$backend" "$precision" <<'PY'
import json, sys
run, backend, precision = sys.argv[1:]
summary = json.load(open(f"{run}/summary.json"))
losses = [json.loads(l)["loss"] for l in open(f"{run}/metrics.jsonl") if '"loss"' in l]
print(f"| {backend} | {precision} | {summary['steps']} | {summary['tokens_per_s']:.0f} | {losses[0]:.3f} | {losses[-1]:.3f} |")
PY
)")
    else
      status=1
      rows+=("| $backend | $precision | failed: see $run.log | | | |")
      tail -5 "$run.log"
    fi
  done
done
echo
echo "| backend | precision | steps | tokens/s | first logged loss | last logged loss |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $status
