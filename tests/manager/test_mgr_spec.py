"""Pool spec validation: pure, names the offending field."""

from __future__ import annotations

import copy
import dataclasses
import json
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


# ---- the wire form: PoolSpec.dump() and load_spec() round-trip -------------------------------------

MINIMAL: dict[str, Any] = {
    "pool": "cpu", "stack": "sandbox", "host": "local", "scope_url": "http://127.0.0.1:8080/acme", "api_url": None,
    "name_prefix": "sandbox-cpu-local", "labels": ["self-hosted"], "runner_group": "Default", "slots": 1,
    "image": "sha256:abc", "container": {}, "drain_timeout": 600, "metrics_port": 9101,
}


def minimal_with(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(MINIMAL), **changes}


# Specs already in normal form: dump(load(x)) == x, and load(dump(spec)) == spec.
NORMAL_FORMS = {
    "minimal": minimal_with(),
    "gpus all": minimal_with(container={"gpus": "all"}),
    "gpus count": minimal_with(container={"gpus": {"count": 2}}),
    "gpus device ids, one per slot": minimal_with(slots=2, container={"gpus": {"device_ids": ["0", "GPU-1a"]},
                                                                      "gpu_per_slot": True}),
    "volume read-only": minimal_with(container={"volumes": [
        {"type": "volume", "source": "tools", "target": "/opt/tools", "read_only": True}]}),
    "bind": minimal_with(container={"volumes": [{"type": "bind", "source": "/srv/data", "target": "/data"}]}),
    "tmpfs sized and not": minimal_with(container={"volumes": [
        {"type": "tmpfs", "target": "/scratch", "size": "1g"}, {"type": "tmpfs", "target": "/t2"}]}),
    "cache": minimal_with(container={"volumes": [
        {"type": "cache", "source": "ghr-cache-pip", "target": "/home/runner/.cache/pip"}]}),
    "hardened": minimal_with(container={"hardened": True, "memory": "2g"}),
    "privileges by hand": minimal_with(container={"no_new_privileges": True, "cap_drop": ["NET_RAW"],
                                                  "cap_add": ["SYS_PTRACE"]}),
    "limits": minimal_with(container={"cpus": 1.5, "memory": "1536m", "pids_limit": 1024, "shm_size": 1000}),
    "env, labels, network, runtime": minimal_with(container={
        "env": {"KEY": "value"}, "labels": {"team": "ml"}, "network_mode": "host", "runtime": "sysbox-runc"}),
    "enterprise server, group": minimal_with(api_url="https://ghe.example/api/v3", runner_group="ci",
                                             scope_url="https://ghe.example/acme"),
    "tuning": minimal_with(drain_timeout=0.5, metrics_port=0, reconcile_interval=5, backoff_initial=0.25,
                           backoff_max=2),
    "no image yet": minimal_with(image=None),
    "scale set at zero, id not known yet": minimal_with(
        slots=4, scaling="scale_set", min_runners=0, max_runners=4, scale_set_name="sandbox-cpu-local",
        scale_set_id=None),
    "scale set warm, named, with its id": minimal_with(
        slots=3, scaling="scale_set", min_runners=2, max_runners=3, scale_set_name="gpu.big_v2", scale_set_id=7),
}


@pytest.mark.parametrize("data", NORMAL_FORMS.values(), ids=NORMAL_FORMS.keys())
def test_dump_of_load_is_the_normal_form(data: dict[str, Any]) -> None:
    """A spec in normal form comes back from load_spec(...).dump() as it went in."""
    assert load_spec(data, require_image=False).dump() == data


@pytest.mark.parametrize("data", [*NORMAL_FORMS.values(), BASE], ids=[*NORMAL_FORMS.keys(), "design example"])
def test_load_of_dump_is_the_same_spec(data: dict[str, Any]) -> None:
    """load_spec(spec.dump()) and load_spec of the spec file's JSON give back an equal PoolSpec."""
    spec = load_spec(data, require_image=False)
    assert load_spec(spec.dump(), require_image=False) == spec
    assert load_spec(json.loads(spec.dumps()), require_image=False) == spec


