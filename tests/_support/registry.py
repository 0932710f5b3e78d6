"""A container registry for tests, with no registry on the internet: Debian's `docker-registry`.

Where it runs, and why: a per-job Docker engine lives inside a sidecar container, so the host's
loopback is not its loopback and `127.0.0.1:PORT` on the host means nothing to it. The registry
therefore runs as a **container on a user-defined network the test creates** (`Registry.network`),
under a fixed network alias (`ghr-registry`, port 5000). Anything attached to that network (a
sidecar engine, a job container) reaches it as `ghr-registry:5000` (`Registry.inner`); a sidecar on
another network is reached by attaching the registry there too (`Registry.connect(network)`, same
alias). Its port 5000 is also published on the host's loopback (`Registry.host`, `127.0.0.1:PORT`)
so the host's own engine can push to and pull from it: engines treat 127.0.0.0/8 as an insecure
registry out of the box. A per-job engine must list `Registry.inner` under `insecure-registries`
(plain HTTP, no TLS, no auth).

The server is the host's `/usr/bin/docker-registry` (Debian package `docker-registry`, installed by
`make setup`) copied into an image on `ghr-base:bookworm`; nothing is downloaded. Small images to
fill it are built from `ghr-base:bookworm` with Debian's `busybox-static` (apt in the build):

- `build_busybox(client)`: `FROM scratch` + a static busybox with its applets in /bin;
- `build_service(client)`: that busybox serving HTTP on port 80 (`httpd`), `/www/index.html` says
  `hello from service`, with a `HEALTHCHECK` (wget of itself, 1 s interval, 30 s start period).
  Env `READY_AFTER=<s>` delays the server (the container stays `starting` meanwhile).

Usage::

    with Registry(client) as reg:
        pushed = reg.push(build_busybox(client), "busybox")
        pushed.host_ref            # 127.0.0.1:PORT/busybox:latest   (host engine)
        pushed.inner_ref           # ghr-registry:5000/busybox:latest (engines on reg.network)
        pushed.host_digest_ref     # 127.0.0.1:PORT/busybox@sha256:...

`Registry(client, env={"REGISTRY_PROXY_REMOTEURL": "http://upstream:5000"})` runs it as a
pull-through mirror instead (any `REGISTRY_*` setting of the reference registry works the same way).
"""
from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import docker
import docker.errors
import requests

BASE_IMAGE = "ghr-base:bookworm"
REGISTRY_BINARY = Path("/usr/bin/docker-registry")
ALIAS = "ghr-registry"
PORT = 5000
LABEL = "ghr.test.registry"  # on every container and network this module makes: `docker ... --filter label=`

_CONFIG = {
    "version": 0.1,
    "log": {"level": "info", "fields": {"service": "registry"}},
    "storage": {"filesystem": {"rootdirectory": "/var/lib/registry"}, "delete": {"enabled": True}},
    "http": {"addr": f":{PORT}"},
}

