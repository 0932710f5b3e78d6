#!/usr/bin/env bash
# `make setup`: everything the demo and the tests need, idempotent and cached. Each long step
# prints its elapsed time; a failure names the step and the fix.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"
t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive

# 1. OS packages the scripts use (Debian names). Only what is missing is installed.
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ip >/dev/null || need+=(iproute2)
command -v openssl >/dev/null || need+=(openssl)
command -v docker-registry >/dev/null || need+=(docker-registry)  # tests/_support/registry.py: the test registry server
command -v npm >/dev/null || need+=(npm)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "install ${need[*]}" "run 'sudo apt-get install ${need[*]}' and rerun"
  step "apt-get install ${need[*]}"
  apt-get update -q >/dev/null || die "apt-get update" "check that Debian's package mirror is reachable"
  apt-get install -y -q "${need[@]}" >/dev/null || die "apt-get install ${need[*]}" "install them yourself and rerun"
  done_step
fi

# 2. Virtualenv with the pinned requirements; a stamp of their hash skips a repeat install.
venv=$root/.venv
stamp=$venv/.ghr-requirements.sha256
want=$(cat "$root/requirements.txt" "$root/requirements-dev.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "virtualenv .venv with requirements-dev.txt"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || die "create .venv" "install python3-venv (Debian) and rerun"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/requirements-dev.txt" ||
    die "pip install -r requirements-dev.txt" "check that PyPI is reachable (PIP_INDEX_URL for a mirror)"
  echo "$want" >"$stamp"
  done_step
else
  log "virtualenv .venv up to date"
fi

# 3. Pulumi CLI + language host (built once, then cached).
"$here/pulumi.sh" >/dev/null
"$here/scaleset-conformance.sh" >/dev/null  # GitHub's scale-set client against the emulator (tests/scaleset_conformance)

# 4. Docker engine, and the local base image for builds where no registry is reachable.
"$here/docker.sh"
"$here/base-image.sh"

# 5. Image builds reach the package mirrors through whatever HTTPS proxy this machine uses:
# trust the machine's extra CAs (Debian's /usr/local/share/ca-certificates) in the builds.
ca_src=${GHR_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
if ls "$ca_src"/*.crt >/dev/null 2>&1; then
  for crt in "$ca_src"/*.crt; do
    cmp -s "$crt" "$root/runner-image/extra-ca/$(basename "$crt")" || cp "$crt" "$root/runner-image/extra-ca/"
  done
  log "image builds trust the extra CAs in $ca_src"
fi

# 6. GitHub's OpenAPI description, for the conformance tests.
if [ -x "$root/tests/conformance/fetch_openapi.sh" ]; then
  "$root/tests/conformance/fetch_openapi.sh" >/dev/null
fi

log "setup complete in $(( $(date +%s) - t0 ))s"
