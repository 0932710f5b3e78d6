"""A `docker: dind` pool on the real engines, through the real `pulumi up`/`refresh`/`destroy`.

Layout: a dind runner shares its sidecar's network namespace (a bridge network), so it cannot reach an emulator on
the host's loopback. This module makes a network of its own (tests/_support/bridge.py), runs the emulator on that
network's gateway address (the host holds it: the manager, on the host network, reaches it there too), attaches the
test registry (tests/_support/registry.py, Debian's docker-registry) to it as `ghr-registry:5000`, and puts the pool
on it (`container.networkMode: <network>`), its engines told the registry is plain HTTP (`dind.insecureRegistries`).
The program takes a plain-http scope only on loopback, so the stack's scope is the emulator's loopback relay; what
the emulator hands the runners (their JIT configuration) names its gateway address.
The sidecars use `dind.security: caps`: `--privileged` fails on these machines. One slot, so a second job runs on
the pair that replaced the first one's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from tests._support.bridge import BridgeNetwork, emulator_on
from tests._support.polling import wait_for
from tests._support.registry import Pushed, Registry, build_busybox
from tests.e2e.e2e_helpers import write_stack_config

pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]

LABELS = ["self-hosted", "linux", "e2e-dind"]

# Builds an image FROM the test registry, runs it, and leaves a container, a volume and a network behind.
BUILD_RUN_AND_LEAVE = r"""
set -e
echo "docker_host=$DOCKER_HOST"
mkdir -p ctx && cd ctx
printf 'FROM %s\nRUN echo built-in-the-job > /built\nCMD ["cat", "/built"]\n' "$BASE" > Dockerfile
docker build -q -t job-built:1 . >/dev/null
echo "ran=$(docker run --rm job-built:1)"
docker volume create left-volume >/dev/null
docker network create left-network >/dev/null
docker run -d --name left-container --network left-network -v left-volume:/v job-built:1 sleep 600 >/dev/null
echo "containers=$(docker ps -q | wc -l)"
"""

LOOK_AROUND = r"""
echo "images=$(docker images -aq | wc -l)"
echo "containers=$(docker ps -aq | wc -l)"
echo "volumes=$(docker volume ls -q | wc -l)"
echo "networks=$(docker network ls -q --filter type=custom | wc -l)"
"""


def _fields(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line and " " not in line.split("=")[0])


def _containers(stack_name: str, role: str | None = None) -> list[dict[str, Any]]:
    """The stack's containers (summaries: one list call, no per-container inspect that a removal could race)."""
    labels = [f"ghr.stack={stack_name}", *([f"ghr.role={role}"] if role else [])]
    return docker.from_env().api.containers(all=True, filters={"label": labels})  # type: ignore[no-any-return]


def _volumes(stack_name: str) -> list[str]:
    found = docker.from_env().api.volumes(filters={"label": f"ghr.stack={stack_name}"})
    return [v["Name"] for v in (found or {}).get("Volumes") or []]


def _runners(emu: Any, prefix: str) -> list[dict[str, Any]]:
    return [r for r in emu.runners("acme") if r["name"].startswith(prefix + "-")]


def _online_pair(emu: Any, stack_name: str, prefix: str) -> tuple[Any, Any] | None:
    """The one idle online runner's (runner, sidecar) containers, both running; None until then."""
    online = [r for r in _runners(emu, prefix) if r["status"] == "online" and not r.get("busy")]
    runners = [c for c in _containers(stack_name, "runner") if c["State"] == "running"]
    sidecars = [c for c in _containers(stack_name, "sidecar") if c["State"] == "running"]
    if len(online) != 1 or len(runners) != 1 or len(sidecars) != 1:
        return None
    if runners[0]["Labels"].get("ghr.runner-name") != online[0]["name"]:
        return None
    client = docker.from_env()
    try:
        return client.containers.get(runners[0]["Id"]), client.containers.get(sidecars[0]["Id"])
    except docker.errors.NotFound:
        return None  # removed meanwhile: look again


@pytest.fixture(scope="module")
def network() -> Iterator[BridgeNetwork]:
    with BridgeNetwork(docker.from_env(), prefix="ghr-e2e-dind") as net:
        yield net


@pytest.fixture(scope="module")
def dind_emulator(network: BridgeNetwork) -> Iterator[Any]:
    with emulator_on(network) as emu:
        yield emu


@pytest.fixture(scope="module")
def registry(network: BridgeNetwork) -> Iterator[Registry]:
    with Registry(docker.from_env(), network=network.name) as reg:
        yield reg


@pytest.fixture(scope="module")
def busybox(registry: Registry) -> Pushed:
    return registry.push(build_busybox(registry.client), "busybox")


