#!/usr/bin/env bash
# The Burn operations of one training step on a GPU backend, counted per part of the step: the
# host's work per step grows with their number, whatever the tensors' sizes.
#
#   scripts/host_ops.sh BIN [bench flags...]
#
# BIN is a `--features wgpu` build of berthash with symbols (a dev build). It runs `bench
# --backend wgpu --host-only --breakdown` (no GPU needed: wgpu's no-op device) under `perf`,
# with uprobes on Burn's `MultiStream::register` (each operation the fusion stream takes) and
# on the return of the breakdown's syncs, and prints the operations between syncs of the last
# step: the batch, cast, forward, backward, clip and optimizer. The default configuration is
# nano f32 masked, 256 x 128; flags given are added to the bench command (`--precision f16`).
# Needs `perf` and the right to add uprobes (root).
set -euo pipefail

bin=$(realpath "${1:?usage: scripts/host_ops.sh BIN [bench flags...]}")
shift
command -v perf >/dev/null || { echo "host_ops: perf not found" >&2; exit 2; }
# perf takes a probe's address as a file offset: the symbol's address less its segment's.
read -r offset vaddr < <(readelf -lW "$bin" | awk '$1 == "LOAD" && / E / { print $2, $3; exit }')
text_delta=$((vaddr - offset))
probe_at() {
  local address
  address=$(nm "$bin" | grep -E "$1" | awk '{ print $1 }' | head -1)
  [ -n "$address" ] || { echo "host_ops: no symbol matching $1 in $bin" >&2; exit 2; }
  printf '0x%x' $((0x$address - text_delta))
}
register=$(probe_at ' T .*MultiStream.*8register17h')
lap_end=$(probe_at ' t .*6phases4Laps3end17h')
lap_start=$(probe_at ' t .*6phases4Laps5start17h')

group=host_ops
perf probe -d "$group:*" >/dev/null 2>&1 || true
trap 'perf probe -d "$group:*" >/dev/null 2>&1 || true; rm -f "$data"' EXIT
data=$(mktemp)
perf probe -x "$bin" --add "$group:reg=$register" >/dev/null 2>&1
perf probe -x "$bin" --add "$group:end=$lap_end%return" >/dev/null 2>&1
perf probe -x "$bin" --add "$group:start=$lap_start%return" >/dev/null 2>&1

perf record -q -e "$group:reg" -e "$group:end__return" -e "$group:start__return" -o "$data" \
  "$bin" bench --backend wgpu --host-only --size nano --batch 256 --seq 128 --phase train \
  --steps 2 --warmup 1 --breakdown --json --in-process "$@" >/dev/null 2>&1
perf script -i "$data" -F event 2>/dev/null | awk -F: '
  { event = $2 }
  event == "reg" { n++; next }
  { counts[++parts] = n; n = 0 }
  END {
    split("batch cast forward backward clip optimizer", names, " ")
    for (i = 1; i <= 6; i++) { total += counts[parts - 6 + i]; printf "%s %d\n", names[i], counts[parts - 6 + i] }
    printf "step %d\n", total
  }'
