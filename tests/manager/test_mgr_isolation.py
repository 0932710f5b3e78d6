"""What runner containers get: no credentials, a non-root user, the GPU requests the pool asks for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests._support.polling import wait_for
from tests.manager.mgr_helpers import InProcessManager, ProcessManager, online_idle, pool_containers, pool_runners

LOOK_AROUND = r"""
echo "uid=$(id -u) user=$(id -un)"
test -e /run/ghr/jitconfig && echo "jitconfig=present" || echo "jitconfig=gone"
env
for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f" 2>/dev/null; done
sudo -n true 2>/dev/null && echo "sudo=yes" || echo "sudo=no"
"""


def test_no_credential_reaches_a_runner_container(new_spec: Any, emulator: Any, docker_client: Any,
                                                  tmp_path: Path) -> None:
    """The manager's token is in no runner's environment, files, /proc/*/environ or inspect; jobs run as uid 1001."""
    token = emulator.add_pat()
    spec = new_spec(slots=1, container={"env": {"PLAIN": "visible"}})
    manager = ProcessManager(spec, tmp_path, token, via_env=True).start()
    try:
        job = emulator.wait_job(emulator.enqueue_job("acme", spec["labels"], LOOK_AROUND, timeout=60), timeout=90)
        assert job["conclusion"] == "success", job["output"]
        out = job["output"]
        assert "uid=1001 user=runner" in out and "jitconfig=gone" in out and "PLAIN=visible" in out
        assert "sudo=yes" in out  # hosted-runner default; see the hardened test
        assert token not in out
        (idle,) = wait_for(lambda: online_idle(emulator, spec), 60, "the next runner")
        (box,) = [c for c in pool_containers(docker_client, spec) if c["Labels"]["ghr.runner-name"] == idle["name"]]
        assert token not in json.dumps(docker_client.api.inspect_container(box["Id"]))
        container = docker_client.containers.get(box["Id"])
        code, found = container.exec_run(
            ["sh", "-c", f"cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c '{token}';"
             f" grep -rIl --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev '{token}' / 2>/dev/null | head"],
            user="root")
        assert found.decode().split() == ["0"], found.decode()
        top = container.top(ps_args="-o user,pid,comm")
        listener = [p for p in top["Processes"] if "Runner.Listener" in p[-1] or "python" in p[-1]]
        assert listener and all(p[0] != "root" for p in listener), top
        assert "GHR_GITHUB_TOKEN" not in json.dumps(docker_client.api.inspect_container(box["Id"]))
    finally:
        assert manager.terminate() == 0, manager.log()
    assert token not in manager.log()


def test_hardened_pool_has_no_working_sudo(new_spec: Any, emulator: Any) -> None:
    """hardened: no-new-privileges and no capabilities, so sudo inside the job fails."""
    spec = new_spec(slots=1, container={"hardened": True})
    manager = InProcessManager(spec, emulator).start()
    try:
        job = emulator.wait_job(emulator.enqueue_job("acme", spec["labels"], LOOK_AROUND, timeout=60), timeout=90)
        assert job["conclusion"] == "success", job["output"]
        assert "sudo=no" in job["output"] and "uid=1001" in job["output"]
    finally:
        manager.stop()


@pytest.mark.parametrize(
    ("gpus", "per_slot", "slot", "expected"),
    [
        ("all", False, 0, {"Count": -1, "DeviceIDs": None}),
        ({"count": 2}, False, 1, {"Count": 2, "DeviceIDs": None}),
        ({"device_ids": ["0", "3"]}, False, 0, {"Count": 0, "DeviceIDs": ["0", "3"]}),
        ({"device_ids": ["0", "3"]}, True, 1, {"Count": 0, "DeviceIDs": ["3"]}),
        ({"count": 2}, True, 1, {"Count": 0, "DeviceIDs": ["1"]}),
    ],
)
def test_gpu_settings_become_device_requests(gpus: Any, per_slot: bool, slot: int, expected: dict[str, Any],
                                             emulator: Any, docker_client: Any, runner_image: str) -> None:
    """GPU forms reach the engine as DeviceRequests with capabilities [["gpu"]] (create without start)."""
    from pool_manager import _containers, load_spec
    from tests.manager.mgr_helpers import make_spec

    spec = load_spec(make_spec(emulator, runner_image, slots=2, container={"gpus": gpus, "gpu_per_slot": per_slot}))
    kwargs = _containers.create_kwargs(spec, slot=slot, runner_name=f"{spec.name_prefix}-{slot}-gpu000", runner_id=1)
    container = docker_client.containers.create(**kwargs)
    try:
        (request,) = docker_client.api.inspect_container(container.id)["HostConfig"]["DeviceRequests"]
        assert request["Capabilities"] == [["gpu"]]
        assert request["Count"] == expected["Count"]
        assert (request["DeviceIDs"] or None) == expected["DeviceIDs"]
    finally:
        container.remove(force=True)


def test_gpu_refusal_surfaces_on_its_pool_only(new_spec: Any, emulator: Any, docker_client: Any) -> None:
    """No GPU here: the GPU pool reports the engine's refusal; a CPU pool beside it keeps running jobs."""
    gpu_spec = new_spec(pool="gpu", slots=1, container={"gpus": "all"})
    cpu_spec = new_spec(pool="cpu", slots=1)
    gpu = InProcessManager(gpu_spec, emulator).start()
    cpu = InProcessManager(cpu_spec, emulator).start()
    try:
        wait_for(lambda: gpu.metric("ghr_pool_failures_total", kind="gpu") >= 1, 60, "the GPU refusal")
        health = gpu.manager.health.snapshot()
        assert not health["ok"] and health["last_error_kind"] == "gpu"
        assert "GPU" in health["last_error"] and "container.gpus" in health["last_error"]
        job = emulator.wait_job(emulator.enqueue_job("acme", cpu_spec["labels"], "echo cpu-ok", timeout=60),
                                timeout=90)
        assert job["conclusion"] == "success" and "cpu-ok" in job["output"]
        wait_for(lambda: online_idle(emulator, cpu_spec), 60, "the CPU pool refilled")
        assert cpu.manager.health.snapshot()["ok"]
        # The failed GPU starts are undone: between retries no half-made container or
        # registration lingers (during an attempt one may exist for a moment).
        wait_for(lambda: not pool_containers(docker_client, gpu_spec) and not pool_runners(emulator, gpu_spec),
                 30, "the GPU pool's failed starts undone")
    finally:
        gpu.stop()
        cpu.stop()
