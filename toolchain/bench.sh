#!/usr/bin/env bash
# `make bench`: each benchmark prints its figures as ratios to a baseline measured in the same run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
. "$here/env.sh"
# As modules from the repository root: the benches import test helpers as packages (tests.manager...).
for b in bench/bench_*.py; do
  module="bench.$(basename "$b" .py)"
  echo "== $module"
  .venv/bin/python -m "$module"
done
