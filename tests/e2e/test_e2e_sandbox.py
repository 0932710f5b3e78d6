"""The sandbox on the real engines: up, jobs in fresh containers, refresh, a live config change, destroy."""

from __future__ import annotations

import json
from typing import Any

import docker
import pytest
import yaml

from tests._support.polling import wait_for
from tests.e2e.e2e_helpers import write_stack_config

pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]

# Waits for a file the test creates in the job's container (bounded: 240 s), then succeeds.
GATED = "for i in $(seq 2400); do [ -e /tmp/go ] && break; sleep 0.1; done; [ -e /tmp/go ] && echo released"
FRESH = ('if [ -e /tmp/ghr-e2e-marker ]; then echo "DIRTY: an earlier job left a file"; exit 3; fi; '
         'touch /tmp/ghr-e2e-marker; echo "clean job on $(id -un)"')


def _runners(emu: Any, prefix: str) -> list[dict[str, Any]]:
    return [r for r in emu.runners("acme") if r["name"].startswith(prefix + "-")]


def _online(emu: Any, prefix: str) -> list[dict[str, Any]]:
    return [r for r in _runners(emu, prefix) if r["status"] == "online"]


def _registration_state(stack: Any) -> dict[str, Any]:
    (reg,) = [r for r in stack.resources() if r["type"].endswith("RunnerRegistration")]
    return reg["outputs"]


def _our_containers(stack_name: str) -> list[Any]:
    client = docker.from_env()
    return client.containers.list(all=True, filters={"label": f"ghr.stack={stack_name}"})


@pytest.fixture(scope="module")
def sandbox(program_stack, emulator):
    stack = program_stack("e2e")
    write_stack_config(stack, emulator, slots=2)
    return stack


def test_1_up_brings_runners_online(sandbox, emulator):
    """`pulumi up` from empty: images built, manager running, 2 runners online."""
    up_output = sandbox.up()
    prefix = f"{sandbox.stack}-cpu-local"
    wait_for(lambda: len(_online(emulator, prefix)) >= 2, 180, "2 runners online")
    outputs = sandbox.outputs()
    entry = outputs["pools"]["cpu"]["local"]
    assert entry["manager_container"]["state"] == "running"
    assert entry["runner_image_id"].startswith("sha256:")
    # `up` returned only once the pool was ready: its outputs carry the real counts, not a zero.
    summary = entry["registration"]
    assert summary["online"] == entry["slots"] == 2, summary
    assert summary["ready"] is True and summary["wait_seconds"] >= 0, summary
    assert emulator.admin_token not in sandbox.stored_text()
    assert emulator.admin_token not in up_output
    # The token reaches the manager as a file, not through its configuration: no container's
    # `docker inspect` (the manager's or a runner's) shows it.
    client = docker.from_env()
    for container in _our_containers(sandbox.stack):
        assert emulator.admin_token not in json.dumps(client.api.inspect_container(container.id)), container.name


def test_2_each_job_runs_in_a_fresh_container(sandbox, emulator):
    """Four jobs in a row each find a clean container (no file left by the job before)."""
    job_ids = [emulator.enqueue_job("acme", ["self-hosted", "e2e"], FRESH, timeout=120) for _ in range(4)]
    done = [emulator.wait_job(j, timeout=180) for j in job_ids]
    assert [d["conclusion"] for d in done] == ["success"] * 4, [d["output"] for d in done]
    assert len({d["runner_name"] for d in done}) == 4  # one registration, one container per job


def test_3_refresh_shows_counts(sandbox, emulator):
    """`pulumi refresh` records online / busy / offline counts in the registration's state."""
    prefix = f"{sandbox.stack}-cpu-local"
    wait_for(lambda: len(_online(emulator, prefix)) >= 2, 120, "2 runners online again")
    sandbox.refresh()
    outs = _registration_state(sandbox)
    assert outs["online"] >= 2 and outs["busy"] == 0 and outs["total"] >= 2


def _manager(stack_name: str) -> Any:
    return docker.from_env().containers.get(f"ghr-{stack_name}-cpu-manager")


def test_4_slots_and_label_change_is_applied_in_place(sandbox, emulator):
    """slots 2->3 and a new label while a job runs: the same manager reloads (no drain), `up` returns while
    the job still runs, the job is not interrupted, and the new runners carry the new label."""
    prefix = f"{sandbox.stack}-cpu-local"
    before = _manager(sandbox.stack)
    gated = emulator.enqueue_job("acme", ["self-hosted", "e2e"], GATED, timeout=300)
    runner = wait_for(lambda: emulator.job(gated)["runner_name"], 60, "the gated job to be taken")
    wait_for(lambda: emulator.job(gated)["status"] == "in_progress", 60, "the gated job to start")
    (job_box,) = docker.from_env().containers.list(filters={"label": f"ghr.runner-name={runner}"})
    # Same pool entry (its metricsPort too: a new port is a key the manager cannot reload).
    doc = yaml.safe_load((sandbox.dir / f"Pulumi.{sandbox.stack}.yaml").read_text())
    pool = {**doc["config"]["ghr:pools"][0], "slots": 3, "labels": ["self-hosted", "linux", "e2e", "e2e-new"]}
    write_stack_config(sandbox, emulator, pools=[pool])
    sandbox.up()
    # `up` did not wait for the job: it is still running, in the container it started in.
    assert emulator.job(gated)["status"] == "in_progress"
    job_box.reload()
    assert job_box.status == "running"
    after = _manager(sandbox.stack)
    assert after.id == before.id and after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]
    assert sandbox.outputs()["pools"]["cpu"]["local"]["manager_container"]["id"] == before.id
    assert "event=spec_reloaded" in after.logs().decode(errors="replace")
    job_box.exec_run(["touch", "/tmp/go"])
    result = emulator.wait_job(gated, timeout=120)
    assert result["conclusion"] == "success" and "released" in result["output"], result["output"]
    online = wait_for(lambda: (lambda o: o if len(o) >= 3 else None)(_online(emulator, prefix)),
                      180, "3 runners online")
    assert all("e2e-new" in [lb["name"] if isinstance(lb, dict) else lb for lb in r["labels"]] for r in online)
    job = emulator.wait_job(emulator.enqueue_job("acme", ["e2e-new"], FRESH, timeout=120), timeout=180)
    assert job["conclusion"] == "success"
    assert _manager(sandbox.stack).id == before.id


def test_5_destroy_leaves_nothing(sandbox, emulator):
    """`pulumi destroy`: no containers, no registrations, no images of the stack."""
    sandbox.destroy()
    prefix = f"{sandbox.stack}-cpu-local"
    assert _runners(emulator, prefix) == []
    assert _our_containers(sandbox.stack) == []
    client = docker.from_env()
    assert not [i for i in client.images.list() if any(sandbox.stack in t for t in i.tags)]
    assert json.dumps(sandbox.resources()) in ("[]", "null") or not sandbox.resources()
