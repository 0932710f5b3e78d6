"""The test registry: Debian's docker-registry in a container, filled with images built offline."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import docker.errors
import pytest

from tests._support.polling import wait_for
from tests._support.registry import LABEL, Registry, build_busybox, build_service

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture
def registry(client: docker.DockerClient) -> Iterator[Registry]:
    with Registry(client) as reg:
        yield reg


def test_push_then_pull_by_digest(client: docker.DockerClient, registry: Registry) -> None:
    """An image pushed to the registry comes back by its manifest digest and runs."""
    pushed = registry.push(build_busybox(client), "busybox", "1")
    assert pushed.digest == registry.manifest_digest("busybox", "1")
    assert "busybox" in registry.catalog()
    client.images.remove(pushed.host_ref)
    registry.pull(pushed.host_digest_ref)
    out = client.containers.run(pushed.host_digest_ref, ["sh", "-c", "echo pulled-ok"], remove=True)
    assert out.strip() == b"pulled-ok"


def test_reachable_by_alias_on_its_network(client: docker.DockerClient, registry: Registry) -> None:
    """A container on the registry's network (where a sidecar engine would be) reaches it as ghr-registry:5000."""
    registry.push(build_service(client), "service")
    out = client.containers.run(build_busybox(client), ["wget", "-q", "-O-", f"http://{registry.inner}/v2/_catalog"],
                                network=registry.network, remove=True)
    assert b'"service"' in out


def test_close_leaves_nothing(client: docker.DockerClient) -> None:
    """close() removes the container, its network and the local tags that named the registry."""
    reg = Registry(client).start()
    pushed = reg.push(build_busybox(client), "gone")
    reg.close()
    assert client.containers.list(all=True, filters={"label": f"{LABEL}={reg.suffix}"}) == []
    assert client.networks.list(filters={"label": f"{LABEL}={reg.suffix}"}) == []
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(pushed.host_ref)


def test_service_image_reports_health(client: docker.DockerClient) -> None:
    """The service image's HEALTHCHECK goes starting -> healthy once httpd answers."""
    c = client.containers.run(build_service(client), detach=True, environment={"READY_AFTER": "1"},
                              labels={LABEL: "health-test"})
    try:
        def status() -> str:
            c.reload()
            return str(c.attrs["State"]["Health"]["Status"])

        assert status() == "starting"
        wait_for(lambda: status() == "healthy", 30, "the service to be healthy")
    finally:
        c.remove(force=True)
