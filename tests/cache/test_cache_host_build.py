"""The host's own image builds pull their base image through the host's registry cache (issue 11): the mirror's
port is published on the host's loopback only (`registry.hostPort`), and DockerImage, before a build, pulls a
Docker Hub base that the host lacks as `127.0.0.1:<port>/library/<name>:<tag>` and tags it as its own name.

Real engine: the mirror's upstream is a registry the test runs (tests/_support/registry.py); the base image is only
there. Fast: which names go through the mirror, a base the host has (ghr-base:bookworm) is left alone, a dead mirror
falls back to the normal pull (logged), the config key."""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from components.cache import cache_services
from components.config import CacheNames, ConfigError, HostCacheConfig, parse_config
from components.docker import DockerImageProvider, dockerfile_base, hub_repository, pull_base_through_mirror
from tests._support.registry import Registry, build_busybox
from tests.cache.conftest import HOST, CacheUnderTest, free_port, make_cache


@pytest.mark.parametrize(("ref", "want"), [
    ("ubuntu:24.04", ("library/ubuntu", "24.04")),
    ("ubuntu", ("library/ubuntu", "latest")),
    ("docker.io/library/debian:bookworm-slim", ("library/debian", "bookworm-slim")),
    ("acme/tools:1", ("acme/tools", "1")),
    ("ghcr.io/acme/tools:1", None),
    ("localhost:5000/x:1", None),
    ("127.0.0.1:5055/library/ubuntu:24.04", None),
    ("ubuntu@sha256:" + "0" * 64, None),
    ("Not_A_Name:1", None),
])
def test_which_bases_go_through_the_mirror(ref: str, want: tuple[str, str] | None) -> None:
    assert hub_repository(ref) == want


def test_the_base_is_the_build_arg_or_the_dockerfiles_default(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE=ubuntu:24.04\nFROM ${BASE_IMAGE}\n")
    assert dockerfile_base(str(tmp_path), "Dockerfile", {}) == "ubuntu:24.04"
    assert dockerfile_base(str(tmp_path), "Dockerfile", {"BASE_IMAGE": "debian:12"}) == "debian:12"
    (tmp_path / "Other").write_text("FROM scratch\n")
    assert dockerfile_base(str(tmp_path), "Other", {}) is None


class _Images:
    def __init__(self, local: set[str], pull_error: Exception | None = None) -> None:
        self.local, self.pull_error, self.pulled = local, pull_error, []  # type: list[str]

    def get(self, name: str) -> Any:
        if name not in self.local:
            raise docker.errors.ImageNotFound(name)
        return object()

    def pull(self, repository: str, tag: str) -> Any:
        self.pulled.append(f"{repository}:{tag}")
        if self.pull_error is not None:
            raise self.pull_error
        raise AssertionError("not reached in these tests")


class _Client:
    def __init__(self, images: _Images) -> None:
        self.images = images


def _props(tmp_path: Path, base: str, **extra: Any) -> dict[str, Any]:
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n")
    return {**HOST, "context": str(tmp_path), "dockerfile": "Dockerfile", "build_args": {"BASE_IMAGE": base},
            "base_mirror": "127.0.0.1:5055", **extra}


def test_a_base_the_host_has_is_left_alone(tmp_path: Path) -> None:
    images = _Images({"ghr-base:bookworm"})
    assert pull_base_through_mirror(_Client(images), _props(tmp_path, "ghr-base:bookworm")) == "present"
    assert images.pulled == []


def test_no_mirror_or_another_registrys_base_is_left_to_the_build(tmp_path: Path) -> None:
    images = _Images(set())
    assert pull_base_through_mirror(_Client(images), _props(tmp_path, "ubuntu:24.04", base_mirror=None)) == "none"
    assert pull_base_through_mirror(_Client(images), _props(tmp_path, "ghcr.io/a/b:1")) == "none"
    assert images.pulled == []


def test_a_failing_mirror_falls_back_to_the_normal_pull(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    images = _Images(set(), pull_error=docker.errors.APIError("connection refused"))
    out = pull_base_through_mirror(_Client(images), _props(tmp_path, "ubuntu:24.04"))
    assert out.startswith("fallback: ") and "connection refused" in out
    assert images.pulled == ["127.0.0.1:5055/library/ubuntu:24.04"]
    assert "pulls it from its registry instead" in caplog.text


def test_host_port_config_and_loopback_only_publish() -> None:
    names = CacheNames("s")
    svc = cache_services(names, HostCacheConfig(apt=False, registry=True))["registry"]
    assert svc["loopback_ports"] == {"5000": 5055}
    assert HostCacheConfig(registry=True).host_mirror == "127.0.0.1:5055"
    assert HostCacheConfig(registry=False).host_mirror is None
    assert "loopback_ports" not in cache_services(names, HostCacheConfig(registry=True, registry_host_port=None))[
        "registry"]
    raw: dict[str, Any] = {
        "github": {"scope": "https://github.com/acme", "token": "ghp_cacheUnitTestToken0001"},
        "hosts": [{"name": "a", "url": "unix:///var/run/docker.sock",
                   "cache": {"apt": False, "registry": {"hostPort": 6001}}}],
        "pools": [{"name": "cpu", "hosts": ["a"], "slots": 1, "labels": ["x"]}],
    }
    cfg = parse_config(raw, "dev", ["ghr:github"])
    host_cache = cfg.host("a").cache
    assert host_cache is not None and host_cache.host_mirror == "127.0.0.1:6001"
    raw["hosts"][0]["cache"]["registry"] = {"hostPort": False}
    host_cache = parse_config(raw, "dev", ["ghr:github"]).host("a").cache
    assert host_cache is not None and host_cache.host_mirror is None
    for bad, path in (({"hostPort": 9180}, "ghr:hosts[0].cache.registry.hostPort"),
                      ({"hostPort": 80}, "ghr:hosts[0].cache.registry.hostPort"),
                      ({"hostPort": "5055"}, "ghr:hosts[0].cache.registry.hostPort")):
        raw["hosts"][0]["cache"]["registry"] = bad
        with pytest.raises(ConfigError) as err:
            parse_config(raw, "dev", ["ghr:github"])
        assert path in {p.path for p in err.value.problems}, bad
    raw["hosts"][0]["cache"]["registry"] = True
    raw["pools"][0]["metricsPort"] = 5055
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "dev", ["ghr:github"])
    assert "ghr:hosts[0].cache.registry.hostPort" in {p.path for p in err.value.problems}


# ---- on the real engine ------------------------------------------------------------------------------------------

def _unique_image(client: docker.DockerClient, busybox: str, name: str) -> str:
    files = {"Dockerfile": f"FROM {busybox}\nCOPY marker /marker\n".encode(), "marker": secrets.token_bytes(4096)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for fname, data in files.items():
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    image, _logs = client.images.build(fileobj=buf, custom_context=True, tag=f"{name}-src:1", rm=True)
    return str(image.id)


@pytest.fixture
def mirror(docker_client: docker.DockerClient, cache_image: str) -> Iterator[tuple[CacheUnderTest, Registry, str]]:
    """A registry cache whose upstream is a test registry holding `ghrbase<hex>:1` (a Docker Hub style name that
    exists nowhere else: not on the host, not on the internet)."""
    upstream = Registry(docker_client)
    upstream.start()
    cache: CacheUnderTest | None = None
    repo = f"ghrbase{secrets.token_hex(4)}"
    try:
        # busybox plus a layer of its own, then gone from the host: the engine must fetch that layer (a miss)
        unique = _unique_image(docker_client, build_busybox(docker_client), repo)
        upstream.push(unique, f"library/{repo}", "1")
        docker_client.images.remove(unique, force=True)
        cache = make_cache(docker_client, cache_image, on_network=upstream.connect, apt=False, registry=True,
                           registry_upstream=f"http://{upstream.inner}")
        yield cache, upstream, f"{repo}:1"
    finally:
        upstream.close()
        if cache is not None:
            cache.close()


def test_mirror_is_published_on_loopback_only(docker_client: docker.DockerClient,
                                               mirror: tuple[CacheUnderTest, Registry, str]) -> None:
    cache, _upstream, _base = mirror
    ports = cache.container("registry").attrs["HostConfig"]["PortBindings"]
    assert ports == {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(cache.cfg.registry_host_port)}]}


