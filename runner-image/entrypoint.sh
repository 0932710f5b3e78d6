#!/bin/bash
# Runner container entrypoint (PID 2, under tini). The pool manager copies a single-use JIT
# config to /run/ghr/jitconfig (mode 0400, owner runner) before it starts the container.
#
# Handoff choice: the config reaches the listener through ACTIONS_RUNNER_INPUT_JITCONFIG in
# the environment of the exec'd listener only, not through `--jitconfig BLOB`:
#   - argv is world-readable (/proc/PID/cmdline, `ps`, `docker top`); a process environment
#     is readable only by the same uid or root (/proc/PID/environ, mode 0400);
#   - it is never in the container config, so `docker inspect` does not show it;
#   - the listener drops the variable from the environment it passes to jobs.
# Same-uid job steps can still read /proc/<listener>/environ, as they can read the
# .credentials files the runner writes from it: what they get is one runner registration,
# already used for this very job and deleted by GitHub when it ends.
set -euo pipefail

#
# Hardened pools run this image with a read-only root filesystem. /run/ghr is then an anonymous
# volume (Docker accepts archive writes to volumes of a read-only container, not to its rootfs),
# and /run/ghr-state, where the image's .runner/.credentials/.credentials_rsaparams symlinks point,
# is a tmpfs.
jit_file=/run/ghr/jitconfig
state_dir=/run/ghr-state
runner_dir=${RUNNER_DIR:-/home/runner}

log() { printf 'ghr-entrypoint: %s\n' "$*" >&2; }

if [[ ! -s $jit_file ]]; then
  log "no JIT config at $jit_file: this image is started by the pool manager, which hands one in before start"
  exit 1
fi
if [[ ! -w $state_dir ]]; then
  log "$state_dir is not writable: the runner cannot save its configuration (a read-only root needs a tmpfs there)"
  exit 1
fi
ACTIONS_RUNNER_INPUT_JITCONFIG=$(<"$jit_file")
rm -f -- "$jit_file" || { log "cannot delete $jit_file"; exit 1; }
export ACTIONS_RUNNER_INPUT_JITCONFIG

cd "$runner_dir"
# exec: the listener replaces this shell, so tini delivers SIGTERM to it directly and the
# container exits with the listener's own exit code (0 done, 1 terminal, 2 retryable, ...).
exec ./bin/Runner.Listener run
