# Docker-in-Docker sidecar: one private Docker engine per runner container (pools with docker "dind").
# The pool manager starts it next to its runner and removes both as one unit; the runner reaches
# it through DOCKER_HOST=unix:///run/ghr-docker/docker.sock (a volume only the pair shares) and
# shares its network namespace. Build context: this folder (runner-image/).
#   docker build -f runner-image/dind.Dockerfile -t ghr-dind runner-image/
#   docker build -f runner-image/dind.Dockerfile --build-arg BASE_IMAGE=ghr-base:bookworm runner-image/
# The engine is Debian's docker.io (dockerd, containerd, runc, iptables); the image carries no
# credential and never receives one (the manager hands the sidecar only the daemon settings).
ARG BASE_IMAGE=ubuntu:24.04
FROM ${BASE_IMAGE}

ARG EXTRA_PACKAGES=""
# The socket's group: the runner image's `docker` group (runner-image/Dockerfile) has this gid.
ARG DOCKER_GID=123

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8

COPY extra-ca/ /usr/local/share/ca-certificates/ghr/

# docker.io without its recommends (no git, apparmor, needrestart); iproute2 for the bridge,
# xz-utils and pigz so `docker load` takes compressed tarballs.
RUN set -eu; \
    apt-get update -q; \
    if ! getent group "${DOCKER_GID}" >/dev/null; then groupadd --system --gid "${DOCKER_GID}" docker; fi; \
    apt-get install -y -q --no-install-recommends ca-certificates docker.io iproute2 xz-utils pigz tini \
        ${EXTRA_PACKAGES}; \
    update-ca-certificates >/dev/null; \
    rm -rf /var/lib/apt/lists/* /etc/docker/key.json; \
    install -d -m 0755 /run/ghr-docker /etc/docker

COPY dind-entrypoint.sh /usr/local/bin/ghr-dind-entrypoint
RUN chmod 0755 /usr/local/bin/ghr-dind-entrypoint

# The image store: the manager mounts an anonymous volume here (removed with the sidecar), so
# overlay2 runs on the host's filesystem and the next job starts with an empty engine.
VOLUME /var/lib/docker
ENV GHR_DOCKER_GID=${DOCKER_GID}
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/ghr-dind-entrypoint"]