@pytest.mark.parametrize(("container", "normal"), [
    ({"memory": 4 * 1024**3, "shm_size": "1.5g"}, {"memory": "4g", "shm_size": "1536m"}),
    ({"memory": "512MB", "cpus": 2.0}, {"memory": "512m", "cpus": 2}),
    ({"gpus": {"device_ids": [0, "1"]}}, {"gpus": {"device_ids": ["0", "1"]}}),
    ({"gpus": None, "gpu_per_slot": False, "network_mode": "bridge", "env": {}, "volumes": [], "runtime": None,
      "cap_drop": [], "cap_add": [], "labels": {}, "hardened": False, "no_new_privileges": False}, {}),
    ({"cap_drop": ["cap_net_raw"]}, {"cap_drop": ["NET_RAW"]}),
    ({"hardened": True, "no_new_privileges": True, "cap_drop": ["NET_RAW"]}, {"hardened": True}),
    ({"env": {"THREADS": 4}}, {"env": {"THREADS": "4"}}),
    ({"volumes": [{"source": "tools", "target": "/opt/tools", "read_only": False}]},
     {"volumes": [{"type": "volume", "source": "tools", "target": "/opt/tools"}]}),
], ids=["sizes", "units and whole cpus", "device ids", "explicit defaults", "capabilities", "hardened implies",
        "env values", "volume type"])
def test_dump_normalises(container: dict[str, Any], normal: dict[str, Any]) -> None:
    """dump() writes sizes in their largest exact unit, strings for env and device ids, and no defaults."""
    assert load_spec(minimal_with(container=container)).dump()["container"] == normal


def test_dump_leaves_out_default_tuning() -> None:
    """The tuning keys appear only when set; drain_timeout is written as the whole number it is."""
    dumped = load_spec(minimal_with(drain_timeout=600.0, reconcile_interval=30)).dump()
    assert set(dumped) == set(MINIMAL) and dumped["drain_timeout"] == 600
    assert isinstance(dumped["drain_timeout"], int)


def test_dumps_is_the_spec_file() -> None:
    """dumps() is the JSON the manager reads: indented by two, keys sorted."""
    spec = load_spec(BASE)
    assert spec.dumps() == json.dumps(spec.dump(), indent=2, sort_keys=True)


def test_a_manager_refuses_a_spec_without_image() -> None:
    """Without an image, load_spec refuses the spec (field image) unless told the image comes later."""
    data = minimal_with()
    del data["image"]
    with pytest.raises(SpecError, match="pulumi up") as info:
        load_spec(data)
    assert info.value.field == "image"
    assert load_spec(data, require_image=False).image is None


def test_with_image_fills_in_the_image() -> None:
    """with_image returns the spec with the image and leaves the original as it was."""
    draft = load_spec(minimal_with(image=None), require_image=False)
    spec = draft.with_image("sha256:def")
    assert spec.image == "sha256:def" and draft.image is None
    assert spec == load_spec(minimal_with(image="sha256:def"))
    assert draft.runner_hash() != spec.runner_hash()


@pytest.mark.parametrize("image", ["", "  "])
def test_with_image_refuses_an_empty_image(image: str) -> None:
    """An empty image id is refused, naming the field."""
    with pytest.raises(SpecError) as info:
        load_spec(MINIMAL).with_image(image)
    assert info.value.field == "image"


# ---- scaling: fixed (slots) or a GitHub runner scale set (min/max) ---------------------------------

SCALE_SET: dict[str, Any] = minimal_with(scaling="scale_set", min_runners=0, max_runners=4)
del SCALE_SET["slots"]


