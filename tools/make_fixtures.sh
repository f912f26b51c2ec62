#!/bin/sh
# Regenerates every PyTorch reference fixture under tests/fixtures/ by running each
# tools/fixtures_*.py with Debian's Python + torch 1.13 (/usr/bin/python3).
#   tools/make_fixtures.sh            all of them
#   tools/make_fixtures.sh models     only tools/fixtures_models.py
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
"$PYTHON" -c "import torch" 2>/dev/null || {
  echo "make_fixtures: $PYTHON cannot import torch (Debian: apt-get install python3-torch)" >&2
  exit 1
}
if [ "$#" -gt 0 ]; then
  scripts=""
  for name in "$@"; do scripts="$scripts tools/fixtures_$name.py"; done
else
  scripts=$(ls tools/fixtures_*.py)
fi
for script in $scripts; do
  [ -f "$script" ] || { echo "make_fixtures: no $script" >&2; exit 1; }
  echo "== $script"
  "$PYTHON" "$script"
done
