#!/usr/bin/env bash
# Gathers what the GPU machine needs for scripts/gpu_check.sh into one ignored folder (default
# gpu-bundle/), so the GPU machine gets that folder and runs one command:
#
#   scripts/gpu_bundle.sh [--features cuda,wgpu] [--no-fusion] [--no-autotune] [--vulkan]
#                         [--kernel-cache FILE] [--out DIR]
#   scripts/gpu_bundle.sh --dry-run [--out DIR]     # everything but the build (CI)
#   # then, on the GPU machine (the folder carried): bash gpu-bundle/scripts/gpu_check.sh "$OUT"
#
# The folder holds:
#   berthash.xz            release build with --features (default cuda,wgpu), stripped, xz
#   berthash-nofusion.xz   with --no-fusion: the same build without Burn's fusion (Burn 0.21 has
#                          no run-time switch for it) and without autotune, for the fusion on/off
#                          rows beside the no-autotune build's (a cold autotune would take the
#                          check's whole budget)
#   berthash-notune.xz     with --no-autotune: the same build without Burn's autotune (each
#                          operation takes CubeCL's default kernel): its kernels compile in
#                          seconds where autotuning a cold cache takes many minutes
#   kernel-cache.tar.xz    with --kernel-cache: the kernel cache an earlier GPU check returned
#                          (compiled kernels and autotune results), so that the check goes on
#                          from there
#   scripts/               gpu_check.sh, bench_vs_pytorch.py, gpu/ (the report helper, the
#                          dropout-off recipe, the CPU reference losses)
#   python/                the model's remote code (the PyTorch side of the benchmark)
#   data/corpus/           reference shards the built-in sample was not cut from (the loader's
#                          rate from cold data), from $BERTHASH_SHARED/data/corpus
#   vulkan/                with --vulkan: Debian's libvulkan1 (the GPU machine has no Vulkan
#                          loader; the NVIDIA driver there provides the ICD), for the wgpu rows
#   MANIFEST               commit, features, build command, sizes and sha256 of every file
#
# What travels to the GPU machine is the working tree plus carried folders, at most 64 MiB in
# all: the script prints both sizes and refuses (exit 1) when their sum is over that.
#
# --dry-run puts a stand-in of STANDIN_MIB (default 12) MiB of random bytes where each binary
# goes (about a compressed CUDA build's size) and checks the rest exactly as a real run does.
#
# Environment: CARGO_TARGET_DIR (default <repo>/target/gpu: not the CPU build's folder, whose
# binary a CUDA build would replace), BERTHASH_SHARED (default <repo>/../shared), XZ_LEVEL (6),
# STANDIN_MIB (12), LIMIT_MIB (64).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

FEATURES=cuda,wgpu
OUT_DIR="$REPO/gpu-bundle"
DRY_RUN=0
NO_FUSION=0
NO_AUTOTUNE=0
KERNEL_CACHE=
VULKAN=0
while (($#)); do
  case "$1" in
    --features) FEATURES=$2; shift ;;
    --out) OUT_DIR=$2; shift ;;
    --dry-run) DRY_RUN=1 ;;
    --no-fusion) NO_FUSION=1 ;;
    --vulkan) VULKAN=1 ;;
    --no-autotune) NO_AUTOTUNE=1 ;;
    --kernel-cache) KERNEL_CACHE=$2; shift ;;
    -h | --help) sed -n '2,36p' "$0"; exit 0 ;;
    *) echo "gpu_bundle: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[[ "$OUT_DIR" = /* ]] || OUT_DIR="$REPO/$OUT_DIR"
SHARED="${BERTHASH_SHARED:-$REPO/../shared}"
TARGET="${CARGO_TARGET_DIR:-$REPO/target/gpu}"
XZ_LEVEL="${XZ_LEVEL:-6}"
STANDIN_MIB="${STANDIN_MIB:-12}"
LIMIT_MIB="${LIMIT_MIB:-64}"
LIMIT_BYTES=$((LIMIT_MIB * 1024 * 1024))
now() { date +%s; }
T0=$(now)

rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR/scripts/gpu" "$OUT_DIR/python" "$OUT_DIR/data/corpus"

