#!/usr/bin/env bash
# `make lint`: ruff, mypy (strict on github_client, pool_manager, components) and shellcheck,
# all configured in pyproject.toml / .shellcheckrc. Runs every checker, then fails on any finding.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")" || exit 1
[ -x .venv/bin/ruff ] || { echo "[lint] FAILED: no .venv. Fix: run make setup" >&2; exit 1; }
failed=()
echo "[lint] ruff" >&2
.venv/bin/ruff check --quiet . || failed+=(ruff)
echo "[lint] mypy" >&2
.venv/bin/mypy || failed+=(mypy)
echo "[lint] shellcheck" >&2
.venv/bin/shellcheck toolchain/*.sh runner-image/*.sh runner-image/cache/*.sh \
  runner-image/apt-cache/usr/local/bin/ghr-apt-proxy scripts/*.sh tests/conformance/*.sh || failed+=(shellcheck)
if [ ${#failed[@]} -gt 0 ]; then
  echo "[lint] FAILED: ${failed[*]} reported findings (see above)" >&2
  exit 1
fi
echo "[lint] clean" >&2
