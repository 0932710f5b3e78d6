#!/usr/bin/env bash
# Ensures a Docker engine answers: DOCKER_HOST or the default socket if one does; otherwise
# installs Debian's docker.io and starts dockerd in the background, then waits for it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if command -v docker >/dev/null && answers; then
  log "docker engine answers at ${DOCKER_HOST:-unix:///var/run/docker.sock} (server $(docker version --format '{{.Server.Version}}'))"
  exit 0
fi
[ -z "${DOCKER_HOST:-}" ] || die "reach the Docker engine at DOCKER_HOST=$DOCKER_HOST" "start that engine, or unset DOCKER_HOST to use a local one"

if ! command -v dockerd >/dev/null; then
  [ "$(id -u)" = 0 ] || die "install docker.io" "run 'sudo apt-get install docker.io' or install Docker Engine, then rerun"
  step "apt-get install docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || die "apt-get update" "check that Debian's package mirror is reachable"
  apt-get install -y -q docker.io >/dev/null || die "apt-get install docker.io" "install Docker Engine yourself and rerun"
  done_step
fi

step "start dockerd"
mkdir -p /var/log
# setsid: the engine must outlive the make/CI shell that started it.
setsid nohup dockerd --host unix:///var/run/docker.sock >/var/log/ghr-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  answers && { done_step; exit 0; }
  sleep 1
done
tail -20 /var/log/ghr-dockerd.log >&2 || true
die "start dockerd (no answer after 60s)" "read /var/log/ghr-dockerd.log; on a host with systemd run 'systemctl start docker'"
