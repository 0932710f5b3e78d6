# Pool manager image: Python, the pinned runtime deps, github_client/ and pool_manager/.
# Build context: the repository root (see /.dockerignore, which keeps the context small).
#   docker build -f runner-image/manager.Dockerfile -t ghr-manager .
# Any Debian/Ubuntu base works; python3 comes from the distribution when the base lacks it.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/ghr/venv/bin:$PATH

COPY runner-image/extra-ca/ /usr/local/share/ca-certificates/ghr/
COPY requirements.txt /tmp/requirements.txt

# Only the manager's share of requirements.txt, at the versions pinned there.
RUN set -eu; \
    if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then \
      apt-get update -q; \
      apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    if command -v update-ca-certificates >/dev/null; then update-ca-certificates >/dev/null; fi; \
    grep -iE '^(docker|requests|urllib3|certifi|charset-normalizer|idna|pyjwt|cryptography|cffi|pycparser|prometheus-client)==' \
      /tmp/requirements.txt > /tmp/requirements-manager.txt; \
    python3 -m venv /opt/ghr/venv; \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt /opt/ghr/venv/bin/pip install --no-cache-dir -q \
      --disable-pip-version-check -r /tmp/requirements-manager.txt; \
    rm /tmp/requirements*.txt

WORKDIR /opt/ghr/app
COPY github_client/ github_client/
COPY pool_manager/ pool_manager/

# Root in the container: it talks to the host's Docker socket (mounted by the Pulumi program).
ENTRYPOINT ["python", "-m", "pool_manager"]
CMD ["--spec", "/etc/ghr/pool.json"]
