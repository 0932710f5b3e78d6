"""Pool spec validation: pure, names the offending field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pool_manager import SpecError, load_spec

BASE: dict[str, Any] = {
    "pool": "cpu", "stack": "sandbox", "host": "local",
    "scope_url": "http://127.0.0.1:8080/acme", "api_url": None,
    "name_prefix": "sandbox-cpu-local",
    "labels": ["self-hosted", "linux", "cpu"], "runner_group": "Default",
    "slots": 2, "image": "ghr-runner:sandbox",
    "container": {
        "cpus": 2.0, "memory": "4g", "pids_limit": 4096, "shm_size": "1g",
        "gpus": None, "gpu_per_slot": False,
        "volumes": [
            {"type": "volume", "source": "tools", "target": "/opt/tools", "read_only": True},
            {"type": "bind", "source": "/srv/data", "target": "/data", "read_only": True},
            {"type": "tmpfs", "target": "/scratch", "size": "1g"},
            {"type": "cache", "source": "ghr-cache-pip", "target": "/home/runner/.cache/pip"},
        ],
        "env": {"KEY": "value"}, "network_mode": "bridge",
        "hardened": False, "no_new_privileges": True, "cap_drop": [], "cap_add": [], "runtime": None,
        "labels": {"team": "ml"},
    },
    "drain_timeout": 600, "metrics_port": 9101,
}


def spec_with(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_design_example_loads() -> None:
    """The example spec of docs/design.md loads with sizes in bytes."""
    spec = load_spec(BASE)
    assert spec.slots == 2 and spec.container.memory == 4 * 1024**3
    assert spec.container.shm_size == 1024**3
    assert [v.type for v in spec.container.volumes] == ["volume", "bind", "tmpfs", "cache"]
    assert spec.container.volumes[2].size == 1024**3
    assert spec.container.no_new_privileges


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("slots", 0, "slots"),
        ("slots", "2", "slots"),
        ("labels", [], "labels"),
        ("name_prefix", "bad prefix", "name_prefix"),
        ("scope_url", "acme", "scope_url"),
        ("container.gpus", "some", "container.gpus"),
        ("container.gpus", {"count": 0}, "container.gpus.count"),
        ("container.gpus", {"uuids": ["x"]}, "container.gpus"),
        ("container.volumes.1.source", "relative/path", "container.volumes[1].source"),
        ("container.volumes.0.target", "opt/tools", "container.volumes[0].target"),
        ("container.volumes.0.type", "nfs", "container.volumes[0].type"),
        ("container.runtime", "bad runtime!", "container.runtime"),
        ("container.memory", "lots", "container.memory"),
        ("container.env", {"GHR_GITHUB_TOKEN": "x"}, "container.env.GHR_GITHUB_TOKEN"),
        ("container.env", {"ACTIONS_RUNNER_INPUT_JITCONFIG": "x"}, "container.env.ACTIONS_RUNNER_INPUT_JITCONFIG"),
        ("container.labels", {"ghr.pool": "x"}, "container.labels.ghr.pool"),
        ("container.cap_drop", ["net raw"], "container.cap_drop[0]"),
        ("container.network_mode", "bad mode!", "container.network_mode"),
    ],
)
def test_invalid_field_is_named(path: str, value: Any, field: str) -> None:
    """An invalid value is refused with a SpecError naming its field."""
    with pytest.raises(SpecError) as info:
        load_spec(spec_with(path, value))
    assert info.value.field == field
    assert str(info.value).startswith(field + ":")


def test_unknown_runtime_refused_against_engine_list() -> None:
    """With the engine's runtimes given, a runtime it lacks is refused and the known ones listed."""
    data = spec_with("container.runtime", "sysbox-runc")
    assert load_spec(data).container.runtime == "sysbox-runc"  # shape only, no engine list
    with pytest.raises(SpecError, match="runc") as info:
        load_spec(data, runtimes=["runc", "io.containerd.runc.v2"])
    assert info.value.field == "container.runtime"


@pytest.mark.parametrize(
    ("gpus", "kind"),
    [("all", "all"), ({"count": 2}, "count"), ({"device_ids": ["0", 1]}, "device_ids"), (None, None)],
)
def test_gpu_forms(gpus: Any, kind: str | None) -> None:
    """GPUs: null, "all", a count, or device ids."""
    spec = load_spec(spec_with("container.gpus", gpus))
    assert (spec.container.gpus.kind if spec.container.gpus else None) == kind


def test_gpu_per_slot_needs_known_devices() -> None:
    """Pinning one GPU per slot needs a count or device ids, and at least one GPU per slot."""
    data = spec_with("container.gpus", "all")
    data["container"]["gpu_per_slot"] = True
    with pytest.raises(SpecError) as info:
        load_spec(data)
    assert info.value.field == "container.gpu_per_slot"
    data["container"]["gpus"] = {"device_ids": ["0"]}
    with pytest.raises(SpecError) as info:
        load_spec(data)
    assert info.value.field == "slots"


def test_hardened_drops_everything() -> None:
    """hardened implies no-new-privileges and dropping every capability."""
    data = spec_with("container.hardened", True)
    data["container"]["no_new_privileges"] = False
    spec = load_spec(data)
    assert spec.container.no_new_privileges and spec.container.cap_drop == ("ALL",)


def test_runner_name_pattern() -> None:
    """Only `<prefix>-<slot>-<random6>` names belong to the pool, not a longer prefix's."""
    pattern = load_spec(BASE).runner_name_pattern()
    assert pattern.match("sandbox-cpu-local-0-a1b2c3")
    assert not pattern.match("sandbox-cpu-local2-0-a1b2c3")
    assert not pattern.match("sandbox-cpu-local-0-a1b2c3d")
