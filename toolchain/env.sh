# shellcheck shell=bash
# Source this file (`. toolchain/env.sh`) for the project's offline Pulumi environment:
# the pinned CLI on PATH, a file backend (no account), no update check, no plugin downloads.
# The sandbox passphrase is a fixed, public value: it protects nothing but the emulator's token.
_ghr_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_ghr_bin=$("$_ghr_root/toolchain/pulumi.sh" | tail -n 1) || return 1
export PATH="$_ghr_bin:$_ghr_root/.venv/bin:$PATH"
export PULUMI_HOME=${PULUMI_HOME:-$_ghr_root/.state/pulumi-home}
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$_ghr_root/.state/backend}
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  export PULUMI_CONFIG_PASSPHRASE=ghr-sandbox
fi
mkdir -p "$PULUMI_HOME" "${PULUMI_BACKEND_URL#file://}" 2>/dev/null || true
unset _ghr_root _ghr_bin
