#!/usr/bin/env bash
# GPU check: the one command for a GPU machine. Measures berthash on CUDA against PyTorch on the
# same card, checks CUDA training against a CPU reference, and writes what it measured as it goes.
#
# On the GPU machine, from the repository root, with the folder made by scripts/gpu_bundle.sh:
#   bash gpu-bundle/scripts/gpu_check.sh [OUT_DIR]
# From a checkout with a CUDA build instead:
#   BERTHASH_BIN=target/release/berthash scripts/gpu_check.sh [OUT_DIR]
#
# OUT_DIR (default $OUT, else /tmp/berthash-gpu-check) receives six files:
#   results.jsonl  one JSON line per measurement, appended as each finishes (a time-out keeps
#                  what was done); every line has engine (berthash, pytorch-eager,
#                  pytorch-compile), backend, precision (f32, bf16), size, batch, seq, phase,
#                  variant and tokens_per_s, plus FLOPs per token and MFU where they apply
#                  (scripts/gpu/gpu_report.py has the formula); and one line
#                  {"engine":"berthash","check":"cuda-vs-cpu",...} from the correctness step.
#   table.md       the rows as a table, the targets met or missed, the machine.
#   gpu_check.log  everything the steps printed.
#   kernels.md     the kernels of one training step and their GPU time, and its slowest single
#                  launches in the order the step ran them (the `profile` step, 256 x 128);
#                  kernels-1024.md the same at 1024 x 128.
#   kernel-cache.tar.xz  the kernel cache berthash filled (BERTHASH_KERNEL_CACHE: compiled
#                  kernels and autotune results), written on exit; `scripts/gpu_bundle.sh
#                  --kernel-cache FILE` carries it to the next check, which goes on from there.
#                  On a cold cache, autotuning nano's training step takes many minutes (each
#                  matrix-product shape 25-45 s on an H100), more than one check's budget.
# Run directories, the unpacked binaries and the kernel cache go to WORK_DIR (default
# /tmp/berthash-gpu). The exit
# status is 0 once table.md is written (2 without a binary): the verdicts are in the table and
# the check line.
#
# Binaries: berthash.xz (fusion and autotune, as users build it), and where the bundle has them
# berthash-notune.xz (no autotune: CubeCL's default kernel for each operation, compiled in
# seconds) and berthash-nofusion.xz (neither fusion nor autotune: compared with the no-autotune
# build). Rows say which ran them (`fusion`, `autotune`).
#
# Steps, in order, each in a time box (`timeout`), all within BUDGET_S (default 270 s):
#   probe      the CUDA backend starts and runs a kernel (else the berthash CUDA steps are skipped)
#   target     nano, bf16, masked-only training at 256 x 128 and 1024 x 128: PyTorch eager (SDPA
#              attention, fused AdamW, bf16 autocast), then berthash bench (the no-autotune build
#              where the bundle has one); berthash's rows also time the parts of its step
#              (`--breakdown`: cast, forward, backward, clip, optimizer, each ended by a device
#              sync) and its first step (compiling, and tuning where it does)
#   check      300 nano pre-training steps on CUDA in f32 and in bf16 (dropout off, warm-up 30,
#              --log-every 1) against the CPU run in scripts/gpu/cpu_reference.json: same initial
#              weights and batches; one cuda-vs-cpu line (the no-autotune build where the bundle
#              has it: every kernel the autotuner can choose computes the same products)
#   profile    one nano bf16 training step under CubeCL's profiler (each kernel timed alone) at
#              each batch of PROFILE_BATCHES ("256 1024"), seq 128: kernels.md (the first) and
#              kernels-1024.md, the kernels and their GPU time by part of the step and by
#              kernel, beside the unprofiled breakdown of the target row, then the slowest
#              launches
#   floor      nano bf16 masked training at FLOOR_BATCHES ("8,32") x 128, both engines (berthash
#              from the no-autotune build, with its parts): the step's cost that does not grow
#              with the batch (launches and host work), beside the target's
#   host       the host's own work per step: berthash bench on wgpu's no-op device (`--host-only`:
#              every command accepted, none run; no GPU or Vulkan loader involved), nano f32
#              (WGSL has no bf16) masked training at 256 x 128 and FLOOR_BATCHES, with its parts:
#              on this machine's processor, what the step costs before any kernel runs
#   tuned      the target's berthash rows from the autotuned build (what users build): the
#              autotuner goes on from the kernel cache as far as the time box lets it
#   loader     the pre-training loader over parquet shards it has not seen, one pass from a fresh
#              loader (`bench --one-pass`: a cold tokenizer cache), on all cores, with the thread
#              count; then `pretokenize` of the same shards (its rate) and one pass of the loader
#              over the token shards it wrote
#   fusion     the target's berthash rows from a build without Burn's fusion, when the bundle has
#              one (Burn 0.21 picks fusion at compile time: `Cuda` is `Fusion<CubeBackend<..>>`
#              when burn's `fusion` feature is on, and no setting turns it off at run time)
#   f32        nano f32 masked training, both engines
#   fullvocab  nano bf16 full-vocab training, both engines
#   compile    PyTorch torch.compile (inductor) bf16, nano masked
#   sizes      femto and pico bf16 masked training (berthash)
#   infer      nano encoder forward, bf16 and f32, both engines
#   wgpu       berthash on wgpu (Vulkan) with the carried Vulkan loader, nano f32
# The berthash rows after `tuned` use the no-autotune build where the bundle has one.
#
# Environment: WORK_DIR, BUDGET_S (270), TUNED_S (the `tuned` step's time box, 180), ONLY / SKIP
# (space-separated step names), BERTHASH_BIN, BERTHASH_NOTUNE_BIN, BERTHASH_NOFUSION_BIN, PYTHON
# (python3), PEAK_TFLOPS (790), TARGET_BATCHES ("256,1024"), PROFILE_BATCHES ("256 1024"),
# FLOOR_BATCHES ("8,32"), LOADER_BATCH (256).
# A second call on the same machine keeps WORK_DIR, the kernel cache included:
#   ONLY=tuned TUNED_S=260 bash gpu-bundle/scripts/gpu_check.sh "$OUT"
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"   # the bundle, or the repository
OUT_DIR="${1:-${OUT:-/tmp/berthash-gpu-check}}"
WORK="${WORK_DIR:-/tmp/berthash-gpu}"
BUDGET_S="${BUDGET_S:-270}"
RESERVE_S=8                      # kept for the table at the end
PYTHON="${PYTHON:-python3}"
PEAK_TFLOPS="${PEAK_TFLOPS:-790}"
TARGET_BATCHES="${TARGET_BATCHES:-256,1024}"
REPORT="$HERE/gpu/gpu_report.py"
TORCH_BENCH="$HERE/bench_vs_pytorch.py"
REFERENCE="$HERE/gpu/cpu_reference.json"
START=$SECONDS

