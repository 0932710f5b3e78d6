"""Docker in jobs, program side under Pulumi mocks: the sidecar image is built on each host only for pools that run a
dind sidecar, its id goes into the manager's spec, a missing sidecar image fails at preview, and the preview warns."""

from __future__ import annotations

import json
import os
import runpy
from typing import Any

import pulumi
import pytest
from unit_helpers import ROOT, SECRET_SIG, base

from components import Fleet, RunnerPool, parse_config
from components.fleet import docker_warnings
from components.image import DIND_DOCKERFILE, RunnerImage
from pool_manager.spec import load_spec

SECRETS = ["ghr:github", "ghr:hosts"]


@pytest.fixture
def context(tmp_path: Any) -> str:
    """A runner-image context with both Dockerfiles (the mocks build nothing; the file must exist)."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / DIND_DOCKERFILE).write_text("FROM scratch\n")
    return str(tmp_path)


def _raw() -> dict[str, Any]:
    """Three pools: dind on two hosts, dind in the runner (sysbox), and one without Docker."""
    raw = base()
    raw["hosts"].append({"name": "remote", "url": "tcp://10.0.0.2:2375"})
    raw["pools"][0].update(hosts=["local", "remote"], docker="dind",
                           dind={"security": "caps", "registryMirrors": ["http://10.0.0.5:5000"]},
                           image={"base": "ubuntu:24.04", "extraPackages": ["make"]})
    raw["pools"].append({"name": "sysbox", "hosts": ["local"], "slots": 1, "labels": ["sysbox"], "metricsPort": 9300,
                         "docker": "dind", "dind": {"runtime": "sysbox-runc"}})
    raw["pools"].append({"name": "plain", "hosts": ["local"], "slots": 1, "labels": ["plain"], "metricsPort": 9400})
    return raw


def _fleet(raw: dict[str, Any], context: str) -> Fleet:
    return Fleet("fleet", {"config": parse_config(raw, "unit", SECRETS), "runner_context": context})


def _spec_of(mocks: Any, pool: str, host: str = "local") -> dict[str, Any]:
    (manager,) = [r for r in mocks.of_type("dynamic/docker:Container") if r.name == f"fleet-{pool}-{host}-pool-manager"]
    uploads = manager.inputs["uploads"]
    if isinstance(uploads, dict) and SECRET_SIG in uploads.values():
        uploads = uploads["value"]
    return dict(json.loads({u["path"]: u for u in uploads}["/etc/ghr/pool.json"]["content"]))


@pulumi.runtime.test
def test_sidecar_image_is_built_per_host_only_for_dind_sidecar_pools(mocks, context):
    """ghr-dind:<stack>-<pool> is built on each host of a dind sidecar pool, on the runner's base, without the
    pool's extra packages; the sysbox and plain pools build none."""
    fleet = _fleet(_raw(), context)

    def check(_):
        dind = [r for r in mocks.of_type("dynamic/docker:Image") if r.inputs["dockerfile"] == DIND_DOCKERFILE]
        assert sorted(r.name for r in dind) == ["fleet-cpu-local-image-dind", "fleet-cpu-remote-image-dind"]
        for r in dind:
            assert r.inputs["tag"] == "ghr-dind:unit-cpu" and r.inputs["context"] == context
            assert r.inputs["build_args"] == {"BASE_IMAGE": "ubuntu:24.04"}
            assert r.inputs["labels"]["ghr.role"] == "dind-image"
        assert len(mocks.of_type("dynamic/docker:Image")) == 2 * 4 + 2  # runner + manager everywhere, 2 sidecars

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_each_managers_spec_names_its_hosts_sidecar_image(mocks, context):
    """The spec written into a dind pool's manager carries that host's sidecar image id and loads as a manager's."""
    fleet = _fleet(_raw(), context)

    def check(_):
        for host in ("local", "remote"):
            spec = load_spec(_spec_of(mocks, "cpu", host))
            assert spec.dind is not None and spec.dind.image == f"sha256:fleet-cpu-{host}-image-dind"
            assert spec.dind.security == "caps" and spec.dind.registry_mirrors == ("http://10.0.0.5:5000",)
        sysbox = load_spec(_spec_of(mocks, "sysbox"))
        assert sysbox.dind is not None and sysbox.dind.runtime == "sysbox-runc" and sysbox.dind.image is None
        assert "docker" not in _spec_of(mocks, "plain")

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_outputs_name_the_docker_mode_only_for_pools_that_have_one(mocks, context):
    """A dind pool's outputs add docker (and the sidecar image id); a pool without Docker keeps its outputs."""
    fleet = _fleet(_raw(), context)

    def check(pools):
        assert pools["cpu"]["remote"]["docker"] == "dind"
        assert pools["cpu"]["remote"]["dind_image_id"] == "sha256:fleet-cpu-remote-image-dind"
        assert pools["sysbox"]["local"]["docker"] == "dind" and "dind_image_id" not in pools["sysbox"]["local"]
        assert not {"docker", "dind_image_id"} & set(pools["plain"]["local"])

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_preview_warns_what_each_docker_mode_gives_away(mocks, context, monkeypatch):
    """The Fleet warns once per pool with Docker: the privileged sidecar's reach, the untested runtime path."""
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *a, **k: warned.append(msg))
    fleet = _fleet(_raw(), context)

    def check(_):
        assert len(warned) == 2
        assert "ghr:pools[0]" in warned[0] and "privileged" in warned[0] and "root on the host" in warned[0]
        assert "SYS_RESOURCE" in warned[0]  # security caps is named as such
        assert "ghr:pools[1]" in warned[1] and "untested" in warned[1] and "sysbox-runc" in warned[1] and "dockerd" in warned[1]

    return fleet.pools.apply(check)