def test_fixed_is_the_default_and_dumps_as_before() -> None:
    """Without `scaling` a pool is fixed: no scale-set keys in its dump, and an explicit "fixed" is the same."""
    spec = load_spec(MINIMAL)
    assert (spec.scaling, spec.scale_set, spec.min_runners, spec.max_runners, spec.scale_set_name) == (
        "fixed", False, None, None, None)
    assert spec.dump() == MINIMAL
    assert load_spec(minimal_with(scaling="fixed")) == spec


def test_scale_set_slots_is_the_capacity() -> None:
    """A scale-set pool's slots is max_runners; its name is derived from name_prefix unless given."""
    spec = load_spec(SCALE_SET)
    assert (spec.scaling, spec.min_runners, spec.max_runners, spec.slots) == ("scale_set", 0, 4, 4)
    assert spec.scale_set_name == "sandbox-cpu-local" and spec.scale_set_id is None
    dumped = spec.dump()
    assert dumped["slots"] == 4 and dumped["max_runners"] == 4 and dumped["scale_set_name"] == "sandbox-cpu-local"
    assert load_spec(minimal_with(slots=4, scaling="scale_set", min_runners=0, max_runners=4)) == spec


def test_with_scale_set_id() -> None:
    """The program fills in the scale set's id at deploy; a fixed pool has no scale set."""
    draft = load_spec(SCALE_SET)
    spec = draft.with_scale_set_id(12)
    assert spec.scale_set_id == 12 and draft.scale_set_id is None
    assert load_spec(spec.dump()) == spec
    with pytest.raises(SpecError) as info:
        load_spec(MINIMAL).with_scale_set_id(12)
    assert info.value.field == "scale_set_id"
    with pytest.raises(SpecError):
        draft.with_scale_set_id(0)


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"scaling": "scaleSet"}, "scaling", "scale_set"),
    ({"max_runners": None}, "max_runners", "required"),
    ({"max_runners": 0}, "max_runners", "at least 1"),
    ({"min_runners": -1}, "min_runners", "at least 0"),
    ({"min_runners": 5, "max_runners": 4}, "min_runners", "more than max_runners"),
    ({"min_runners": True}, "min_runners", "integer"),
    ({"slots": 2}, "slots", "must equal max_runners"),
    ({"scale_set_name": "a" * 46}, "scale_set_name", "at most 45"),
    ({"scale_set_name": "gpu pool"}, "scale_set_name", "letters, digits"),
    ({"scale_set_name": "gpu,big"}, "scale_set_name", "letters, digits"),
    ({"scale_set_name": "-gpu"}, "scale_set_name", "starting with"),
    ({"scale_set_name": ""}, "scale_set_name", "non-empty"),
    ({"name_prefix": "p" * 46}, "scale_set_name", "derived from name_prefix"),
    ({"scale_set_id": 0}, "scale_set_id", "at least 1"),
    ({"container": {"gpus": {"count": 2}, "gpu_per_slot": True}}, "slots", "gpu_per_slot"),
], ids=["config spelling", "no max", "max zero", "min negative", "min over max", "min bool", "slots not max",
        "name too long", "name with space", "name with comma", "name starts with dash", "empty name",
        "derived name too long", "id zero", "gpus fewer than max"])
def test_scale_set_refusals_name_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    """Every scale-set refusal names its field and says what to change."""
    with pytest.raises(SpecError, match=words) as info:
        load_spec({**SCALE_SET, **changes})
    assert info.value.field == field


@pytest.mark.parametrize("key", ["min_runners", "max_runners", "scale_set_name", "scale_set_id"])
def test_a_fixed_pool_refuses_scale_set_keys(key: str) -> None:
    """The scale-set keys mean nothing to a fixed pool: refused, naming the key."""
    with pytest.raises(SpecError, match="scale_set") as info:
        load_spec(minimal_with(**{key: 1}))
    assert info.value.field == key