mkdir -p "$OUT_DIR" "$WORK"
RESULTS="$OUT_DIR/results.jsonl"
LOG="$OUT_DIR/gpu_check.log"
TABLE="$OUT_DIR/table.md"
: >"$LOG"
touch "$RESULTS"
SKIPPED=()

say() { echo "$*" | tee -a "$LOG"; }
left() { echo $((BUDGET_S - (SECONDS - START))); }
wanted() {
  [[ -z "${ONLY:-}" || " $ONLY " == *" $1 "* ]] && [[ " ${SKIP:-} " != *" $1 "* ]]
}

# step NAME MAX_S MIN_S FUNCTION: runs FUNCTION with TBOX = min(MAX_S, time left - reserve)
# seconds to pass to `timeout`; skipped when that is under MIN_S or the step is not wanted.
step() {
  local name=$1 max=$2 min=$3 fn=$4 avail rc t1
  if ! wanted "$name"; then return 0; fi
  avail=$(($(left) - RESERVE_S))
  TBOX=$((max < avail ? max : avail))
  if ((TBOX < min)); then
    say "-- $name: skipped, ${avail}s left"
    SKIPPED+=("$name (time)")
    return 0
  fi
  say "== $name (time box ${TBOX}s, $(left)s left)"
  t1=$SECONDS
  "$fn"
  rc=$?
  say "   $name: exit $rc after $((SECONDS - t1))s"
  ((rc == 124 || rc == 137)) && SKIPPED+=("$name (stopped at its time box)")
  return 0
}