@pytest.mark.parametrize(("keys", "words"), [
    ({"docker": "host", "dockerUnsafeHost": True}, ["root on the host", "every other job's containers"]),
    ({"docker": "dind"}, ["--privileged", "no boundary", "not the host's Docker socket"]),
    ({"docker": "dind", "container": {"hardened": True}}, ["hardened still holds", "within the job's reach"]),
], ids=["host", "dind privileged", "dind hardened"])
def test_docker_warnings_say_the_cost(keys: dict[str, Any], words: list[str]) -> None:
    """docker_warnings states each mode's cost in words an operator can act on."""
    raw = base()
    raw["pools"][0].update(keys)
    (warning,) = docker_warnings(parse_config(raw, "unit", SECRETS))
    assert all(w in warning for w in words), warning


def test_no_docker_no_warning() -> None:
    """A stack without Docker in jobs gets no warning."""
    assert docker_warnings(parse_config(base(), "unit", SECRETS)) == []


def test_sidecar_image_missing_fails_at_preview_with_the_fix(mocks, tmp_path):
    """RunnerImage for a dind sidecar pool refuses a context without dind.Dockerfile, naming it and the fix."""
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    with pytest.raises(ValueError, match=r"dind\.Dockerfile is missing.*restore it.*docker to none"):
        RunnerImage("img", {"stack": "unit", "pool": "cpu", "host_name": "local", "host": {"url": "unix:///d.sock"},
                            "build_args": {"BASE_IMAGE": "b"}, "runner_context": str(tmp_path), "dind_sidecar": True})


def test_main_refuses_a_dind_pool_without_the_sidecar_dockerfile(mocks, monkeypatch, tmp_path):
    """__main__ fails at preview (RunError naming the pool) when the sidecar image cannot be built; nothing made."""
    import components.image

    monkeypatch.setenv("GHR_SKIP_VERSION_CHECK", "1")
    monkeypatch.setattr(components.image, "RUNNER_CONTEXT", str(tmp_path))
    raw = base()
    raw["pools"][0]["docker"] = "dind"
    pulumi.runtime.set_all_config({f"ghr:{k}": json.dumps(v) for k, v in raw.items()}, ["ghr:github"])
    with pytest.raises(pulumi.RunError, match=r"ghr:pools\[0\] \(cpu\): docker: dind: .*dind\.Dockerfile is missing"):
        runpy.run_path(os.path.join(ROOT, "__main__.py"))
    assert mocks.resources == []


def _pool_args(spec: Any, **extra: Any) -> Any:
    return {"spec": spec, "runner_image": "sha256:r", "manager_image": "sha256:m",
            "host": {"url": "unix:///var/run/docker.sock"}, "socket_path": "/var/run/docker.sock",
            "credentials_file": "{}", **extra}


@pytest.mark.parametrize(("keys", "extra", "words"), [
    ({"docker": "dind"}, {}, "no sidecar image"),
    ({}, {"dind_image": "sha256:d"}, "runs no dind sidecar"),
    ({"docker": "dind", "dind": {"runtime": "sysbox-runc"}}, {"dind_image": "sha256:d"}, "runs no dind sidecar"),
], ids=["dind without image", "image without dind", "image for the in-runner engine"])
def test_runner_pool_refuses_a_sidecar_image_mismatch(mocks, keys, extra, words) -> None:
    """RunnerPool takes a sidecar image exactly when its spec runs a dind sidecar."""
    raw = base()
    raw["pools"][0].update(keys)
    spec = parse_config(raw, "unit", SECRETS).spec("cpu", "local")
    with pytest.raises(ValueError, match=words):
        RunnerPool("p", _pool_args(spec, **extra))


def test_runner_pool_refuses_a_spec_with_its_sidecar_image_set(mocks) -> None:
    """The sidecar image comes from args['dind_image'], not from the spec (like the runner image)."""
    raw = base()
    raw["pools"][0]["docker"] = "dind"
    spec = parse_config(raw, "unit", SECRETS).spec("cpu", "local").with_dind_image("sha256:d")
    with pytest.raises(ValueError, match="dind_image"):
        RunnerPool("p", _pool_args(spec, dind_image="sha256:d"))
