#!/bin/bash
# Docker-in-Docker sidecar entrypoint (under tini). Writes /etc/docker/daemon.json from the
# environment, prepares cgroups, then execs dockerd on a unix socket only: the container ends
# when dockerd ends.
#
# Environment (all optional; set by the pool manager from the pool spec):
#   GHR_DIND_SOCKET_DIR           folder of the socket (default /run/ghr-docker, a volume shared
#                                 only with this sidecar's runner)
#   GHR_DIND_REGISTRY_MIRRORS     registry mirrors, space or comma separated URLs
#   GHR_DIND_INSECURE_REGISTRIES  registries spoken to over plain HTTP (host[:port] or CIDR)
#   GHR_DIND_MTU                  the inner bridge's MTU
#   GHR_DOCKER_GID                the socket's group (the runner image's `docker` gid, 123)
# Extra arguments are passed to dockerd as they are.
set -euo pipefail

log() { printf 'ghr-dind: %s\n' "$*" >&2; }

socket_dir=${GHR_DIND_SOCKET_DIR:-/run/ghr-docker}
gid=${GHR_DOCKER_GID:-123}

# A JSON array of strings from a space/comma separated list. Values are URLs or host[:port]
# (validated by the pool spec); anything with a quote or backslash is refused here as well.
json_list() {
  local out="" item
  local -a items
  IFS=', ' read -r -a items <<<"${1:-}"
  for item in "${items[@]}"; do
    [[ -n $item ]] || continue
    if [[ $item == *[\"\\]* ]]; then
      log "refusing registry setting with a quote or backslash: $item"
      exit 64
    fi
    out+="${out:+, }\"$item\""
  done
  printf '[%s]' "$out"
}

# cgroup v1: with a private cgroup namespace, mount each controller afresh, so /sys/fs/cgroup
# shows this container's own subtree: the engine's containers nest under the sidecar's cgroup
# and share its (the pool's) limits. Read-only or host-wide cgroup mounts are left alone when
# they cannot be replaced; dockerd then reports what it cannot do.
setup_cgroups() {
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    # cgroup v2: move ourselves out of the root so the engine may enable controllers for children.
    mkdir -p /sys/fs/cgroup/init
    while read -r pid; do echo "$pid" >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true; done </sys/fs/cgroup/cgroup.procs
    sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
    return 0
  fi
  if ! grep -qE '^[0-9]+:[^:]*:/$' /proc/self/cgroup; then
    log "cgroup v1 without a private cgroup namespace: the engine's containers may not nest under this sidecar"
    return 0
  fi
  mount -t tmpfs -o mode=0755,nosuid,nodev,noexec cgroup /sys/fs/cgroup 2>/dev/null || {
    log "cannot mount /sys/fs/cgroup (no CAP_SYS_ADMIN?); leaving it as it is"
    return 0
  }
  local line controllers dir
  while IFS= read -r line; do
    controllers=${line#*:}
    controllers=${controllers%%:*}
    [[ -n $controllers ]] || continue
    if [[ $controllers == name=* ]]; then
      dir=/sys/fs/cgroup/${controllers#name=}
      mkdir -p "$dir"
      mount -t cgroup -o "none,$controllers" cgroup "$dir" || log "cannot mount cgroup $controllers"
    else
      dir=/sys/fs/cgroup/$controllers
      mkdir -p "$dir"
      mount -t cgroup -o "$controllers" cgroup "$dir" || log "cannot mount cgroup $controllers"
      # cpu,cpuacct -> also cpu and cpuacct, as systemd lays them out
      if [[ $controllers == *,* ]]; then
        local IFS=,
        local c
        for c in $controllers; do [[ -e /sys/fs/cgroup/$c ]] || ln -s "$controllers" "/sys/fs/cgroup/$c"; done
      fi
    fi
  done </proc/self/cgroup
}

mirrors=$(json_list "${GHR_DIND_REGISTRY_MIRRORS:-}")
insecure=$(json_list "${GHR_DIND_INSECURE_REGISTRIES:-}")
mtu=${GHR_DIND_MTU:-}
if [[ -n $mtu && ! $mtu =~ ^[0-9]+$ ]]; then
  log "GHR_DIND_MTU must be a number, got $mtu"
  exit 64
fi

mkdir -p /etc/docker "$socket_dir"
{
  printf '{\n'
  printf '  "hosts": ["unix://%s/docker.sock"],\n' "$socket_dir"
  printf '  "group": "%s",\n' "$gid"
  printf '  "storage-driver": "overlay2",\n'
  printf '  "registry-mirrors": %s,\n' "$mirrors"
  printf '  "insecure-registries": %s,\n' "$insecure"
  if [[ -n $mtu ]]; then printf '  "mtu": %s,\n' "$mtu"; fi
  printf '  "log-driver": "json-file",\n'
  printf '  "log-opts": {"max-size": "10m", "max-file": "2"}\n'
  printf '}\n'
} >/etc/docker/daemon.json
rm -f "$socket_dir/docker.sock"

setup_cgroups
# The kernel may lack modules the engine asks for; an inner engine manages its own iptables rules
# inside this network namespace only.
log "starting dockerd (mirrors: $mirrors, insecure registries: $insecure)"
exec dockerd --config-file /etc/docker/daemon.json "$@"