# annotate [k=v ...]: JSON lines on stdin -> results.jsonl rows, with the card, FLOPs and MFU
# added, and engine "berthash" where a row has none (berthash bench's; PyTorch's name theirs).
annotate() {
  local sets=()
  for kv in "$@"; do sets+=(--set "$kv"); done
  "$PYTHON" "$REPORT" annotate --engine berthash --peak-tflops "$PEAK_TFLOPS" --set "card=$CARD" \
    --set "driver=$DRIVER" "${sets[@]}" | tee -a "$LOG" >>"$RESULTS"
}

# --- the binaries and the machine ------------------------------------------------------------
unpack() { # unpack NAME.xz -> $WORK/NAME (xz, or Python's lzma where xz is missing)
  local src=$1 dst=$2
  if command -v xz >/dev/null; then
    xz -dc "$src" >"$dst"
  else
    "$PYTHON" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$src" "$dst"
  fi && chmod +x "$dst"
}
BIN="${BERTHASH_BIN:-}"
if [[ -z "$BIN" && -f "$ROOT/berthash.xz" ]]; then
  unpack "$ROOT/berthash.xz" "$WORK/berthash" && BIN="$WORK/berthash"
fi
[[ -z "$BIN" && -x "$ROOT/target/release/berthash" ]] && BIN="$ROOT/target/release/berthash"
NOFUSION_BIN="${BERTHASH_NOFUSION_BIN:-}"
if [[ -z "$NOFUSION_BIN" && -f "$ROOT/berthash-nofusion.xz" ]]; then
  unpack "$ROOT/berthash-nofusion.xz" "$WORK/berthash-nofusion" && NOFUSION_BIN="$WORK/berthash-nofusion"
fi
NOTUNE_BIN="${BERTHASH_NOTUNE_BIN:-}"
if [[ -z "$NOTUNE_BIN" && -f "$ROOT/berthash-notune.xz" ]]; then
  unpack "$ROOT/berthash-notune.xz" "$WORK/berthash-notune" && NOTUNE_BIN="$WORK/berthash-notune"
fi
if [[ -z "$BIN" || ! -x "$BIN" ]]; then
  say "gpu_check: no berthash binary (gpu-bundle/berthash.xz, or set BERTHASH_BIN)"
  exit 2
fi

# The kernel cache: the bundle's (an earlier check's) unless this machine kept its own, and
# packed into OUT_DIR on exit, whatever stopped the script.
KCACHE="$WORK/kernel-cache"
export BERTHASH_KERNEL_CACHE="$KCACHE"
if [[ ! -d "$KCACHE" && -f "$ROOT/kernel-cache.tar.xz" ]]; then
  tar -C "$WORK" -xJf "$ROOT/kernel-cache.tar.xz" || say "gpu_check: the bundle's kernel cache did not unpack"
fi
mkdir -p "$KCACHE"
# At most 16 MiB comes back from the GPU machine: over 15, the compiled kernels stay behind and
# only the autotune results (the costly part: each shape's tuning) come back.
pack_cache() {
  local tarball="$OUT_DIR/kernel-cache.tar.xz" what="kernel cache"
  tar -C "$WORK" -I 'xz -T0' -cf "$tarball" kernel-cache 2>>"$LOG" || return 0
  if (($(stat -c %s "$tarball") > 15 * 1024 * 1024)); then
    what="kernel cache, autotune results only"
    (cd "$WORK" && find kernel-cache -path '*/autotune/*' -type f -print0 \
      | tar -I 'xz -T0' -cf "$tarball" --null -T -) 2>>"$LOG" || return 0
  fi
  echo "gpu_check: $what ($(du -sh "$KCACHE" | cut -f1) here) -> $tarball ($(du -h "$tarball" | cut -f1))" \
    | tee -a "$LOG"
}
trap pack_cache EXIT

