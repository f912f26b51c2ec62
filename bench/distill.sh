#!/bin/sh
# Knowledge distillation on Fashion-MNIST, measured (issue 6's distillation target):
#   bench/distill.sh [--threads N] [--epochs E] [--keep DIR]
# A teacher (examples/cnn.toml, E epochs, 93,322 parameters) and a student with a quarter of
# its parameters (16/32/32 filters, 30 hidden units: 23,028), trained E epochs from the labels
# alone and E epochs with `mox distill` (T 4, alpha 0.5, teacher logits cached), for seeds
# 1, 2, 3. Writes bench/DISTILL_RESULTS.md: test accuracy per seed and the means.
# (--keep DIR: work in DIR and keep it; finished runs there are reused.)
set -eu
cd "$(dirname "$0")/.."
COMMAND="bench/distill.sh"
[ "$#" -eq 0 ] || COMMAND="$COMMAND $*"
T=2
E=10
KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) T=$2; shift 2 ;;
    --epochs) E=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "distill.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-/usr/bin/python3}
scripts/build >/dev/null
MOX=build/release/mox
if [ -n "$KEEP" ]; then W=$KEEP; mkdir -p "$W"; else W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; fi
export MOX_NUM_THREADS=$T
SMALL="--set model.layers[0].out_channels=16 --set model.layers[2].out_channels=32 --set model.layers[4].out_channels=32 --set model.layers[6].out_features=30"
echo "== teacher: $E epochs" >&2
[ -f "$W/teacher$E/summary.json" ] || $MOX train examples/cnn.toml --epochs "$E" --out "$W/teacher$E" --overwrite -q
for seed in 1 2 3; do
  echo "== seed $seed: student from labels alone, then distilled" >&2
  # shellcheck disable=SC2086
  [ -f "$W/d-st-$seed/summary.json" ] || $MOX train examples/cnn.toml $SMALL --seed "$seed" --epochs "$E" \
    --out "$W/d-st-$seed" --overwrite -q
  # shellcheck disable=SC2086
  [ -f "$W/d-kd-$seed/summary.json" ] || $MOX distill --teacher "$W/teacher$E" --student examples/cnn.toml $SMALL \
    --seed "$seed" --epochs "$E" --temperature 4 --alpha 0.5 --cache-teacher --out "$W/d-kd-$seed" --overwrite -q
done
"$PYTHON" - "$W" "$E" "$COMMAND" <<'PY' | tee bench/DISTILL_RESULTS.md
import json, statistics, sys
w, e, command = sys.argv[1:4]
acc = lambda d: json.load(open(f"{w}/{d}/summary.json"))["test"]["accuracy"]
par = lambda d: json.load(open(f"{w}/{d}/summary.json"))["parameters"]
t = acc(f"teacher{e}")
a0 = [acc(f"d-st-{s}") for s in (1, 2, 3)]
a1 = [acc(f"d-kd-{s}") for s in (1, 2, 3)]
print("# Knowledge distillation\n")
print(f"Command: `{command}`. Teacher: examples/cnn.toml, {e} epochs, {par(f'teacher{e}')} parameters, "
      f"test accuracy {t:.4f}. Student: {par('d-st-1')} parameters, {e} epochs, Adam as the config; "
      "distilled with T 4, alpha 0.5 (teacher logits cached).\n")
print("| student | seed 1 | seed 2 | seed 3 | mean |")
print("|---|---:|---:|---:|---:|")
print("| labels alone | " + " | ".join(f"{a:.4f}" for a in a0) + f" | {statistics.mean(a0):.4f} |")
print("| distilled | " + " | ".join(f"{a:.4f}" for a in a1) + f" | {statistics.mean(a1):.4f} |")
m0, m1 = statistics.mean(a0), statistics.mean(a1)
print(f"\nDistilled minus labels alone: {100*(m1-m0):+.2f} points (mean of 3 seeds); "
      f"per seed: " + ", ".join(f"{100*(b-a):+.2f}" for a, b in zip(a0, a1)) + ".")
print(f"Target (the distilled student beats the label-only one, same epochs): {'met' if m1 > m0 else 'not met'}.")
PY
