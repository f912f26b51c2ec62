#!/bin/sh
# Side-by-side CPU benchmark of mox and PyTorch, one command:
#   bench/run.sh [--threads N] [CASE...]        (threads: MOX_NUM_THREADS, default 2)
# Builds bench_ops (Release, in build/bench or $MOX_BENCH_BUILD), then for each case runs
# mox's bench_ops and bench/torch_ops.py (/usr/bin/python3 + torch, forced onto OpenBLAS)
# one after the other with the same thread count, prints the table and writes
# bench/RESULTS.md. Cases: sgemm_256 sgemm_512 sgemm_1024 sgemm_2048 mlp_step
# conv2d_fwd_bwd softmax layer_norm.
set -eu
cd "$(dirname "$0")/.."
COMMAND="bench/run.sh $*"
THREADS=${MOX_NUM_THREADS:-2}
CASES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --threads=*) THREADS=${1#--threads=}; shift ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
for c in $CASES; do
  echo "== $c" >&2
  "$BENCH" --threads "$THREADS" "$c" >>"$RAW"
  "$PYTHON" bench/torch_ops.py --threads "$THREADS" "$c" >>"$RAW"
done

TORCH_BLAS=$("$PYTHON" bench/torch_ops.py --blas)
MOX_BLAS=$(ldd "$BENCH" | awk '/blas/ {print $3}' | xargs -r realpath | tr '\n' ' ')
"$PYTHON" bench/compare.py --results "$RAW" --threads "$THREADS" --torch-blas "$TORCH_BLAS" \
  --mox-blas "${MOX_BLAS:-?}" --command "$COMMAND" --out bench/RESULTS.md
echo "(written to bench/RESULTS.md)" >&2