@pytest.mark.timeout(600)
def test_a_host_build_pulls_its_base_through_the_mirror(docker_client: docker.DockerClient,
                                                        mirror: tuple[CacheUnderTest, Registry, str],
                                                        tmp_path: Path) -> None:
    """The base is only upstream: the build succeeds through the mirror, which counts the fetch (new blobs)."""
    cache, _upstream, base = mirror
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(base)
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN [\"/bin/busybox\", \"true\"]\n"
                                         "LABEL ghr.test=host-build\n")
    tag = f"ghr-hostbuild:{secrets.token_hex(3)}"
    props = {**HOST, "tag": tag, "context": str(tmp_path), "dockerfile": "Dockerfile",
             "build_args": {"BASE_IMAGE": base}, "network_mode": "host", "labels": {}, "target": None,
             "base_mirror": cache.cfg.host_mirror, "pull_base": False, "image_id": None}
    before = cache.counts("registry")
    provider = DockerImageProvider()
    made = provider.create(props)
    try:
        assert made.outs is not None and made.outs["base_pull"] == "mirror", made.outs
        assert docker_client.images.get(tag).labels.get("ghr.test") == "host-build"
        assert docker_client.images.get(base).id  # tagged as its own name
        with pytest.raises(docker.errors.ImageNotFound):  # the mirror's name is not left behind
            docker_client.images.get(f"{cache.cfg.host_mirror}/library/{base}")
        deadline = time.monotonic() + 20  # the registry container records its counters and storage every 1-2 s here
        after = cache.counts("registry")
        while after["miss"] <= before["miss"] and time.monotonic() < deadline:
            time.sleep(1)
            after = cache.counts("registry")
        assert after["miss"] > before["miss"] and after["upstream"] > before["upstream"], (before, after)
        # the base is on the host now: the next build leaves it alone
        again = provider.update(made.id, dict(made.outs), {**props, "build_args": {"BASE_IMAGE": base, "X": "1"}})
        assert again.outs is not None and again.outs["base_pull"] == "present"
        provider.delete(made.id, dict(again.outs))
    finally:
        for ref in (tag, base):
            try:
                docker_client.images.remove(ref, force=True)
            except docker.errors.ImageNotFound:
                pass


def test_a_dead_mirror_falls_back_to_the_normal_pull(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    """Nothing listens on the mirror's port: the pull through it fails, the helper says so and does not raise."""
    props = _props(tmp_path, f"ghrbase{secrets.token_hex(4)}:1", base_mirror=f"127.0.0.1:{free_port()}")
    assert pull_base_through_mirror(docker_client, props).startswith("fallback: ")
