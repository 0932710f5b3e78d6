"""A scale-set pool (minRunners 0) on the real engines: `up` returns with the message session live, a job
brings a runner container that is gone after it, `refresh` records the scale set's statistics, maxRunners and
labels change in place, `destroy` leaves no scale set, session, runner or container."""

from __future__ import annotations

from typing import Any

import docker
import pytest

from tests._support.polling import wait_for
from tests.e2e.e2e_helpers import write_stack_config

pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]

# Waits for a file the test creates in the job's container (bounded: 240 s), then succeeds.
GATED = "for i in $(seq 2400); do [ -e /tmp/go ] && break; sleep 0.1; done; [ -e /tmp/go ] && echo released"
LABELS = ["self-hosted", "linux", "e2e-ss"]


def _pool(emu: Any, stack: Any, *, max_runners: int, labels: list[str], metrics_port: int | None = None) -> dict[str, Any]:
    """The helper's fixed pool turned into a scale-set pool (same image, container and metrics port)."""
    write_stack_config(stack, emu, labels=labels)
    import yaml

    doc = yaml.safe_load((stack.dir / f"Pulumi.{stack.stack}.yaml").read_text())
    pool = dict(doc["config"]["ghr:pools"][0])
    del pool["slots"]
    pool.update(scaling="scaleSet", minRunners=0, maxRunners=max_runners, readyTimeout=120)
    if metrics_port is not None:
        pool["metricsPort"] = metrics_port  # a new port is a key the manager cannot reload
    write_stack_config(stack, emu, pools=[pool])
    return pool


def _runner_boxes(stack_name: str) -> list[Any]:
    return docker.from_env().containers.list(
        all=True, filters={"label": [f"ghr.stack={stack_name}", "ghr.pool=cpu", "ghr.role=runner"]})


def _our_containers(stack_name: str) -> list[Any]:
    return docker.from_env().containers.list(all=True, filters={"label": f"ghr.stack={stack_name}"})


def _scale_set(emu: Any, name: str) -> dict[str, Any] | None:
    return next((s for s in emu.scale_sets("acme") if s["name"] == name), None)


def _live_sessions(emu: Any, scale_set_id: int) -> list[dict[str, Any]]:
    return [s for s in emu.scale_set_sessions() if s["scaleSetId"] == scale_set_id and s["live"]]


def _resource(stack: Any, kind: str) -> dict[str, Any]:
    (res,) = [r for r in stack.resources() if r["type"].endswith(kind)]
    return res


def _manager(stack_name: str) -> Any:
    return docker.from_env().containers.get(f"ghr-{stack_name}-cpu-manager")


@pytest.fixture(scope="module")
def scaleset_stack(program_stack, emulator):
    # GitHub holds a message poll up to 50 s; a short hold keeps the max-capacity check quick.
    emulator.set_message_poll_wait(2.0)
    stack = program_stack("ss")
    stack.pool = _pool(emulator, stack, max_runners=2, labels=LABELS)  # type: ignore[attr-defined]
    return stack


def test_1_up_returns_once_the_session_is_live(scaleset_stack, emulator):
    """minRunners 0: `up` waits for the manager's live message session, not for any runner."""
    stack = scaleset_stack
    stack.up()
    name = f"{stack.stack}-cpu-local"
    # No wait here: `up` returned only once the session was live.
    scale_set = _scale_set(emulator, name)
    assert scale_set is not None, emulator.scale_sets()
    assert _live_sessions(emulator, scale_set["id"]), emulator.scale_set_sessions()
    assert [lb["name"] for lb in scale_set["labels"]] == LABELS
    assert _runner_boxes(stack.stack) == []
    entry = stack.outputs()["pools"]["cpu"]["local"]
    assert entry["scaling"] == "scaleSet" and entry["min_runners"] == 0 and entry["max_runners"] == 2
    assert entry["scale_set"]["id"] == scale_set["id"] and entry["scale_set"]["owned"] is True
    assert entry["registration"]["ready"] is True and entry["registration"]["total"] == 0
    assert entry["manager_container"]["state"] == "running"
    assert emulator.admin_token not in stack.stored_text()


