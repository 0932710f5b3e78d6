"""Fixtures for the per-host cache tests on the real Docker engine.

The cache objects are made by the program's own providers (CacheNetworkProvider, CacheVolumeProvider,
DockerContainerProvider) with the props HostCache gives them (components.cache.cache_services), on a stack name
of their own, and removed after the test (volumes included). Job containers are made as the pool manager makes
them (pool_manager._containers.create_kwargs and apt_proxy_archive), from the real runner image, with a shell
script instead of the runner.
"""

from __future__ import annotations

import secrets
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from components.cache import CacheNetworkProvider, CacheVolumeProvider, cache_services
from components.config import CacheNames, HostCacheConfig
from components.docker import DockerContainerProvider
from pool_manager import _containers as C
from pool_manager.spec import PoolSpec, load_spec
from tests.manager.mgr_helpers import BASE_IMAGE, ensure_built, ensure_runner_image, local_engine

REPO = Path(__file__).resolve().parents[2]
HOST: dict[str, Any] = {"docker_host": "unix:///var/run/docker.sock", "ssh_options": [], "tls": None}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_cache_image(client: docker.DockerClient) -> str:
    """runner-image/cache/cache.Dockerfile on the local base, tagged by content."""
    files = sorted(p for p in (REPO / "runner-image" / "cache").rglob("*") if p.is_file())
    files += sorted(p for p in (REPO / "runner-image" / "extra-ca").rglob("*") if p.is_file())
    return ensure_built(client, "ghr-cache-test", files, dockerfile="cache/cache.Dockerfile",
                        buildargs={"BASE_IMAGE": BASE_IMAGE})


