#!/usr/bin/env bash
# CI: the parts of the GPU check that run without a GPU.
#   1. scripts/gpu_bundle.sh --dry-run gathers the bundle (stand-in binaries, the variants' feature
#      edits checked, a kernel cache) under the size limit, and refuses a bundle over it;
#   2. the bundle's gpu_check.sh runs here to the end: no CUDA, so every CUDA and PyTorch-CUDA
#      step is skipped or fails inside its time box, and it still writes table.md, results.jsonl
#      and its log; the loader step measures the bundle's shards on this machine's cores, as
#      parquet and pre-tokenized;
#   3. scripts/bench_vs_pytorch.py's flags on CPU (tiny femto runs): --device, --backend,
#      --precision, --attn, --fused-adamw, --compile, --phase infer, the JSON rows' keys;
#   4. tests/python/test_gpu_report.py (FLOPs, MFU, the cuda-vs-cpu verdicts, the table).
#
# Environment: BERTHASH_BIN (default ${CARGO_TARGET_DIR:-target}/debug/berthash, which
# scripts/parity.sh builds), PYTHON (default .venv-parity/bin/python), BERTHASH_SHARED.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
BIN="${BERTHASH_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/berthash}"
PY="${PYTHON:-$REPO/.venv-parity/bin/python}"
[[ -x "$BIN" ]] || { echo "gpu_dry_run: no berthash binary at $BIN (set BERTHASH_BIN)" >&2; exit 2; }
[[ -x "$PY" ]] || { echo "gpu_dry_run: no python at $PY (run scripts/python_env.sh)" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "gpu_dry_run: FAIL: $*" >&2; exit 1; }
T0=$SECONDS

echo "-- 1. bundle (dry run)"
mkdir -p "$tmp/kc/kernel-cache/cuda-x" "$tmp/bad/other" && echo cached >"$tmp/kc/kernel-cache/cuda-x/entry"
tar -C "$tmp/kc" -cJf "$tmp/kc.tar.xz" kernel-cache && tar -C "$tmp/bad" -cJf "$tmp/bad.tar.xz" other
if scripts/gpu_bundle.sh --dry-run --kernel-cache "$tmp/bad.tar.xz" --out "$tmp/b" >"$tmp/bad.log" 2>&1; then
  fail "a kernel cache without kernel-cache/ was accepted"
fi
grep -q "not a tar.xz of kernel-cache/" "$tmp/bad.log" || fail "no reason given for refusing the kernel cache"
scripts/gpu_bundle.sh --dry-run --no-fusion --no-autotune --kernel-cache "$tmp/kc.tar.xz" --out "$tmp/bundle"
for f in berthash.xz berthash-nofusion.xz berthash-notune.xz kernel-cache.tar.xz MANIFEST scripts/gpu_check.sh scripts/bench_vs_pytorch.py \
    scripts/gpu/gpu_report.py scripts/gpu/pretrain-check.toml scripts/gpu/cpu_reference.json \
    python/modeling_bert_hash.py python/configuration_bert_hash.py; do
  [[ -s "$tmp/bundle/$f" ]] || fail "the bundle has no $f"
done
grep -q "scripts/gpu/cpu_reference.json" "$tmp/bundle/MANIFEST" || fail "MANIFEST does not list the files"
if STANDIN_MIB=70 scripts/gpu_bundle.sh --dry-run --out "$tmp/big" >"$tmp/big.log" 2>&1; then
  fail "a 70 MiB bundle was accepted"
fi
grep -q "over the 64 MiB" "$tmp/big.log" || fail "no reason given for refusing the big bundle"

echo "-- 2. gpu_check.sh without a GPU"
start=$SECONDS
BERTHASH_BIN="$BIN" PYTHON="$PY" WORK_DIR="$tmp/work" BUDGET_S=150 SKIP="compile wgpu" LOADER_BATCH=32 \
  bash "$tmp/bundle/scripts/gpu_check.sh" "$tmp/out" >"$tmp/check.out" 2>&1 \
  || { cat "$tmp/check.out"; fail "gpu_check.sh exited $?"; }
echo "   gpu_check.sh ran in $((SECONDS - start)) s"
for f in results.jsonl table.md gpu_check.log kernel-cache.tar.xz; do
  [[ -f "$tmp/out/$f" ]] || fail "gpu_check.sh wrote no $f"
done
# The kernel cache went in with the bundle and comes back out, for the next bundle.
tar -xJOf "$tmp/out/kernel-cache.tar.xz" kernel-cache/cuda-x/entry | grep -q cached \
  || fail "the bundle's kernel cache did not come back in kernel-cache.tar.xz"
grep -q "^# GPU check" "$tmp/out/table.md" || fail "table.md has no title"
grep -q "CUDA did not start" "$tmp/out/table.md" || { cat "$tmp/out/table.md"; fail "table.md does not say CUDA was skipped"; }
grep -Eq "error: (this berthash was built without the cuda backend|--backend cuda cannot run on this machine)" \
  "$tmp/out/gpu_check.log" || fail "the probe's clean error is not in the log"