def test_2_a_job_runs_in_a_new_container_and_refresh_shows_the_statistics(scaleset_stack, emulator):
    """A queued job brings one runner container; while it runs, `refresh` records the scale set's statistics
    (one registered, busy runner; one running job); after it, the container and its runner are gone."""
    stack = scaleset_stack
    name = f"{stack.stack}-cpu-local"
    assert _runner_boxes(stack.stack) == []
    job = emulator.enqueue_job("acme", ["self-hosted", "e2e-ss"], GATED, timeout=300)
    (box,) = wait_for(lambda: _runner_boxes(stack.stack), 90, "a runner container for the job")
    wait_for(lambda: emulator.job(job)["status"] == "in_progress", 90, "the job to start")
    assert emulator.job(job)["runner_name"] == box.labels["ghr.runner-name"]
    assert emulator.job(job)["runner_name"].startswith(name + "-")

    def busy() -> dict[str, Any] | None:
        s = _scale_set(emulator, name)
        return s if s and s["statistics"]["totalBusyRunners"] == 1 else None

    wait_for(busy, 30, "the scale set to count one busy runner")
    stack.refresh()
    outs = _resource(stack, "RunnerScaleSet")["outputs"]
    stats = outs["statistics"]
    assert stats["total_busy_runners"] == 1 and stats["total_registered_runners"] == 1, stats
    assert stats["total_running_jobs"] + stats["total_assigned_jobs"] >= 1, stats
    assert outs["busy"] == 1 and outs["total"] == 1, outs

    box.exec_run(["touch", "/tmp/go"])
    result = emulator.wait_job(job, timeout=120)
    assert result["conclusion"] == "success" and "released" in result["output"], result["output"]
    wait_for(lambda: not _runner_boxes(stack.stack), 90, "the runner container to be removed")
    wait_for(lambda: not [r for r in emulator.runners("acme") if r["name"].startswith(name + "-")], 60,
             "the finished runner to be unregistered")
    assert len(wait_for(lambda: _live_sessions(emulator, _scale_set(emulator, name)["id"]), 30, "a session")) == 1


def test_3_max_runners_and_labels_change_in_place(scaleset_stack, emulator):
    """maxRunners 2->3 and a new label: same scale set id, same manager container (reloaded, not restarted)."""
    stack = scaleset_stack
    name = f"{stack.stack}-cpu-local"
    before = _manager(stack.stack)
    before_set = _scale_set(emulator, name)
    assert before_set is not None
    before_id = _resource(stack, "RunnerScaleSet")["id"]
    _pool(emulator, stack, max_runners=3, labels=[*LABELS, "e2e-ss-new"], metrics_port=stack.pool["metricsPort"])
    stack.up()
    after_set = _scale_set(emulator, name)
    assert after_set is not None and after_set["id"] == before_set["id"]
    assert [lb["name"] for lb in after_set["labels"]] == [*LABELS, "e2e-ss-new"]
    assert _resource(stack, "RunnerScaleSet")["id"] == before_id
    after = _manager(stack.stack)
    assert after.id == before.id and after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]
    # The manager reloads its spec on the SIGHUP `up` sent: logged once its loop has taken it.
    wait_for(lambda: "event=spec_reloaded" in after.logs().decode(errors="replace"), 30, "the manager's reload")
    entry = stack.outputs()["pools"]["cpu"]["local"]
    assert entry["max_runners"] == 3 and entry["scale_set"]["id"] == before_set["id"]
    assert entry["manager_container"]["id"] == before.id
    # The manager now offers the new maximum on its message polls.
    wait_for(lambda: (_scale_set(emulator, name) or {}).get("max_capacity") == 3, 30, "max capacity 3 reported")


def test_4_destroy_leaves_nothing(scaleset_stack, emulator):
    """`pulumi destroy`: no scale set, no message session, no registered runner, no container of the stack."""
    stack = scaleset_stack
    name = f"{stack.stack}-cpu-local"
    set_id = _scale_set(emulator, name)["id"]
    stack.destroy()
    assert _scale_set(emulator, name) is None
    assert [s for s in emulator.scale_set_sessions() if s["scaleSetId"] == set_id] == []
    assert [r for r in emulator.runners("acme") if r["name"].startswith(name)] == []
    assert _our_containers(stack.stack) == []
    assert not stack.resources()
