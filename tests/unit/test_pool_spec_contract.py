"""The pool spec the program hands each manager: built once per pool and host, written byte for byte as before."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import pulumi
import pytest
from unit_helpers import ROOT, base, load_stack_yaml

from components import RunnerPool, parse_config
from components.config import FleetConfig, PoolConfig
from pool_manager.spec import PoolSpec, load_spec

STACK_FILES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.yaml"))) + [os.path.join(ROOT, "Pulumi.sandbox.yaml")]
IMAGE = "sha256:0123abcd"
DIND_IMAGE = "sha256:d1d1d1d1"
DOCKER_KEYS = ("docker", "dind", "docker_host_unsafe", "docker_host_socket")


def _legacy_document(fleet: FleetConfig, pool: PoolConfig, host: str, image: str) -> dict[str, Any]:
    """The spec as the program hand-built it before PoolSpec.dump() (the pinned reference)."""
    return {
        "pool": pool.name, "stack": fleet.stack, "host": host, "scope_url": fleet.github.scope_url,
        "api_url": fleet.github.api_url, "name_prefix": pool.name_prefix(fleet.stack, host),
        "labels": list(pool.labels), "runner_group": pool.runner_group, "slots": pool.slots, "image": image,
        "container": dict(pool.container), "drain_timeout": pool.drain_timeout, "metrics_port": pool.metrics_port,
    }


def _stacks() -> list[tuple[str, dict[str, Any], list[str]]]:
    stacks = [(os.path.basename(path), *load_stack_yaml(path)) for path in STACK_FILES]
    return [*stacks, ("unit base", base(), ["ghr:github"])]


def _expected_docker_keys(fleet: FleetConfig, pool: PoolConfig, host: str) -> dict[str, Any]:
    """The Docker-in-jobs keys the spec must carry for this pool, from its configuration (none for docker none)."""
    if pool.docker == "none":
        return {}
    if pool.docker == "host":
        return {"docker": "host", "docker_host_unsafe": True, "docker_host_socket": fleet.host(host).socket_path}
    settings = dict(pool.dind)
    dind: dict[str, Any] = ({"runtime": settings["runtime"]} if settings.get("runtime") is not None else
                            {"image": DIND_IMAGE, "security": settings.get("security", "privileged")})
    for key in ("registry_mirrors", "insecure_registries"):
        if settings.get(key):
            dind[key] = list(settings[key])
    return {"docker": "dind", "dind": dind}


@pytest.mark.parametrize(("name", "raw", "secrets"), _stacks(), ids=[s[0] for s in _stacks()])
def test_spec_file_is_byte_for_byte_what_it_was(name: str, raw: dict[str, Any], secrets: list[str]) -> None:
    """For every documented stack, the manager's spec file is unchanged: deployed stacks see no diff.
    (Scale-set pools and Docker-in-jobs pools are newer than that reference: their spec is the fixed form plus
    the scale-set keys, and plus `docker` with `dind` (its sidecar image set at deploy) or the host socket keys.)"""
    fleet = parse_config(raw, "example", secrets)
    for pool in fleet.pools:
        for host in pool.hosts:
            spec = fleet.spec(pool.name, host).with_image(IMAGE)
            if spec.dind_sidecar:
                spec = spec.with_dind_image(DIND_IMAGE)
            if spec.scale_set:
                spec = spec.with_scale_set_id(1)
            docker_keys = _expected_docker_keys(fleet, pool, host)
            if not pool.scale_set and not docker_keys:
                before = json.dumps(_legacy_document(fleet, pool, host, IMAGE), indent=2, sort_keys=True)
                assert spec.dumps() == before
                continue
            doc = json.loads(spec.dumps())
            assert {k: doc.pop(k) for k in DOCKER_KEYS if k in doc} == docker_keys, f"{name}: pool {pool.name}"
            if pool.scale_set:
                scale_keys = {k: doc.pop(k) for k in ("scaling", "min_runners", "max_runners", "scale_set_name",
                                                      "scale_set_id")}
                assert doc["slots"] == pool.max_runners
                assert scale_keys["scaling"] == "scale_set" and scale_keys["scale_set_id"] == 1
            assert doc == _legacy_document(fleet, pool, host, IMAGE)


def test_the_documented_stacks_include_a_docker_in_jobs_pool() -> None:
    """The docker keys above are exercised on a documented stack, not only on made-up ones."""
    pools = [p for _, raw, secrets in _stacks() for p in parse_config(raw, "example", secrets).pools]
    assert any(p.docker == "dind" for p in pools)


def test_config_builds_a_spec_per_pool_and_host_without_image() -> None:
    """parse_config holds one validated PoolSpec per pool and host; the image is left to deploy."""
    raw = base()
    raw["hosts"].append({"name": "remote", "url": "tcp://10.0.0.2:2375"})
    raw["pools"][0]["hosts"] = ["local", "remote"]
    fleet = parse_config(raw, "dev", ["ghr:github"])
    assert set(fleet.specs) == {("cpu", "local"), ("cpu", "remote")}
    spec = fleet.spec("cpu", "remote")
    assert isinstance(spec, PoolSpec) and spec.image is None
    assert (spec.host, spec.name_prefix, spec.labels) == ("remote", "dev-cpu-remote", ("self-hosted", "linux"))
    assert load_spec(spec.dump(), require_image=False) == spec


def test_a_spec_refusal_is_reported_once_under_its_config_key() -> None:
    """A bad container setting on a pool with two hosts is one problem, at ghr:pools[i].container.<key>."""
    from components import ConfigError

    raw = base()
    raw["hosts"].append({"name": "remote", "url": "tcp://10.0.0.2:2375"})
    raw["pools"][0]["hosts"] = ["local", "remote"]
    raw["pools"][0]["container"] = {"memory": "lots"}
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "dev", ["ghr:github"])
    assert info.value.paths == ["ghr:pools[0].container.memory"]



def test_an_undefined_host_is_reported_only_as_such() -> None:
    """A pool naming a host that ghr:hosts lacks gets that one problem, not the spec's refusal of the name too."""
    from components import ConfigError

    raw = base()
    raw["pools"][0]["hosts"] = ["Bad Host!"]
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "dev", ["ghr:github"])
    assert info.value.paths == ["ghr:pools[0].hosts[0]"]