@pytest.fixture(scope="module")
def dind_stack(network: BridgeNetwork, dind_emulator: Any, registry: Registry, program_stack: Any) -> Any:
    """The stack (set up after, so torn down before, the network, emulator and registry it needs)."""
    stack = program_stack("dind")
    write_stack_config(stack, dind_emulator, slots=1, labels=LABELS)
    doc = yaml.safe_load((stack.dir / f"Pulumi.{stack.stack}.yaml").read_text())
    pool = dict(doc["config"]["ghr:pools"][0])
    pool["container"] = {**pool["container"], "networkMode": network.name}
    pool.update(docker="dind", dind={"security": "caps", "insecureRegistries": [registry.inner]}, readyTimeout=180)
    write_stack_config(stack, dind_emulator, pools=[pool])
    # The program takes plain http to loopback only: the stack names the emulator's loopback relay; the URLs the
    # emulator hands the runners name its gateway address (tests/_support/bridge.py).
    path = stack.dir / f"Pulumi.{stack.stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["ghr:github"]["scope"] = f"{dind_emulator.loopback_url}/acme"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    stack.prefix = f"{stack.stack}-cpu-local"  # type: ignore[attr-defined]
    return stack


def test_1_up_brings_a_pair_online(dind_stack: Any, dind_emulator: Any, network: BridgeNetwork) -> None:
    """`pulumi up` builds the runner and sidecar images and returns with one pair: the runner online, in its
    sidecar's network namespace, the sidecar on the test's network."""
    stack = dind_stack
    stack.up()
    entry = stack.outputs()["pools"]["cpu"]["local"]
    assert entry["registration"]["ready"] is True and entry["registration"]["online"] == 1, entry["registration"]
    assert entry["docker"] == "dind" and entry["dind_image_id"].startswith("sha256:"), entry
    runner, sidecar = wait_for(lambda: _online_pair(dind_emulator, stack.stack, stack.prefix), 60, "one pair online")
    assert runner.attrs["HostConfig"]["NetworkMode"] == f"container:{sidecar.id}"
    assert list(sidecar.attrs["NetworkSettings"]["Networks"]) == [network.name]
    assert sidecar.labels["ghr.pair"] == runner.labels["ghr.runner-name"]
    assert dind_emulator.admin_token not in stack.stored_text()


def test_2_a_job_builds_and_runs_and_the_next_finds_an_empty_engine(dind_stack: Any, dind_emulator: Any,
                                                                      busybox: Pushed) -> None:
    """`docker build` FROM the test registry and `docker run` of what it built succeed; the job leaves a
    container, a volume and a network; the next job (on the replacement pair) sees none of them, nor the images."""
    script = f"BASE={busybox.inner_ref}\n{BUILD_RUN_AND_LEAVE}"
    first = dind_emulator.wait_job(dind_emulator.enqueue_job("acme", ["e2e-dind"], script, timeout=180), timeout=240)
    assert first["conclusion"] == "success", first["output"]
    fields = _fields(first["output"])
    assert fields["docker_host"] == "unix:///run/ghr-docker/docker.sock"
    assert fields["ran"] == "built-in-the-job" and fields["containers"] == "1", fields
    second = dind_emulator.wait_job(dind_emulator.enqueue_job("acme", ["e2e-dind"], LOOK_AROUND, timeout=120),
                                    timeout=240)
    assert second["conclusion"] == "success", second["output"]
    assert second["runner_name"] != first["runner_name"]
    assert _fields(second["output"]) == {"images": "0", "containers": "0", "volumes": "0", "networks": "0"}


def test_3_refresh_is_clean(dind_stack: Any, dind_emulator: Any) -> None:
    """`pulumi refresh` with a replaced pair running: it succeeds, finds nothing deleted, and a preview afterwards
    has nothing to change. The finished pairs left no volume behind."""
    stack = dind_stack
    wait_for(lambda: _online_pair(dind_emulator, stack.stack, stack.prefix), 120, "the replacement pair online")
    # The finished pairs' volumes went with them: only the live pair's four (image store, socket, _work, externals).
    wait_for(lambda: len(_volumes(stack.stack)) == 4, 60, "only the live pair's volumes")
    out = stack.run("refresh", "--yes", "--diff").stdout
    assert " deleted" not in out, out
    stack.run("preview", "--expect-no-changes")
    # The pair a refresh found is still the one serving the pool.
    assert _online_pair(dind_emulator, stack.stack, stack.prefix) is not None


def test_4_destroy_removes_both_containers_and_their_volumes(dind_stack: Any, dind_emulator: Any) -> None:
    """`pulumi destroy`: no container (runner, sidecar, manager) and no volume labelled with the stack, no
    registration left, no resource in the state."""
    stack = dind_stack
    assert _containers(stack.stack, "sidecar") and _volumes(stack.stack)  # there is something to remove
    stack.destroy()
    assert _containers(stack.stack) == []
    assert _volumes(stack.stack) == []
    assert _runners(dind_emulator, stack.prefix) == []
    assert not stack.resources()
