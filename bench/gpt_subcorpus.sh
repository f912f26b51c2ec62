#!/bin/sh
# Fine-tuning a pre-trained GPT on a sub-corpus: pre-train examples/gpt_fortunes.toml on the
# English fortunes without the held-out file (default startrek), then train on that file
# alone for a few steps starting from the pre-trained model (model.init) and from scratch
# with the same budget; compare validation loss on the held-out file's last 10%:
#   bench/gpt_subcorpus.sh [--file startrek] [--pre-steps 500] [--steps 100] [--threads 2]
# Writes bench/GPT_SUBCORPUS.md.
set -eu
cd "$(dirname "$0")/.."
COMMAND="bench/gpt_subcorpus.sh"
[ "$#" -eq 0 ] || COMMAND="$COMMAND $*"
FILE=startrek
PRE=500
STEPS=100
THREADS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --file) FILE=$2; shift 2 ;;
    --pre-steps) PRE=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpt_subcorpus.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
scripts/build >/dev/null
MOX=build/release/mox
OUT=${OUT:-runs/gpt_subcorpus}
SUB="/usr/share/games/fortunes/$FILE"
mkdir -p "$OUT"
"$MOX" pretrain examples/gpt_fortunes.toml --out "$OUT/pre" --overwrite --steps "$PRE" --threads "$THREADS" \
  --set "corpus.exclude=[\"$FILE\"]" >&2
for init in pre scratch; do
  extra=""
  [ "$init" = pre ] && extra="model.init=\"$OUT/pre\""
  "$MOX" pretrain examples/gpt_fortunes.toml --out "$OUT/$init-ft" --overwrite --steps "$STEPS" --threads "$THREADS" \
    --set 'corpus.source="files"' --set "corpus.files=[\"$SUB\"]" --set "train.eval_every=$((STEPS / 4))" \
    ${extra:+--set "$extra"} >&2
done
/usr/bin/python3 - "$OUT" "$COMMAND" "$FILE" <<'PY' | tee bench/GPT_SUBCORPUS.md
import csv, json, sys
out, command, name = sys.argv[1:4]
pre = json.load(open(f"{out}/pre/summary.json"))
rows = {k: list(csv.DictReader(open(f"{out}/{k}-ft/history.csv"))) for k in ("pre", "scratch")}
print(f"# Fine-tuning a pre-trained GPT on one fortune file ({name})\n")
print(f"Command: `{command}`. Pre-training: {pre['steps']} steps on the English fortunes without `{name}` "
      f"(val loss {pre['val_loss']:.4f}). Then {len(rows['pre']) and rows['pre'][-1]['step'].split('.')[0]} steps on `{name}` alone "
      "(same config, batch 32 x 128 bytes), validation on its last 10%.\n")
print("| step | val loss, from the pre-trained GPT | val loss, from scratch |\n| --- | --- | --- |")
for a, b in zip(rows["pre"], rows["scratch"]):
    print(f"| {int(float(a['step']))} | {float(a['val_loss']):.4f} | {float(b['val_loss']):.4f} |")
PY
