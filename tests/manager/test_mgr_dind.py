"""docker "dind" on the real engine: a private Docker engine per job, in a sidecar made and removed with its runner.

Layout: the registry (tests/_support/registry.py, Debian's docker-registry) runs on a network this module
creates; each pair's sidecar joins that network (the pool's `container.network_mode`), so the job's engine
pulls `ghr-registry:5000/busybox` (listed under `dind.insecure_registries`). The runner shares the
sidecar's network namespace, so it reaches GitHub (the emulator) at the network's gateway: the emulator
listens on that address, not on loopback. The sidecars use the `caps` form: `--privileged` fails on these
machines (../shared/notes/docker-in-jobs.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests._support.polling import wait_for
from tests._support.registry import Registry, build_busybox, build_service
from tests.manager.mgr_helpers import (
    InProcessManager,
    ProcessManager,
    ensure_dind_image,
    ensure_runner_image,
    make_spec,
    online_idle,
    pair_containers,
    pair_volumes,
    pool_runners,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def registry(docker_client: docker.DockerClient) -> Iterator[Registry]:
    with Registry(docker_client) as reg:
        reg.push(build_busybox(docker_client), "busybox")
        reg.push(build_service(docker_client), "service")
        reg.push(build_busybox(docker_client), "library/busybox")  # Docker Hub's name, for the mirror test
        yield reg


@pytest.fixture(scope="module")
def dind_emulator(registry: Registry, docker_client: docker.DockerClient) -> Iterator[Any]:
    """An emulator on the registry network's gateway: reachable from the host and from the pairs."""
    from emulator import Emulator

    gateway = docker_client.networks.get(registry.network).attrs["IPAM"]["Config"][0]["Gateway"]
    with Emulator(host=gateway) as emu:
        emu.add_scope("acme")
        yield emu


@pytest.fixture(scope="module")
def dind_image(docker_client: docker.DockerClient) -> str:
    try:
        return ensure_dind_image(docker_client)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def dind_runner_image(docker_client: docker.DockerClient, dind_emulator: Any) -> str:
    try:
        return ensure_runner_image(docker_client, dind_emulator)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def dind_spec(dind_emulator: Any, registry: Registry, dind_image: str, dind_runner_image: str,
              docker_client: docker.DockerClient) -> Iterator[Any]:
    """Factory of dind pool specs; afterwards removes every container and volume of their stacks."""
    made: list[dict[str, Any]] = []

    def factory(**kwargs: Any) -> dict[str, Any]:
        container = {"network_mode": registry.network, **kwargs.pop("container", {})}
        spec = make_spec(dind_emulator, dind_runner_image, container=container, docker="dind",
                         dind={"image": dind_image, "security": "caps", "insecure_registries": [registry.inner]},
                         **kwargs)
        made.append(spec)
        return spec

    yield factory
    for spec in made:
        stack = f"ghr.stack={spec['stack']}"
        for c in docker_client.api.containers(all=True, filters={"label": stack}):
            if c["Labels"].get("ghr.role") == "runner":  # runners first: the sidecars' volumes are then free
                docker_client.api.remove_container(c["Id"], force=True, v=True)
        for c in docker_client.api.containers(all=True, filters={"label": stack}):
            docker_client.api.remove_container(c["Id"], force=True, v=True)
        for name in pair_volumes(docker_client, spec):
            docker_client.api.remove_volume(name, force=True)


def _fields(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line and " " not in line.split("=")[0])


