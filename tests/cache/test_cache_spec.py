"""The pool spec's `cache` block (pool_manager.spec.CacheSpec): validation, dump, runner hash."""

from __future__ import annotations

from typing import Any

import pytest

from pool_manager.spec import CacheSpec, SpecError, load_spec

BASE: dict[str, Any] = {
    "pool": "cpu", "stack": "s", "host": "h1", "scope_url": "https://github.com/acme", "name_prefix": "s-cpu-h1",
    "labels": ["self-hosted"], "slots": 1,
}
CACHE = {"network": "ghr-s-cache", "apt_proxy": "http://ghr-s-cache-apt:3142",
         "registry_mirror": "http://ghr-s-cache-registry:5000"}


def test_cache_round_trips() -> None:
    """A spec with a cache dumps it and loads back equal."""
    spec = load_spec({**BASE, "cache": CACHE}, require_image=False)
    assert spec.cache == CacheSpec(**CACHE)
    assert spec.dump()["cache"] == CACHE
    assert load_spec(spec.dump(), require_image=False) == spec


def test_no_cache_dumps_and_hashes_as_before() -> None:
    """Without a cache the dump has no `cache` key and the runner hash does not change."""
    plain = load_spec(BASE, require_image=False)
    cached = load_spec({**BASE, "cache": CACHE}, require_image=False)
    assert "cache" not in plain.dump()
    assert plain.runner_hash() != cached.runner_hash()


@pytest.mark.parametrize(("cache", "field"), [
    ({"apt_proxy": "http://a:3142"}, "cache.network"),
    ({"network": "host"}, "cache.network"),
    ({"network": "n", "apt_proxy": "https://a:3142"}, "cache.apt_proxy"),
    ({"network": "n", "registry_mirror": "http://u:p@m:5000"}, "cache.registry_mirror"),
    ({"network": "n", "size": 1}, "cache.size"),
    ("yes", "cache"),
])
def test_bad_cache_is_refused(cache: Any, field: str) -> None:
    """Each malformed cache block names its field."""
    with pytest.raises(SpecError) as err:
        load_spec({**BASE, "cache": cache}, require_image=False)
    assert err.value.field == field


def test_cache_needs_the_default_bridge() -> None:
    """Runners join the cache network, so another network mode is refused."""
    with pytest.raises(SpecError) as err:
        load_spec({**BASE, "container": {"network_mode": "host"}, "cache": CACHE}, require_image=False)
    assert err.value.field == "container.network_mode"
