#!/usr/bin/env bash
# Hugging Face parity suite: berthash against transformers + our remote code (python/*.py),
# under transformers 4.55.4 (what the published models name) and the newest release.
#
# Usage:
#   scripts/parity.sh [parity.py options, e.g. --only roundtrip | --only tokenizer | --keep]
#
# For each venv it runs tests/python/parity.py, which prints one table (check, ours, reference,
# tolerance, result) and rewrites its section of docs/parity.md. Exits non-zero when any check
# of any venv fails (the other venv still runs).
#
# Environment:
#   BERTHASH_BIN      berthash binary to test (default: `cargo build -p berthash-cli` and
#                     ${CARGO_TARGET_DIR:-target}/debug/berthash)
#   CARGO_TARGET_DIR  respected by the build and when locating the binary
#   PARITY_VENVS      which venvs to run, default "pinned latest":
#                       pinned = .venv-parity,        TRANSFORMERS_VERSION=4.55.4
#                       latest = .venv-parity-latest, TRANSFORMERS_VERSION=latest
#   PARITY_PINNED_VENV / PARITY_LATEST_VENV   override those venv paths
#   PARITY_NO_SETUP=1 use the venvs as they are (no scripts/python_env.sh, no pyarrow install;
#                     the "latest" venv then keeps whatever release it was built with)
#   PARITY_MARKDOWN   file to update (default docs/parity.md; "-" to write nothing)
# scripts/python_env.sh's own variables (PIP_CACHE_DIR, WHEELHOUSE, PYTHON) pass through.
set -euo pipefail

INVOKED_FROM="$(pwd)"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

PARITY_VENVS="${PARITY_VENVS:-pinned latest}"
PINNED_VENV="${PARITY_PINNED_VENV:-$REPO_ROOT/.venv-parity}"
LATEST_VENV="${PARITY_LATEST_VENV:-$REPO_ROOT/.venv-parity-latest}"
MARKDOWN="${PARITY_MARKDOWN:-$REPO_ROOT/docs/parity.md}"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0="$(now)"

# --- the berthash binary ---------------------------------------------------------------
if [[ -n "${BERTHASH_BIN:-}" ]]; then
  BIN="$BERTHASH_BIN"
  [[ "$BIN" = /* ]] || BIN="$INVOKED_FROM/$BIN"
  echo "== berthash: $BIN (BERTHASH_BIN)"
else
  TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
  [[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$INVOKED_FROM/$TARGET_DIR"
  export CARGO_TARGET_DIR="$TARGET_DIR"
  command -v cargo >/dev/null || { echo "cargo not found (or set BERTHASH_BIN)" >&2; exit 2; }
  echo "== building berthash (cargo build -p berthash-cli, target $TARGET_DIR)"
  TB="$(now)"
  cargo build -q -p berthash-cli \
    || { echo "cargo build -p berthash-cli failed (set BERTHASH_BIN to test a binary built elsewhere)" >&2; exit 2; }
  BIN="$TARGET_DIR/debug/berthash"
  echo "   built in $(elapsed "$TB") s"
fi
[[ -x "$BIN" ]] || { echo "berthash binary not found or not executable: $BIN" >&2; exit 2; }

# --- venvs and the suite ----------------------------------------------------------------
status=0
summary=()
for which in $PARITY_VENVS; do
  case "$which" in
    pinned) venv="$PINNED_VENV"; version=4.55.4 ;;
    latest) venv="$LATEST_VENV"; version=latest ;;
    *) echo "unknown entry '$which' in PARITY_VENVS (pinned, latest)" >&2; exit 2 ;;
  esac
  echo "== [$which] venv $venv (transformers $version)"
  TV="$(now)"
  if [[ "${PARITY_NO_SETUP:-0}" != 1 ]]; then
    VENV_DIR="$venv" TRANSFORMERS_VERSION="$version" "$REPO_ROOT/scripts/python_env.sh"
    # Optional: more real text for the tokenizer checks (data/sample parquet). The suite
    # runs without it (a SKIP row says so), so a failed install is not an error.
    if ! "$venv/bin/python" -c 'import pyarrow' >/dev/null 2>&1; then
      "$venv/bin/python" -m pip install -q --disable-pip-version-check pyarrow \
        || echo "   (pyarrow not installed: the data/sample texts will be skipped)"
    fi
  fi
  [[ -x "$venv/bin/python" ]] || { echo "no venv at $venv (run without PARITY_NO_SETUP)" >&2; exit 2; }
  setup_s="$(elapsed "$TV")"
  TR="$(now)"
  rc=0
  "$venv/bin/python" "$REPO_ROOT/tests/python/parity.py" --bin "$BIN" --label "$which" \
    --markdown "$MARKDOWN" "$@" || rc=$?
  run_s="$(elapsed "$TR")"
  [[ $rc -eq 0 ]] || status=1
  summary+=("[$which] $([[ $rc -eq 0 ]] && echo PASS || echo "FAIL (exit $rc)"): venv setup ${setup_s} s, suite ${run_s} s")
done

echo
echo "== parity summary (total $(elapsed "$T0") s)"
printf '   %s\n' "${summary[@]}"
exit $status
