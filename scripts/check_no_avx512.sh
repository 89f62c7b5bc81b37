#!/usr/bin/env bash
# The CPU build compiles the gemm crate's AVX-512 kernels (Burn's `x86-v4` feature) next to its
# AVX2/FMA ones, and gemm picks one at run time (`is_x86_feature_detected!("avx512f")`). This
# checks that the release binary is right on an x86-64 CPU without AVX-512, by running it under
# qemu-user's Haswell model (AVX2 and FMA, no AVX-512):
#
#   1. qemu enforces the model: a program that executes one AVX-512 instruction must die with
#      SIGILL under it (else this check could not fail);
#   2. `berthash forward` on the golden tiny models (masked-LM and classifier) matches the
#      reference outputs within 1e-5, natively and under qemu;
#   3. three pre-training steps run under qemu with finite losses, equal to the native run's
#      within 1e-4 relative.
#
#   scripts/check_no_avx512.sh [BINARY]     (default: target/release/berthash, built if absent)
#
# Needs qemu-user (Debian: apt-get install qemu-user), gcc and python3. x86-64 hosts only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-${CARGO_TARGET_DIR:-$ROOT/target}/release/berthash}"
QEMU=(qemu-x86_64 -cpu Haswell)
# qemu under the Haswell model, without its notes on the model's features TCG leaves out.
emulate() { "${QEMU[@]}" "$@" 2> >(grep -v "TCG doesn't support requested feature" >&2); }
command -v qemu-x86_64 >/dev/null || { echo "check_no_avx512: qemu-x86_64 not found (apt-get install qemu-user)" >&2; exit 2; }
[[ "$(uname -m)" == x86_64 ]] || { echo "check_no_avx512: x86-64 hosts only" >&2; exit 2; }
if [[ ! -x "$BIN" ]]; then
  (cd "$ROOT" && cargo build -q --release -p berthash-cli)
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 1. qemu's Haswell model refuses AVX-512.
cat >"$WORK/avx512.c" <<'EOF'
#include <immintrin.h>
int main(int argc, char **argv) {
  (void)argv;
  __m512 x = _mm512_set1_ps((float)argc); /* not a constant: the compiler must emit AVX-512 */
  volatile float out = _mm512_reduce_add_ps(_mm512_add_ps(x, x));
  return out == 32.0f ? 0 : 1;
}
EOF
gcc -O1 -mavx512f "$WORK/avx512.c" -o "$WORK/avx512"
objdump -d "$WORK/avx512" | grep -q zmm || { echo "check_no_avx512: the AVX-512 probe has no AVX-512 instruction" >&2; exit 1; }
if bash -c '"$@"; exit $?' _ "${QEMU[@]}" "$WORK/avx512" 2>/dev/null; then
  echo "check_no_avx512: qemu ran an AVX-512 instruction under -cpu Haswell: this check cannot tell" >&2
  exit 1
fi
echo "ok: an AVX-512 instruction dies under ${QEMU[*]}"
if grep -qw avx512f /proc/cpuinfo; then
  echo "ok: this host has AVX-512, so the native runs below take gemm's AVX-512 kernels"
fi

# 2. The golden forward passes, natively and under qemu.
GOLDEN="$ROOT/tests/fixtures/golden/tiny"
for head in mlm cls; do
  "$BIN" forward --model "$GOLDEN/$head" --inputs "$GOLDEN/inputs.json" --output "$WORK/native-$head.safetensors" >/dev/null
  emulate "$BIN" forward --model "$GOLDEN/$head" --inputs "$GOLDEN/inputs.json" --output "$WORK/qemu-$head.safetensors" >/dev/null
done
python3 - "$WORK" "$GOLDEN/expected.safetensors" <<'EOF'
import json, struct, sys

def read(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header, body = json.loads(data[8:8 + n]), data[8 + n:]
    out = {}
    for key, t in header.items():
        if key != "__metadata__" and t["dtype"] == "F32":
            a, b = t["data_offsets"]
            out[key] = struct.unpack(f"<{(b - a) // 4}f", body[a:b])
    return out

work, expected = sys.argv[1], read(sys.argv[2])
worst = 0.0
for head in ("mlm", "cls"):
    for side in ("native", "qemu"):
        ours = read(f"{work}/{side}-{head}.safetensors")
        for key, values in ours.items():
            ref = expected[f"{head}.{key}"]
            diff = max(abs(x - y) for x, y in zip(values, ref))
            worst = max(worst, diff)
            if diff > 1e-5:
                sys.exit(f"check_no_avx512: {side} {head}.{key} differs from the golden output by {diff:.2e}")
print(f"ok: golden forward (mlm, cls), native and under qemu: max |diff| {worst:.2e} <= 1e-5")
EOF

# 3. Training steps under qemu.
losses() {
  "$@" pretrain --size femto --max-steps 3 --batch-size 2 --warmup-steps 1 --log-every 1 \
    --eval-every 0 --save-every 0 --report-to none --overwrite --out "$WORK/run" >/dev/null 2>&1
  python3 -c 'import json,sys; print(" ".join(str(r["loss"]) for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "train"))' "$WORK/run/metrics.jsonl"
}
native="$(losses "$BIN")"
emulated="$(losses emulate "$BIN")"
python3 - "$native" "$emulated" <<'EOF'
import math, sys
native, emulated = ([float(x) for x in s.split()] for s in sys.argv[1:])
if len(native) != 3 or len(emulated) != 3 or not all(map(math.isfinite, emulated)):
    sys.exit(f"check_no_avx512: training losses native {native}, under qemu {emulated}")
worst = max(abs(a - b) / abs(a) for a, b in zip(native, emulated))
if worst > 1e-4:
    sys.exit(f"check_no_avx512: training losses differ: native {native}, under qemu {emulated}")
print(f"ok: 3 pre-training steps under qemu, losses {emulated} (max rel. diff to native {worst:.1e})")
EOF
