"""Scale-set pools on the real Docker engine, with the emulator's Actions service and its stand-in runner.

Scale from zero and back, a burst within max_runners, min_runners kept idle, a manager killed (-9) in
the middle of a burst and started again, faults on the message endpoints, and a job offered again after
a missed acquire. Every job must run exactly once; nothing may be left: container, registration, session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support.polling import wait_for
from tests.manager.mgr_helpers import (
    InProcessManager,
    ProcessManager,
    live_sessions,
    online_idle,
    pool_containers,
    pool_runners,
    scale_set_of,
)

POLL_WAIT = 3.0  # the emulator holds a message poll this long before 202 (GitHub: about 50 s)


@pytest.fixture(autouse=True)
def short_queue(emulator: Any) -> Iterator[None]:
    before = emulator.options()
    emulator.set_options(message_poll_wait=POLL_WAIT, scale_set_session_timeout=60.0)
    yield
    emulator.clear_faults()
    emulator.set_options(**before)


def ss_spec(new_spec: Any, *, min_runners: int = 0, max_runners: int = 2, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = new_spec(slots=max_runners, scaling="scale_set", min_runners=min_runners,
                                    max_runners=max_runners, **extra)
    return spec


def start(spec: dict[str, Any], emulator: Any, tmp_path: Path, **options: Any) -> InProcessManager:
    options.setdefault("state_dir", tmp_path)
    manager = InProcessManager(spec, emulator, **options).start()
    wait_for(lambda: len(live_sessions(emulator, spec)) == 1, 30, "the manager's message session")
    return manager


class Peak:
    """The most running runner containers of a pool seen at once (sampled every 50 ms)."""

    def __init__(self, docker_client: Any, spec: dict[str, Any]) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(docker_client, spec), daemon=True)
        self._thread.start()

    def _run(self, docker_client: Any, spec: dict[str, Any]) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, len(pool_containers(docker_client, spec, all=False)))
            except Exception:
                pass

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def assert_nothing_left(emulator: Any, docker_client: Any, spec: dict[str, Any]) -> None:
    wait_for(lambda: pool_containers(docker_client, spec) == [], 30, "no runner container left")
    wait_for(lambda: pool_runners(emulator, spec) == [], 30, "no registration left")
    assert live_sessions(emulator, spec) == []
    ss = scale_set_of(emulator, spec)
    assert ss is not None and ss["sessions"] == [], ss


def test_scale_from_zero_and_back_to_zero(new_spec: Any, emulator: Any, docker_client: Any, tmp_path: Path) -> None:
    """An empty pool: one job brings one runner container; after the job, zero containers and registrations."""
    spec = ss_spec(new_spec, min_runners=0, max_runners=2)
    manager = start(spec, emulator, tmp_path)
    try:
        time.sleep(1.0)
        assert pool_containers(docker_client, spec) == [] and pool_runners(emulator, spec) == []
        job = emulator.enqueue_job("acme", spec["labels"], "echo hello from the scale set", timeout=120)
        result = emulator.wait_job(job, timeout=120)
        assert result["conclusion"] == "success", result["output"]
        assert result["runner_name"].startswith(spec["name_prefix"] + "-0-")
        assert result["scale_set_id"] == scale_set_of(emulator, spec)["id"]  # type: ignore[index]
        wait_for(lambda: pool_containers(docker_client, spec) == [], 30, "the runner container gone after its job")
        wait_for(lambda: pool_runners(emulator, spec) == [], 30, "its registration gone")
        assert manager.metric("ghr_pool_runner_starts_total") == 1
        assert manager.metric("ghr_scaleset_messages_handled_total", type="JobStarted") == 1
        assert manager.metric("ghr_scaleset_job_start_latency_seconds_count") == 1
        assert manager.metric("ghr_scaleset_desired_runners") == 0
        assert manager.manager.health.snapshot()["scale_set"]["session"] == "live"
    finally:
        manager.stop()
    assert_nothing_left(emulator, docker_client, spec)


def test_a_burst_of_12_jobs_stays_within_max_runners(new_spec: Any, emulator: Any, docker_client: Any,
                                                      tmp_path: Path) -> None:
    """12 jobs, max_runners 4: never more than 4 runner containers; each job runs once, each on its own runner."""
    spec = ss_spec(new_spec, min_runners=0, max_runners=4)
    manager = start(spec, emulator, tmp_path)
    peak = Peak(docker_client, spec)
    try:
        jobs = [emulator.enqueue_job("acme", spec["labels"], "sleep 1; echo done", timeout=300) for _ in range(12)]
        results = [emulator.wait_job(j, timeout=300) for j in jobs]
        assert [r["conclusion"] for r in results] == ["success"] * 12, [r["output"] for r in results]
        assert len({r["runner_name"] for r in results}) == 12
        wait_for(lambda: pool_containers(docker_client, spec) == [], 30, "zero containers after the burst")
        assert manager.metric("ghr_scaleset_messages_handled_total", type="JobStarted") == 12
        assert manager.metric("ghr_scaleset_messages_handled_total", type="JobCompleted") >= 12
        assert manager.metric("ghr_pool_runner_starts_total") <= 12 + 4  # no runner per message
    finally:
        top = peak.stop()
        manager.stop()
    assert 1 <= top <= 4, top
    assert_nothing_left(emulator, docker_client, spec)


def test_min_runners_keeps_two_idle_runners(new_spec: Any, emulator: Any, docker_client: Any, tmp_path: Path) -> None:
    spec = ss_spec(new_spec, min_runners=2, max_runners=3)
    manager = start(spec, emulator, tmp_path)
    peak = Peak(docker_client, spec)
    try:
        wait_for(lambda: len(online_idle(emulator, spec)) == 2, 60, "two idle runners at min_runners 2")
        for _ in range(2):
            result = emulator.wait_job(emulator.enqueue_job("acme", spec["labels"], "sleep 1", timeout=120), 120)
            assert result["conclusion"] == "success", result["output"]
            wait_for(lambda: len(online_idle(emulator, spec)) == 2 and len(pool_containers(docker_client, spec)) == 2,
                     60, "two idle runners again after the job")
    finally:
        top = peak.stop()
        manager.stop()
    assert top <= 3
    assert_nothing_left(emulator, docker_client, spec)


def test_kill_9_mid_burst_then_restart_runs_every_job_once(new_spec: Any, emulator: Any, docker_client: Any,
                                                           tmp_path: Path) -> None:
    """The manager dies (-9) with jobs running and waiting; a new one adopts the containers, replaces the old
    session at once (no wait for it to expire), and every job completes exactly once; nothing is left."""
    spec = ss_spec(new_spec, min_runners=0, max_runners=3)
    first = ProcessManager(spec, tmp_path, emulator.admin_token).start()
    wait_for(lambda: len(live_sessions(emulator, spec)) == 1, 30, "the first manager's session")
    old_session = live_sessions(emulator, spec)[0]["sessionId"]
    jobs = [emulator.enqueue_job("acme", spec["labels"], "sleep 4; echo ran", timeout=300) for _ in range(8)]
    wait_for(lambda: sum(1 for j in jobs if emulator.job(j)["status"] == "in_progress") >= 2, 90,
             "jobs running", interval=0.1)
    first.kill9()
    running = {j: emulator.job(j)["runner_name"] for j in jobs if emulator.job(j)["status"] == "in_progress"}
    restarted_at = time.monotonic()
    second = ProcessManager(spec, tmp_path, emulator.admin_token).start()
    try:
        sessions = wait_for(lambda: live_sessions(emulator, spec) if any(
            s["sessionId"] != old_session for s in live_sessions(emulator, spec)) else None, 30, "a new session")
        assert [s["sessionId"] for s in sessions] != [old_session]
        assert time.monotonic() - restarted_at < 30  # replaced, not waited out (the timeout is 60 s)
        results = [emulator.wait_job(j, timeout=300) for j in jobs]
        assert [r["conclusion"] for r in results] == ["success"] * 8, [r["output"] for r in results]
        assert all(r["output"].count("ran") == 1 for r in results)
        assert len({r["runner_name"] for r in results}) == 8  # one runner per job, no job on two runners
        for j, runner in running.items():  # adopted: the jobs running at the kill finished on their runners
            assert emulator.job(j)["runner_name"] == runner
        wait_for(lambda: pool_containers(docker_client, spec) == [], 60, "zero containers after the burst")
        health = second.health()
        assert health is not None and health["scale_set"]["session"] == "live", health
        assert "scaleset_session_replaced" in second.log()
    finally:
        assert second.terminate() == 0, second.log()
    assert_nothing_left(emulator, docker_client, spec)


def test_message_endpoint_faults_reconnect_within_backoff(new_spec: Any, emulator: Any, docker_client: Any,
                                                          tmp_path: Path) -> None:
    """5xx, dropped connections and a session conflict on the message endpoints: the manager polls again
    within its backoff bounds, the conflict shows on /healthz, and a job queued meanwhile runs once."""
    from github_client import GitHubClient, PatAuth, parse_scope
    from github_client._scaleset import ScaleSetClient

    backoff_max = 2.0
    spec = ss_spec(new_spec, min_runners=0, max_runners=2, backoff_initial=0.2, backoff_max=backoff_max)
    manager = start(spec, emulator, tmp_path, session_bound=1.0)
    mgr = manager.manager
    try:
        # 5xx and dropped connections on the queue (the client retries twice inside; these outlast that)
        emulator.set_faults(errors=6, error_status=503, match="/messages")
        job = emulator.enqueue_job("acme", spec["labels"], "echo after 5xx", timeout=120)
        wait_for(lambda: manager.metric("ghr_scaleset_session_reconnects_total", reason="error") >= 1, 30,
                 "a failed poll")
        result = emulator.wait_job(job, timeout=120)
        assert result["conclusion"] == "success"
        emulator.set_faults(drop=6, match="/messages")
        failed = manager.metric("ghr_scaleset_session_reconnects_total", reason="error")
        job = emulator.enqueue_job("acme", spec["labels"], "echo after drops", timeout=120)
        wait_for(lambda: manager.metric("ghr_scaleset_session_reconnects_total", reason="error") > failed, 30,
                 "a dropped poll")
        cleared = time.monotonic()
        assert emulator.wait_job(job, timeout=120)["conclusion"] == "success"
        emulator.clear_faults()
        wait_for(lambda: mgr.listener.state == "live", backoff_max + POLL_WAIT + 5, "live again")
        assert time.monotonic() - cleared < 60
        # a session conflict: another listener holds the scale set when ours is lost
        gh = GitHubClient(parse_scope(f"{emulator.url}/acme"), PatAuth(emulator.admin_token), max_retries=0)
        other = ScaleSetClient(gh)
        ss_id = mgr.scale_set_id()
        ours = live_sessions(emulator, spec)[0]["sessionId"]
        other.delete_session(ss_id, ours)
        squatter = other.create_session(ss_id, "someone-else")
        wait_for(lambda: manager.manager.health.snapshot()["state"] == "session", 30, "the conflict on /healthz")
        snap = mgr.health.snapshot()
        assert not snap["ok"] and "409" in snap["last_error"] and snap["scale_set"]["session"] == "conflict"
        other.delete_session(ss_id, squatter.session_id)
        freed = time.monotonic()
        wait_for(lambda: mgr.listener.state == "live", backoff_max + POLL_WAIT + 5, "the session back")
        assert time.monotonic() - freed <= backoff_max + 2
        assert manager.metric("ghr_scaleset_session_reconnects_total", reason="conflict") >= 1
        wait_for(lambda: mgr.health.snapshot()["ok"], 30, "healthy again")
        job = emulator.enqueue_job("acme", spec["labels"], "echo after conflict", timeout=120)
        assert emulator.wait_job(job, timeout=120)["conclusion"] == "success"
    finally:
        emulator.clear_faults()
        manager.stop()
    assert_nothing_left(emulator, docker_client, spec)


def test_a_job_offered_again_after_a_missed_acquire_runs_once(new_spec: Any, emulator: Any, docker_client: Any,
                                                             tmp_path: Path) -> None:
    """acquirejobs fails until the offer times out: GitHub cancels it and offers the job again; it runs once."""
    spec = ss_spec(new_spec, min_runners=0, max_runners=2, backoff_initial=0.5, backoff_max=2.0)
    emulator.set_options(acquire_timeout=2.0, reassign_delay=0.5)
    manager = start(spec, emulator, tmp_path)
    try:
        emulator.set_faults(errors=9, error_status=502, match="acquirejobs")
        job = emulator.enqueue_job("acme", spec["labels"], "echo acquired at last", timeout=120)
        wait_for(lambda: emulator.job(job)["cancelled_assignments"] >= 1, 30, "the first offer cancelled")
        emulator.clear_faults()
        result = emulator.wait_job(job, timeout=120)
        assert result["conclusion"] == "success" and result["output"].count("acquired at last") == 1
        assert result["cancelled_assignments"] >= 1
        wait_for(lambda: pool_containers(docker_client, spec) == [], 30, "zero containers after the job")
        assert manager.metric("ghr_scaleset_messages_handled_total", type="JobStarted") == 1
    finally:
        manager.stop()
    assert_nothing_left(emulator, docker_client, spec)


def test_expired_tokens_and_a_lost_session_are_survived(new_spec: Any, emulator: Any, docker_client: Any,
                                                       tmp_path: Path) -> None:
    """Queue token and admin token expired, then the session dropped by the service: the manager refreshes,
    reconnects, opens a new session, and the next job runs."""
    spec = ss_spec(new_spec, min_runners=0, max_runners=1, backoff_initial=0.2, backoff_max=2.0)
    manager = start(spec, emulator, tmp_path)
    mgr = manager.manager
    try:
        ss_id = mgr.scale_set_id()
        emulator.expire_queue_tokens(ss_id)
        emulator.expire_admin_tokens()
        job = emulator.enqueue_job("acme", spec["labels"], "echo after expiry", timeout=120)
        assert emulator.wait_job(job, timeout=120)["conclusion"] == "success"
        first = live_sessions(emulator, spec)[0]["sessionId"]
        assert emulator.end_scale_set_sessions(ss_id) == 1
        wait_for(lambda: live_sessions(emulator, spec) and live_sessions(emulator, spec)[0]["sessionId"] != first,
                 30, "a new session")
        job = emulator.enqueue_job("acme", spec["labels"], "echo after the session loss", timeout=120)
        assert emulator.wait_job(job, timeout=120)["conclusion"] == "success"
        assert manager.metric("ghr_scaleset_session_reconnects_total", reason="session_lost") >= 1
    finally:
        manager.stop()
    assert_nothing_left(emulator, docker_client, spec)


def test_nothing_the_pool_did_not_create_is_touched(new_spec: Any, emulator: Any, docker_client: Any,
                                                    tmp_path: Path) -> None:
    """Another scale set with its session, and a runner registered by someone else, outlive the pool's manager
    (frequent full passes, no orphan grace, a job, a drain)."""
    from github_client import GitHubClient, PatAuth, parse_scope
    from github_client._scaleset import ScaleSetClient

    spec = ss_spec(new_spec, min_runners=1, max_runners=2)
    gh = GitHubClient(parse_scope(f"{emulator.url}/acme"), PatAuth(emulator.admin_token), max_retries=0)
    other = ScaleSetClient(gh)
    foreign_set = other.create_scale_set(f"{spec['stack']}-foreign", labels=[f"{spec['stack']}-foreign"])
    foreign_session = other.create_session(foreign_set.id, "someone-else")
    foreign_runner = gh.generate_jitconfig(f"{spec['stack']}-laptop", ["self-hosted"]).runner
    try:
        manager = start(spec, emulator, tmp_path, orphan_grace=0.0, full_interval=0.5)
        try:
            wait_for(lambda: len(online_idle(emulator, spec)) == 1, 60, "the min runner")
            job = emulator.enqueue_job("acme", spec["labels"], "true", timeout=120)
            assert emulator.wait_job(job, timeout=120)["conclusion"] == "success"
            time.sleep(1.5)  # a few more full passes
        finally:
            manager.stop()
        assert_nothing_left(emulator, docker_client, spec)
        assert any(r["id"] == foreign_runner.id for r in emulator.runners())
        assert foreign_session.session_id in [s["sessionId"] for s in emulator.scale_set_sessions()]
        assert any(s["id"] == foreign_set.id for s in emulator.scale_sets())
    finally:
        other.delete_session(foreign_set.id, foreign_session.session_id)
        other.delete_scale_set(foreign_set.id, missing_ok=True)
        gh.delete_runner(foreign_runner.id, missing_ok=True)