# CubeCL compiles kernels with NVRTC and includes the toolkit's headers: find the toolkit.
if [[ -z "${CUDA_PATH:-}" ]]; then
  if [[ -d /usr/local/cuda ]]; then
    export CUDA_PATH=/usr/local/cuda
  elif command -v nvcc >/dev/null; then
    CUDA_PATH="$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
    export CUDA_PATH
  fi
fi
for d in "${CUDA_PATH:-/nonexistent}/lib64" "${CUDA_PATH:-/nonexistent}/lib"; do
  [[ -d "$d" ]] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done

CARD="unknown"
DRIVER="unknown"
if command -v nvidia-smi >/dev/null; then
  IFS=, read -r CARD DRIVER MEMORY < <(nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader | head -1)
  CARD="$(echo "$CARD" | xargs)"
  DRIVER="$(echo "$DRIVER" | xargs)"
  MEMORY="$(echo "${MEMORY:-}" | xargs)"
fi
TORCH_VERSION="$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo none)"
"$PYTHON" - "$WORK/env.json" "$CARD" "$DRIVER" "${MEMORY:-}" "$(nproc)" "${CUDA_PATH:-}" \
  "$TORCH_VERSION" "$ROOT" <<'PY'
import datetime, json, os, sys
out, card, driver, memory, cpus, cuda, torch, root = sys.argv[1:]
manifest = os.path.join(root, "MANIFEST")
env = {"card": card, "driver": driver, "memory": memory, "cpus": int(cpus), "cuda_path": cuda,
       "torch": torch, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
if os.path.exists(manifest):
    for line in open(manifest):
        key, _, value = line.partition(":")
        if key.strip() in ("commit", "binary", "features"):
            env[key.strip()] = value.strip()
json.dump(env, open(out, "w"), indent=1)
PY
say "gpu_check: $CARD, driver $DRIVER, $(nproc) cores, CUDA_PATH ${CUDA_PATH:-none}, torch $TORCH_VERSION"
say "gpu_check: binary $BIN${NOFUSION_BIN:+, no-fusion binary $NOFUSION_BIN}; results in $OUT_DIR"

# berthash bench on CUDA: JSON lines, annotated, into results.jsonl as each finishes.
# One process for all the rows of a call: the kernels compiled for one row serve the next.
BENCH_TIMING=(--steps 40 --warmup 10 --sync-every 10 --in-process)
bench() { # bench BINARY ARGS...
  local bin=$1 fusion=true autotune=true
  shift
  [[ "$bin" == "$NOFUSION_BIN" ]] && fusion=false autotune=false
  [[ "$bin" == "$NOTUNE_BIN" ]] && autotune=false
  timeout -k 5 "$TBOX" "$bin" bench --json "${BENCH_TIMING[@]}" "$@" 2>>"$LOG" \
    | annotate "fusion=$fusion" "autotune=$autotune"
}
# The build for the rows after the target's: compiled in seconds where the bundle has it.
QUICK_BIN="${NOTUNE_BIN:-$BIN}"
QUICK_AUTOTUNE=$([[ -n "$NOTUNE_BIN" ]] && echo false || echo true)
torch_bench() { # torch_bench ARGS... (PyTorch side of scripts/bench_vs_pytorch.py, on CUDA)
  timeout -k 5 "$TBOX" "$PYTHON" "$TORCH_BENCH" --sides pytorch --device cuda --json \
    --steps 40 --warmup 10 --sync-every 10 --reps 3 "$@" 2>>"$LOG" | annotate
}

# --- the steps ---------------------------------------------------------------------------------
CUDA_OK=1
probe_once() {
  timeout -k 5 "$TBOX" "$QUICK_BIN" bench --backend cuda --size femto --phase infer --batch 8 --seq 32 \
    --steps 2 --warmup 1 --in-process --json >>"$LOG" 2>&1
}
probe() {
  probe_once
  local rc=$?
  if ((rc != 0 && rc != 124)) \
    && ! grep '^error' "$LOG" | tail -n 1 | grep -q 'cannot run on this machine\|built without'; then
    # CUDA is there but the run failed: CubeCL's kernel cache (compiled PTX) is new to this
    # check, so once more without it.
    say "   the probe failed with the kernel cache; again without it (BERTHASH_KERNEL_CACHE=off)"
    export BERTHASH_KERNEL_CACHE=off
    probe_once
    rc=$?
  fi
  if ((rc != 0)); then
    CUDA_OK=0
    say "   the CUDA backend did not start: berthash's CUDA steps are skipped"
    say "   $(grep '^error' "$LOG" | tail -n 1)"
  fi
  return $rc
}
need_cuda() { ((CUDA_OK)) || { SKIPPED+=("$1 (CUDA did not start)"); return 1; }; }

target_berthash() { # target_berthash BINARY
  need_cuda target || return 1
  bench "$1" --backend cuda --precision bf16 --size nano --batch "$TARGET_BATCHES" --seq 128 \
    --phase train --breakdown
}
target_notune() {
  [[ -n "$NOTUNE_BIN" ]] || { SKIPPED+=("target without autotune (no such binary in the bundle)"); return 1; }
  target_berthash "$NOTUNE_BIN"
}
target_tuned() { target_berthash "$BIN"; }
target_pytorch() {
  torch_bench --precision bf16 --attn sdpa --fused-adamw --losses masked --size nano \
    --batch "$TARGET_BATCHES" --seq 128
}
# The same step at batches so small that the card is nearly idle: what remains is the cost of
# launching the step's kernels and the host's work, which a larger batch does not amortize.
floor_berthash() {
  need_cuda floor || return 1
  bench "$QUICK_BIN" --backend cuda --precision bf16 --size nano --batch "${FLOOR_BATCHES:-8,32}" \
    --seq 128 --phase train --breakdown
}
floor_pytorch() {
  torch_bench --precision bf16 --attn sdpa --fused-adamw --losses masked --size nano \
    --batch "${FLOOR_BATCHES:-8,32}" --seq 128
}
host_rows() {
  bench "$QUICK_BIN" --backend wgpu --host-only --precision f32 --size nano \
    --batch "256,${FLOOR_BATCHES:-8,32}" --seq 128 --phase train --breakdown
}
fusion_off() {
  [[ -n "$NOFUSION_BIN" ]] || { SKIPPED+=("fusion (no no-fusion binary in the bundle)"); return 1; }
  target_berthash "$NOFUSION_BIN"
}

# The CPU reference's pretrain flags, replayed: one flag and one value per line.
reference_args() {
  "$PYTHON" -c 'import json, sys
for k, v in json.load(open(sys.argv[1]))["args"].items():
    print("--" + k); print(v)' "$REFERENCE"
}
check_run() { # check_run PRECISION
  need_cuda check || return 1
  local args
  [[ -f "$REFERENCE" ]] || { SKIPPED+=("check (no $REFERENCE)"); return 1; }
  mapfile -t args < <(reference_args)
  ((${#args[@]} >= 2)) || { say "   no pretrain flags in $REFERENCE"; return 1; }
  timeout -k 5 "$TBOX" "$QUICK_BIN" pretrain --size nano --backend cuda --precision "$1" \
    --config "$HERE/gpu/pretrain-check.toml" "${args[@]}" --out "$WORK/check-$1" --overwrite \
    >>"$LOG" 2>&1
}
check_f32() { check_run f32; }
check_bf16() { check_run bf16; }
# shellcheck disable=SC2094  # both sides append to the log
check_line() {
  [[ -f "$WORK/check-f32/metrics.jsonl" || -f "$WORK/check-bf16/metrics.jsonl" ]] || return 1
  "$PYTHON" "$REPORT" check --ref "$REFERENCE" --f32 "$WORK/check-f32" --bf16 "$WORK/check-bf16" \
    --set "card=$CARD" --set "backend=cuda" --set "autotune=$QUICK_AUTOTUNE" 2>>"$LOG" | tee -a "$LOG" >>"$RESULTS"
}

# CubeCL reads its profiler's settings from cubecl.toml in the working directory (or above).
# One step per batch of PROFILE_BATCHES: kernels.md for the first, kernels-BATCH.md for the rest
# (side by side they show which kernels' time grows with the batch and which does not).
profile() {
  need_cuda profile || return 1
  local batch first=1 name
  for batch in ${PROFILE_BATCHES:-256 1024}; do
    name=kernels-$batch.md
    ((first)) && name=kernels.md
    first=0
    profile_batch "$batch" "$OUT_DIR/$name" || return $?
  done
}
profile_batch() { # profile_batch BATCH OUT_FILE
  local dir=$WORK/profile-$1 unprofiled
  rm -rf "$dir" && mkdir -p "$dir" || return 1
  printf '[profiling.logger]\nlevel = "basic"\nfile = "%s"\n' "$dir/cubecl-profile.log" >"$dir/cubecl.toml"
  (cd "$dir" && timeout -k 5 "$TBOX" "$QUICK_BIN" bench --backend cuda --precision bf16 --size nano \
    --batch "$1" --seq 128 --phase train --steps 1 --warmup 2 --sync-every 1 --breakdown --in-process \
    --json >>"$LOG" 2>&1) || return $?
  # The unprofiled row of the same configuration, from the target step.
  unprofiled=$("$PYTHON" - "$RESULTS" "$QUICK_AUTOTUNE" "$1" <<'PY'
import json, sys
want = {"engine": "berthash", "backend": "cuda", "precision": "bf16", "size": "nano",
        "batch": int(sys.argv[3]), "seq": 128, "phase": "train", "variant": "masked",
        "autotune": sys.argv[2] == "true"}
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
same = [r for r in rows if all(r.get(k) == v for k, v in want.items()) and r.get("phases_ms")]
print(json.dumps(same[-1]) if same else "")
PY
)
  "$PYTHON" "$REPORT" kernels "$dir/cubecl-profile.log" --row "$unprofiled" \
    --title "berthash, CUDA, bf16, nano, $1 x 128, fusion on, autotune $QUICK_AUTOTUNE" \
    >"$2" 2>>"$LOG"
}

loader() {
  local shards=("$ROOT"/data/corpus/*.parquet) tokens="$WORK/token-shards" line rate
  [[ -f "${shards[0]}" ]] || { SKIPPED+=("loader (no shards in the bundle)"); return 1; }
  # `bench --phase data --data` is newer than some builds: a failure here is recorded, not fatal.
  timeout -k 5 "$((TBOX / 2))" "$BIN" bench --json --phase data --one-pass --data "${shards[@]}" \
    --batch "${LOADER_BATCH:-256}" --seq 128 \
    2>>"$LOG" | annotate "threads=$(nproc)" "shards=${#shards[@]}" "format=parquet"
  # The same shards tokenized once (`pretokenize`, its rate a row of its own), then read as ids.
  rm -rf "$tokens"
  line=$(timeout -k 5 "$((TBOX / 4))" "$BIN" pretokenize --data "${shards[@]}" --out "$tokens" \
    2>>"$LOG" | tee -a "$LOG" | grep ' tokens written in ') || return 1
  rate=$(sed -E 's/.*\(([0-9]+) tokens\/s\).*/\1/' <<<"$line")
  printf '{"backend":"cpu","precision":"-","size":"-","batch":0,"seq":0,"phase":"pretokenize","variant":"corpus","tokens_per_s":%s}\n' \
    "$rate" | annotate "threads=$(nproc)" "shards=${#shards[@]}"
  timeout -k 5 "$((TBOX / 4))" "$BIN" bench --json --phase data --one-pass --data "$tokens" \
    --batch "${LOADER_BATCH:-256}" --seq 128 \
    2>>"$LOG" | annotate "threads=$(nproc)" "shards=${#shards[@]}" "format=bhtok"
}

f32_berthash() {
  need_cuda f32 || return 1
  bench "$QUICK_BIN" --backend cuda --precision f32 --size nano --batch "$TARGET_BATCHES" --seq 128 \
    --phase train
}
f32_pytorch() {
  torch_bench --precision f32 --attn sdpa --fused-adamw --losses masked --size nano \
    --batch "$TARGET_BATCHES" --seq 128
}
fullvocab_berthash() {
  need_cuda fullvocab || return 1
  bench "$QUICK_BIN" --backend cuda --precision bf16 --size nano --batch 256 --seq 128 --phase train \
    --full-vocab
}
fullvocab_pytorch() {
  torch_bench --precision bf16 --attn sdpa --fused-adamw --losses full --size nano --batch 256 --seq 128
}
compile_rows() {
  torch_bench --precision bf16 --attn sdpa --fused-adamw --losses masked --size nano \
    --batch "$TARGET_BATCHES" --seq 128 --compile --reps 2
}
size_rows() {
  need_cuda sizes || return 1
  bench "$QUICK_BIN" --backend cuda --precision bf16 --size femto,pico --batch "$TARGET_BATCHES" \
    --seq 128 --phase train
}
infer_berthash() {
  need_cuda infer || return 1
  bench "$QUICK_BIN" --backend cuda --precision bf16 --size nano --batch "$TARGET_BATCHES" --seq 128 \
    --phase infer
}
infer_pytorch() {
  torch_bench --phase infer --precision bf16 --attn sdpa --size nano --batch "$TARGET_BATCHES" --seq 128
}
wgpu_rows() {
  local vk=$WORK/vulkan debs=("$ROOT"/vulkan/libvulkan1_*.deb)
  if ! ldconfig -p 2>/dev/null | grep 'libvulkan\.so\.1' >/dev/null; then
    [[ -f "${debs[0]}" ]] || { SKIPPED+=("wgpu (no Vulkan loader here or in the bundle)"); return 1; }
    mkdir -p "$vk" && dpkg -x "${debs[0]}" "$vk" || return 1
    export LD_LIBRARY_PATH="$vk/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [[ -f "$icd" && -z "${VK_DRIVER_FILES:-}" ]] && export VK_DRIVER_FILES=$icd
  bench "$QUICK_BIN" --backend wgpu --precision f32 --size nano --batch 256 --seq 128 --phase train
}

step probe 45 15 probe
step target 60 25 target_pytorch
step target 100 25 target_notune
step check 80 30 check_f32
step check 80 30 check_bf16
step check 20 3 check_line
step profile 60 20 profile
step floor 40 15 floor_berthash
step floor 30 15 floor_pytorch
step host 40 15 host_rows
step tuned "${TUNED_S:-180}" 30 target_tuned
step loader 45 15 loader
step fusion 80 25 fusion_off
step f32 60 20 f32_berthash
step f32 60 25 f32_pytorch
step fullvocab 45 20 fullvocab_berthash
step fullvocab 45 25 fullvocab_pytorch
step compile 120 60 compile_rows
step sizes 60 20 size_rows
step infer 45 20 infer_berthash
step infer 45 25 infer_pytorch
step wgpu 60 20 wgpu_rows

# --- the table ---------------------------------------------------------------------------------
"$PYTHON" "$REPORT" table "$RESULTS" --env "$WORK/env.json" --skipped "${SKIPPED[@]}" >"$TABLE" \
  2>>"$LOG"
say "gpu_check: $(wc -l <"$RESULTS") lines in $RESULTS after $((SECONDS - START))s"
cat "$TABLE"
