#!/usr/bin/env bash
# `make test`: every suite, on the real engines. Extra arguments go to pytest.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")" || exit 1
. "$here/env.sh" || { echo "[test] FAILED: toolchain environment. Fix: run make setup" >&2; exit 1; }
.venv/bin/python -m pytest -p no:cacheprovider -ra "${@:-tests}"
rc=$?
# pytest exits 5 when nothing was collected: a test command that ran no test has failed.
if [ "$rc" = 5 ]; then echo "[test] FAILED: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
