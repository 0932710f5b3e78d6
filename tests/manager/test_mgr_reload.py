"""SIGHUP: the manager takes a new spec in place; no drain, busy runners are never touched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests._support.polling import wait_for
from tests.manager.mgr_helpers import ProcessManager, online_idle, pool_containers, pool_runners, runner_labels

GATED = "for i in $(seq 1200); do [ -e /tmp/go ] && break; sleep 0.1; done; [ -e /tmp/go ] && echo released"
HASH = "ghr.spec-hash"


def _open_gate(docker_client: Any, container_id: str) -> None:
    docker_client.containers.get(container_id).exec_run(["touch", "/tmp/go"])


def _by_runner(docker_client: Any, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["Labels"]["ghr.runner-name"]: c for c in pool_containers(docker_client, spec)}


def _reloaded(manager: ProcessManager, since: float) -> dict[str, Any] | None:
    """The manager's /healthz once a reload after `since` (a /healthz `now`) was applied."""
    health = manager.health() or {}
    return health if (health.get("spec_reloaded_at") or 0) > since else None


def _now(manager: ProcessManager) -> float:
    return float(wait_for(lambda: (manager.health() or {}).get("now"), 30, "the manager's /healthz"))


@pytest.fixture
def started(new_spec: Any, emulator: Any, tmp_path: Path) -> Any:
    """A manager process on a fresh spec, waited for until its slots are idle; terminated afterwards."""
    made: list[ProcessManager] = []

    def start(token: str | None = None, **kwargs: Any) -> ProcessManager:
        spec = new_spec(**kwargs)
        manager = ProcessManager(spec, tmp_path, token or emulator.admin_token).start()
        made.append(manager)
        wait_for(lambda: len(online_idle(emulator, spec)) == spec["slots"], 90, f"{spec['slots']} idle runners")
        return manager

    yield start
    for manager in made:
        if manager.proc is not None and manager.proc.poll() is None:
            manager.terminate()


def test_slots_up_then_down_keeps_the_original_runner(started: Any, emulator: Any, docker_client: Any) -> None:
    """slots 1 -> 3 starts two runners, 3 -> 1 removes them (registration and container); slot 0 is untouched."""
    manager = started(slots=1)
    spec = manager.spec
    (first,) = pool_containers(docker_client, spec)
    since = _now(manager)
    manager.rewrite(slots=3)
    manager.hup()
    assert wait_for(lambda: _reloaded(manager, since), 30, "the reload")["slots"] == 3
    wait_for(lambda: len(online_idle(emulator, spec)) == 3, 90, "3 idle runners")
    assert len(pool_containers(docker_client, spec)) == 3
    since = _now(manager)
    manager.rewrite(slots=1)
    manager.hup()
    wait_for(lambda: _reloaded(manager, since), 30, "the second reload")
    wait_for(lambda: len(pool_runners(emulator, spec)) == 1 and len(pool_containers(docker_client, spec)) == 1,
             60, "the two surplus runners removed")
    assert [c["Id"] for c in pool_containers(docker_client, spec)] == [first["Id"]]
    assert "ghr_pool_spec_reloads_total 2.0" in manager.metrics()
    assert manager.proc.poll() is None and "event=drain_started" not in manager.log()  # type: ignore[union-attr]


def test_slots_down_leaves_busy_surplus_to_finish_and_does_not_refill(started: Any, emulator: Any,
                                                                       docker_client: Any) -> None:
    """slots 2 -> 1 with both runners busy: neither is touched; the surplus slot is not refilled after its job."""
    manager = started(slots=2)
    spec = manager.spec
    jobs = [emulator.enqueue_job("acme", spec["labels"], GATED, timeout=120) for _ in range(2)]
    wait_for(lambda: all(emulator.job(j)["status"] == "in_progress" for j in jobs), 60, "both jobs running")
    busy = {c["Labels"]["ghr.slot"]: c["Id"] for c in pool_containers(docker_client, spec)}
    since = _now(manager)
    manager.rewrite(slots=1)
    manager.hup()
    wait_for(lambda: _reloaded(manager, since), 30, "the reload")
    assert {c["Labels"]["ghr.slot"]: c["Id"] for c in pool_containers(docker_client, spec)} == busy
    assert all(docker_client.containers.get(cid).status == "running" for cid in busy.values())
    _open_gate(docker_client, busy["1"])
    wait_for(lambda: busy["1"] not in [c["Id"] for c in pool_containers(docker_client, spec)], 60,
             "the surplus runner's container to be removed after its job")
    _open_gate(docker_client, busy["0"])
    results = [emulator.wait_job(j, timeout=60) for j in jobs]
    assert [r["conclusion"] for r in results] == ["success", "success"]
    fresh = wait_for(lambda: online_idle(emulator, spec), 60, "a fresh runner in slot 0")
    assert len(fresh) == 1
    # The passes that refilled slot 0 came after slot 1 had exited: slot 1 stays empty.
    wait_for(lambda: [c["Labels"]["ghr.slot"] for c in pool_containers(docker_client, spec)] == ["0"], 30,
             "only slot 0 left")
    assert len(pool_runners(emulator, spec)) == 1


