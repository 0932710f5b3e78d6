#!/usr/bin/env bash
# Ensures the local base image used when no registry is reachable: debootstrap minbase, then
# docker import. On a connected machine the runner image's default (upstream Ubuntu) is used
# instead and this step is not needed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
IMAGE=${GHR_BASE_IMAGE:-ghr-base:bookworm}
SUITE=${GHR_BASE_SUITE:-bookworm}
MIRROR=${GHR_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "base image $IMAGE present"; exit 0
fi
command -v debootstrap >/dev/null || {
  step "apt-get install debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null ||
    die "apt-get install debootstrap" "install debootstrap, or pass a reachable BASE_IMAGE to the build"
  done_step
}
root=$(mktemp -d /var/tmp/ghr-base-XXXXXX)
trap 'rm -rf "$root"' EXIT
step "debootstrap --variant=minbase $SUITE"
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$root" "$MIRROR" >/var/log/ghr-debootstrap.log 2>&1 ||
  { tail -20 /var/log/ghr-debootstrap.log >&2; die "debootstrap $SUITE from $MIRROR" "check that $MIRROR is reachable (GHR_DEBIAN_MIRROR overrides it)"; }
done_step
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
step "docker import $IMAGE"
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null ||
  die "docker import $IMAGE" "check the Docker engine answers (toolchain/docker.sh)"
done_step