def _pairs_ready(emulator: Any, client: docker.DockerClient, spec: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Wait for `n` idle runners online, each with its running sidecar; return the runners."""
    def ready() -> list[dict[str, Any]] | None:
        idle = online_idle(emulator, spec)
        sidecars = [c for c in pair_containers(client, spec) if c["State"] == "running"]
        return idle if len(idle) == n and len(sidecars) == n else None
    return wait_for(ready, 120, f"{n} pairs online")  # type: ignore[no-any-return]


BUILD_AND_RUN = r"""
echo "docker_host=$DOCKER_HOST"
mkdir -p ctx && cd ctx
printf 'FROM %s\nRUN echo built-in-the-job > /built\nCMD ["cat", "/built"]\n' "$BASE" > Dockerfile
docker build -q -t job-built:1 . >/dev/null
echo "ran=$(docker run --rm job-built:1)"
"""

LEAVE_THINGS = r"""
docker pull -q "$BASE" >/dev/null
docker volume create left-volume >/dev/null
docker network create left-network >/dev/null
docker run -d --name left-container --network left-network -v left-volume:/v "$BASE" sleep 600 >/dev/null
echo "containers=$(docker ps -aq | wc -l)"
"""

LOOK_AROUND = r"""
echo "images=$(docker images -aq | wc -l)"
echo "containers=$(docker ps -aq | wc -l)"
echo "volumes=$(docker volume ls -q | wc -l)"
echo "networks=$(docker network ls -q --filter type=custom | wc -l)"
"""


def _script(body: str, registry: Registry) -> str:
    return f"BASE={registry.inner}/busybox:latest\n{body}"


def test_a_job_builds_an_image_and_runs_it(dind_spec: Any, dind_emulator: Any, registry: Registry) -> None:
    """`docker build` (FROM the test registry) and `docker run` of what it built, on the job's own engine."""
    spec = dind_spec(slots=1)
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        job = dind_emulator.enqueue_job("acme", spec["labels"], _script(BUILD_AND_RUN, registry), timeout=180)
        result = dind_emulator.wait_job(job, timeout=240)
        assert result["conclusion"] == "success", result["output"]
        fields = _fields(result["output"])
        assert fields["docker_host"] == "unix:///run/ghr-docker/docker.sock"
        assert fields["ran"] == "built-in-the-job"
    finally:
        manager.stop()


def test_the_next_job_finds_an_empty_engine(dind_spec: Any, dind_emulator: Any, registry: Registry,
                                            docker_client: docker.DockerClient) -> None:
    """Images, containers, networks and volumes of one job are gone for the next; so are the pair's volumes."""
    spec = dind_spec(slots=1)
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        first = dind_emulator.wait_job(dind_emulator.enqueue_job(
            "acme", spec["labels"], _script(LEAVE_THINGS, registry), timeout=180), timeout=240)
        assert first["conclusion"] == "success", first["output"]
        assert _fields(first["output"])["containers"] == "1"
        second = dind_emulator.wait_job(dind_emulator.enqueue_job(
            "acme", spec["labels"], LOOK_AROUND, timeout=120), timeout=180)
        assert second["conclusion"] == "success", second["output"]
        assert second["runner_name"] != first["runner_name"]
        assert _fields(second["output"]) == {"images": "0", "containers": "0", "volumes": "0", "networks": "0"}
        _pairs_ready(dind_emulator, docker_client, spec, 1)
        # Only the live pair's four volumes (image store, socket, _work, externals) exist.
        wait_for(lambda: len(pair_volumes(docker_client, spec)) == 4, 30, "only the live pair's volumes")
    finally:
        manager.stop()
    assert pair_containers(docker_client, spec) == [] and pair_containers(docker_client, spec, "runner") == []
    assert pair_volumes(docker_client, spec) == []


def test_killing_the_runner_removes_its_sidecar(dind_spec: Any, dind_emulator: Any,
                                                docker_client: docker.DockerClient) -> None:
    """`docker kill` of the runner: its sidecar and the pair's volumes go; a fresh pair fills the slot."""
    spec = dind_spec(slots=1)
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        (old,) = _pairs_ready(dind_emulator, docker_client, spec, 1)
        (runner,) = pair_containers(docker_client, spec, "runner")
        (sidecar,) = pair_containers(docker_client, spec)
        docker_client.api.kill(runner["Id"])
        wait_for(lambda: all(c["Id"] != sidecar["Id"] for c in pair_containers(docker_client, spec)), 60,
                 "the killed runner's sidecar removed")
        (new,) = _pairs_ready(dind_emulator, docker_client, spec, 1)
        assert new["name"] != old["name"]
        left = docker_client.api.volumes(filters={"label": f"ghr.pair={old['name']}"})
        assert not (left or {}).get("Volumes")
    finally:
        manager.stop()


def test_killing_the_sidecar_fails_the_job_and_refills_the_slot(dind_spec: Any, dind_emulator: Any,
                                                                docker_client: docker.DockerClient) -> None:
    """`docker kill` of the sidecar mid-job: the job ends as failed and a fresh pair takes the slot."""
    spec = dind_spec(slots=1)
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        _pairs_ready(dind_emulator, docker_client, spec, 1)
        job = dind_emulator.enqueue_job("acme", spec["labels"], "docker version >/dev/null; sleep 300", timeout=400)
        wait_for(lambda: dind_emulator.job(job)["status"] == "in_progress", 60, "the job running")
        (sidecar,) = pair_containers(docker_client, spec)
        (runner,) = pair_containers(docker_client, spec, "runner")
        docker_client.api.kill(sidecar["Id"])
        result = dind_emulator.wait_job(job, timeout=180)
        assert result["conclusion"] == "failure"
        wait_for(lambda: all(c["Id"] != runner["Id"] for c in pair_containers(docker_client, spec, "runner")), 60,
                 "the runner of the killed sidecar removed")
        (new,) = _pairs_ready(dind_emulator, docker_client, spec, 1)
        assert new["name"] != result["runner_name"]
        assert manager.metric("ghr_pool_runner_exits_total", outcome="engine_lost") == 1
    finally:
        manager.stop()


def test_a_restarted_manager_adopts_running_pairs(dind_spec: Any, dind_emulator: Any, tmp_path: Path,
                                                  docker_client: docker.DockerClient) -> None:
    """kill -9 of the manager with pairs running, then a new one: the same pairs, none made or removed."""
    spec = dind_spec(slots=2)
    first = ProcessManager(spec, tmp_path, dind_emulator.admin_token).start()
    try:
        _pairs_ready(dind_emulator, docker_client, spec, 2)
        before = {c["Id"] for c in pair_containers(docker_client, spec) + pair_containers(docker_client, spec, "runner")}
        first.kill9()
        second = ProcessManager(first.spec, tmp_path, dind_emulator.admin_token).start()
        try:
            wait_for(lambda: (second.health() or {}).get("state") in ("ok", "degraded"), 60, "the new manager ok")
            time.sleep(3 * spec["reconcile_interval"])  # a few full passes
            after = {c["Id"] for c in pair_containers(docker_client, spec) + pair_containers(docker_client, spec, "runner")}
            assert after == before and len(after) == 4, second.log()
            assert len(pool_runners(dind_emulator, spec)) == 2
        finally:
            assert second.terminate() == 0
    finally:
        if first.proc is not None and first.proc.poll() is None:
            first.kill9()
    assert pair_containers(docker_client, spec) == [] and pair_volumes(docker_client, spec) == []


def test_no_credential_reaches_the_sidecar(dind_spec: Any, dind_emulator: Any,
                                           docker_client: docker.DockerClient) -> None:
    """Neither the manager's token nor the runner's JIT config is in the sidecar's environment, its
    `docker inspect`, or any file it can read (its volumes included)."""
    spec = dind_spec(slots=1)
    manager = InProcessManager(spec, dind_emulator)
    jit: list[tuple[str, str]] = []
    mint = manager.manager._mint

    def recording_mint(name: str, group_id: int) -> tuple[int, str]:
        runner_id, config = mint(name, group_id)
        jit.append((name, config))
        return runner_id, config
    manager.manager._mint = recording_mint  # type: ignore[method-assign]
    manager.start()
    try:
        _pairs_ready(dind_emulator, docker_client, spec, 1)
        (runner,) = pair_containers(docker_client, spec, "runner")
        (sidecar,) = pair_containers(docker_client, spec)
        assert jit and jit[0][0] == runner["Labels"]["ghr.runner-name"]
        secrets_ = [dind_emulator.admin_token, jit[0][1]]
        inspect = json.dumps(docker_client.api.inspect_container(sidecar["Id"]))
        env = docker_client.api.inspect_container(sidecar["Id"])["Config"]["Env"]
        assert {e.split("=", 1)[0] for e in env} <= {"PATH", "DEBIAN_FRONTEND", "LANG", "GHR_DOCKER_GID",
                                                     "GHR_DIND_SOCKET_DIR", "GHR_DIND_REGISTRY_MIRRORS",
                                                     "GHR_DIND_INSECURE_REGISTRIES"}
        box = docker_client.containers.get(sidecar["Id"])
        for secret in secrets_:
            assert secret not in inspect
            needle = secret[:48]
            found = box.exec_run(["grep", "-rlsF", "--exclude-dir=proc", "--exclude-dir=sys", "--", needle, "/"])
            assert found.exit_code == 1, found.output.decode()[-500:]
    finally:
        manager.stop()


def test_the_pair_is_bounded_by_the_pools_memory(dind_spec: Any, dind_emulator: Any, registry: Registry,
                                                 docker_client: docker.DockerClient) -> None:
    """The pool's memory limit is on the sidecar's cgroup; the runner and the job's containers nest under it."""
    spec = dind_spec(slots=1, container={"memory": "512m", "pids_limit": 2048})
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        _pairs_ready(dind_emulator, docker_client, spec, 1)
        (runner,) = pair_containers(docker_client, spec, "runner")
        (sidecar,) = pair_containers(docker_client, spec)
        host_config = docker_client.api.inspect_container(runner["Id"])["HostConfig"]
        assert host_config["CgroupParent"] == f"/docker/{sidecar['Id']}"
        assert docker_client.api.inspect_container(sidecar["Id"])["HostConfig"]["Memory"] == 512 * 2**20
        script = _script('docker run -d "$BASE" sleep 120 >/dev/null\nsleep 15\n', registry)
        job = dind_emulator.enqueue_job("acme", spec["labels"], script, timeout=180)
        nested = Path(f"/sys/fs/cgroup/memory/docker/{sidecar['Id']}")
        assert int((nested / "memory.limit_in_bytes").read_text()) == 512 * 2**20
        # The job's container: a cgroup under the sidecar's (<sidecar>/docker/<id>), so under its limit.
        wait_for(lambda: [p for p in (nested / "docker").glob("*/") if p.is_dir()], 60,
                 "the job's container in a cgroup under the sidecar's")
        assert (nested / runner["Id"]).is_dir()
        result = dind_emulator.wait_job(job, timeout=240)
        assert result["conclusion"] == "success", result["output"]
    finally:
        manager.stop()


def test_a_container_job_reaches_its_service_by_alias_and_sees_the_workspace(dind_spec: Any, dind_emulator: Any,
                                                                            registry: Registry) -> None:
    """`container:` + `services:` on the job's own engine: steps run in the job container, in the workspace
    the runner made (the engine sees `_work` at the runner's path), and reach the service by its alias."""
    spec = dind_spec(slots=1)
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        script = "\n".join([
            'echo "pwd=$(pwd)"',
            "test -d /__w/_temp/_github_workflow && test -d /github/home && echo runner-folders=seen",
            "test -d /__e && echo externals=mounted",
            "wget -q -O- http://web:80/index.html",
            "echo written-in-container > result.txt && ls /__w/*/*/result.txt >/dev/null && echo workspace=shared",
        ])
        job = dind_emulator.enqueue_job("acme", spec["labels"], script, timeout=180,
                                        container=f"{registry.inner}/busybox:latest",
                                        services={"web": {"image": f"{registry.inner}/service:latest"}})
        result = dind_emulator.wait_job(job, timeout=240)
        assert result["conclusion"] == "success", result["output"]
        out = result["output"]
        assert "hello from service" in out
        fields = _fields(out)
        assert fields["pwd"].startswith("/__w/") and fields["runner-folders"] == "seen"
        assert fields["externals"] == "mounted" and fields["workspace"] == "shared"
    finally:
        manager.stop()


def test_a_host_job_reaches_its_service_on_localhost(dind_spec: Any, dind_emulator: Any, registry: Registry) -> None:
    """A job on the runner reaches a service at localhost:<published port> (the pair's one network namespace),
    and a bind mount of its workspace shows the engine the runner's files."""
    spec = dind_spec(slots=1)
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        script = "\n".join([
            'port=$STANDIN_SERVICE_WEB_PORT_80; echo "published=$port"',
            'exec 3<>"/dev/tcp/127.0.0.1/$port"',
            "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' >&3",
            "cat <&3",
            'echo from-the-runner > "$GITHUB_WORKSPACE/note"',
            f'echo "seen=$(docker run --rm -v "$GITHUB_WORKSPACE:/ws" {registry.inner}/busybox:latest cat /ws/note)"',
        ])
        job = dind_emulator.enqueue_job("acme", spec["labels"], script, timeout=180,
                                        services={"web": {"image": f"{registry.inner}/service:latest",
                                                          "ports": ["80"]}})
        result = dind_emulator.wait_job(job, timeout=240)
        assert result["conclusion"] == "success", result["output"]
        assert "hello from service" in result["output"]
        assert _fields(result["output"])["seen"] == "from-the-runner"
    finally:
        manager.stop()


def test_the_jobs_engine_pulls_through_the_pools_registry_mirror(dind_spec: Any, dind_emulator: Any,
                                                                 registry: Registry) -> None:
    """dind.registry_mirrors reach the job's engine: `docker pull busybox` (a Docker Hub name, no internet
    here) is served by the mirror."""
    spec = dind_spec(slots=1)
    spec["dind"]["registry_mirrors"] = [f"http://{registry.inner}"]
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        script = "\n".join([
            "echo \"mirrors=$(docker info --format '{{json .RegistryConfig.Mirrors}}')\"",
            "docker pull -q busybox:latest >/dev/null && echo pulled=yes",
            'echo "ran=$(docker run --rm busybox:latest echo from-the-mirror)"',
        ])
        result = dind_emulator.wait_job(dind_emulator.enqueue_job("acme", spec["labels"], script, timeout=180),
                                        timeout=240)
        assert result["conclusion"] == "success", result["output"]
        fields = _fields(result["output"])
        assert json.loads(fields["mirrors"]) == [f"http://{registry.inner}/"]
        assert fields["pulled"] == "yes" and fields["ran"] == "from-the-mirror"
    finally:
        manager.stop()


@pytest.fixture(scope="module")
def silent_engine_image(docker_client: docker.DockerClient) -> str:
    """A "sidecar" whose engine never answers: it only sleeps."""
    from tests.manager.mgr_helpers import BASE_IMAGE, build_image

    tag = "ghr-test-silent-engine:1"
    try:
        docker_client.images.get(tag)
    except docker.errors.ImageNotFound:
        import io

        dockerfile = f'FROM {BASE_IMAGE}\nENTRYPOINT ["sleep", "infinity"]\n'.encode()
        build_image(docker_client, tag, fileobj=io.BytesIO(dockerfile))
    return tag


def test_a_sidecar_that_never_answers_fails_its_runner_not_the_manager(
        dind_spec: Any, dind_emulator: Any, docker_client: docker.DockerClient, silent_engine_image: str) -> None:
    """An engine that never answers: the pair and its registration are undone, the failure is reported
    (kind `dind`) and backed off; the manager keeps trying and leaves nothing behind."""
    spec = dind_spec(slots=1)
    spec["dind"]["image"] = silent_engine_image
    manager = InProcessManager(spec, dind_emulator)
    manager.manager.dind_ready_timeout = 1.0
    manager.start()
    try:
        wait_for(lambda: manager.metric("ghr_pool_failures_total", kind="dind") >= 2, 60, "two failed attempts")
        health = manager.manager.health.snapshot()
        assert health["last_error_kind"] == "dind" and "did not answer" in health["last_error"]
        assert manager.thread.is_alive()
        wait_for(lambda: not pair_containers(docker_client, spec) or None, 10, "no sidecar left between attempts")
    finally:
        manager.stop()
    assert pair_containers(docker_client, spec) == [] and pair_containers(docker_client, spec, "runner") == []
    assert pool_runners(dind_emulator, spec) == [] and pair_volumes(docker_client, spec) == []


def test_a_hardened_runner_drives_its_engine(dind_spec: Any, dind_emulator: Any, registry: Registry,
                                            docker_client: docker.DockerClient) -> None:
    """container.hardened with dind: the runner keeps a read-only root, no capabilities and no new privileges,
    and still builds and runs through its engine (the socket's group is all it needs)."""
    spec = dind_spec(slots=1, container={"hardened": True})
    manager = InProcessManager(spec, dind_emulator).start()
    try:
        script = _script(BUILD_AND_RUN + r"""
if touch /usr/ghr-probe 2>/dev/null; then echo root=writable; else echo root=read-only; fi
grep -E '^(CapEff|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
""", registry)
        result = dind_emulator.wait_job(dind_emulator.enqueue_job("acme", spec["labels"], script, timeout=180),
                                        timeout=240)
        assert result["conclusion"] == "success", result["output"]
        fields = _fields(result["output"])
        assert fields["ran"] == "built-in-the-job"
        assert fields["root"] == "read-only" and fields["CapEff"] == "0000000000000000" and fields["NoNewPrivs"] == "1"
    finally:
        manager.stop()
    assert pair_volumes(docker_client, spec) == []