def _uploaded_spec(mocks: Any) -> str:
    (manager,) = mocks.of_type("dynamic/docker:Container")
    uploads = manager.inputs["uploads"]
    if isinstance(uploads, dict) and "value" in uploads:
        uploads = uploads["value"]
    return str({u["path"]: u for u in uploads}["/etc/ghr/pool.json"]["content"])


@pulumi.runtime.test
def test_runner_pool_writes_the_spec_with_the_runner_image(mocks):
    """RunnerPool writes spec.with_image(runner image id).dumps() into the manager, nothing else."""
    fleet = parse_config(base(), "unit", ["ghr:github"])
    spec = fleet.spec("cpu", "local")
    pool = RunnerPool("p", {"spec": spec, "runner_image": IMAGE, "manager_image": "sha256:m",
                            "host": {"url": "unix:///var/run/docker.sock"}, "socket_path": "/var/run/docker.sock",
                            "credentials_file": "{}"})

    def check(_):
        assert _uploaded_spec(mocks) == spec.with_image(IMAGE).dumps()
        (reg,) = mocks.of_type("dynamic/ghr:RunnerRegistration")
        assert reg.inputs["labels"] == list(spec.labels) and reg.inputs["runner_group"] == spec.runner_group
        assert reg.inputs["drain_timeout"] == 600

    return pulumi.Output.all(pool.manager_container, pool.registration).apply(check)


@pytest.mark.parametrize(("make_spec", "error"), [
    (lambda spec: spec.dump(), TypeError),
    (lambda spec: spec.with_image("sha256:x"), ValueError),
], ids=["not a PoolSpec", "image already set"])
def test_runner_pool_refuses_a_spec_it_cannot_use(mocks, make_spec: Any, error: type[Exception]) -> None:
    """RunnerPool takes a PoolSpec without image (the runner image comes from its own argument)."""
    spec = make_spec(parse_config(base(), "unit", ["ghr:github"]).spec("cpu", "local"))
    with pytest.raises(error, match="spec"):
        RunnerPool("p", {"spec": spec, "runner_image": IMAGE, "manager_image": "sha256:m",
                         "host": {"url": "unix:///var/run/docker.sock"}, "socket_path": "/var/run/docker.sock",
                         "credentials_file": "{}"})
