"""Stack config of scale-set pools (issue 9): `scaling: scaleSet`, minRunners/maxRunners, scaleSetName.

Valid configs become scale-set pool specs; every bad value fails at preview with its key path and a fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from unit_helpers import base

from components.config import ConfigError, parse_config
from pool_manager.spec import load_spec


def scale_set_base(**pool: Any) -> dict[str, Any]:
    raw = base()
    del raw["pools"][0]["slots"]
    raw["pools"][0].update({"scaling": "scaleSet", "minRunners": 0, "maxRunners": 4, **pool})
    return raw


def test_scale_set_pool_becomes_a_scale_set_spec() -> None:
    """scaling: scaleSet gives a spec with min/max, slots = maxRunners, the name derived per host."""
    fleet = parse_config(scale_set_base(minRunners=1), "dev", ["ghr:github"])
    pool = fleet.pools[0]
    assert (pool.scaling, pool.min_runners, pool.max_runners, pool.slots) == ("scale_set", 1, 4, 4)
    spec = fleet.spec("cpu", "local")
    assert (spec.scaling, spec.min_runners, spec.max_runners, spec.slots) == ("scale_set", 1, 4, 4)
    assert spec.scale_set_name == "dev-cpu-local" and spec.scale_set_id is None
    assert load_spec(spec.dump(), require_image=False) == spec


def test_snake_case_and_explicit_name() -> None:
    """snake_case keys and the scale_set value spelling mean the same; scaleSetName is used as given."""
    raw = base()
    del raw["pools"][0]["slots"]
    raw["pools"][0].update({"scaling": "scale_set", "max_runners": 2, "scale_set_name": "ci-linux.x64"})
    fleet = parse_config(raw, "dev", ["ghr:github"])
    spec = fleet.spec("cpu", "local")
    assert (spec.min_runners, spec.max_runners, spec.scale_set_name) == (0, 2, "ci-linux.x64")


def test_fixed_stays_the_default() -> None:
    """Without scaling (or with scaling: fixed) a pool is what it was: slots, no scale-set keys."""
    for raw in (base(), {**base(), "pools": [{**base()["pools"][0], "scaling": "fixed"}]}):
        fleet = parse_config(raw, "dev", ["ghr:github"])
        assert fleet.pools[0].scaling == "fixed" and "scaling" not in fleet.spec("cpu", "local").dump()


@pytest.mark.parametrize("scope", ["https://github.com/acme", "https://github.com/acme/app",
                                   "https://github.com/enterprises/big"])
def test_every_runner_scope_has_scale_sets(scope: str) -> None:
    """Repository, organisation and enterprise scopes all take scale sets (as GitHub's client registers them)."""
    raw = scale_set_base()
    raw["github"]["scope"] = scope
    assert parse_config(raw, "dev", ["ghr:github"]).spec("cpu", "local").scale_set


def _two_hosts(raw: dict[str, Any]) -> None:
    raw["hosts"].append({"name": "remote", "url": "tcp://10.0.0.2:2375"})
    raw["pools"][0]["hosts"] = ["local", "remote"]


def test_two_hosts_get_a_scale_set_each() -> None:
    """One scale set per pool and host: the derived names differ by host."""
    raw = scale_set_base()
    _two_hosts(raw)
    fleet = parse_config(raw, "dev", ["ghr:github"])
    assert {fleet.spec("cpu", h).scale_set_name for h in ("local", "remote")} == {"dev-cpu-local", "dev-cpu-remote"}


def _with(**pool: Any) -> Callable[[dict[str, Any]], None]:
    def apply(raw: dict[str, Any]) -> None:
        raw["pools"][0].update(pool)
        for key in [k for k, v in pool.items() if v is None]:
            del raw["pools"][0][key]
    return apply


def _both(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def apply(raw: dict[str, Any]) -> None:
        for m in mutations:
            m(raw)
    return apply


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("min-over-max", _with(minRunners=5, maxRunners=4), "ghr:pools[0].minRunners", "lower minRunners"),
    ("max-zero", _with(maxRunners=0), "ghr:pools[0].maxRunners", "between 1 and 64"),
    ("max-missing", _with(maxRunners=None), "ghr:pools[0].maxRunners", "maxRunners: 4"),
    ("max-too-many", _with(maxRunners=65), "ghr:pools[0].maxRunners", "between 1 and 64"),
    ("min-negative", _with(minRunners=-1), "ghr:pools[0].minRunners", "between 0 and 64"),
    ("slots-with-scale-set", _with(slots=2), "ghr:pools[0].slots", "remove slots"),
    ("scaling-unknown", _with(scaling="auto"), "ghr:pools[0].scaling", "fixed or scaleSet"),
    ("name-too-long", _with(scaleSetName="x" * 46), "ghr:pools[0].scaleSetName", "at most 45"),
    ("name-with-space", _with(scaleSetName="gpu pool"), "ghr:pools[0].scaleSetName", "no spaces"),
    ("name-with-slash", _with(scaleSetName="acme/gpu"), "ghr:pools[0].scaleSetName", "letters, digits"),
    ("name-not-a-string", _with(scaleSetName=7), "ghr:pools[0].scaleSetName", "non-empty"),
    ("name-on-two-hosts", _both(_with(scaleSetName="gpu"), _two_hosts), "ghr:pools[0].scaleSetName",
     "remove scaleSetName"),
    ("derived-name-too-long", _with(name="a" * 20), "ghr:pools[0].scaleSetName", "set scaleSetName"),
    ("fixed-with-min", _with(scaling="fixed", slots=2, maxRunners=None, minRunners=1), "ghr:pools[0].minRunners",
     "scaling: scaleSet"),
    ("gpu-per-slot-over-max", _with(container={"gpus": {"deviceIds": ["0"]}, "gpuPerSlot": True}),
     "ghr:pools[0].maxRunners", "gpu_per_slot"),
]


@pytest.mark.parametrize(("mutate", "path", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_scale_set_config_fails_with_path_and_fix(mutate: Callable[[dict[str, Any]], None], path: str,
                                                      words: str) -> None:
    """Each bad scale-set value is reported at its key path, saying what to do."""
    raw = scale_set_base()
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "devstack-long-names", ["ghr:github", "ghr:hosts"])
    matching = [p for p in info.value.problems if p.path == path]
    assert matching, f"no problem at {path}; got: {info.value}"
    assert any(words.lower() in str(p).lower() for p in matching), str(info.value)
    assert len(matching) == 1, str(info.value)


def test_fixed_pool_without_slots_hints_at_scale_sets() -> None:
    """A pool without slots is told it needs them, or scaling: scaleSet."""
    raw = base()
    del raw["pools"][0]["slots"]
    with pytest.raises(ConfigError, match="scaleSet"):
        parse_config(raw, "dev", ["ghr:github"])


def test_status_shows_a_scale_set_pool_as_its_range() -> None:
    """`make status`: a fixed pool shows its slots, a scale-set pool its min..max, not maxRunners as if fixed."""
    from types import SimpleNamespace

    from components.status import collect, render

    raw = scale_set_base(minRunners=1, maxRunners=5)
    raw["pools"].append({**raw["pools"][0], "name": "gpu", "scaling": "fixed", "slots": 2})
    for key in ("minRunners", "maxRunners"):
        del raw["pools"][1][key]
    fleet = parse_config(raw, "dev", ["ghr:github"])
    busy = SimpleNamespace(name=f"{fleet.pools[0].name_prefix('dev', 'local')}-0-abcdef", status="online", busy=True,
                           labels=[])
    status = collect({}, fleet, client=SimpleNamespace(list_runners=lambda: [busy]), docker_states=False)
    rows = {r["pool"]: r for r in status["pools"]}
    assert (rows["cpu"]["size"], rows["gpu"]["size"]) == ("1..5", "2")
    assert (rows["cpu"]["busy"], rows["gpu"]["online"]) == (1, 0)
    table = render(status).splitlines()
    assert table[1].split()[:3] == ["POOL", "HOST", "RUNNERS"]
    assert table[2].split()[:3] == ["cpu", "local", "1..5"] and table[3].split()[:3] == ["gpu", "local", "2"]