def test_new_label_replaces_idle_runners_and_waits_for_the_busy_one(started: Any, emulator: Any,
                                                                      docker_client: Any) -> None:
    """A new label: idle runners come back with it; the busy runner's job completes, its container untouched."""
    manager = started(slots=2)
    spec = manager.spec
    job = emulator.enqueue_job("acme", spec["labels"], GATED, timeout=180)
    busy_name = wait_for(lambda: emulator.job(job)["runner_name"], 60, "the job to be taken")
    wait_for(lambda: emulator.job(job)["status"] == "in_progress", 60, "the job to start")
    busy = _by_runner(docker_client, spec)[busy_name]
    old_hash = busy["Labels"][HASH]
    since = _now(manager)
    manager.rewrite(labels=[*spec["labels"], "reloaded"])
    manager.hup()
    new_hash = wait_for(lambda: _reloaded(manager, since), 30, "the reload")["spec_hash"]
    assert new_hash != old_hash

    def idle_with_label() -> list[dict[str, Any]]:
        return [r for r in online_idle(emulator, spec) if "reloaded" in runner_labels(r)]

    wait_for(idle_with_label, 90, "an idle runner with the new label")
    boxes = _by_runner(docker_client, spec)
    assert boxes[busy_name]["Id"] == busy["Id"] and boxes[busy_name]["State"] == "running"
    assert [b["Labels"][HASH] for n, b in boxes.items() if n != busy_name] == [new_hash]
    assert emulator.job(job)["status"] == "in_progress"
    _open_gate(docker_client, busy["Id"])
    result = emulator.wait_job(job, timeout=60)
    assert result["conclusion"] == "success" and "released" in result["output"]
    wait_for(lambda: len(idle_with_label()) == 2, 90, "two idle runners with the new label")
    assert {c["Labels"][HASH] for c in pool_containers(docker_client, spec)} == {new_hash}
    assert len(pool_runners(emulator, spec)) == 2
    later = emulator.wait_job(emulator.enqueue_job("acme", ["reloaded"], "echo ok", timeout=60), timeout=90)
    assert later["conclusion"] == "success"


def test_invalid_spec_is_refused_and_the_pool_runs_on(started: Any, emulator: Any, docker_client: Any) -> None:
    """slots 0 on reload: refused (field named on /healthz, metrics, log); the old spec runs jobs; a good reload clears it."""
    manager = started(slots=1)
    spec = manager.spec
    (before,) = pool_containers(docker_client, spec)
    manager.rewrite(slots=0)
    manager.hup()
    health = wait_for(lambda: (lambda h: h if h.get("spec_reload_ok") is False else None)(manager.health() or {}),
                      30, "the refused reload on /healthz")
    assert health["spec_reload_field"] == "slots" and health["slots"] == 1, health
    assert "ghr_pool_spec_reload_failures_total 1.0" in manager.metrics()
    assert "event=spec_reload_refused" in manager.log() and "field=slots" in manager.log()
    assert [c["Id"] for c in pool_containers(docker_client, spec)] == [before["Id"]]
    result = emulator.wait_job(emulator.enqueue_job("acme", spec["labels"], "echo still", timeout=60), timeout=90)
    assert result["conclusion"] == "success"
    wait_for(lambda: online_idle(emulator, spec), 60, "the slot refilled under the old spec")
    since = _now(manager)
    manager.rewrite(slots=2)
    manager.hup()
    health = wait_for(lambda: _reloaded(manager, since), 30, "the good reload")
    assert health["spec_reload_ok"] is True and health["spec_reload_error"] is None
    wait_for(lambda: len(online_idle(emulator, spec)) == 2, 90, "2 idle runners")


