#!/usr/bin/env bash
# `make bench`: each benchmark prints its figures as ratios to a baseline measured in the same run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
. "$here/env.sh"
for b in bench/bench_*.py; do
  echo "== $b"
  .venv/bin/python "$b"
done
