#!/usr/bin/env bash
# Reproduces a BERT Hash model card with berthash alone: pre-trains SIZE on the given parquet
# shards (configs/reproduce/SIZE.toml), exports the model, fine-tunes SST-2 and MRPC with the
# card's run_glue recipe (configs/reproduce/{sst2,mrpc}.toml) over N seeds, and writes
# OUT/reproduction.json and OUT/reproduction.md (scripts/reproduce_report.py).
#
#   scripts/reproduce_card.sh SIZE --corpus GLOB... [--seeds N] [--glue-dir DIR] [--out DIR]
#                             [--curve STEP,STEP,...]
#
#   SIZE        femto, pico or nano (the sizes with a recipe in configs/reproduce/)
#   --corpus    parquet shards with a `text` column (Wikipedia + BookCorpus, or your own)
#   --seeds     fine-tuning seeds, 42, 43, ...; one seed is a quick rerun (default 3)
#   --glue-dir  folder with SST-2/ and MRPC/ in the original GLUE layout (default glue_data)
#   --out       where everything goes (default runs/reproduce)
#   --curve     pre-training checkpoints (steps) to fine-tune SST-2 from as well, seed 42: the
#               curve of SST-2 score against pre-training tokens
#
# Started again, it goes on where it stopped: finished stages are skipped and an interrupted
# run resumes from its newest checkpoint (recorded in OUT/SIZE/continued.tsv, which the report
# shows). BERTHASH_BIN picks the binary (default: a release build of this checkout).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() { sed -n '7,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "reproduce_card.sh: $*" >&2; exit 2; }

[[ $# -ge 1 ]] || usage
SIZE="$1"; shift
CORPUS=(); SEEDS=3; GLUE=glue_data; OUT=runs/reproduce; CURVE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --corpus) shift; while [[ $# -gt 0 && "$1" != --* ]]; do CORPUS+=("$1"); shift; done ;;
    --seeds) SEEDS="${2:?--seeds needs a number}"; shift 2 ;;
    --glue-dir) GLUE="${2:?--glue-dir needs a folder}"; shift 2 ;;
    --out) OUT="${2:?--out needs a folder}"; shift 2 ;;
    --curve) CURVE="${2:?--curve needs steps, e.g. 2000,4000}"; shift 2 ;;
    -h|--help) usage ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

# --- every input checked before anything is written -------------------------------------
RECIPE="$ROOT/configs/reproduce/$SIZE.toml"
[[ -f "$RECIPE" ]] || die "SIZE '$SIZE': no recipe $RECIPE (femto, pico or nano)"
[[ ${#CORPUS[@]} -gt 0 ]] || die "--corpus: give at least one parquet file or glob"
for pattern in "${CORPUS[@]}"; do
  compgen -G "$pattern" >/dev/null || die "--corpus: '$pattern' matches no file"
done
[[ "$SEEDS" =~ ^[1-9][0-9]*$ ]] || die "--seeds: '$SEEDS' is not a positive whole number"
[[ -z "$CURVE" || "$CURVE" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--curve: '$CURVE' is not a comma-separated list of steps"
for task in SST-2 MRPC; do
  [[ -f "$GLUE/$task/train.tsv" && -f "$GLUE/$task/dev.tsv" ]] \
    || die "--glue-dir: $GLUE/$task/ needs train.tsv and dev.tsv"
done
SEED_LIST="$(seq -s, 42 $((41 + SEEDS)))"

if [[ -n "${BERTHASH_BIN:-}" ]]; then
  BIN="$BERTHASH_BIN"
else
  (cd "$ROOT" && cargo build -q --release -p berthash-cli)
  BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/berthash"
fi
[[ -x "$BIN" ]] || die "no berthash binary at $BIN"

RUN="$OUT/$SIZE"
mkdir -p "$RUN"
CONTINUED="$RUN/continued.tsv"

# A run directory's state: done (summary written), resumable (a checkpoint), or new.
state() {
  if [[ -f "$1/summary.json" ]]; then echo done
  elif compgen -G "$1/checkpoints/step-*" >/dev/null; then echo resumable
  else echo new; fi
}

# Pre-training: started, resumed, or skipped when finished.
PRE="$RUN/pretrain"
case "$(state "$PRE")" in
  done) echo "== $SIZE: pre-training finished ($PRE)" ;;
  resumable)
    printf 'pretrain\t%s\t%s\n' "$(date -u +%FT%TZ)" "$(ls -d "$PRE"/checkpoints/step-* | tail -1 | xargs basename)" >>"$CONTINUED"
    echo "== $SIZE: resuming pre-training ($PRE)"
    "$BIN" pretrain --config "$RECIPE" --data "${CORPUS[@]}" --out "$PRE" --resume ;;
  new)
    echo "== $SIZE: pre-training ($PRE)"
    overwrite=(); [[ -e "$PRE/train_config.json" ]] && overwrite=(--overwrite)
    "$BIN" pretrain --config "$RECIPE" --data "${CORPUS[@]}" --out "$PRE" "${overwrite[@]}" ;;
esac

MODEL="$RUN/model"
[[ -f "$MODEL/model.safetensors" ]] || "$BIN" export --from "$PRE" --out "$MODEL" --head mlm

# Fine-tuning: one sweep per task over the seeds; a sweep skips finished runs and resumes the
# interrupted one, which is recorded here first.
finetune() { # task glue-folder model out seeds
  local task="$1" data="$2" model="$3" out="$4" seeds="$5" dir
  for dir in "$out"/seed*; do
    [[ "$(state "$dir")" == resumable ]] && printf '%s\t%s\t%s\n' "$(basename "$out")/$(basename "$dir")" \
      "$(date -u +%FT%TZ)" "$(ls -d "$dir"/checkpoints/step-* | tail -1 | xargs basename)" >>"$CONTINUED"
  done
  "$BIN" sweep --config "$ROOT/configs/reproduce/$task.toml" --model "$model" \
    --data-dir "$data" --seeds "$seeds" --out "$out"
}
finetune sst2 "$GLUE/SST-2" "$MODEL" "$RUN/sst2" "$SEED_LIST"
finetune mrpc "$GLUE/MRPC" "$MODEL" "$RUN/mrpc" "$SEED_LIST"

for step in ${CURVE//,/ }; do
  checkpoint="$PRE/checkpoints/$(printf 'step-%08d' "$step")"
  [[ -d "$checkpoint" ]] || die "--curve: no checkpoint at step $step ($checkpoint); see $PRE/checkpoints/"
  finetune sst2 "$GLUE/SST-2" "$checkpoint" "$RUN/curve/step-$step" 42
done

GLUE_DIR="$GLUE" python3 "$ROOT/scripts/reproduce_report.py" "$OUT"
