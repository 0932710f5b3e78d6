# shellcheck shell=bash
# Shared helpers for the setup scripts: timed steps and failures that name the step and the fix.
_step_name=""; _step_t0=0
log() { printf '[setup] %s\n' "$*" >&2; }
step() { _step_name=$1; _step_t0=$(date +%s); log "$1 ..."; }
done_step() { log "$_step_name: done in $(( $(date +%s) - _step_t0 ))s"; }
die() { printf '[setup] FAILED: %s. Fix: %s\n' "$1" "$2" >&2; exit 1; }