grep -q "torch sees no CUDA device" "$tmp/out/gpu_check.log" || fail "the PyTorch CUDA steps did not stop cleanly"
if grep -q "panicked" "$tmp/out/gpu_check.log"; then fail "a panic in gpu_check.log"; fi
if ls "$tmp"/bundle/data/corpus/*.parquet >/dev/null 2>&1 && "$BIN" bench --help | grep -q -- '--data'; then
  # The loader ran over the bundle's shards (a CPU measurement, like on the GPU machine).
  "$PY" - "$tmp/out/results.jsonl" <<'PY' || fail "no loader row in results.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
data = {r.get("format"): r for r in rows if r.get("phase") == "data"}
assert set(data) == {"parquet", "bhtok"}, rows
[pre] = [r for r in rows if r.get("phase") == "pretokenize"]
assert all(r["variant"] == "corpus-one-pass" and r["repetitions"] == 1 for r in data.values()), data
for r in [*data.values(), pre]:
    assert r["engine"] == "berthash" and r["variant"].startswith("corpus") and r["threads"] >= 1, r
    assert r["tokens_per_s"] > 0 and r["shards"] == 2, r
    assert isinstance(r["batch"], int) and isinstance(r["seq"], int), r
print("   loader rows, tokens/s on", pre["threads"], "threads: parquet",
      f"{data['parquet']['tokens_per_s']:.0f}, pretokenize {pre['tokens_per_s']:.0f},",
      f"token shards {data['bhtok']['tokens_per_s']:.0f}")
PY
fi

echo "-- 3. bench_vs_pytorch.py flags on CPU"
common=(--size femto --batch 4 --seq 32 --steps 2 --warmup 1 --sync-every 1 --reps 1 --threads 2 --json)
"$PY" scripts/bench_vs_pytorch.py "${common[@]}" --device cpu --backend cpu --precision f32 \
  --attn sdpa --fused-adamw --losses masked,full --berthash "$BIN" >"$tmp/both.jsonl"
"$PY" scripts/bench_vs_pytorch.py "${common[@]}" --sides pytorch --device cpu --precision bf16 \
  --attn sdpa --fused-adamw --compile --compile-backend aot_eager --losses masked >"$tmp/compile.jsonl"
"$PY" scripts/bench_vs_pytorch.py "${common[@]}" --sides pytorch --device cpu --precision bf16 \
  --attn eager --phase infer >"$tmp/infer.jsonl"
# transformers 5.x chooses the attention per call, 4.x per layer at construction: SDPA under both.
LATEST_PY="${PYTHON_LATEST:-$REPO/.venv-parity-latest/bin/python}"
if [[ -x "$LATEST_PY" ]]; then
  "$LATEST_PY" scripts/bench_vs_pytorch.py "${common[@]}" --sides pytorch --device cpu \
    --precision bf16 --attn sdpa --fused-adamw --losses masked >"$tmp/latest.jsonl"
  "$LATEST_PY" -c 'import json, sys
[r] = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert r["attn"] == "sdpa" and r["transformers"].split(".")[0] != "4", r
print("   transformers", r["transformers"] + ": attention", r["attn"] + ", AdamW", r["adamw"])' \
    "$tmp/latest.jsonl" || fail "SDPA under the latest transformers"
fi
"$PY" - "$tmp" <<'PY' || fail "bench_vs_pytorch.py rows"
import json, math, sys
from pathlib import Path
tmp = Path(sys.argv[1])
load = lambda name: [json.loads(l) for l in (tmp / name).read_text().splitlines() if l.strip()]
keys = ("engine", "backend", "precision", "size", "batch", "seq", "phase", "variant", "tokens_per_s")
both, compiled, infer = load("both.jsonl"), load("compile.jsonl"), load("infer.jsonl")
for r in both + compiled + infer:
    missing = [k for k in keys if k not in r]
    assert not missing, (missing, r)
    assert isinstance(r["batch"], int) and isinstance(r["seq"], int), r
    assert math.isfinite(r["tokens_per_s"]) and r["tokens_per_s"] > 0, r
got = sorted((r["engine"], r["variant"]) for r in both)
assert got == [("berthash", "full-vocab"), ("berthash", "masked"),
               ("pytorch-eager", "full-vocab"), ("pytorch-eager", "masked")], got
for r in both:
    assert r["backend"] == "cpu" and r["precision"] == "f32" and r["phase"] == "train", r
    if r["engine"] == "pytorch-eager":
        assert r["attn"] == "sdpa" and r["adamw"] in ("fused", "foreach") and r["autocast"] is None, r
        assert r["compile"] is None and r["attention_mask"] == "none", r
[c] = compiled
assert c["engine"] == "pytorch-compile" and c["compile"] == "aot_eager" and c["autocast"] == "bf16", c
assert c["precision"] == "bf16" and c["variant"] == "masked" and math.isfinite(c["loss"]), c
[i] = infer
assert i["phase"] == "infer" and i["variant"] == "encoder" and i["attn"] == "eager", i
print(f"   {len(both) + len(compiled) + len(infer)} rows, keys and choices as asked")
PY

echo "-- 4. gpu_report.py"
"$PY" tests/python/test_gpu_report.py

echo "gpu_dry_run: ok in $((SECONDS - T0)) s"
