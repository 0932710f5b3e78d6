"""The program's shape with per-host caches, under Pulumi mocks: one HostCache per host that declares one, its
network, volumes and containers, and pools that use it depend on it (never on another host's)."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest

from components import Fleet, parse_config
from tests.cache.test_cache_config import BASE
from tests.unit.unit_helpers import FleetMocks


@pytest.fixture
def mocks() -> FleetMocks:
    m = FleetMocks()
    pulumi.runtime.set_mocks(m, project="ghr", stack="unit", preview=False)
    return m


@pulumi.runtime.test  # type: ignore[misc]
def test_each_host_gets_its_own_cache(mocks: FleetMocks) -> Any:
    """Host a: apt only (network, stats + apt volumes, apt and metrics containers); host b adds the registry."""
    raw = copy.deepcopy(BASE)
    fleet = Fleet("fleet", {"config": parse_config(raw, "unit", ["ghr:github"])})

    def check(_: Any) -> None:
        containers = mocks.named("docker:Container")
        assert {"fleet-a-cache-apt", "fleet-a-cache-metrics", "fleet-b-cache-apt", "fleet-b-cache-registry",
                "fleet-b-cache-metrics"} <= set(containers)
        assert "fleet-a-cache-registry" not in containers
        apt = containers["fleet-a-cache-apt"]
        assert apt["name"] == "ghr-unit-cache-apt" and apt["network_mode"] == "ghr-unit-cache"
        assert apt["restart_policy"] == "always" and apt["env"]["GHR_CACHE_MAX_BYTES"] == str(10 * 1024**3)
        assert containers["fleet-a-cache-metrics"]["network_mode"] == "host"
        assert containers["fleet-b-cache-registry"]["env"]["GHR_REGISTRY_UPSTREAM"] == "https://registry-1.docker.io"
        volumes = mocks.named("ghr:CacheVolume")
        assert {v["name"] for v in volumes.values()} == {"ghr-unit-cache-stats", "ghr-unit-cache-apt",
                                                        "ghr-unit-cache-registry"}
        assert all(v["keep"] is True for v in volumes.values())
        assert len(mocks.named("ghr:CacheNetwork")) == 2  # one per host, each on its own engine
        for name, container in containers.items():  # only the registry publishes a port (loopback); no credential
            assert "ports" not in container and not any("TOKEN" in k or "PASSWORD" in k for k in container["env"])
            want = {"5000": 5055} if name == "fleet-b-cache-registry" else None
            assert container.get("loopback_ports") == want, name
        images = mocks.named("docker:Image")  # host b's pool images pull their base through b's mirror, a's not
        for role in ("runner", "manager"):
            assert images[f"fleet-cpu-b-image-{role}"]["base_mirror"] == "127.0.0.1:5055"
            assert images[f"fleet-cpu-a-image-{role}"].get("base_mirror") is None
        assert images["fleet-b-cache-image"].get("base_mirror") is None  # made before the mirror runs

    return fleet.pools.apply(check)


@pulumi.runtime.test  # type: ignore[misc]
def test_keep_volumes_false_is_recorded(mocks: FleetMocks) -> Any:
    """keepVolumes: false reaches every cache volume (delete removes them), tool cache included."""
    raw = copy.deepcopy(BASE)
    raw["hosts"][0]["cache"] = {"keepVolumes": False, "toolCache": True}
    fleet = Fleet("fleet", {"config": parse_config(raw, "unit", ["ghr:github"])})

    def check(_: Any) -> None:
        volumes = {v["name"]: v for v in mocks.named("ghr:CacheVolume").values() if v["docker_host"].startswith("unix")}
        assert {n: v["keep"] for n, v in volumes.items()} == {
            "ghr-unit-cache-stats": False, "ghr-unit-cache-apt": False, "ghr-unit-cache-tools": False}
        assert volumes["ghr-unit-cache-tools"]["owner"] == "1001:1001"

    return fleet.pools.apply(check)