@pytest.mark.parametrize(("changes", "fixed"), [
    ({"min_runners": 1}, []), ({"max_runners": 6}, []), ({"labels": ["other"]}, []),
    ({"scale_set_name": "renamed"}, ["scale_set_name"]), ({"scale_set_id": 9}, ["scale_set_id"]),
    ({"scaling": "fixed", "min_runners": None, "max_runners": None, "slots": 4}, ["scaling", "scale_set_name"]),
])
def test_reload_takes_min_and_max_but_not_another_scale_set(changes: dict[str, Any], fixed: list[str]) -> None:
    """min/max (and slots with max) reload in place; another scale set, or leaving scale sets, needs a new manager."""
    old = load_spec(SCALE_SET)
    new_data = {**SCALE_SET, **changes}
    if new_data.get("scaling") == "fixed":
        new_data = {k: v for k, v in new_data.items() if v is not None or k == "api_url"}
    assert old.fixed_changes(load_spec(new_data)) == fixed


def test_a_scale_set_spec_built_by_hand_is_consistent() -> None:
    """PoolSpec itself refuses a scale-set pool whose slots is not its max, or a fixed pool with min/max."""
    spec = load_spec(SCALE_SET)
    with pytest.raises(SpecError):
        dataclasses.replace(spec, slots=2)
    with pytest.raises(SpecError):
        dataclasses.replace(load_spec(MINIMAL), min_runners=1)


# ---- docker in jobs: none (default), dind (a private engine per runner), host (unsafe) -------------

DIND: dict[str, Any] = minimal_with(docker="dind", dind={"image": "sha256:dind", "security": "privileged"})

DOCKER_NORMAL_FORMS = {
    "dind sidecar": DIND,
    "dind caps, mirrors, insecure": minimal_with(docker="dind", dind={
        "image": "sha256:dind", "security": "caps", "registry_mirrors": ["http://127.0.0.1:5000", "https://m.example"],
        "insecure_registries": ["127.0.0.1:5000", "10.0.0.0/8", "registry.local"]}),
    "dind sidecar image not known yet": minimal_with(docker="dind", dind={"image": None, "security": "privileged"}),
    "dind hardened runner": minimal_with(container={"hardened": True}, docker="dind",
                                         dind={"image": "sha256:dind", "security": "privileged"}),
    "dind in the runner under sysbox": minimal_with(docker="dind", dind={"runtime": "sysbox-runc"}),
    "dind on a scale set": minimal_with(slots=2, scaling="scale_set", min_runners=0, max_runners=2,
                                        scale_set_name="sandbox-cpu-local", scale_set_id=3, docker="dind",
                                        dind={"image": "sha256:dind", "security": "caps"}),
    "host, unsafe": minimal_with(docker="host", docker_host_unsafe=True, docker_host_socket="/var/run/docker.sock"),
}


@pytest.mark.parametrize("data", DOCKER_NORMAL_FORMS.values(), ids=DOCKER_NORMAL_FORMS.keys())
def test_docker_forms_round_trip(data: dict[str, Any]) -> None:
    """Every docker form is its own normal form, and load_spec(dump()) gives the same spec back."""
    spec = load_spec(data, require_image=False)
    assert spec.dump() == data
    assert load_spec(json.loads(spec.dumps()), require_image=False) == spec


def test_docker_none_is_the_default_and_dumps_as_before() -> None:
    """Without `docker`, or with "none" and no dind, the spec is what it was: no docker keys, same runner hash."""
    spec = load_spec(MINIMAL)
    assert (spec.docker, spec.dind, spec.docker_host_unsafe, spec.dind_sidecar) == ("none", None, False, False)
    explicit = load_spec(minimal_with(docker="none", dind=None))
    assert explicit == spec and explicit.dump() == MINIMAL
    assert spec.runner_hash() == load_spec(minimal_with(docker=None)).runner_hash()


