#!/bin/sh
# Serving benchmark (issue 7), loopback only, bounded in time:
#   bench/serve.sh [--threads N] [--duration S] [--keep DIR]
# 1. trains what it serves when absent: the char-level GPT of examples/gpt_fortunes.toml
#    (500 steps) and the MLP of examples/mlp.toml (5 epochs);
# 2. starts `mox serve` with both on 127.0.0.1, a fresh usage database and one API key;
# 3. wrk (Debian's) for S seconds (default 10), 2 threads, 16 connections, on /v1/classify
#    (one 28x28 image per request) and on short completions (max_tokens 8): requests/s,
#    p50/p99 latency, non-2xx responses and socket errors; then the usage rows of the key:
#    every answered request must have its row (zero unmetered);
# 4. `mox bench-serve` on the GPT: generated tokens/s at 1, 8 and 32 clients, continuous
#    batching on and off (32-token completions);
# 5. writes bench/SERVE_RESULTS.md (and bench/serve/bench_serve.json for `mox cost serve`).
set -eu
cd "$(dirname "$0")/.."
COMMAND="bench/serve.sh"
[ "$#" -eq 0 ] || COMMAND="$COMMAND $*"
T=2
D=10
KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) T=$2; shift 2 ;;
    --duration) D=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "serve.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "serve.sh: wrk is missing (scripts/setup installs it)" >&2; exit 1; }
PYTHON=${PYTHON:-/usr/bin/python3}
scripts/build >/dev/null
MOX=$(pwd)/build/release/mox
if [ -n "$KEEP" ]; then W=$KEEP; mkdir -p "$W"; else W=$(mktemp -d); fi
SERVER=""
cleanup() {
  [ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
  [ -n "$KEEP" ] || rm -rf "$W"
}
trap cleanup EXIT
export MOX_NUM_THREADS=$T

echo "== models" >&2
[ -f "$W/gpt/summary.json" ] || $MOX pretrain examples/gpt_fortunes.toml --out "$W/gpt" --steps 500 --threads "$T" --overwrite -q
[ -f "$W/mlp/summary.json" ] || $MOX train examples/mlp.toml --out "$W/mlp" --epochs 5 --threads "$T" --overwrite -q

echo "== wrk on /v1/classify and short completions ($D s each)" >&2
DB="$W/serve-bench.sqlite"
rm -f "$DB" "$DB-wal" "$DB-shm"
KEY=$($MOX keys create --db "$DB" --customer bench --format json 2>/dev/null | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["key"])')
PORT=$((20000 + $$ % 20000))
$MOX serve --model "$W/gpt" --model "$W/mlp" --port "$PORT" --db "$DB" --threads "$T" -q 2> "$W/serve.log" &
SERVER=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
"$PYTHON" -c 'import json; print(json.dumps({"model": "mlp", "input": [[0.5 if 6 < x < 22 else 0.0 for x in range(28)] for y in range(28)]}))' > "$W/classify.json"
echo '{"model": "gpt", "prompt": "The meaning of life is ", "max_tokens": 8, "temperature": 0.8}' > "$W/complete.json"
export KEY
BODY_FILE="$W/classify.json" wrk -t2 -c16 -d"${D}s" --latency -s bench/serve/post.lua "http://127.0.0.1:$PORT/v1/classify" \
  | tail -n 1 > "$W/wrk_classify.json"
BODY_FILE="$W/complete.json" wrk -t2 -c16 -d"${D}s" --latency -s bench/serve/post.lua "http://127.0.0.1:$PORT/v1/completions" \
  | tail -n 1 > "$W/wrk_complete.json"
sleep 1  # requests still in flight when wrk stopped finish (and are metered)
kill -TERM "$SERVER"
wait "$SERVER" || true
SERVER=""
$MOX usage --db "$DB" --customer bench --format json > "$W/usage.json"

echo "== mox bench-serve: generation tokens/s, batched vs unbatched" >&2
$MOX bench-serve --model "$W/gpt" --concurrency 1,8,32 --duration "$D" --max-tokens 32 --prompt "The meaning of life is " \
  --compare-unbatched --threads "$T" --out bench/serve/bench_serve.json > "$W/bench_serve.txt"

"$PYTHON" - "$W" "$COMMAND" "$D" "$T" <<'PY' | tee bench/SERVE_RESULTS.md
import json, sys
w, command, d, t = sys.argv[1:5]
wc = json.load(open(f"{w}/wrk_classify.json"))
wg = json.load(open(f"{w}/wrk_complete.json"))
usage = {u["model"]: u for u in json.load(open(f"{w}/usage.json"))["usage"]}
bs = json.load(open("bench/serve/bench_serve.json"))
print("# Serving benchmark\n")
print(f"Command: `{command}` (loopback, {d} s per run, {t} model threads; wrk 2 threads, 16 connections, "
      "on the same 2 cores as the server).\n")
print("## wrk: requests/s and latency\n")
print("| endpoint | requests | requests/s | p50 ms | p99 ms | non-2xx | socket errors | usage rows | unmetered |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
ok = True
for name, r, model in (("/v1/classify (MLP, one image)", wc, "mlp"), ("/v1/completions (GPT, 8 tokens)", wg, "gpt")):
    secs = r["duration_us"] / 1e6
    sock = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    rows = usage.get(model, {}).get("requests", 0)
    answered = r["requests"]
    unmetered = max(0, answered - rows)
    ok = ok and r["non2xx"] == 0 and sock == 0 and unmetered == 0
    print(f"| {name} | {answered} | {answered / secs:.1f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | "
          f"{r['non2xx']} | {sock} | {rows} | {unmetered} |")
print("\nUsage rows >= requests wrk counted: requests still in flight when wrk stopped are answered and metered "
      "after it stops counting.\n")
print(f"Zero errors and zero unmetered requests: {'yes' if ok else 'NO'}.\n")
print("## Generation: tokens/s by concurrency, continuous batching on and off\n")
print("32-token completions (temperature 0.8), closed loop, `mox bench-serve --compare-unbatched`.\n")
print("| clients | batched tokens/s | unbatched tokens/s | ratio | batched p50 / p99 ms | unbatched p50 / p99 ms | errors | unmetered |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
on = {r["concurrency"]: r for r in bs["results"] if r["batching"]}
off = {r["concurrency"]: r for r in bs["results"] if not r["batching"]}
for c in sorted(on):
    a, b = on[c], off[c]
    print(f"| {c} | {a['completion_tokens_per_s']:.0f} | {b['completion_tokens_per_s']:.0f} | "
          f"{a['completion_tokens_per_s'] / b['completion_tokens_per_s']:.2f}x | "
          f"{a['latency_ms']['p50']:.1f} / {a['latency_ms']['p99']:.1f} | {b['latency_ms']['p50']:.1f} / {b['latency_ms']['p99']:.1f} | "
          f"{a['errors'] + a['failed'] + b['errors'] + b['failed']} | {a['unmetered'] + b['unmetered']} |")
PY
