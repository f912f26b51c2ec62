#!/bin/sh
# Model compression, measured end to end on this machine (issue 6's targets), in one run:
#   bench/compress.sh [--threads N] [--gpt-steps S] [--keep DIR]
# (--keep DIR: work in DIR and keep it; runs that already finished there (trainings, pruning,
# distillation) are reused, quantisation and every measurement are redone.)
# 1. trains the float baselines: examples/mlp.toml (5 epochs), examples/cnn.toml (3 epochs),
#    the char-level GPT of examples/gpt_fortunes.toml (S steps, default 500);
# 2. compresses them with the CLI: mox quantize (ptq-int8, dynamic-int8, qat; GPT w8 / w4),
#    mox prune (MLP 80% unstructured + 3 fine-tuning epochs; CNN half the filters, structured,
#    + 2 epochs), mox distill (a CNN student with a quarter of the teacher's parameters,
#    T = 4, alpha = 0.5, 3 epochs, against the same student trained from labels alone, 3 epochs;
#    seeds 1, 2, 3 of each);
# 3. measures every variant with mox compress-report (test accuracy / validation perplexity,
#    file size, batch-1 latency, batch-256 or generation throughput), and PyTorch's
#    quantize_dynamic on the SAME trained MLP and CNN (bench/compress/torch_quant.py, Debian
#    python3-torch, OpenBLAS), timed in the same run;
# 4. writes bench/compress/{mlp,cnn,gpt}/compress_report.{md,json,svg} and
#    bench/COMPRESS_RESULTS.md (the targets, met or not).
set -eu
cd "$(dirname "$0")/.."
COMMAND="bench/compress.sh"
[ "$#" -eq 0 ] || COMMAND="$COMMAND $*"
T=2
GPT_STEPS=500
KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) T=$2; shift 2 ;;
    --gpt-steps) GPT_STEPS=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compress.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-/usr/bin/python3}
scripts/build >/dev/null
MOX=build/release/mox
if [ -n "$KEEP" ]; then W=$KEEP; mkdir -p "$W"; else W=$(mktemp -d); trap 'rm -rf "$W"' EXIT; fi
export MOX_NUM_THREADS=$T
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
step() { echo "== $*" >&2; }

step "float baselines"
[ -f "$W/mlp/summary.json" ] || $MOX train examples/mlp.toml --out "$W/mlp" --threads "$T" -q --overwrite
[ -f "$W/cnn/summary.json" ] || $MOX train examples/cnn.toml --out "$W/cnn" --threads "$T" -q --overwrite

for m in mlp cnn; do
  step "$m: quantize"
  $MOX quantize --model "$W/$m" --mode ptq-int8 --calib 32 --out "$W/$m-int8" --overwrite -q
  $MOX quantize --model "$W/$m" --mode ptq-int8 --calib 32 --calibration entropy --out "$W/$m-int8-kl" --overwrite -q
  $MOX quantize --model "$W/$m" --mode dynamic-int8 --out "$W/$m-dynamic" --overwrite -q
  $MOX quantize --model "$W/$m" --mode qat --finetune-epochs 1 --out "$W/$m-qat" --overwrite -q
done
step "mlp: 80% unstructured sparsity"
[ -f "$W/mlp-sparse80/summary.json" ] || $MOX prune --model "$W/mlp" --sparsity 0.8 --finetune-epochs 3 --out "$W/mlp-sparse80" --overwrite -q
step "cnn: half the filters (structured)"
[ -f "$W/cnn-structured50/summary.json" ] || $MOX prune --model "$W/cnn" --sparsity 0.5 --structured --finetune-epochs 2 --out "$W/cnn-structured50" --overwrite -q

# The student: 16/32/32 filters and 30 hidden units (23,028 parameters; the teacher has 93,322).
SMALL="--set model.layers[0].out_channels=16 --set model.layers[2].out_channels=32 --set model.layers[4].out_channels=32 --set model.layers[6].out_features=30"
for seed in 1 2 3; do
  step "cnn student, seed $seed: from labels alone, then distilled (T 4, alpha 0.5)"
  # shellcheck disable=SC2086
  [ -f "$W/cnn-student-$seed/summary.json" ] || $MOX train examples/cnn.toml $SMALL --seed "$seed" \
    --set model.name=cnn_student --out "$W/cnn-student-$seed" --overwrite -q
  # shellcheck disable=SC2086
  [ -f "$W/cnn-student-kd-$seed/summary.json" ] || $MOX distill --teacher "$W/cnn" --student examples/cnn.toml $SMALL \
    --seed "$seed" --temperature 4 --alpha 0.5 --set model.name=cnn_student_kd --out "$W/cnn-student-kd-$seed" --overwrite -q