@pytest.mark.parametrize(("dind", "normal"), [
    ({}, {"image": None, "security": "privileged"}),
    (None, {"image": None, "security": "privileged"}),
    ({"security": None, "registry_mirrors": [], "insecure_registries": []}, {"image": None, "security": "privileged"}),
    ({"registry_mirrors": ["https://m.example:5000/", " http://10.0.0.1 "]},
     {"image": None, "security": "privileged", "registry_mirrors": ["https://m.example:5000", "http://10.0.0.1"]}),
], ids=["empty", "null", "explicit defaults", "mirror slashes and spaces"])
def test_dind_dump_normalises(dind: Any, normal: dict[str, Any]) -> None:
    """dind's defaults are filled in (security privileged), empty lists and trailing slashes left out."""
    assert load_spec(minimal_with(docker="dind", dind=dind), require_image=False).dump()["dind"] == normal


def test_a_dind_manager_refuses_a_spec_without_sidecar_image() -> None:
    """A dind sidecar pool's spec needs dind.image like image; with_dind_image fills it in at deploy."""
    draft = load_spec(minimal_with(docker="dind", dind={}), require_image=False)
    with pytest.raises(SpecError, match="pulumi up") as info:
        load_spec(draft.dump())
    assert info.value.field == "dind.image"
    spec = draft.with_dind_image("sha256:dind")
    assert spec.dind is not None and spec.dind.image == "sha256:dind" and spec.dind_sidecar
    assert load_spec(spec.dump()) == spec and draft.runner_hash() != spec.runner_hash()


@pytest.mark.parametrize("spec_data", [MINIMAL, minimal_with(docker="dind", dind={"runtime": "sysbox-runc"})],
                         ids=["docker none", "engine in the runner"])
def test_with_dind_image_needs_a_sidecar(spec_data: dict[str, Any]) -> None:
    """Only a dind pool with a sidecar has a sidecar image."""
    with pytest.raises(SpecError) as info:
        load_spec(spec_data).with_dind_image("sha256:dind")
    assert info.value.field == "dind.image"


def test_dind_settings_shape_the_runner_hash() -> None:
    """Runners of another docker mode or other engine settings are of an older spec (replaced as pairs)."""
    hashes = {load_spec(d).runner_hash() for d in (MINIMAL, DIND, minimal_with(
        docker="dind", dind={"image": "sha256:dind", "security": "caps"}), minimal_with(
        docker="dind", dind={"image": "sha256:dind", "registry_mirrors": ["http://127.0.0.1:5000"]}))}
    assert len(hashes) == 4


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"docker": "docker-in-docker"}, "docker", "\"dind\""),
    ({"docker": True}, "docker", "none"),
    ({"dind": {"security": "root"}}, "dind.security", "caps"),
    ({"dind": {"registry_mirrors": ["mirror.example"]}}, "dind.registry_mirrors[0]", "http or https"),
    ({"dind": {"registry_mirrors": ["https://m.example/v2"]}}, "dind.registry_mirrors[0]", "no\\s+path"),
    ({"dind": {"registry_mirrors": ["https://u:p@m.example"]}}, "dind.registry_mirrors[0]", "user:password"),
    ({"dind": {"registry_mirrors": "https://m.example"}}, "dind.registry_mirrors", "list"),
    ({"dind": {"registry_mirrors": ["https://m.example", "https://m.example/"]}}, "dind.registry_mirrors[1]", "twice"),
    ({"dind": {"insecure_registries": ["http://r.local:5000"]}}, "dind.insecure_registries[0]", "without http"),
    ({"dind": {"mirrors": []}}, "dind.mirrors", "unknown key"),
    ({"dind": "yes"}, "dind", "object"),
    ({"dind": {"runtime": "sysbox runc"}}, "dind.runtime", "runtime name"),
    ({"dind": {"runtime": "sysbox-runc", "security": "caps"}}, "dind.security", "no sidecar"),
    ({"dind": {"runtime": "sysbox-runc", "image": "sha256:x"}}, "dind.image", "no sidecar"),
    ({"dind": {"runtime": "sysbox-runc"}, "container": {"runtime": "runsc"}}, "container.runtime", "remove one"),
    ({"dind": {"runtime": "sysbox-runc"}, "container": {"hardened": True}}, "container.hardened", "sidecar"),
    ({"container": {"network_mode": "host"}}, "container.network_mode", "network namespace"),
    ({"container": {"network_mode": "container:other"}}, "container.network_mode", "network namespace"),
    ({"container": {"env": {"DOCKER_HOST": "tcp://x:2375"}}}, "container.env.DOCKER_HOST", "remove it"),
    ({"docker": "none"}, "dind", "docker \"dind\" only"),
    ({"docker": "none", "dind": None, "docker_host_unsafe": True}, "docker_host_unsafe", "\"host\" only"),
    ({"docker": "host", "dind": None}, "docker_host_unsafe", "root on\\s+the host"),
    ({"docker": "host", "dind": None, "docker_host_unsafe": False}, "docker_host_unsafe", "root on\\s+the host"),
    ({"docker": "host", "dind": None, "docker_host_unsafe": "yes"}, "docker_host_unsafe", "true or false"),
    ({"docker": "host", "dind": None, "docker_host_unsafe": True, "docker_host_socket": "docker.sock"},
     "docker_host_socket", "absolute"),
    ({"docker": "host", "dind": None, "docker_host_unsafe": True, "container": {"hardened": True}},
     "container.hardened", "root"),
], ids=["unknown mode", "not a string", "unknown security", "mirror not a URL", "mirror with path",
        "mirror with credentials", "mirrors not a list", "mirror twice", "insecure with scheme", "unknown dind key",
        "dind not an object", "bad runtime", "runtime with security", "runtime with image",
        "runtime against container runtime", "runtime hardened", "host network", "container network",
        "DOCKER_HOST by hand", "dind without dind", "unsafe without host", "host without flag", "host flag false",
        "host flag not bool", "host socket relative", "host hardened"])
