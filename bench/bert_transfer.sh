#!/bin/sh
# Transfer learning with BERT on the fortunes: pre-train examples/bert_fortunes.toml (masked
# LM on the English fortunes, BPE 2000), then fine-tune examples/bert_finetune.toml (six
# fortune categories) from the pre-trained encoder and from random weights with the same
# architecture, tokenizer, data split and budget, over several seeds:
#   bench/bert_transfer.sh [--steps S] [--seeds "0 1 2"] [--threads N]
# Writes bench/BERT_TRANSFER.md. The encoder is pre-trained on all English fortunes without
# labels (the fine-tuning texts included, as a BERT corpus usually holds its downstream
# texts); the category labels are seen only in fine-tuning.
set -eu
cd "$(dirname "$0")/.."
COMMAND="bench/bert_transfer.sh"
[ "$#" -eq 0 ] || COMMAND="$COMMAND $*"
STEPS=2000
SEEDS="0 1 2"
THREADS=2
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bert_transfer.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
scripts/build >/dev/null
MOX=build/release/mox
OUT=${OUT:-runs/bert_transfer}
mkdir -p "$OUT"
"$MOX" pretrain examples/bert_fortunes.toml --out "$OUT/bert" --overwrite --steps "$STEPS" --threads "$THREADS" >&2
for seed in $SEEDS; do
  for w in true false; do
    "$MOX" finetune examples/bert_finetune.toml --out "$OUT/cls_${w}_$seed" --overwrite --threads "$THREADS" \
      --set "model.pretrained=\"$OUT/bert\"" --set "model.load_weights=$w" --set "train.seed=$seed" >&2
  done
done
/usr/bin/python3 - "$OUT" "$COMMAND" "$SEEDS" <<'PY' | tee bench/BERT_TRANSFER.md
import json, statistics, sys
out, command, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split()
pre = json.load(open(f"{out}/bert/summary.json"))
print("# BERT transfer on the fortune categories\n")
print(f"Command: `{command}`. Pre-training: {pre['steps']} steps, val masked-LM loss {pre['val_loss']:.4f} "
      f"(perplexity {pre['val_perplexity']:.1f}), {pre['tokens_per_second']:,.0f} tokens/s.\n")
print("| seed | accuracy, pre-trained | accuracy, random init | macro F1, pre-trained | macro F1, random init | majority baseline |")
print("| --- | --- | --- | --- | --- | --- |")
acc = {"true": [], "false": []}
for s in seeds:
    r = {w: json.load(open(f"{out}/cls_{w}_{s}/summary.json")) for w in ("true", "false")}
    for w in r: acc[w].append(r[w]["test"]["accuracy"])
    print(f"| {s} | {r['true']['test']['accuracy']:.4f} | {r['false']['test']['accuracy']:.4f} | "
          f"{r['true']['test']['macro_f1']:.4f} | {r['false']['test']['macro_f1']:.4f} | {r['true']['baseline']['accuracy']:.4f} |")
m = statistics.mean
print(f"\nMean test accuracy: pre-trained {m(acc['true']):.4f}, random init {m(acc['false']):.4f} "
      f"(transfer gain {m(acc['true']) - m(acc['false']):+.4f}); {r['true']['test_examples']} test fortunes, "
      f"{r['true']['steps']} fine-tuning steps each.")
PY
