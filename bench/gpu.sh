#!/usr/bin/env bash
# The GPU proof of issue 5, run on the GPU machine from the repository root:
#   bench/gpu.sh [build] [parity] [speed]      (no argument: all three, in that order)
#   build   configure and build mox with the CUDA backend for sm_90 (build/cuda); skipped when
#           MOX_BUNDLE names a folder made by scripts/gpu_bundle on another machine (bin/, lib/)
#   parity  every CUDA kernel against the CPU backend on fresh random inputs (f32 < 1e-5,
#           bf16 < 1e-2 relative, never NaN), GPT forward/backward, 50 training steps on GPU
#           and CPU from the same weights (losses within 1e-2), and the device plumbing tests
#   memcheck  the CUDA tests under compute-sanitizer (out-of-bounds and misaligned accesses;
#           works on the Firecracker machines), one suite per process, into $OUT/memcheck.txt
#   speed   side by side in this one call: the bf16 8192^3 matmul (PyTorch and mox: the MFU
#           denominator), GPT-2 124M training at batch 32 x 1024 in bf16 (mox, PyTorch eager,
#           PyTorch compiled), generation with the KV cache at batch 1 and 16 (mox, Hugging Face)
# Results: key=value lines in $OUT/gpu_results.txt ($OUT defaults to bench/out), the test log
# in $OUT/parity.txt, and a summary table on stdout to paste into bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
R="$OUT/gpu_results.txt"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(build parity speed)
has() { [[ " ${stages[*]} " == *" $1 "* ]]; }

if [ -n "${MOX_BUNDLE:-}" ]; then
  BIN="$MOX_BUNDLE/bin"
  # The CUDA libraries are the machine's own: the toolkit's, or the pip packages PyTorch uses.
  NV=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted(glob.glob(os.path.join(list(nvidia.__path__)[0], "*", "lib")))))' 2>/dev/null || true)
  export LD_LIBRARY_PATH="$MOX_BUNDLE/lib:/usr/local/cuda/lib64:${NV}:${LD_LIBRARY_PATH:-}"
  ldd "$BIN/mox" | grep "not found" && echo "bundle: libraries missing (above)"
else
  BIN=build/cuda/bin
fi

if has build && [ -z "${MOX_BUNDLE:-}" ]; then
  echo "== build (CUDA, sm_90)"
  cmake --preset cuda -G Ninja >/dev/null || exit 1
  cmake --build --preset cuda -j "$(nproc)" --target mox_cli mox_test_cuda mox_test_device bench_gpt2 || exit 1
  mkdir -p "$BIN"
  cp build/cuda/mox build/cuda/tests/mox_test_cuda build/cuda/tests/mox_test_device build/cuda/bench/bench_gpt2 "$BIN/"
fi

{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader; } |
  sed 's/^/gpu=/' | tee -a "$R"

if has parity; then
  echo "== parity (log: $OUT/parity.txt)"
  # One process per test suite: a kernel fault poisons its CUDA context, and would otherwise
  # fail every test after it.
  : > "$OUT/parity.txt"
  for suite in $("$BIN/mox_test_cuda" --gtest_list_tests | grep -E '^[A-Za-z]' | tr -d '.'); do
    timeout 600 "$BIN/mox_test_cuda" --gtest_filter="$suite.*" >> "$OUT/parity.txt" 2>&1 ||
      echo "[  FAILED  ] $suite (exit $?)" >> "$OUT/parity.txt"
  done
  grep -E "^\[  (FAILED|SKIPPED) |^\[  PASSED  \]" "$OUT/parity.txt" | sort | uniq -c | head -60
  timeout 300 "$BIN/mox_test_device" --gtest_brief=1 2>&1 | tail -3
  if grep -q "^\[  FAILED  \]" "$OUT/parity.txt"; then echo "parity=fail" | tee -a "$R"
  elif grep -q "^\[  SKIPPED \]" "$OUT/parity.txt"; then echo "parity=not run (tests skipped: no GPU visible)" | tee -a "$R"
  elif grep -q "^\[  PASSED  \]" "$OUT/parity.txt"; then echo "parity=pass" | tee -a "$R"
  else echo "parity=fail (no result: crashed?)" | tee -a "$R"; fi