# --- the binaries -------------------------------------------------------------------------------
# build SRC_DIR TARGET_DIR NAME: release build of berthash-cli, stripped and compressed to NAME.xz.
build() {
  local src=$1 target=$2 name=$3 t1
  t1=$(now)
  echo "== cargo build --release -p berthash-cli --features $FEATURES ($name, target $target)"
  (cd "$src" && CARGO_TARGET_DIR="$target" nice -n 10 cargo build --release -q -p berthash-cli \
    --features "$FEATURES")
  strip -o "$OUT_DIR/$name" "$target/release/berthash"
  echo "   built in $(($(now) - t1)) s; stripped: $(du -m "$OUT_DIR/$name" | cut -f1) MiB"
  xz -T0 "-$XZ_LEVEL" -f "$OUT_DIR/$name"
  echo "   $name.xz: $(du -m "$OUT_DIR/$name.xz" | cut -f1) MiB"
}

# variant_tree DIR FEATURES: a copy of the tree whose cuda/wgpu features leave out burn/FEATURE,
# and berthash-kernels' own FEATURE where it has one, for each of the comma-separated FEATURES
# (`fusion`, `autotune`; berthash-cli's and berthash-kernels' lists are the only ones naming
# them), checked in the dependency tree.
variant_tree() {
  local dir=$1 features=$2 feature crate=burn-cubecl f
  rm -rf "$dir"
  mkdir -p "$dir"
  git ls-files -z --cached --others --exclude-standard | tar -C "$REPO" --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -C "$dir" -xf -
  for feature in ${features//,/ }; do
    for f in crates/berthash-cli/Cargo.toml crates/berthash-kernels/Cargo.toml; do
      sed -i -E "/^(cuda|wgpu) = /{s/, \"(burn\/)?$feature\"//g;s/\"(burn\/)?$feature\", //g;s/\"(burn\/)?$feature\"//g}" "$dir/$f"
      if grep -qE "^(cuda|wgpu) = .*\"(burn/)?$feature\"" "$dir/$f"; then
        echo "gpu_bundle: could not take burn/$feature out of $f" >&2
        exit 1
      fi
    done
    # Burn's fusion and autotune features reach the GPU kernels as burn-cubecl's of the same
    # name: `cargo tree -e features -i burn-cubecl` lists `burn-cubecl feature "F"` for each one.
    if (cd "$dir" && cargo tree -q -p berthash-cli --features "$FEATURES" -e features -i "$crate") \
      | grep -F "$crate feature \"$feature\"" >/dev/null; then
      echo "gpu_bundle: $crate's $feature feature is still on in the build without it" >&2
      exit 1
    fi
  done
}

standin() { head -c "$((STANDIN_MIB * 1024 * 1024))" /dev/urandom >"$OUT_DIR/$1.xz"; }

# The variants: NAME FEATURES (those left out), for each --no-FEATURE given.
variants=()
((NO_AUTOTUNE)) && variants+=("notune autotune")
((NO_FUSION)) && variants+=("nofusion fusion,autotune")
if ((DRY_RUN)); then
  echo "== dry run: $STANDIN_MIB MiB stand-in for each binary"
  standin berthash
  for v in "${variants[@]}"; do
    read -r name feature <<<"$v"
    standin "berthash-$name"
    variant_tree "$TARGET/$name-src" "$feature" # the feature edit and the dependency check, unbuilt
    echo "   $name sources: burn-cubecl's $feature off"
  done
else
  command -v cargo >/dev/null || { echo "gpu_bundle: cargo not found" >&2; exit 2; }
  build "$REPO" "$TARGET" berthash
  for v in "${variants[@]}"; do
    read -r name feature <<<"$v"
    variant_tree "$TARGET/$name-src" "$feature"
    # The same target folder: only the crates whose features change are built again.
    build "$TARGET/$name-src" "$TARGET" "berthash-$name"
  done
fi
if [[ -n "$KERNEL_CACHE" ]]; then
  [[ -f "$KERNEL_CACHE" ]] || { echo "gpu_bundle: --kernel-cache $KERNEL_CACHE: no such file" >&2; exit 2; }
  # gpu_check.sh writes it as kernel-cache/ and unpacks it as such.
  if tar -tJf "$KERNEL_CACHE" 2>/dev/null | grep -v '^kernel-cache/' | grep . >/dev/null \
    || ! tar -tJf "$KERNEL_CACHE" >/dev/null 2>&1; then
    echo "gpu_bundle: --kernel-cache $KERNEL_CACHE: not a tar.xz of kernel-cache/ (what gpu_check.sh returns)" >&2
    exit 2
  fi
  cp "$KERNEL_CACHE" "$OUT_DIR/kernel-cache.tar.xz"
  echo "== kernel cache: $KERNEL_CACHE ($(du -m "$KERNEL_CACHE" | cut -f1) MiB)"
fi

# --- scripts, remote code, reference, shards ----------------------------------------------------
cp scripts/gpu_check.sh scripts/bench_vs_pytorch.py "$OUT_DIR/scripts/"
cp scripts/gpu/gpu_report.py scripts/gpu/pretrain-check.toml "$OUT_DIR/scripts/gpu/"
if [[ -f scripts/gpu/cpu_reference.json ]]; then
  cp scripts/gpu/cpu_reference.json "$OUT_DIR/scripts/gpu/"
else
  echo "gpu_bundle: scripts/gpu/cpu_reference.json is missing: the correctness step will be skipped" >&2
fi
cp python/*.py "$OUT_DIR/python/"
# The last shard of each reference corpus: the built-in sample was cut from shard 00000.
for corpus in wikipedia books; do
  shard="$SHARED/data/corpus/$corpus/train-00002-of-00003.parquet"
  if [[ -f "$shard" ]]; then
    cp "$shard" "$OUT_DIR/data/corpus/$corpus-train-00002-of-00003.parquet"
  else
    echo "gpu_bundle: $shard not found: the loader step will be skipped" >&2
  fi
done
if ((VULKAN)); then
  # Debian's loader for amd64 (the GPU machine is x86-64), whatever this machine is.
  mkdir -p "$OUT_DIR/vulkan" /tmp/gpu-bundle-apt/lists/partial
  apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/gpu-bundle-apt/lists)
  if apt-get "${apt_opts[@]}" -qq update && (cd "$OUT_DIR/vulkan" && apt-get "${apt_opts[@]}" -qq download libvulkan1); then
    echo "== vulkan: $(ls "$OUT_DIR/vulkan")"
  else
    echo "gpu_bundle: could not download libvulkan1: the wgpu step will be skipped" >&2
  fi
fi

# --- manifest and size --------------------------------------------------------------------------
commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
[[ -n "$(git status --porcelain 2>/dev/null)" ]] && commit="$commit (with uncommitted changes)"
{
  echo "commit: $commit"
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "features: $FEATURES"
  if ((DRY_RUN)); then
    echo "binary: stand-in ($STANDIN_MIB MiB of random bytes; a dry run)"
  else
    echo "binary: cargo build --release -p berthash-cli --features $FEATURES ($(cargo --version)), strip, xz -$XZ_LEVEL"
  fi
  ((NO_FUSION)) && echo "nofusion: the same, with burn/fusion and burn/autotune taken out of the cuda and wgpu features"
  ((NO_AUTOTUNE)) && echo "notune: the same, with burn/autotune taken out of the cuda and wgpu features"
  [[ -n "$KERNEL_CACHE" ]] && echo "kernel-cache: $KERNEL_CACHE"
  echo "run: bash gpu-bundle/scripts/gpu_check.sh \"\$OUT\""
  echo "files:"
  (cd "$OUT_DIR" && find . -type f ! -name MANIFEST -printf '%P\n' | sort | while read -r f; do
    echo "  $(sha256sum "$f" | cut -c1-16)  $(stat -c %s "$f")  $f"
  done)
} >"$OUT_DIR/MANIFEST"

bundle_bytes=$(du -sb "$OUT_DIR" | cut -f1)
# The working tree that travels with it: tracked and untracked files git does not ignore.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard \
  | xargs -0 -r stat -c %s -- 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
# The bundle folder itself is ignored (.gitignore), unless --out put it elsewhere in the tree.
total=$((bundle_bytes + tree_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "== $OUT_DIR: $(mib "$bundle_bytes") (+ working tree $(mib "$tree_bytes") = $(mib "$total"); limit ${LIMIT_MIB} MiB) in $(($(now) - T0)) s"
if ((total > LIMIT_BYTES)); then
  echo "gpu_bundle: over the ${LIMIT_MIB} MiB the GPU machine takes: leave something out" >&2
  exit 1
fi