done

step "gpt: $GPT_STEPS steps, then w8 / w4"
[ -f "$W/gpt/summary.json" ] || $MOX pretrain examples/gpt_fortunes.toml --out "$W/gpt" --steps "$GPT_STEPS" --threads "$T" --overwrite -q
$MOX quantize --model "$W/gpt" --mode w8 --out "$W/gpt-w8" --overwrite -q
$MOX quantize --model "$W/gpt" --mode w4 --out "$W/gpt-w4" --overwrite -q

step "PyTorch quantize_dynamic on the same models"
"$PYTHON" bench/compress/torch_quant.py --run "$W/mlp" --arch mlp --threads "$T" --json "$W/torch_mlp.json" >/dev/null
"$PYTHON" bench/compress/torch_quant.py --run "$W/cnn" --arch cnn --threads "$T" --json "$W/torch_cnn.json" >/dev/null

step "reports"
$MOX compress-report "$W/mlp" "$W/mlp-int8" "$W/mlp-int8-kl" "$W/mlp-dynamic" "$W/mlp-qat" "$W/mlp-sparse80" \
  --out bench/compress/mlp --threads "$T" >/dev/null
$MOX compress-report "$W/cnn" "$W/cnn-int8" "$W/cnn-int8-kl" "$W/cnn-dynamic" "$W/cnn-qat" "$W/cnn-structured50" \
  "$W/cnn-student-1" "$W/cnn-student-kd-1" --out bench/compress/cnn --threads "$T" >/dev/null
$MOX compress-report "$W/gpt" "$W/gpt-w8" "$W/gpt-w4" --out bench/compress/gpt --threads "$T" --reps 5 >/dev/null
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

"$PYTHON" - "$W" "$COMMAND" "$LOAD0" "$LOAD1" "$T" <<'PY' | tee bench/COMPRESS_RESULTS.md
import json, sys
w, command, load0, load1, threads = sys.argv[1:6]
rep = {k: {r["run"].rsplit("/", 1)[-1]: r for r in json.load(open(f"bench/compress/{k}/compress_report.json"))["rows"]}
       for k in ("mlp", "cnn", "gpt")}
torch = {k: json.load(open(f"{w}/torch_{k}.json")) for k in ("mlp", "cnn")}
def check(ok): return "met" if ok else "**not met**"
print("# Compression results\n")
print(f"Command: `{command}` ({threads} threads; load average {load0} before, {load1} after). "
      f"PyTorch {torch['mlp']['torch']} ({torch['mlp']['blas']}, quantized engine {torch['mlp']['engine']}) "
      "runs quantize_dynamic on the same trained weights. Full tables: bench/compress/*/compress_report.md.\n")