@dataclass
class CacheUnderTest:
    """One stack's caches on the local engine, made by the program's providers."""

    client: docker.DockerClient
    image: str
    cfg: HostCacheConfig
    names: CacheNames
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> provider outputs
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.metrics_port}"

    def start(self, on_network: Callable[[str], None] | None = None) -> CacheUnderTest:
        net = CacheNetworkProvider().create({**HOST, "name": self.names.network, "stack": self.names.stack})
        self.network = {"id": net.id, **(net.outs or {})}
        if on_network is not None:  # e.g. an upstream registry joins the network before the mirror starts
            on_network(self.names.network)
        for kind in ("stats", "apt", "registry", "tools"):
            if kind == "stats" or (kind == "apt" and self.cfg.apt) or (kind == "registry" and self.cfg.registry):
                res = CacheVolumeProvider().create({**HOST, "name": self.names.volume(kind), "stack": self.names.stack,
                                                    "kind": kind, "keep": self.cfg.keep_volumes})
                self.volumes[kind] = dict(res.outs or {})
        for role in cache_services(self.names, self.cfg):
            self.start_service(role)
        self.wait_healthy()
        return self

    def props(self, role: str) -> dict[str, Any]:
        svc = cache_services(self.names, self.cfg)[role]
        return {**HOST, "name": svc["name"], "image": self.image, "command": svc["command"], "mounts": svc["mounts"],
                "env": {**svc["env"], "GHR_PROBE_INTERVAL": "1", "GHR_EVICT_INTERVAL": "2"},
                "network_mode": svc["network_mode"], "restart_policy": "always", "stop_timeout": 10,
                "loopback_ports": svc.get("loopback_ports"),
                "labels": {"ghr.stack": self.names.stack, "ghr.role": "cache", "ghr.cache": role}, "uploads": [],
                "startup_check": 2}

    def start_service(self, role: str) -> None:
        res = DockerContainerProvider().create(self.props(role))
        self.containers[role] = dict(res.outs or {})

    def replace_service(self, role: str, cfg: HostCacheConfig) -> None:
        """What `pulumi up` does to a cache container whose settings changed: delete, then create."""
        old = self.containers[role]
        DockerContainerProvider().delete(str(old["container_id"]), old)
        self.cfg = cfg
        self.start_service(role)

    def container(self, role: str) -> Any:
        return self.client.containers.get(self.names.container(role))

    def health(self) -> dict[str, Any]:
        import json

        try:
            with urllib.request.urlopen(f"{self.metrics_url}/healthz", timeout=5) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))

    def wait_healthy(self, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.health()
                if last.get("ok"):
                    return last
            except OSError as exc:
                last = {"error": str(exc)}
            time.sleep(0.5)
        raise AssertionError(f"caches not healthy within {timeout:g}s: {last}")

    def counts(self, cache: str = "apt") -> dict[str, Any]:
        return dict(self.health()["caches"][cache])

    def close(self) -> None:
        for role, outs in self.containers.items():
            try:
                DockerContainerProvider().delete(str(outs["container_id"]), outs)
            except docker.errors.DockerException:
                pass
            del role
        self.containers = {}
        if self.network:
            CacheNetworkProvider().delete(str(self.network["id"]), self.network)
        for outs in self.volumes.values():
            CacheVolumeProvider().delete(str(outs["name"]), {**outs, "keep": False})


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        return local_engine(timeout=300)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def cache_image(docker_client: docker.DockerClient) -> str:
    try:
        return ensure_cache_image(docker_client)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def runner_image(docker_client: docker.DockerClient) -> str:
    from emulator import Emulator

    with Emulator() as emu:
        try:
            return ensure_runner_image(docker_client, emu)
        except RuntimeError as exc:
            pytest.fail(str(exc))


def make_cache(client: docker.DockerClient, image: str, on_network: Callable[[str], None] | None = None,
               **cfg: Any) -> CacheUnderTest:
    stack = f"tc{secrets.token_hex(3)}"
    config = replace(HostCacheConfig(metrics_port=free_port(), registry_host_port=free_port()), **cfg)
    cache = CacheUnderTest(client, image, config, CacheNames(stack))
    try:
        return cache.start(on_network)
    except BaseException:
        cache.close()
        raise


@pytest.fixture
def host_cache(docker_client: docker.DockerClient, cache_image: str) -> Iterator[CacheUnderTest]:
    cache = make_cache(docker_client, cache_image)
    try:
        yield cache
    finally:
        cache.close()


def pool_spec(cache: CacheUnderTest, image: str, **container: Any) -> PoolSpec:
    """A pool spec on this host that uses its caches, as components.config writes it."""
    names = cache.names
    doc: dict[str, Any] = {
        "pool": "cpu", "stack": names.stack, "host": "local", "scope_url": "https://github.com/acme",
        "name_prefix": f"{names.stack}-cpu-local", "labels": ["self-hosted"], "slots": 1, "image": image,
        "container": {"network_mode": names.network, **container},
        "cache": {"network": names.network, "apt_proxy": names.apt_proxy},
    }
    return load_spec(doc)


@dataclass
class JobResult:
    exit_code: int
    output: str
    seconds: float


def run_job(client: docker.DockerClient, spec: PoolSpec, script: str, *, timeout: float = 300.0, slot: int = 0,
            args: list[str] | None = None) -> JobResult:
    """A fresh runner container in `slot` made as the manager makes it (network, apt proxy file, the slot's own
    volumes), running `script` (with `args` as $1...)."""
    name = f"{spec.name_prefix}-{slot}-{secrets.token_hex(3)}"
    kwargs = C.create_kwargs(spec, slot=slot, runner_name=name, runner_id=1)
    kwargs.update(entrypoint=["bash", "-c", script, "job", *(args or [])], command=None)
    container = client.containers.create(**kwargs)
    try:
        if spec.cache is not None and spec.cache.apt_proxy:
            container.put_archive(C.APT_PROXY_DIR, C.apt_proxy_archive(spec.cache.apt_proxy))
        started = time.monotonic()
        container.start()
        code = int(container.wait(timeout=timeout)["StatusCode"])
        seconds = time.monotonic() - started
        return JobResult(code, container.logs().decode(errors="replace"), seconds)
    finally:
        container.remove(force=True, v=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that reach the engine (through `docker_client`, directly or by a fixture) are `docker`:
    `pytest -m "not docker"` stays the fast subset."""
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and "docker_client" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)