def test_docker_refusals_name_the_field(changes: dict[str, Any], field: str, words: str) -> None:
    """Every docker refusal names its field and says what to do."""
    data = {**DIND, **changes}
    data = {k: v for k, v in data.items() if v is not None or k in MINIMAL}
    with pytest.raises(SpecError, match=words) as info:
        load_spec(data)
    assert info.value.field == field


def test_dind_runtime_is_checked_against_the_engine() -> None:
    """dind.runtime is checked for shape alone, and against the engine's runtimes when they are known."""
    data = minimal_with(docker="dind", dind={"runtime": "sysbox-runc"})
    assert load_spec(data).dind == load_spec(data, runtimes=["runc", "sysbox-runc"]).dind
    with pytest.raises(SpecError, match="sysbox") as info:
        load_spec(data, runtimes=["runc"])
    assert info.value.field == "dind.runtime"


def test_hardened_runner_combines_with_a_dind_sidecar() -> None:
    """A hardened runner keeps its guarantees next to a sidecar engine: nothing of hardened is dropped."""
    spec = load_spec(minimal_with(container={"hardened": True}, docker="dind", dind={"image": "sha256:d"}))
    assert spec.container.hardened and spec.container.cap_drop == ("ALL",) and spec.container.no_new_privileges
    assert spec.dind_sidecar


def test_a_hand_built_docker_spec_is_consistent() -> None:
    """PoolSpec itself refuses dind settings without docker "dind", and docker "host" without the flag."""
    from pool_manager.spec import DindSpec

    with pytest.raises(SpecError):
        dataclasses.replace(load_spec(MINIMAL), dind=DindSpec())
    with pytest.raises(SpecError):
        dataclasses.replace(load_spec(MINIMAL), docker="dind")
    with pytest.raises(SpecError):
        dataclasses.replace(load_spec(MINIMAL), docker="host")
    with pytest.raises(SpecError):
        DindSpec(security="root")  # type: ignore[arg-type]
