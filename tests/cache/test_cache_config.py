"""Per-host caches, stack config side: ghr:hosts[i].cache and ghr:pools[i].cache become each pool's spec on each
host (that host's cache only), and bad input fails at preview with the key path and the fix."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from components.config import CacheNames, ConfigError, HostCacheConfig, parse_config

SECRETS = ["ghr:github"]
BASE: dict[str, Any] = {
    "github": {"scope": "https://github.com/acme", "token": "ghp_cacheUnitTestToken0001"},
    "hosts": [{"name": "a", "url": "unix:///var/run/docker.sock", "cache": True},
              {"name": "b", "url": "ssh://ci@b.example", "cache": {"apt": True, "registry": {"size": "5g"}}}],
    "pools": [{"name": "cpu", "hosts": ["a", "b"], "slots": 1, "labels": ["self-hosted"], "cache": True}],
}


def _raw(**pool: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw["pools"][0].update(pool)
    return raw


def _problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "dev", SECRETS)
    return {p.path: str(p) for p in err.value.problems}


def test_host_cache_defaults() -> None:
    """cache: true is an apt cache of 10g, no registry, no tool cache, metrics on 9180, volumes kept."""
    fleet = parse_config(BASE, "dev", SECRETS)
    assert fleet.host("a").cache == HostCacheConfig()
    assert fleet.host("b").cache == HostCacheConfig(registry=True, registry_size=5 * 1024**3)


def test_each_host_points_at_its_own_cache() -> None:
    """The pool on host a gets a's names and only apt (a has no registry); on b also b's registry mirror."""
    fleet = parse_config(BASE, "dev", SECRETS)
    names = CacheNames("dev")
    spec_a, spec_b = fleet.spec("cpu", "a"), fleet.spec("cpu", "b")
    assert spec_a.cache is not None and spec_b.cache is not None
    assert spec_a.cache.network == names.network == spec_a.container.network_mode
    assert spec_a.cache.apt_proxy == "http://ghr-dev-cache-apt:3142" and spec_a.cache.registry_mirror is None
    assert spec_b.cache.registry_mirror == "http://ghr-dev-cache-registry:5000"


def test_pool_without_cache_is_unchanged() -> None:
    """A pool that does not opt in keeps the default bridge and no cache block."""
    spec = parse_config(_raw(cache=None), "dev", SECRETS).spec("cpu", "a")
    assert spec.cache is None and spec.container.network_mode == "bridge" and "cache" not in spec.dump()


def test_dind_pool_gets_the_mirror() -> None:
    """A dind pool using the registry cache lists the host's mirror first, and as an insecure registry (http)."""
    spec = parse_config(_raw(hosts=["b"], docker="dind", dind={"registryMirrors": ["https://m.example"]}),
                        "dev", SECRETS).spec("cpu", "b")
    assert spec.dind is not None
    assert spec.dind.registry_mirrors == ("http://ghr-dev-cache-registry:5000", "https://m.example")
    assert "ghr-dev-cache-registry:5000" in spec.dind.insecure_registries


def test_tool_cache_mounts_the_shared_volume() -> None:
    """toolCache mounts the host's tool-cache volume at /opt/hostedtoolcache, one per slot (`per_slot`: no two
    jobs write one at once), and points the runner at it."""
    raw = _raw(hosts=["a"], cache={"toolCache": True})
    raw["hosts"][0]["cache"] = {"toolCache": True}
    spec = parse_config(raw, "dev", SECRETS).spec("cpu", "a")
    vol = spec.container.volumes[-1]
    assert (vol.type, vol.source, vol.target) == ("cache", "ghr-dev-cache-tools", "/opt/hostedtoolcache")
    assert vol.per_slot and vol.source_for(3) == "ghr-dev-cache-tools-3"
    assert spec.container.env["RUNNER_TOOL_CACHE"] == "/opt/hostedtoolcache"
    assert spec.cache is not None and spec.cache.apt_proxy is None


@pytest.mark.parametrize(("mutate", "path", "words"), [
    (lambda r: r["hosts"][0].pop("cache"), "ghr:pools[0].cache", "host 'a' has none"),
    (lambda r: r["pools"][0].update(cache={"registry": True}), "ghr:pools[0].cache", "does not cache"),
    (lambda r: r["hosts"][1].update(cache={"apt": {"size": "lots"}}), "ghr:hosts[1].cache.apt.size", "not a size"),
    (lambda r: r["hosts"][1].update(cache={"registry": {"size": "1m"}}), "ghr:hosts[1].cache.registry.size",
     "too small"),
    (lambda r: r["pools"][0].update(metricsPort=9180), "ghr:hosts[0].cache.metricsPort", "metricsPort"),
    (lambda r: r["hosts"][0].update(cache={"apt": False}), "ghr:hosts[0].cache", "every cache off"),
    (lambda r: r["hosts"][0].update(cache={"keepVolumes": "yes"}), "ghr:hosts[0].cache.keepVolumes", "true or false"),
    (lambda r: r["hosts"][1].update(cache={"registry": {"upstream": "https://u:p@hub"}}),
     "ghr:hosts[1].cache.registry.upstream", "no credentials"),
    (lambda r: r["pools"][0].update(cache={"npm": True}), "ghr:pools[0].cache.npm", "not a known setting"),
    (lambda r: r["pools"][0].update(container={"networkMode": "host"}), "ghr:pools[0].container.networkMode",
     "cannot"),
])
def test_bad_cache_config_fails_at_preview(mutate: Any, path: str, words: str) -> None:
    """Each bad cache setting is reported under its key path, with what to do."""
    raw = copy.deepcopy(BASE)
    mutate(raw)
    problems = _problems(raw)
    assert path in problems, problems
    assert words in problems[path]