_REGISTRY_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY docker-registry /usr/bin/docker-registry
COPY config.yml /etc/docker/registry/config.yml
EXPOSE {PORT}
ENTRYPOINT ["/usr/bin/docker-registry", "serve", "/etc/docker/registry/config.yml"]
"""

_BUSYBOX_DOCKERFILE = f"""\
FROM {BASE_IMAGE} AS src
RUN apt-get update -q && apt-get install -y -q --no-install-recommends busybox-static && rm -rf /var/lib/apt/lists/*
FROM scratch
COPY --from=src /bin/busybox /bin/busybox
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/sbin", "/usr/sbin", "/tmp", "/root"]
RUN ["/bin/busybox", "--install", "-s"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
"""

_SERVICE_DOCKERFILE = """\
FROM {busybox}
RUN mkdir -p /www && echo 'hello from service' > /www/index.html
ENV READY_AFTER=0
EXPOSE 80
HEALTHCHECK --interval=1s --timeout=2s --start-period=30s --retries=3 \\
    CMD wget -q -O /dev/null http://127.0.0.1:80/index.html || exit 1
CMD ["sh", "-c", "sleep \\"$READY_AFTER\\"; exec httpd -f -v -p 80 -h /www"]
"""


class RegistryError(RuntimeError):
    """The registry or an image for it could not be made; the message says what to do."""


def _context(files: dict[str, bytes], modes: dict[str, int] | None = None) -> io.BytesIO:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), (modes or {}).get(name, 0o644)
            tar.addfile(info, io.BytesIO(data))
    raw.seek(0)
    return raw


def _build(client: docker.DockerClient, tag: str, files: dict[str, bytes], modes: dict[str, int] | None = None) -> str:
    """Build `tag` from an in-memory context unless it exists; returns the tag."""
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        raise RegistryError(f"the base image {BASE_IMAGE} is missing: run `make setup` (toolchain/base-image.sh)") from None
    try:
        client.images.build(fileobj=_context(files, modes), custom_context=True, tag=tag, rm=True, forcerm=True,
                            labels={LABEL: "image"})
    except docker.errors.BuildError as exc:
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)[-3000:]
        raise RegistryError(f"building {tag} failed (apt needs Debian's mirror over http):\n{log}") from exc
    return tag


def _tag_for(prefix: str, *parts: bytes) -> str:
    digest = hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]
    return f"{prefix}:{digest}"


def build_registry_image(client: docker.DockerClient) -> str:
    """`ghr-test-registry:<hash>`: the host's Debian docker-registry binary on the base image."""
    if not REGISTRY_BINARY.is_file():
        raise RegistryError(f"{REGISTRY_BINARY} is missing: install Debian's docker-registry (`make setup` does)")
    binary = REGISTRY_BINARY.read_bytes()
    config = json.dumps(_CONFIG, indent=2).encode()  # YAML is a superset of JSON
    tag = _tag_for("ghr-test-registry", binary, config, _REGISTRY_DOCKERFILE.encode())
    return _build(client, tag, {"Dockerfile": _REGISTRY_DOCKERFILE.encode(), "docker-registry": binary,
                                "config.yml": config}, {"docker-registry": 0o755})


def build_busybox(client: docker.DockerClient) -> str:
    """`ghr-test-busybox:<hash>`: FROM scratch + Debian's static busybox (sh, wget, nc, httpd...)."""
    tag = _tag_for("ghr-test-busybox", _BUSYBOX_DOCKERFILE.encode())
    return _build(client, tag, {"Dockerfile": _BUSYBOX_DOCKERFILE.encode()})


def build_service(client: docker.DockerClient) -> str:
    """`ghr-test-service:<hash>`: busybox httpd on port 80 with a HEALTHCHECK (see the module docstring)."""
    busybox = build_busybox(client)
    dockerfile = _SERVICE_DOCKERFILE.format(busybox=busybox).encode()
    return _build(client, _tag_for("ghr-test-service", dockerfile), {"Dockerfile": dockerfile})


@dataclass(frozen=True)
class Pushed:
    """An image in the registry, named the ways its clients reach it."""

    repository: str
    tag: str
    digest: str  # sha256:... (manifest digest)
    host: str = field(repr=False)
    inner: str = field(repr=False)

    @property
    def host_ref(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    @property
    def inner_ref(self) -> str:
        return f"{self.inner}/{self.repository}:{self.tag}"

    @property
    def host_digest_ref(self) -> str:
        return f"{self.host}/{self.repository}@{self.digest}"

    @property
    def inner_digest_ref(self) -> str:
        return f"{self.inner}/{self.repository}@{self.digest}"


class Registry:
    """Debian's docker-registry in a container on a test-made network; see the module docstring.

    `network=None` creates a network (removed at close); pass a name to use an existing one.
    """

    def __init__(self, client: docker.DockerClient | None = None, *, network: str | None = None,
                 alias: str = ALIAS, env: dict[str, str] | None = None, start_timeout: float = 30.0) -> None:
        self.client = client or docker.from_env()
        self.alias = alias
        self.env = dict(env or {})
        self.start_timeout = start_timeout
        self.suffix = secrets.token_hex(4)
        self.name = f"ghr-test-registry-{self.suffix}"
        self.network = network or self.name
        self._own_network = network is None
        self._container: Any = None
        self._networks: list[str] = []
        self._local_refs: set[str] = set()
        self.port = 0

    # ---- where it is -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`: how the host's engine (and the host) reaches it."""
        return f"127.0.0.1:{self.port}"

    @property
    def inner(self) -> str:
        """`ghr-registry:5000`: how containers on `network` (or a connected network) reach it."""
        return f"{self.alias}:{PORT}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def container_id(self) -> str:
        return str(self._container.id) if self._container is not None else ""

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Registry:
        image = build_registry_image(self.client)
        if self._own_network:
            self.client.networks.create(self.network, driver="bridge", labels={LABEL: self.suffix})
        try:
            api = self.client.api
            created = api.create_container(
                image, name=self.name, detach=True, labels={LABEL: self.suffix}, environment=self.env,
                ports=[PORT], host_config=api.create_host_config(port_bindings={PORT: ("127.0.0.1", None)}),
                networking_config=api.create_networking_config(
                    {self.network: api.create_endpoint_config(aliases=[self.alias])}))
            self._container = self.client.containers.get(created["Id"])
            self._container.start()
            self._networks.append(self.network)
            self._container.reload()
            self.port = int(self._container.attrs["NetworkSettings"]["Ports"][f"{PORT}/tcp"][0]["HostPort"])
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/v2/", timeout=2).status_code == 200:
                    return
            except requests.RequestException as exc:
                last = type(exc).__name__
            self._container.reload()
            if self._container.status not in ("created", "running"):
                break
            time.sleep(0.2)
        logs = self._container.logs(tail=40).decode(errors="replace")
        raise RegistryError(f"the registry did not answer on {self.url}/v2/ within {self.start_timeout:g}s "
                            f"({last or self._container.status}); its log:\n{logs}")

    def connect(self, network: str) -> None:
        """Attach the registry to another network under the same alias (e.g. a pool's network)."""
        self.client.networks.get(network).connect(self._container, aliases=[self.alias])
        self._networks.append(network)

    def close(self) -> None:
        """Remove the container, the network this made, and the local tags that named this registry."""
        for ref in sorted(self._local_refs):
            try:
                self.client.images.remove(ref, noprune=False)
            except docker.errors.APIError:
                pass
        self._local_refs.clear()
        if self._container is not None:
            try:
                self._container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
            self._container = None
        if self._own_network:
            try:
                self.client.networks.get(self.network).remove()
            except docker.errors.NotFound:
                pass

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- images ----------------------------------------------------------------------------------
    def push(self, image: str, repository: str, tag: str = "latest") -> Pushed:
        """Tag a local image as `<host>/<repository>:<tag>`, push it, return its names and manifest digest."""
        ref = f"{self.host}/{repository}"
        self.client.images.get(image).tag(ref, tag)
        self._local_refs.add(f"{ref}:{tag}")
        digest = ""
        errors: list[str] = []
        for chunk in self.client.images.push(ref, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                errors.append(str(chunk["error"]))
            aux = chunk.get("aux") or {}
            digest = aux.get("Digest", digest)
        if errors or not digest:
            raise RegistryError(f"docker push {ref}:{tag} failed: {'; '.join(errors) or 'no digest reported'}")
        return Pushed(repository, tag, digest, self.host, self.inner)

    def pull(self, ref: str) -> Any:
        """Pull `ref` into the host's engine (the local name is removed again at close)."""
        self._local_refs.add(ref)
        return self.client.images.pull(ref)

    def catalog(self) -> list[str]:
        resp = requests.get(f"{self.url}/v2/_catalog", timeout=5)
        resp.raise_for_status()
        return list(resp.json().get("repositories") or [])

    def manifest_digest(self, repository: str, tag: str = "latest") -> str:
        accept = ", ".join(("application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json"))
        resp = requests.head(f"{self.url}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}, timeout=5)
        resp.raise_for_status()
        return str(resp.headers["Docker-Content-Digest"])
