"""The pool keeps its slots through crashes, killed containers, API storms and leftovers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests._support.polling import wait_for
from tests.manager.mgr_helpers import (
    InProcessManager,
    ProcessManager,
    online_idle,
    pool_containers,
    pool_runners,
    storm_then_recover,
)

GATED = "for i in $(seq 1200); do [ -e /tmp/go ] && break; sleep 0.1; done; [ -e /tmp/go ] && echo released"
MANAGER_ENDPOINTS = "/orgs/{org}/actions/runners"


def _open_gate(docker_client: Any, container_id: str) -> None:
    docker_client.containers.get(container_id).exec_run(["touch", "/tmp/go"])


def _manager_calls(emulator: Any) -> int:
    return sum(n for ep, n in emulator.request_counts().items() if MANAGER_ENDPOINTS in ep)


def test_manager_killed_mid_job_adopts_its_runner(new_spec: Any, emulator: Any, docker_client: Any,
                                                  tmp_path: Path) -> None:
    """kill -9 of the manager mid-job, then a restart: the job completes and no duplicate runner appears."""
    spec = new_spec(slots=1)
    first = ProcessManager(spec, tmp_path, emulator.admin_token).start()
    job = emulator.enqueue_job("acme", spec["labels"], GATED, timeout=120)
    wait_for(lambda: emulator.job(job)["status"] == "in_progress", 60, "the job to start")
    busy = pool_containers(docker_client, spec)
    assert len(busy) == 1
    first.kill9()
    second = ProcessManager(spec, tmp_path, emulator.admin_token).start()
    try:
        wait_for(lambda: (second.health() or {}).get("ok"), 30, "the restarted manager's first good pass")
        # Adopted, not duplicated: still the one busy container and its one registration.
        assert [c["Id"] for c in pool_containers(docker_client, spec)] == [busy[0]["Id"]]
        assert len(pool_runners(emulator, spec)) == 1
        _open_gate(docker_client, busy[0]["Id"])
        result = emulator.wait_job(job, timeout=60)
        assert result["conclusion"] == "success" and "released" in result["output"]
        fresh = wait_for(lambda: online_idle(emulator, spec), 60, "a fresh runner after the job")
        assert len(fresh) == 1 and fresh[0]["name"] != result["runner_name"]
        assert len(pool_containers(docker_client, spec)) == 1
    finally:
        assert second.terminate() == 0, second.log()


def test_killed_runner_is_deregistered_and_replaced(new_spec: Any, emulator: Any, docker_client: Any) -> None:
    """`docker kill` of a runner container: its registration is deleted and the slot refilled."""
    spec = new_spec(slots=1)
    manager = InProcessManager(spec, emulator).start()
    try:
        old = wait_for(lambda: online_idle(emulator, spec), 60, "an idle runner")[0]
        (box,) = pool_containers(docker_client, spec)
        docker_client.api.kill(box["Id"])
        new = wait_for(lambda: [r for r in online_idle(emulator, spec) if r["name"] != old["name"]], 60,
                       "a replacement runner")
        assert [r["name"] for r in pool_runners(emulator, spec)] == [new[0]["name"]]
        assert [c["Id"] for c in pool_containers(docker_client, spec)] != [box["Id"]]
        assert manager.metric("ghr_pool_runner_exits_total", outcome="failed") == 1
    finally:
        manager.stop()


def _max_passes(window: float, initial: float, maximum: float) -> int:
    """Most passes a manager can start within `window` s: each backoff is at least half its cap."""
    passes, elapsed, failures = 1, 0.0, 0
    while True:
        elapsed += min(maximum, initial * 2**failures) / 2
        failures += 1
        if elapsed > window:
            return passes
        passes += 1


def test_api_storm_is_backed_off_and_recovered_from(new_spec: Any, emulator: Any, docker_client: Any) -> None:
    """5xx and 429 from GitHub: calls stay within the backoff bound, then the pool recovers."""
    spec = new_spec(slots=1, backoff_initial=0.2, backoff_max=1.6, reconcile_interval=1.0)
    manager = InProcessManager(spec, emulator).start()
    try:
        old = wait_for(lambda: online_idle(emulator, spec), 60, "an idle runner")[0]
        before = _manager_calls(emulator)
        emulator.set_faults(errors=10_000, error_status=502, match=MANAGER_ENDPOINTS)
        (box,) = pool_containers(docker_client, spec)
        docker_client.api.kill(box["Id"])  # the manager now has work to do, against a failing API
        wait_for(lambda: manager.metric("ghr_pool_failures_total", kind="github") >= 3, 30, "three failed passes")
        emulator.set_faults(secondary=10_000, secondary_status=429, retry_after=1, match=MANAGER_ENDPOINTS)
        wait_for(lambda: manager.metric("ghr_pool_failures_total", kind="github") >= 5, 30, "two more failed passes")
        assert not manager.manager.health.snapshot()["ok"]
        emulator.clear_faults()
        storm_calls = _manager_calls(emulator) - before
        failures = manager.metric("ghr_pool_failures_total", kind="github")
        # Each failed pass makes one failing call, retried at most twice by the client.
        assert storm_calls <= 3 * (failures + 1), (storm_calls, failures)
        new = wait_for(lambda: [r for r in online_idle(emulator, spec) if r["name"] != old["name"]], 60,
                       "recovery: a replacement runner")
        assert len(new) == 1
        wait_for(lambda: manager.manager.health.snapshot()["ok"], 30, "health to turn ok again")
        assert manager.metric("ghr_pool_backoff_seconds") == 0
    finally:
        emulator.clear_faults()
        manager.stop()


def test_backoff_bound_holds_over_time(new_spec: Any, emulator: Any) -> None:
    """A long outage: the number of failed passes stays under the exponential bound for the time spent."""
    import time

    spec = new_spec(slots=1, backoff_initial=0.2, backoff_max=1.0, reconcile_interval=1.0)
    emulator.set_faults(errors=10_000, error_status=503, match=MANAGER_ENDPOINTS)
    before = _manager_calls(emulator)
    manager = InProcessManager(spec, emulator)
    started = time.monotonic()
    manager.start()
    try:
        wait_for(lambda: manager.metric("ghr_pool_failures_total", kind="github") >= 6, 30, "six failed passes")
        emulator.clear_faults()
        elapsed = time.monotonic() - started
        failures = manager.metric("ghr_pool_failures_total", kind="github")
        assert failures <= _max_passes(elapsed, 0.2, 1.0) + 1, (failures, elapsed)
        assert _manager_calls(emulator) - before <= 3 * (failures + 1)
        wait_for(lambda: online_idle(emulator, spec), 60, "recovery after the outage")
    finally:
        emulator.clear_faults()
        manager.stop()


def test_orphans_are_swept_both_ways(new_spec: Any, emulator: Any, docker_client: Any, runner_image: str) -> None:
    """A registration without a container and a container without a registration are both removed."""
    from github_client import GitHubClient, PatAuth, parse_scope

    spec = new_spec(slots=1)
    gh = GitHubClient(parse_scope(spec["scope_url"]), PatAuth(emulator.admin_token))
    orphan_reg = gh.generate_jitconfig(f"{spec['name_prefix']}-7-zzzzzz", spec["labels"]).runner
    labels = {"ghr.role": "runner", "ghr.pool": spec["pool"], "ghr.stack": spec["stack"], "ghr.host": "local",
              "ghr.slot": "0", "ghr.runner-id": "999999", "ghr.runner-name": f"{spec['name_prefix']}-0-yyyyyy"}
    orphan_box = docker_client.containers.run(runner_image, entrypoint=["sleep", "300"], labels=labels,
                                              name=f"{spec['name_prefix']}-0-yyyyyy", detach=True,
                                              network_mode="none")
    manager = InProcessManager(spec, emulator, orphan_grace=0.0).start()
    try:
        wait_for(lambda: orphan_reg.name not in [r["name"] for r in pool_runners(emulator, spec)], 30,
                 "the orphan registration to be deleted")
        wait_for(lambda: orphan_box.id not in [c["Id"] for c in pool_containers(docker_client, spec)], 30,
                 "the orphan container to be removed")
        wait_for(lambda: online_idle(emulator, spec), 60, "the slot to be filled")
        assert manager.metric("ghr_pool_orphans_removed_total", what="registration") >= 1
        assert manager.metric("ghr_pool_orphans_removed_total", what="container") >= 1
    finally:
        manager.stop()


def test_missing_image_is_reported_and_retried(new_spec: Any, emulator: Any) -> None:
    """A missing image is reported (health, metric) and retried, without minting runners for nothing."""
    spec = new_spec(slots=1, image="ghr-no-such-image:missing")
    before = emulator.request_counts().get("POST /orgs/{org}/actions/runners/generate-jitconfig", 0)
    manager = InProcessManager(spec, emulator).start()
    try:
        wait_for(lambda: manager.metric("ghr_pool_failures_total", kind="image") >= 2, 30, "two failed passes")
        health = manager.manager.health.snapshot()
        assert not health["ok"] and health["last_error_kind"] == "image"
        assert "ghr-no-such-image:missing" in health["last_error"]
        assert emulator.request_counts().get("POST /orgs/{org}/actions/runners/generate-jitconfig", 0) == before
    finally:
        manager.stop()


def test_bad_spec_is_refused_naming_the_field(tmp_path: Path, emulator: Any, runner_image: str) -> None:
    """`python -m pool_manager` exits 2 on an invalid spec, and the log names the field."""
    from tests.manager.mgr_helpers import make_spec

    spec = make_spec(emulator, runner_image, slots=0)
    proc = ProcessManager(spec, tmp_path, emulator.admin_token).start()
    assert proc.proc is not None and proc.proc.wait(30) == 2
    assert "field=slots" in proc.log()


def test_unknown_runtime_is_refused_naming_the_field(tmp_path: Path, emulator: Any, runner_image: str) -> None:
    """A runtime the engine does not have is refused at start with container.runtime named."""
    from tests.manager.mgr_helpers import make_spec

    spec = make_spec(emulator, runner_image, container={"runtime": "sysbox-runc"})
    proc = ProcessManager(spec, tmp_path, emulator.admin_token).start()
    assert proc.proc is not None and proc.proc.wait(30) == 2
    log = proc.log()
    assert "field=container.runtime" in log and "runc" in log
    assert json.loads(proc.spec_path.read_text())["container"]["runtime"] == "sysbox-runc"


def test_pool_refills_soon_after_a_storm_not_after_the_backoff(new_spec: Any, emulator: Any,
                                                              docker_client: Any) -> None:
    """After 15+ faults and a long backoff, the pool is full again before that backoff would have ended."""
    spec = new_spec(slots=2, backoff_initial=2.0, backoff_max=60.0, reconcile_interval=1.0)
    manager = InProcessManager(spec, emulator, probe_interval=1.0).start()
    try:
        took, backoff_left = storm_then_recover(emulator, docker_client, manager, spec, min_backoff=10.0)
        assert took < backoff_left, f"full again {took:.1f} s after the storm; the backoff had {backoff_left:.1f} s left"
        assert manager.metric("ghr_pool_recovery_probes_total", kind="github", result="ok") >= 1
        assert manager.metric("ghr_pool_backoff_seconds") == 0
    finally:
        emulator.clear_faults()
        manager.stop()


def test_probes_wait_for_retry_after(new_spec: Any, emulator: Any, docker_client: Any) -> None:
    """Rate limited with retry-after: no request of the manager's reaches GitHub before that time."""
    import time

    spec = new_spec(slots=1, backoff_initial=2.0, backoff_max=60.0, reconcile_interval=1.0)
    manager = InProcessManager(spec, emulator, probe_interval=0.5).start()
    try:
        wait_for(lambda: online_idle(emulator, spec), 60, "an idle runner")
        emulator.set_faults(secondary=10_000, secondary_status=429, retry_after=40, match=MANAGER_ENDPOINTS)
        (box,) = pool_containers(docker_client, spec)
        docker_client.api.kill(box["Id"])
        wait_for(lambda: manager.metric("ghr_pool_failures_total", kind="github") >= 1, 60, "a rate-limited pass")
        limited_at = time.time()
        calls = _manager_calls(emulator)
        time.sleep(5)  # ten probe intervals: none may be spent inside the retry-after window
        assert _manager_calls(emulator) == calls
        assert manager.metric("ghr_pool_recovery_probes_total", kind="github", result="failed") == 0
        assert manager.metric("ghr_pool_backoff_seconds") >= 40 - (time.time() - limited_at) - 5
    finally:
        emulator.clear_faults()
        manager.stop()


def test_slow_api_reads_degraded_not_starting(new_spec: Any, emulator: Any) -> None:
    """Under added API latency, /healthz leaves `starting` at the first reconcile and says `degraded`, with why."""
    spec = new_spec(slots=2)
    emulator.set_faults(latency=2.5, match=MANAGER_ENDPOINTS)
    manager = InProcessManager(spec, emulator).start()
    try:
        health = wait_for(lambda: (h := manager.manager.health.snapshot())["state"] != "starting" and h, 60,
                          "/healthz to leave starting")
        assert health["state"] == "degraded" and health["ok"], health
        assert "took" in health["degraded_reason"], health
    finally:
        emulator.clear_faults()
        manager.stop()
