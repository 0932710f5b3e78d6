"""Cache volumes and network on the real engine, through the program's providers: kept or dropped at destroy as
the stack declares, adopted warm by the next `up`, `keepVolumes` changed in place."""

from __future__ import annotations

import secrets

import docker
import docker.errors
import pytest

from components.cache import CacheNetworkProvider, CacheResourceError, CacheVolumeProvider
from tests.cache.conftest import HOST


def _props(name: str, keep: bool) -> dict[str, object]:
    return {**HOST, "name": name, "stack": "tcvol", "kind": "apt", "keep": keep}


def _write(client: docker.DockerClient, volume: str) -> None:
    client.containers.run("ghr-base:bookworm", ["sh", "-c", "echo warm > /v/marker"], volumes=[f"{volume}:/v"],
                          remove=True, network_mode="none")


def _read(client: docker.DockerClient, volume: str) -> str:
    out = client.containers.run("ghr-base:bookworm", ["cat", "/v/marker"], volumes=[f"{volume}:/v:ro"], remove=True,
                                network_mode="none")
    return bytes(out).decode().strip()


def test_destroy_keeps_the_volume_and_up_adopts_it_warm(docker_client: docker.DockerClient) -> None:
    """keep true (the default): delete leaves the volume and its content; create adopts it."""
    name = f"ghr-tcvol{secrets.token_hex(3)}-cache-apt"
    provider = CacheVolumeProvider()
    created = provider.create(_props(name, keep=True))
    try:
        assert created.outs is not None and created.outs["adopted"] is False
        _write(docker_client, name)
        provider.delete(name, dict(created.outs))
        assert docker_client.volumes.get(name).name == name
        again = provider.create(_props(name, keep=True))
        assert again.outs is not None and again.outs["adopted"] is True
        assert _read(docker_client, name) == "warm"
    finally:
        provider.delete(name, {**_props(name, keep=False)})
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(name)


def test_keep_false_changes_in_place_and_destroy_drops(docker_client: docker.DockerClient) -> None:
    """keepVolumes true -> false is an update, not a replacement (the data stays until destroy), which drops it."""
    name = f"ghr-tcvol{secrets.token_hex(3)}-cache-apt"
    provider = CacheVolumeProvider()
    created = provider.create(_props(name, keep=True))
    assert created.outs is not None
    diff = provider.diff(name, dict(created.outs), _props(name, keep=False))
    assert diff.changes and not diff.replaces
    updated = provider.update(name, dict(created.outs), _props(name, keep=False))
    provider.delete(name, dict(updated.outs or {}))
    with pytest.raises(docker.errors.NotFound):
        docker_client.volumes.get(name)


def test_network_is_removed_at_destroy_and_refuses_someone_elses(docker_client: docker.DockerClient) -> None:
    """The cache network goes at destroy; a network of that name the program did not make is not taken over."""
    name = f"ghr-tcnet{secrets.token_hex(3)}-cache"
    provider = CacheNetworkProvider()
    made = provider.create({**HOST, "name": name, "stack": "tcnet"})
    provider.delete(made.id, dict(made.outs or {}))
    with pytest.raises(docker.errors.NotFound):
        docker_client.networks.get(name)
    foreign = docker_client.networks.create(name)
    try:
        with pytest.raises(CacheResourceError, match="not made by this program"):
            provider.create({**HOST, "name": name, "stack": "tcnet"})
    finally:
        foreign.remove()