print("## Int8 post-training quantisation (Fashion-MNIST)\n")
print("| model | f32 acc | int8 acc | file | mox int8 vs mox f32, batch 1 | batch 256 | mox int8 vs torch dynamic int8, batch 1 | batch 256 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
targets = []
for k in ("mlp", "cnn"):
    f, q, t = rep[k][k], rep[k][f"{k}-int8"], torch[k]["dynamic_int8"]
    mox_b1, mox_b256 = 1000.0 / q["latency_b1_ms"], q["throughput"]
    r1, r256 = mox_b1 / t["img_s_b1"], mox_b256 / t["img_s_b256"]
    print(f"| {k} | {f['value']:.4f} | {q['value']:.4f} | {100*q['size_ratio']:.1f}% | {q['latency_speedup']:.2f}x | "
          f"{q['throughput_speedup']:.2f}x | {r1:.2f}x | {r256:.2f}x |")
    targets += [(f"{k}: int8 within 1 point", f"{100*(q['value']-f['value']):+.2f} pt", q["value"] >= f["value"] - 0.01),
                (f"{k}: file <= 27% of f32", f"{100*q['size_ratio']:.1f}%", q["size_ratio"] <= 0.27),
                (f"{k}: batch 1 >= 2x mox f32", f"{q['latency_speedup']:.2f}x", q["latency_speedup"] >= 2),
                (f"{k}: batch 256 >= 2x mox f32", f"{q['throughput_speedup']:.2f}x", q["throughput_speedup"] >= 2),
                (f"{k}: faster than torch dynamic int8, batch 1", f"{r1:.2f}x", r1 > 1),
                (f"{k}: faster than torch dynamic int8, batch 256", f"{r256:.2f}x", r256 > 1)]
print("\nPyTorch's own figures (img/s): " + "; ".join(
    f"{k}: f32 {torch[k]['f32']['img_s_b1']:.0f} / {torch[k]['f32']['img_s_b256']:.0f}, "
    f"dynamic int8 {torch[k]['dynamic_int8']['img_s_b1']:.0f} / {torch[k]['dynamic_int8']['img_s_b256']:.0f} "
    f"(acc {torch[k]['dynamic_int8']['acc']:.4f})" for k in ("mlp", "cnn")) + " (batch 1 / batch 256).\n")
sp, st = rep["mlp"]["mlp-sparse80"], rep["cnn"]["cnn-structured50"]
f_m, f_c = rep["mlp"]["mlp"], rep["cnn"]["cnn"]
targets += [("mlp: 80% sparsity within 1 point", f"{100*(sp['value']-f_m['value']):+.2f} pt", sp["value"] >= f_m["value"] - 0.01),
            ("cnn: half the filters within 1.5 points", f"{100*(st['value']-f_c['value']):+.2f} pt", st["value"] >= f_c["value"] - 0.015),
            ("cnn: structured >= 1.6x faster (batch 256)", f"{st['throughput_speedup']:.2f}x", st["throughput_speedup"] >= 1.6),
            ("cnn: structured >= 1.6x faster (batch 1)", f"{st['latency_speedup']:.2f}x", st["latency_speedup"] >= 1.6)]
import statistics
acc = lambda d: json.load(open(f"{w}/{d}/summary.json"))["test"]["accuracy"]
a0 = [acc(f"cnn-student-{s}") for s in (1, 2, 3)]
a1 = [acc(f"cnn-student-kd-{s}") for s in (1, 2, 3)]
m0, m1 = statistics.mean(a0), statistics.mean(a1)
targets += [("distilled student beats the label-only student (mean of seeds 1-3)",
             f"{m1:.4f} vs {m0:.4f} (seeds: " + ", ".join(f"{b:.4f}/{a:.4f}" for a, b in zip(a0, a1)) + f"; teacher {f_c['value']:.4f})",
             m1 > m0)]
g, g8, g4 = rep["gpt"]["gpt"], rep["gpt"]["gpt-w8"], rep["gpt"]["gpt-w4"]
targets += [("gpt: w8 generation >= 1.6x f32", f"{g8['throughput_speedup']:.2f}x ({g8['throughput']:.0f} vs {g['throughput']:.0f} tok/s)", g8["throughput_speedup"] >= 1.6),
            ("gpt: w4 generation >= 2.5x f32", f"{g4['throughput_speedup']:.2f}x ({g4['throughput']:.0f} tok/s)", g4["throughput_speedup"] >= 2.5),
            ("gpt: w8 perplexity within 2%", f"{g8['change']:+.2f}% ({g8['value']:.4f} vs {g['value']:.4f})", g8["change"] <= 2),
            ("gpt: w4 perplexity within 8%", f"{g4['change']:+.2f}% ({g4['value']:.4f})", g4["change"] <= 8)]
print("## Targets\n")
print("| target | measured | |")
print("|---|---|---|")
for name, value, ok in targets:
    print(f"| {name} | {value} | {check(ok)} |")
print()
for k in ("mlp", "cnn", "gpt"):
    print(f"## {k}\n")
    print(open(f"bench/compress/{k}/compress_report.md").read().split("\n", 2)[2].replace("(compress_report.svg)", f"(compress/{k}/compress_report.svg)"))
PY
