# Per-host caches for the pools' jobs: one image, three roles (components/cache.py starts each):
#   apt       Debian's apt-cacher-ng on :3142 (package cache)
#   registry  Debian's docker-registry in proxy mode on :5000 (pull-through mirror, read-only to clients)
#   exporter  Prometheus metrics and /healthz of both, from their own logs and counters
# Build context: runner-image/ (for extra-ca/).
#   docker build -f runner-image/cache/cache.Dockerfile -t ghr-cache runner-image/
ARG BASE_IMAGE=ghr-base:bookworm
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY extra-ca/ /usr/local/share/ca-certificates/ghr/
RUN set -eu; \
    apt-get update -q; \
    apt-get install -y -q --no-install-recommends ca-certificates apt-cacher-ng docker-registry \
        python3-minimal libpython3-stdlib tini; \
    update-ca-certificates >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt-cacher-ng/* /var/lib/docker-registry/*; \
    install -d -o apt-cacher-ng -g apt-cacher-ng /var/cache/apt-cacher-ng /var/log/apt-cacher-ng; \
    install -d -o docker-registry -g docker-registry /var/lib/docker-registry
COPY cache/acng-ghr.conf /etc/apt-cacher-ng/zzz-ghr.conf
COPY cache/ghr-cache.sh /usr/local/bin/ghr-cache
COPY cache/exporter.py /usr/local/lib/ghr/exporter.py
RUN chmod 0755 /usr/local/bin/ghr-cache && chmod 0644 /etc/apt-cacher-ng/zzz-ghr.conf /usr/local/lib/ghr/exporter.py
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/usr/local/bin/ghr-cache"]