fi

if has memcheck; then
  echo "== memcheck (log: $OUT/memcheck.txt)"
  : > "$OUT/memcheck.txt"
  for suite in $("$BIN/mox_test_cuda" --gtest_list_tests | grep -E '^[A-Za-z]' | tr -d '.'); do
    timeout 900 compute-sanitizer --tool memcheck --error-exitcode 9 "$BIN/mox_test_cuda" --gtest_filter="$suite.*" \
      >> "$OUT/memcheck.txt" 2>&1; echo "memcheck $suite: exit $?" | tee -a "$OUT/memcheck.txt"
  done
fi

if has speed; then
  echo "== speed"
  export MOX_TF32=1  # as the PyTorch script: TF32 for any f32 product left (the model runs in bf16)
  python3 bench/gpu/torch_gpt2.py --mode matmul --out "$R" | tail -3
  "$BIN/bench_gpt2" --mode matmul --out "$R"
  "$BIN/bench_gpt2" --mode train --batch 32 --seq 1024 --steps 30 --warmup 5 --out "$R"
  python3 bench/gpu/torch_gpt2.py --mode eager --batch 32 --seq 1024 --out "$R" | grep -E "tok_per_s=|status"
  python3 bench/gpu/torch_gpt2.py --mode compile --batch 32 --seq 1024 --out "$R" | grep -E "tok_per_s=|status"
  for b in 1 16; do "$BIN/bench_gpt2" --mode generate --batch $b --out "$R"; done
  python3 bench/gpu/torch_gen.py | tee "$OUT/torch_gen.json"
  python3 - "$R" "$OUT/torch_gen.json" <<'PY'
import json, sys
kv = {}
for line in open(sys.argv[1]):
    if "=" in line:
        k, v = line.strip().split("=", 1)
        kv[k] = v
try:
    kv.update({k: str(v) for k, v in json.load(open(sys.argv[2])).items()})
except Exception:
    pass
f = lambda k: float(kv[k]) if k in kv else float("nan")
peak = f("mox_bf16_matmul_tflops")
print("\n| figure | mox | PyTorch eager | PyTorch compiled | mox / best PyTorch |")
print("|---|---|---|---|---|")
m, e, c = f("mox_tok_per_s"), f("torch_eager_tok_per_s"), f("torch_compile_tok_per_s")
print(f"| GPT-2 124M training, tokens/s (B=32, T=1024, bf16) | {m:,.0f} | {e:,.0f} | {c:,.0f} | {m / max(e, c):.2f}x |")
print(f"| MFU vs measured bf16 matmul ({peak:.0f} TFLOP/s) | {f('mox_model_tflops') / peak:.1%} | "
      f"{f('torch_eager_model_tflops') / peak:.1%} | {f('torch_compile_model_tflops') / peak:.1%} | |")
print(f"| bf16 8192^3 matmul TFLOP/s | {peak:.0f} | {f('torch_bf16_matmul_tflops'):.0f} | | |")
for b in (1, 16):
    g, h = f(f"mox_generate_b{b}_tok_per_s"), f(f"hf_generate_b{b}_tok_per_s")
    hs = f(f"hf_generate_static_b{b}_tok_per_s")
    print(f"| generation, KV cache, batch {b}, tokens/s | {g:,.0f} | HF {h:,.0f} | HF static cache {hs:,.0f} | {g / max(h, hs):.2f}x |")
print("\nparity:", kv.get("parity", "not run"), "; 500k tokens/s target:", "met" if m >= 500000 else "not met")
PY
fi
