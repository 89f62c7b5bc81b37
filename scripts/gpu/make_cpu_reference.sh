#!/usr/bin/env bash
# Records the CPU run that the GPU check's correctness step reproduces on CUDA:
# scripts/gpu/cpu_reference.json holds its pretrain flags (replayed by scripts/gpu_check.sh) and
# its per-step losses. nano, 300 steps of 32 x 128 on the built-in sample corpus, warm-up 30,
# dropout off (pretrain-check.toml), every step logged. About 2 minutes on two cores.
#
#   scripts/gpu/make_cpu_reference.sh [BERTHASH_BIN]     # default target/release/berthash
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
BIN="${1:-${BERTHASH_BIN:-target/release/berthash}}"
[[ -x "$BIN" ]] || { echo "make_cpu_reference: no berthash at $BIN" >&2; exit 2; }
RUN="$(mktemp -d)/cpu-reference"
trap 'rm -rf "$(dirname "$RUN")"' EXIT

# The flags the GPU run replays (flag=value; gpu_check.sh adds --backend, --precision, --config).
ARGS=(max-steps=300 batch-size=32 warmup-steps=30 seed=42 log-every=1 save-every=0 eval-every=0)
flags=()
for kv in "${ARGS[@]}"; do flags+=("--${kv%%=*}" "${kv#*=}"); done

cmd=("$BIN" pretrain --size nano --backend cpu --precision f32 --config scripts/gpu/pretrain-check.toml
  "${flags[@]}" --out "$RUN")
echo "== ${cmd[*]}"
start=$SECONDS
"${cmd[@]}"
echo "   $((SECONDS - start)) s"

ref_args=()
for kv in "${ARGS[@]}"; do ref_args+=(--arg "$kv"); done
python3 scripts/gpu/gpu_report.py reference "$RUN" --out scripts/gpu/cpu_reference.json \
  --config scripts/gpu/pretrain-check.toml "${ref_args[@]}" \
  --command "berthash pretrain --size nano --backend cpu --precision f32 --config scripts/gpu/pretrain-check.toml ${flags[*]}" \
  --machine "$(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
