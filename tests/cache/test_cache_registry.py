"""The host registry mirror on the real engine: Debian's docker-registry in proxy mode, in front of an upstream
registry the test runs (tests/_support/registry.py) on the cache network.

Who pulls: a client speaking the registry pull protocol (manifest by tag, then config and layer blobs by digest)
from a container on the cache network; and a per-job engine: issue 10's dind sidecar, made as the manager makes
it from the spec the program writes (the host's mirror first in its registry-mirrors), pulling `busybox`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import docker
import pytest

from tests._support.registry import Registry, build_busybox
from tests.cache.conftest import CacheUnderTest, make_cache

PULL = r"""
import json, sys, urllib.request
base, repo, ref = sys.argv[1:4]
accept = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.oci.image.manifest.v1+json"])
def get(path, accept=None):
    req = urllib.request.Request(base + path, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read()
manifest = json.loads(get(f"/v2/{repo}/manifests/{ref}", accept))
total = 0
for blob in [manifest["config"], *manifest["layers"]]:
    total += len(get(f"/v2/{repo}/blobs/{blob['digest']}"))
print(json.dumps({"bytes": total, "blobs": 1 + len(manifest["layers"])}))
"""


@pytest.fixture
def mirror(docker_client: docker.DockerClient, cache_image: str) -> Iterator[tuple[CacheUnderTest, Registry]]:
    upstream = Registry(docker_client)
    upstream.start()
    cache: CacheUnderTest | None = None
    try:
        pushed = upstream.push(build_busybox(docker_client), "library/busybox")
        assert pushed.digest
        cache = make_cache(docker_client, cache_image, on_network=upstream.connect, apt=False, registry=True,
                           registry_upstream=f"http://{upstream.inner}")
        yield cache, upstream
    finally:
        upstream.close()  # first: it is on the cache network too
        if cache is not None:
            cache.close()


def _pull(client: docker.DockerClient, cache: CacheUnderTest) -> dict[str, int]:
    out = client.containers.run(cache.image, entrypoint=["python3", "-c", PULL, cache.names.registry_mirror,
                                                          "library/busybox", "latest"],
                                network=cache.names.network, remove=True, stderr=True)
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def _counts(cache: CacheUnderTest) -> dict[str, int]:
    """The exporter's registry counts, once the registry's container has dumped its counters again."""
    time.sleep(2.5)  # the container records counters and storage every probe interval (1 s here)
    return cache.counts("registry")


def test_second_pull_fetches_no_blob_upstream(docker_client: docker.DockerClient,
                                              mirror: tuple[CacheUnderTest, Registry]) -> None:
    """The first pull misses and fetches its blobs upstream; the second is served from the mirror's volume:
    no new miss, no upstream byte, a hit per blob (the registry's own counters and storage)."""
    cache, _upstream = mirror
    first = _pull(docker_client, cache)
    assert first["bytes"] > 100_000
    after_first = _counts(cache)
    assert after_first["miss"] >= first["blobs"] and after_first["upstream"] >= first["bytes"], after_first
    second = _pull(docker_client, cache)
    assert second == first
    after_second = _counts(cache)
    assert after_second["miss"] == after_first["miss"], (after_first, after_second)
    assert after_second["upstream"] == after_first["upstream"]
    assert after_second["hit"] - after_first["hit"] >= first["blobs"]
    assert after_second["served"] - after_first["served"] >= first["bytes"]


def test_cached_image_pulls_with_the_upstream_stopped(docker_client: docker.DockerClient,
                                                      mirror: tuple[CacheUnderTest, Registry]) -> None:
    """Once pulled through the mirror, an image still pulls (by tag) while the upstream registry is down."""
    cache, upstream = mirror
    first = _pull(docker_client, cache)
    docker_client.containers.get(upstream.name).stop(timeout=2)
    assert _pull(docker_client, cache) == first


def test_per_job_engine_pulls_through_the_mirror(docker_client: docker.DockerClient,
                                                 mirror: tuple[CacheUnderTest, Registry]) -> None:
    """A dind pool's sidecar engine (issue 10), made as the manager makes it from the spec the program writes
    (the host's mirror first in its registry-mirrors), pulls `busybox` from Docker Hub's name through the mirror:
    the first pull misses, a pull after `docker rmi` fetches no blob upstream, and with the upstream stopped a
    cached image still pulls."""
    import copy

    from components.config import parse_config
    from pool_manager import _dind as D
    from tests.cache.test_cache_config import BASE as CONFIG
    from tests.manager.mgr_helpers import ensure_dind_image

    cache, upstream = mirror
    raw = copy.deepcopy(CONFIG)
    raw["hosts"] = [{"name": "local", "url": "unix:///var/run/docker.sock",
                     "cache": {"apt": False, "registry": True, "metricsPort": cache.cfg.metrics_port}}]
    raw["pools"][0].update(hosts=["local"], docker="dind", dind={"security": "caps"})
    spec = parse_config(raw, cache.names.stack, ["ghr:github"]).spec("cpu", "local")
    spec = spec.with_image("unused").with_dind_image(ensure_dind_image(docker_client))
    assert spec.dind is not None and spec.dind.registry_mirrors[0] == cache.names.registry_mirror
    name = f"{spec.name_prefix}-0-mirror"
    kwargs = D.sidecar_kwargs(spec, slot=0, runner_name=name, limits=D.Limits(nested=False))
    sidecar = docker_client.containers.create(**kwargs)
    try:
        sidecar.start()
        deadline = time.monotonic() + 60
        env = {"DOCKER_HOST": f"unix://{D.SOCKET_DIR}/docker.sock"}
        while sidecar.exec_run(["docker", "version"], environment=env).exit_code != 0:
            assert time.monotonic() < deadline, sidecar.logs(tail=30).decode(errors="replace")
            time.sleep(1)

        def pull() -> None:
            res = sidecar.exec_run(["docker", "pull", "busybox:latest"], environment=env)
            assert res.exit_code == 0, res.output.decode(errors="replace")
            sidecar.exec_run(["docker", "rmi", "busybox:latest"], environment=env)

        pull()
        first = _counts(cache)
        assert first["miss"] >= 2 and first["upstream"] > 100_000, first
        pull()
        second = _counts(cache)
        assert second["upstream"] == first["upstream"] and second["hit"] > first["hit"], (first, second)
        docker_client.containers.get(upstream.name).stop(timeout=2)
        pull()
    finally:
        sidecar.remove(force=True, v=True)
