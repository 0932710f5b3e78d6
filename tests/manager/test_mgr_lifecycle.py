"""Drain on SIGTERM, and the manager running in its own image beside the runners."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests._support.polling import wait_for
from tests.manager.mgr_helpers import ProcessManager, online_idle, pool_containers, pool_runners

GATED = "for i in $(seq 1200); do [ -e /tmp/go ] && break; sleep 0.1; done; [ -e /tmp/go ] && echo released"


def test_sigterm_drains_idle_now_and_busy_after_their_job(new_spec: Any, emulator: Any, docker_client: Any,
                                                         tmp_path: Path) -> None:
    """SIGTERM: idle runners go at once (registration and container); the busy one finishes; then exit 0."""
    spec = new_spec(slots=2)
    manager = ProcessManager(spec, tmp_path, emulator.admin_token).start()
    wait_for(lambda: len(online_idle(emulator, spec)) == 2, 60, "two idle runners")
    job = emulator.enqueue_job("acme", spec["labels"], GATED, timeout=120)
    runner = wait_for(lambda: emulator.job(job)["runner_name"], 60, "the job to be taken")
    manager.proc.send_signal(15)  # type: ignore[union-attr]
    wait_for(lambda: [r["name"] for r in pool_runners(emulator, spec)] == [runner], 30, "idle runners removed")
    wait_for(lambda: [c["Labels"]["ghr.runner-name"] for c in pool_containers(docker_client, spec)] == [runner],
             30, "idle containers removed")
    assert manager.proc.poll() is None  # type: ignore[union-attr]  # still waiting for the busy one
    busy = pool_containers(docker_client, spec)[0]
    docker_client.containers.get(busy["Id"]).exec_run(["touch", "/tmp/go"])
    assert emulator.wait_job(job, timeout=60)["conclusion"] == "success"
    assert manager.terminate(timeout=60) == 0, manager.log()
    assert pool_containers(docker_client, spec) == [] and pool_runners(emulator, spec) == []
    assert "event=drain_finished" in manager.log()


@pytest.mark.timeout(900)
def test_manager_image_runs_a_pool(new_spec: Any, emulator: Any, docker_client: Any, manager_image: str,
                                   tmp_path: Path) -> None:
    """The manager image, host networking and the Docker socket: jobs run, /healthz answers, stop drains."""
    spec = new_spec(slots=1)
    spec["metrics_port"] = port = __import__("tests.manager.mgr_helpers", fromlist=["free_port"]).free_port()
    (tmp_path / "pool.json").write_text(json.dumps(spec))
    token = emulator.add_pat()
    manager = docker_client.containers.run(
        manager_image, detach=True, network_mode="host", name=f"{spec['stack']}-manager",
        labels={"ghr.role": "manager", "ghr.stack": spec["stack"], "ghr.pool": spec["pool"]},
        environment={"GHR_GITHUB_TOKEN": token},
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                 str(tmp_path / "pool.json"): {"bind": "/etc/ghr/pool.json", "mode": "ro"}})
    try:
        import requests

        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()["ok"]
            except (requests.RequestException, ValueError, KeyError):
                return False

        wait_for(healthy, 60, "the manager container's /healthz")
        job = emulator.wait_job(emulator.enqueue_job("acme", spec["labels"], "id -u", timeout=60), timeout=90)
        assert job["conclusion"] == "success" and "1001" in job["output"]
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        # Counted by kind (and, since issue 12, by status class and fault kind too).
        assert 'ghr_github_api_calls_total{fault="none",kind="generate_jitconfig",status="2xx"}' in metrics
        wait_for(lambda: online_idle(emulator, spec), 60, "a fresh runner after the job")
        manager.stop(timeout=60)
        assert manager.wait(timeout=60)["StatusCode"] == 0
        logs = manager.logs().decode()
        assert "event=drain_finished" in logs and token not in logs
        assert pool_containers(docker_client, spec) == [] and pool_runners(emulator, spec) == []
    finally:
        manager.remove(force=True)
