#!/bin/sh
# The character-level GPT of examples/gpt_fortunes.toml trained and sampled by mox and by
# PyTorch (the anchor /work/shared/anchors/cpu/bench_gpt.py: nanoGPT's architecture, same
# corpus split, same optimiser), side by side in one run:
#   bench/gpt.sh [--threads N] [--steps S] [--gen-reps R]
# Reports training tokens/s (PyTorch: median of 3 windows of 50 steps after 5 warm-up steps;
# mox: summary.json's tokens_per_second over every step of the run, warm-up included, and
# the median of the 100-step intervals in history.csv), validation loss after S steps (mean
# cross-entropy over every 128-token window of the validation split, both sides), and batch-1
# generation tokens/s with and without the KV cache (200 new tokens, multinomial sampling;
# medians of R runs). Writes bench/GPT_RESULTS.md. On this shared 2-core machine run it when
# the load average is low: OpenMP spinning collapses under load, on both sides.
set -eu
cd "$(dirname "$0")/.."
COMMAND="bench/gpt.sh"
[ "$#" -eq 0 ] || COMMAND="$COMMAND $*"
THREADS=2
STEPS=500
REPS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --gen-reps) REPS=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpt.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-/usr/bin/python3}
ANCHORS=${ANCHORS:-/work/shared/anchors/cpu}
[ -f "$ANCHORS/bench_gpt.py" ] || { echo "gpt.sh: $ANCHORS/bench_gpt.py not found (set ANCHORS)" >&2; exit 1; }
scripts/build >/dev/null
MOX=build/release/mox
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== PyTorch: $STEPS steps, $THREADS threads" >&2
"$PYTHON" "$ANCHORS/bench_gpt.py" --threads "$THREADS" --steps "$STEPS" --blas system --gen-reps "$REPS" \
  --json "$OUT/torch.json" >&2
echo "== mox: $STEPS steps, $THREADS threads" >&2
"$MOX" pretrain examples/gpt_fortunes.toml --out "$OUT/run" --steps "$STEPS" --threads "$THREADS" >&2
: > "$OUT/gen.txt"
r=0
while [ $r -lt "$REPS" ]; do
  "$MOX" generate --model "$OUT/run" --prompt '
' --max-new-tokens 200 --seed "$r" --threads "$THREADS" --bench --no-stream >/dev/null 2>>"$OUT/gen.txt"
  r=$((r + 1))
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

"$PYTHON" - "$OUT" "$COMMAND" "$LOAD0" "$LOAD1" <<'PY' | tee bench/GPT_RESULTS.md
import csv, json, re, statistics, sys
out, command, load0, load1 = sys.argv[1:5]
t = json.load(open(f"{out}/torch.json"))
s = json.load(open(f"{out}/run/summary.json"))
hist = list(csv.DictReader(open(f"{out}/run/history.csv")))
intervals = [float(r["tokens_per_second"]) for r in hist]
gen = {"with cache": [], "without cache": []}
for line in open(f"{out}/gen.txt"):
    m = re.match(r"bench: (with cache|without cache): .*\(([0-9.e+]+) tokens/s\)", line)
    if m: gen[m.group(1)].append(float(m.group(2)))
med = statistics.median
mt, mk, mn = s["tokens_per_second"], med(gen["with cache"]), med(gen["without cache"])
tt, tk, tn = t["train_tok_s"]["median"], t["gen_tok_s"]["kv_cache"]["median"], t["gen_tok_s"]["no_cache"]["median"]
print(f"# GPT on the English fortunes: mox vs PyTorch\n")
print(f"Command: `{command}`; {t['threads']} threads; torch {t['torch']} ({t['blas']}); load average "
      f"before {load0}, after {load1}.\n")
print("Model: 4 layers, 4 heads, 128 wide, block 128, batch 32, AdamW 1e-3, no dropout "
      f"(mox: vocab {s['model']['vocab_size']} bytes, {s['parameters']:,} parameters; "
      f"PyTorch: vocab {t['vocab']} distinct bytes, {t['params']:,} parameters).\n")
print("| | PyTorch | mox | mox / PyTorch |\n| --- | --- | --- | --- |")
print(f"| training tokens/s | {tt:,.0f} | {mt:,.0f} (whole run; per-interval median {med(intervals):,.0f}) | {mt / tt:.2f}x |")
print(f"| val loss after {s['steps']} steps | {t['val_loss']:.4f} | {s['val_loss']:.4f} | {s['val_loss'] - t['val_loss']:+.4f} |")
print(f"| generation tokens/s, KV cache | {tk:,.0f} | {mk:,.0f} | {mk / tk:.2f}x |")
print(f"| generation tokens/s, no cache | {tn:,.0f} | {mn:,.0f} | {mn / tn:.2f}x |")
print(f"\nmox generation rates (tokens/s): with cache {', '.join(f'{x:,.0f}' for x in gen['with cache'])}; "
      f"without {', '.join(f'{x:,.0f}' for x in gen['without cache'])}. PyTorch training windows: "
      f"{', '.join(f'{x:,.0f}' for x in t['train_tok_s']['all'])} tokens/s.")
PY
