#!/bin/sh
# Side-by-side CPU benchmark of mox and PyTorch, one command:
#   bench/run.sh [--threads N] [--rounds R] [CASE...]
# threads: MOX_NUM_THREADS, default 2; rounds: default 3. Builds bench_ops (Release, in
# build/bench or $MOX_BENCH_BUILD), then R times over the cases runs mox's bench_ops and
# bench/torch_ops.py (/usr/bin/python3 + torch, forced onto OpenBLAS) one after the other
# with the same thread count; each run reports a median, and the table keeps each side's
# best round (other processes on a shared machine only ever slow a round down). Prints the
# table and writes bench/RESULTS.md. Cases: sgemm_256 sgemm_512 sgemm_1024 sgemm_2048
# mlp_step conv2d_fwd_bwd softmax layer_norm lstm_fwd_bwd.
set -eu
cd "$(dirname "$0")/.."
COMMAND="bench/run.sh"
[ "$#" -eq 0 ] || COMMAND="$COMMAND $*"
THREADS=${MOX_NUM_THREADS:-2}
ROUNDS=3
CASES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --threads=*) THREADS=${1#--threads=}; shift ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --rounds=*) ROUNDS=${1#--rounds=}; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) CASES="$CASES $1"; shift ;;
  esac
done
PYTHON=${PYTHON:-/usr/bin/python3}
BUILD=${MOX_BENCH_BUILD:-build/bench}

echo "== building bench_ops (Release) in $BUILD" >&2
GEN=""
if [ ! -f "$BUILD/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then GEN="-G Ninja"; fi
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" $GEN -DCMAKE_BUILD_TYPE=Release -DMOX_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" --target bench_ops >&2
BENCH="$BUILD/bench/bench_ops"

export MOX_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS"
[ -n "$CASES" ] || CASES=$("$BENCH" --list)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
for r in $(seq "$ROUNDS"); do
  for c in $CASES; do
    echo "== round $r/$ROUNDS: $c" >&2
    "$BENCH" --threads "$THREADS" "$c" >>"$RAW"
    "$PYTHON" bench/torch_ops.py --threads "$THREADS" "$c" >>"$RAW"
  done
done

TORCH_BLAS=$("$PYTHON" bench/torch_ops.py --blas)
MOX_BLAS=$(ldd "$BENCH" | awk '/blas/ {print $3}' | xargs -r realpath | tr '\n' ' ')
"$PYTHON" bench/compare.py --results "$RAW" --threads "$THREADS" --torch-blas "$TORCH_BLAS" \
  --mox-blas "${MOX_BLAS:-?}" --rounds "$ROUNDS" --command "$COMMAND" --load-before "$LOAD_BEFORE" \
  --out bench/RESULTS.md
echo "(written to bench/RESULTS.md)" >&2
