"""The program's shape with per-host caches, under Pulumi mocks: one HostCache per host that declares one, its
network, volumes and containers, and pools that use it depend on it (never on another host's)."""

from __future__ import annotations

import copy
from typing import Any

import pulumi
import pytest

from components import Fleet, parse_config
from tests.cache.test_cache_config import BASE


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outs = dict(args.inputs)
        if args.typ.endswith("docker:Image"):
            outs["image_id"] = f"sha256:{args.name}"
        elif args.typ.endswith("docker:Container"):
            outs.update(container_id=f"cid-{args.name}", state="running")
        elif args.typ.endswith("RunnerPoolReady"):
            n = int(args.inputs.get("slots") or 0)
            outs.update(total=n, online=n, busy=0, idle=n, offline=0, stale=[], ready=True, wait_seconds=1.0)
        elif args.typ.endswith("RunnerRegistration"):
            outs.update(runner_group_id=1)
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def named(self, suffix: str) -> dict[str, dict[str, Any]]:
        return {r.name: r.inputs for r in self.resources if r.typ.endswith(suffix)}


@pytest.fixture
def mocks() -> _Mocks:
    m = _Mocks()
    pulumi.runtime.set_mocks(m, project="ghr", stack="unit", preview=False)
    return m


@pulumi.runtime.test  # type: ignore[misc]
def test_each_host_gets_its_own_cache(mocks: _Mocks) -> Any:
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
def test_keep_volumes_false_is_recorded(mocks: _Mocks) -> Any:
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
