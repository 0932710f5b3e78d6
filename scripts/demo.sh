#!/usr/bin/env bash
# The sandbox demo: `scripts/demo.sh up` (make demo) / `scripts/demo.sh down` (make demo-down).
#   up:   start the GitHub emulator on 127.0.0.1:18787, `pulumi up` the sandbox stack, wait for
#         the runners, run a sample job in a fresh container; then scale from zero: a job for the
#         `ondemand` pool (a runner scale set at minRunners 0) brings one runner container, which is
#         gone again after the job; print the fleet status.
#   down: `pulumi destroy` the sandbox stack, check that no scale set, message session or container
#         is left, stop the emulator.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
. toolchain/env.sh >/dev/null
PY=.venv/bin/python
STACK=${STACK:-sandbox}
PORT=${GHR_EMULATOR_PORT:-18787}
TOKEN=ghr-sandbox-admin-token   # public sandbox-only token, also (encrypted) in Pulumi.sandbox.yaml
state=.state/demo
mkdir -p "$state"
log() { printf '[demo] %s\n' "$*"; }

emulator_up() {
  if curl -fsS "http://127.0.0.1:$PORT/_emulator/health" >/dev/null 2>&1; then
    log "emulator already running on 127.0.0.1:$PORT"; return
  fi
  log "starting the GitHub emulator on 127.0.0.1:$PORT (log: $state/emulator.log)"
  setsid "$PY" -m emulator --port "$PORT" --admin-token "$TOKEN" --json >"$state/emulator.json" 2>"$state/emulator.log" &
  echo $! >"$state/emulator.pid"
  "$PY" scripts/wait_for.py http "http://127.0.0.1:$PORT/_emulator/health" --timeout 30
}

emulator_down() {
  if [ -f "$state/emulator.pid" ]; then
    pid=$(cat "$state/emulator.pid")
    if kill -0 "$pid" 2>/dev/null; then log "stopping the emulator (pid $pid)"; kill "$pid"; fi
    rm -f "$state/emulator.pid"
  fi
}

case "${1:-up}" in
  up)
    emulator_up
    pulumi stack select "$STACK" 2>/dev/null || pulumi stack init "$STACK" >/dev/null
    sha=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sha256"])' "$state/emulator.json" 2>/dev/null || true)
    if [ -n "$sha" ]; then   # every pool pins the same stand-in tarball
      pools=$("$PY" -c 'import sys, yaml; print(len(yaml.safe_load(open(sys.argv[1]))["config"]["ghr:pools"]))' "Pulumi.$STACK.yaml")
      for ((i = 0; i < pools; i++)); do
        key="ghr:pools[$i].image.runnerSha256"
        if [ "$(pulumi config get --path "$key" -s "$STACK")" != "$sha" ]; then
          log "the emulator's stand-in runner tarball changed: updating $key"
          pulumi config set --path "$key" "$sha" -s "$STACK"
        fi
      done
    fi
    log "pulumi up ($STACK)"
    pulumi up --yes --skip-preview --non-interactive -s "$STACK"
    log "waiting for the runners to come online"
    "$PY" scripts/wait_for.py runners --api "http://127.0.0.1:$PORT/api/v3" --scope acme --token "$TOKEN" \
      --prefix "$STACK-" --count "$(pulumi config get --path 'ghr:pools[0].slots' -s "$STACK")" --timeout 180
    log "running a sample job (labels self-hosted, sandbox)"
    # shellcheck disable=SC2016 # the script expands inside the job, not here
    "$PY" scripts/wait_for.py job --url "http://127.0.0.1:$PORT" --scope acme --token "$TOKEN" \
      --labels self-hosted,sandbox --timeout 180 \
      --script 'echo "hello from $(hostname) as $(id -un)"; ls -A ~/ | head -5; test ! -e /tmp/left-behind && touch /tmp/left-behind && echo "fresh container: nothing left behind by an earlier job"'
    log "scale from zero: the ondemand pool is a runner scale set at minRunners 0 (labels self-hosted, ondemand)"
    "$PY" scripts/wait_for.py scaleset --url "http://127.0.0.1:$PORT" --token "$TOKEN" --name "$STACK-ondemand-local" --timeout 60
    "$PY" scripts/wait_for.py containers --stack "$STACK" --pool ondemand --count 0 --timeout 120
    # shellcheck disable=SC2016 # the script expands inside the job, not here
    job=$("$PY" scripts/wait_for.py enqueue --url "http://127.0.0.1:$PORT" --scope acme --token "$TOKEN" \
      --labels self-hosted,ondemand --timeout 180 --script 'echo "on-demand job on $(hostname)"; sleep 3')
    log "queued job $job for the ondemand pool; waiting for a runner container to appear for it"
    "$PY" scripts/wait_for.py containers --stack "$STACK" --pool ondemand --count 1 --at-least --timeout 120
    "$PY" scripts/wait_for.py job --id "$job" --url "http://127.0.0.1:$PORT" --scope acme --token "$TOKEN" --timeout 180
    log "job done; waiting for the ondemand pool to be back at zero"
    "$PY" scripts/wait_for.py containers --stack "$STACK" --pool ondemand --count 0 --timeout 120
    log "fleet status"
    "$PY" -m components.status --stack "$STACK"
    log "done. Next: make status; make demo-down"
    ;;
  down)
    emulator_up   # the registration sweep needs GitHub (the emulator) to be there
    pulumi destroy --yes --skip-preview --non-interactive -s "$STACK"
    "$PY" scripts/wait_for.py gone --url "http://127.0.0.1:$PORT" --token "$TOKEN" --prefix "$STACK-" --stack "$STACK" --timeout 60
    emulator_down
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