def test_new_image_missing_on_the_engine_keeps_the_old_runners(started: Any, docker_client: Any) -> None:
    """A reload to an image the engine lacks: the pass fails (kind image) and no runner is retired for it."""
    manager = started(slots=1)
    before = [c["Id"] for c in pool_containers(docker_client, manager.spec)]
    since = _now(manager)
    manager.rewrite(image="ghr-runner-test:missing")
    manager.hup()
    wait_for(lambda: _reloaded(manager, since), 30, "the reload")
    health = wait_for(lambda: (lambda h: h if h.get("last_error_kind") == "image" else None)(manager.health() or {}),
                      30, "the image failure on /healthz")
    assert "ghr-runner-test:missing" in health["last_error"]
    assert [c["Id"] for c in pool_containers(docker_client, manager.spec)] == before


@pytest.mark.parametrize(("change", "field"), [
    ({"name_prefix": "other-prefix"}, "name_prefix"),
    ({"metrics_port": 1}, "metrics_port"),
    ("not json", "spec"),
    ({"credentials": {"type": "nope"}}, "credentials"),
])
def test_reload_refuses_what_cannot_change_in_place(started: Any, docker_client: Any, change: Any,
                                                    field: str) -> None:
    """A key the manager cannot take on, an unreadable file or bad credentials: refused, naming the field."""
    manager = started(slots=1)
    before = [c["Id"] for c in pool_containers(docker_client, manager.spec)]
    if change == "not json":
        manager.spec_path.write_text("{not json")
    elif "credentials" in change:
        manager.write_credentials(change["credentials"])
    else:
        manager.rewrite(**change)
    manager.hup()
    health = wait_for(lambda: (lambda h: h if h.get("spec_reload_ok") is False else None)(manager.health() or {}),
                      30, "the refused reload")
    assert health["spec_reload_field"] == field, health
    assert health["ok"] is True and [c["Id"] for c in pool_containers(docker_client, manager.spec)] == before


def test_new_credentials_file_is_used_after_reload(started: Any, emulator: Any, docker_client: Any) -> None:
    """A rotated token: after SIGHUP the manager mints runners with the new one, the old one revoked."""
    old_token = emulator.add_pat()
    manager = started(token=old_token, slots=1)
    spec = manager.spec
    new_token = emulator.add_pat()
    since = _now(manager)
    manager.write_credentials({"type": "pat", "token": new_token})
    manager.hup()
    wait_for(lambda: _reloaded(manager, since), 30, "the reload")
    emulator.remove_pat(old_token)
    (box,) = wait_for(lambda: pool_containers(docker_client, spec), 60, "a runner container")
    docker_client.api.kill(box["Id"])
    fresh = wait_for(lambda: [c for c in pool_containers(docker_client, spec) if c["Id"] != box["Id"]], 60,
                     "a replacement minted with the new token")
    assert fresh and "credentials" in manager.log()


def test_restart_with_changed_spec_adopts_and_converges(new_spec: Any, emulator: Any, docker_client: Any,
                                                        tmp_path: Path) -> None:
    """kill -9, new labels and slots 2 -> 3 in the file, restart: the busy runner is adopted and finishes; the rest converge."""
    spec = new_spec(slots=2)
    first = ProcessManager(spec, tmp_path, emulator.admin_token).start()
    wait_for(lambda: len(online_idle(emulator, spec)) == 2, 90, "2 idle runners")
    job = emulator.enqueue_job("acme", spec["labels"], GATED, timeout=180)
    busy_name = wait_for(lambda: emulator.job(job)["runner_name"], 60, "the job to be taken")
    wait_for(lambda: emulator.job(job)["status"] == "in_progress", 60, "the job to start")
    busy = _by_runner(docker_client, spec)[busy_name]
    first.kill9()
    first.rewrite(slots=3, labels=[*spec["labels"], "restarted"])
    second = ProcessManager(first.spec, tmp_path, emulator.admin_token).start()
    try:
        new_hash = wait_for(lambda: (second.health() or {}).get("spec_hash"), 30, "the new manager's /healthz")
        assert new_hash != busy["Labels"][HASH]

        def idle_new() -> list[dict[str, Any]]:
            return [r for r in online_idle(emulator, spec) if "restarted" in runner_labels(r)]

        wait_for(lambda: len(idle_new()) == 2, 90, "two idle runners of the new spec")
        boxes = _by_runner(docker_client, spec)
        assert boxes[busy_name]["Id"] == busy["Id"] and len(boxes) == 3
        _open_gate(docker_client, busy["Id"])
        result = emulator.wait_job(job, timeout=60)
        assert result["conclusion"] == "success" and "released" in result["output"]
        wait_for(lambda: len(idle_new()) == 3, 90, "three idle runners of the new spec")
        assert {c["Labels"][HASH] for c in pool_containers(docker_client, spec)} == {new_hash}
        assert len(pool_runners(emulator, spec)) == 3
    finally:
        assert second.terminate() == 0, second.log()
