"""A scale-set pool's decisions, against in-memory fakes of Docker, GitHub and the Actions service (fast).

Each test drives the manager's passes (`fast`, `full`) and its listener's turns (`poll`: long poll,
handle, acknowledge, until the queue is empty) directly, and reads the outcome off the fakes.
test_mgr_scaleset.py checks the same behaviour end to end on the real engine with the emulator.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from github_client import GitHubError
from pool_manager import load_spec
from pool_manager._drain import drain
from pool_manager._errors import PoolError
from pool_manager._scaleset import ScaleSetManager
from pool_manager.manager import PoolManager, make_manager
from tests.manager.fakes import FakeEngine, FakeGitHub, FakeScaleSets
from tests.manager.test_mgr_decisions import spec_data

PREFIX = "t1-cpu"


def ss_data(**changes: Any) -> dict[str, Any]:
    data = spec_data(scaling="scale_set", min_runners=0, max_runners=4)
    data.pop("slots")
    data.update(changes)
    return data


class SSPool:
    """One scale-set manager wired to the fakes; `state_dir` keeps its session id (a restart reads it)."""

    def __init__(self, github: FakeGitHub, engine: FakeEngine, scalesets: FakeScaleSets, state_dir: Path,
                 **spec: Any) -> None:
        self.github, self.engine, self.ss = github, engine, scalesets
        self.source = ss_data(**spec)
        self.mgr = ScaleSetManager(load_spec(self.source), github, scalesets=scalesets,  # type: ignore[arg-type]
                                   docker_factory=engine.client, spec_source=lambda: self.source,  # type: ignore[arg-type]
                                   github_probe=github.probe, probe_interval=0.05, state_dir=state_dir,
                                   session_bound=0.0)
        self.mgr.drain_poll = 0.02

    def poll(self, turns: int = 20) -> None:
        """Listener turns until the queue is empty (each: long poll, handle, acknowledge)."""
        for _ in range(turns):
            before = len(self.ss.acked)
            assert self.mgr.listener.step() == 0.0, self.mgr.listener.last_error
            if len(self.ss.acked) == before and not self.ss.pending:
                return

    def full(self) -> None:
        self.mgr.pass_once(full=True)

    def fast(self) -> None:
        self.mgr.pass_once(full=False)

    def sync(self) -> None:
        self.poll()
        self.fast()

    def names(self) -> list[str]:
        return sorted(c.labels["ghr.runner-name"] for c in self.engine.running())

    def metric(self, name: str, **labels: str) -> float:
        return float(self.mgr.metrics.registry.get_sample_value(name, labels or None) or 0.0)

    def run_job(self, runner: str) -> None:
        """The runner takes an acquired job, runs it and exits (the ephemeral runner's life)."""
        self.ss.start_job(runner)
        self.sync()
        self.ss.complete_job(runner)
        self.engine.finish_job(runner)


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def engine(github: FakeGitHub) -> FakeEngine:
    return FakeEngine(github)


@pytest.fixture
def scalesets(github: FakeGitHub) -> FakeScaleSets:
    return FakeScaleSets(github)


@pytest.fixture
def pool(github: FakeGitHub, engine: FakeEngine, scalesets: FakeScaleSets, tmp_path: Path) -> Callable[..., SSPool]:
    def make(**spec: Any) -> SSPool:
        return SSPool(github, engine, scalesets, tmp_path, **spec)
    return make


# -- the scale set and its session ------------------------------------------------------------


def test_one_scale_set_named_from_the_prefix_with_the_pools_labels(pool: Callable[..., SSPool],
                                                                  scalesets: FakeScaleSets) -> None:
    """The manager makes its scale set when missing (name from the prefix, the pool's labels and group)."""
    p = pool(labels=["self-hosted", "linux", "gpu-big"])
    p.full()
    (ss,) = scalesets.scale_sets.values()
    assert ss.name == PREFIX and sorted(ss.labels) == ["gpu-big", "linux", "self-hosted"] and ss.runner_group_id == 1
    p.full()
    assert scalesets.calls["create_scale_set"] == 1  # found, not made again


def test_a_reload_brings_the_scale_sets_labels_in_line(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    p.source = ss_data(labels=["self-hosted", "linux", "more"])
    assert p.mgr.reload()
    p.fast()
    (ss,) = scalesets.scale_sets.values()
    assert "more" in ss.labels and scalesets.calls["update_scale_set"] == 1


def test_a_scale_set_id_that_is_gone_is_reported_not_remade(pool: Callable[..., SSPool],
                                                            scalesets: FakeScaleSets) -> None:
    p = pool(scale_set_id=99)
    with pytest.raises(Exception, match="no longer exists"):
        p.full()
    assert scalesets.calls["create_scale_set"] == 0


def test_make_manager_picks_the_mode_and_a_fixed_pools_health_is_unchanged(github: FakeGitHub,
                                                                           engine: FakeEngine) -> None:
    fixed = make_manager(load_spec(spec_data()), github, docker_factory=engine.client)  # type: ignore[arg-type]
    assert type(fixed) is PoolManager
    assert "scale_set" not in fixed.health.snapshot()
    assert not any(m.name.startswith("ghr_scaleset") for m in fixed.metrics.registry.collect())


# -- desired = min(max, min + totalAssignedJobs) -------------------------------------------------


def test_scale_from_zero_and_back(pool: Callable[..., SSPool], github: FakeGitHub, scalesets: FakeScaleSets) -> None:
    """No job: no runner. One job: one runner, busy when it starts. Job done: back to zero, nothing left."""
    p = pool()
    p.full()
    p.poll()
    assert p.names() == [] and github.calls["generate_jitconfig"] == 0
    scalesets.enqueue(1)
    p.sync()
    (runner,) = p.names()
    assert runner.startswith(f"{PREFIX}-0-")
    assert scalesets.calls["acquire_jobs"] == 1 and scalesets.statistics().total_acquired_jobs == 1
    p.run_job(runner)
    p.sync()
    assert p.names() == [] and p.engine.containers == {}
    assert github.runners == {}
    assert p.metric("ghr_scaleset_desired_runners") == 0
    assert p.metric("ghr_scaleset_messages_handled_total", type="JobStarted") == 1
    assert p.metric("ghr_scaleset_job_start_latency_seconds_count") == 1


def test_a_burst_never_exceeds_max_runners(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    """12 jobs, max 4: 4 runners at most; each runner takes one job; all 12 run, none twice."""
    p = pool(max_runners=4)
    p.full()
    scalesets.enqueue(12)
    seen: list[str] = []
    for _ in range(12):
        p.sync()
        names = p.names()
        assert len(names) <= 4
        runner = next(n for n in names if n not in seen)
        seen.append(runner)
        p.run_job(runner)
    p.sync()
    assert len(set(seen)) == 12 and p.names() == []
    assert all(j.state == "done" for j in scalesets.jobs.values())
    assert max(p.mgr.listener.session.capacities) == 4  # type: ignore[union-attr]


def test_min_runners_stay_idle_and_a_job_adds_one(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    p = pool(min_runners=2, max_runners=4)
    p.full()
    p.sync()
    assert len(p.names()) == 2
    scalesets.enqueue(1)
    p.sync()
    assert len(p.names()) == 3
    p.run_job(p.names()[0])
    p.sync()
    assert len(p.names()) == 2  # the finished one went; no replacement beyond min


def test_message_counts_do_not_start_runners(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    """A job offered again after a missed acquire (JobCompleted canceled + JobAvailable) is one job: one runner."""
    p = pool()
    p.full()
    (rid,) = scalesets.enqueue(1)
    p.sync()
    scalesets.cancel_offer(rid)
    scalesets.cancel_offer(rid)
    p.sync()
    p.sync()
    assert len(p.names()) == 1


def test_a_failed_acquire_is_not_acknowledged_and_the_job_still_runs_once(pool: Callable[..., SSPool],
                                                                          scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    scalesets.enqueue(1)
    scalesets.fail_next("acquire_jobs")
    delay = p.mgr.listener.step()
    assert delay > 0 and scalesets.acked == []  # the message comes again
    p.sync()
    assert scalesets.calls["acquire_jobs"] == 2 and scalesets.statistics().total_acquired_jobs == 1
    assert len(p.names()) == 1


def test_a_redelivered_message_is_acknowledged_not_handled_again(pool: Callable[..., SSPool],
                                                                 scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    scalesets.enqueue(1)
    scalesets.fail_next("delete_message")
    assert p.mgr.listener.step() > 0  # handled (acquired), but the acknowledgement failed
    p.sync()
    assert scalesets.calls["acquire_jobs"] == 1
    assert p.metric("ghr_scaleset_queue_messages_total", outcome="redelivered") == 1
    assert p.metric("ghr_scaleset_messages_handled_total", type="JobAvailable") == 1
    assert len(p.names()) == 1


# -- busy runners, scale-down ---------------------------------------------------------------------


def test_scale_down_removes_only_idle_runners_that_never_started_a_job(pool: Callable[..., SSPool],
                                                                       github: FakeGitHub,
                                                                       scalesets: FakeScaleSets) -> None:
    p = pool(max_runners=4)
    p.full()
    ids = scalesets.enqueue(3)
    p.sync()
    assert len(p.names()) == 3
    busy = p.names()[0]
    scalesets.start_job(busy, ids[0])
    p.sync()
    for rid in ids[1:]:  # two jobs withdrawn before any runner took them
        scalesets.jobs[rid].state = "done"
        scalesets.post("JobCompleted", scalesets.jobs[rid], result="canceled", runnerId=0, runnerName="")
    p.sync()
    assert p.names() == [busy]
    assert github.by_name(busy) is not None
    assert p.metric("ghr_pool_runner_exits_total", outcome="scaled_down") == 2


def test_a_runner_github_says_is_busy_is_never_removed(pool: Callable[..., SSPool], github: FakeGitHub,
                                                       scalesets: FakeScaleSets) -> None:
    """JobStarted not seen yet, but GitHub refuses the delete (JobStillRunning): the runner stays, busy."""
    p = pool(max_runners=2)
    p.full()
    (rid,) = scalesets.enqueue(1)
    p.sync()
    (runner,) = p.names()
    github.set(runner, busy=True)  # it took the job; its JobStarted is still on its way
    scalesets.jobs[rid].state = "done"  # and the statistics say nothing is assigned
    scalesets.post("JobAssigned", scalesets.jobs[rid])
    p.sync()
    assert p.names() == [runner]
    assert p.mgr.demand.started(runner)


def test_job_completed_removes_its_container_even_before_it_exits(pool: Callable[..., SSPool],
                                                                  scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    scalesets.enqueue(1)
    p.sync()
    (runner,) = p.names()
    scalesets.start_job(runner)
    scalesets.complete_job(runner)
    p.sync()
    assert p.names() == [] and p.engine.containers == {}
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 1


def test_a_runner_that_exited_before_its_job_completed_message_is_not_replaced(pool: Callable[..., SSPool],
                                                                               scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    scalesets.enqueue(1)
    p.sync()
    (runner,) = p.names()
    scalesets.start_job(runner)
    p.sync()
    p.engine.finish_job(runner)  # exited; JobCompleted not yet in, statistics still say 1 assigned
    p.fast()
    assert p.names() == [] and p.engine.created == [runner]


# -- capacity ---------------------------------------------------------------------------------


def test_max_capacity_is_what_the_host_can_take(pool: Callable[..., SSPool], engine: FakeEngine,
                                               scalesets: FakeScaleSets) -> None:
    p = pool(max_runners=3)
    p.full()
    p.poll()
    assert scalesets.capacity == 3
    engine.images.clear()  # the runner image is gone: this host cannot start runners
    scalesets.enqueue(1)
    p.poll()
    with pytest.raises(Exception, match="image") as failed:
        p.fast()
    p.mgr._failed(failed.value)
    p.poll()
    assert scalesets.capacity == 0
    assert p.mgr.health.snapshot()["scale_set"]["max_capacity"] == 0
    engine.images.add("runner:1")
    p.fast()
    p.mgr._succeeded()
    p.poll()
    assert scalesets.capacity == 3


# -- restart ------------------------------------------------------------------------------------


def test_a_restarted_manager_adopts_replaces_its_session_and_handles_each_message_once(
        pool: Callable[..., SSPool], engine: FakeEngine, scalesets: FakeScaleSets, github: FakeGitHub) -> None:
    """kill -9 (no drain, no session delete) mid-burst; a new manager: same containers, old session
    deleted (not waited out), unacknowledged messages handled once, no runner started twice."""
    first = pool(max_runners=4)
    first.full()
    scalesets.enqueue(3)
    first.sync()
    assert len(first.names()) == 3
    scalesets.start_job(first.names()[0])
    scalesets.enqueue(2)  # messages the first manager never acknowledges
    old_session = first.mgr.listener.session.session.session_id  # type: ignore[union-attr]
    created = list(engine.created)
    # -- kill -9: the first manager is gone without a word --
    second = pool(max_runners=4)
    second.full()
    second.poll()
    assert old_session in scalesets.deleted_sessions
    assert len(scalesets.sessions) == 1
    second.fast()
    assert len(second.names()) == 4  # 3 adopted + 1: min(4, 0 + 5 assigned)
    assert engine.created[:3] == created and len(engine.created) == 4
    assert scalesets.statistics().total_acquired_jobs == 4  # every offer acquired (one of the 5 runs)
    assert second.mgr.demand.started(first.names()[0])


def test_a_stored_session_of_another_scale_set_is_deleted_there(pool: Callable[..., SSPool],
                                                                 scalesets: FakeScaleSets, tmp_path: Path) -> None:
    (tmp_path / f"{PREFIX}.session.json").write_text(json.dumps({"scale_set_id": 5, "session_id": "gone"}))
    p = pool()
    p.full()
    p.poll()
    assert scalesets.calls["delete_session"] == 1 and len(scalesets.sessions) == 1


# -- bad input and failures ----------------------------------------------------------------------


def test_messages_it_does_not_understand_are_logged_and_acknowledged(pool: Callable[..., SSPool],
                                                                     scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    a = scalesets.inject({"messageType": "SomethingNew", "body": "{}"})
    b = scalesets.inject({"messageType": "RunnerScaleSetJobMessages", "body": "not json ["})
    c = scalesets.inject({"messageType": "RunnerScaleSetJobMessages",
                          "body": json.dumps([{"messageType": "JobTeleported", "runnerRequestId": 1}, 42])})
    scalesets.enqueue(1)
    p.sync()
    assert {a, b, c} <= set(scalesets.acked)
    assert len(p.names()) == 1  # the loop went on to the real job
    assert p.metric("ghr_scaleset_messages_handled_total", type="unknown") >= 2
    assert p.mgr.listener.state == "live"


def test_poll_failures_back_off_within_bounds_and_keep_the_session(pool: Callable[..., SSPool],
                                                                   scalesets: FakeScaleSets) -> None:
    p = pool(backoff_initial=0.2, backoff_max=2.0)
    p.full()
    p.poll()
    session = p.mgr.listener.session
    scalesets.fail_next("get_message", 6)
    delays = [p.mgr.listener.step() for _ in range(6)]
    assert all(0.1 <= d <= 2.0 for d in delays) and delays[-1] >= 1.0
    assert p.mgr.listener.session is session
    assert p.metric("ghr_scaleset_session_reconnects_total", reason="error") == 6
    scalesets.enqueue(1)
    p.sync()
    assert len(p.names()) == 1 and p.mgr.listener.state == "live"


def test_a_lost_session_is_opened_again(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    p.poll()
    scalesets.expire_sessions()
    assert p.mgr.listener.step() > 0
    assert p.metric("ghr_scaleset_session_reconnects_total", reason="session_lost") == 1
    scalesets.enqueue(1)
    p.sync()
    assert len(scalesets.sessions) == 1 and len(p.names()) == 1


def test_a_session_held_elsewhere_is_retried_reported_and_never_deleted(pool: Callable[..., SSPool],
                                                                       scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    ss_id = p.mgr.scale_set_id()
    scalesets.sessions["someone-else"] = ss_id
    delay = p.mgr.listener.step()
    assert 0 < delay <= 2.0
    health = p.mgr.health.snapshot()
    assert health["state"] == "session" and not health["ok"] and "409" in health["last_error"]
    assert health["scale_set"]["session"] == "conflict"
    assert "someone-else" in scalesets.sessions and scalesets.deleted_sessions == []
    del scalesets.sessions["someone-else"]  # it expired
    p.poll()
    p.full()
    p.mgr._succeeded()
    health = p.mgr.health.snapshot()
    assert health["scale_set"]["session"] == "live" and health["state"] in ("ok", "degraded")


def test_nothing_the_pool_did_not_create_is_deleted(pool: Callable[..., SSPool], github: FakeGitHub,
                                                    scalesets: FakeScaleSets) -> None:
    other = scalesets.create_scale_set("someone-elses", labels=["x"])
    foreign = github.register("laptop-runner", status="online")
    p = pool(orphan_grace=0.0)
    p.full()
    scalesets.enqueue(1)
    p.sync()
    p.mgr.drain()
    p.mgr.listener.close()
    assert github.runners == {foreign.id: foreign}
    assert other.id in scalesets.scale_sets and scalesets.calls["delete_scale_set"] == 0
    assert scalesets.sessions == {}  # its own session went with the drain


# -- drain ----------------------------------------------------------------------------------------


def test_drain_reports_zero_capacity_and_lets_busy_runners_finish(pool: Callable[..., SSPool],
                                                                  scalesets: FakeScaleSets) -> None:
    p = pool(min_runners=1)
    p.full()
    p.sync()
    scalesets.enqueue(1)
    p.sync()
    busy = p.names()[0]
    scalesets.start_job(busy)
    p.sync()
    p.mgr.stop.set()
    assert p.mgr.capacity() == 0

    def finish() -> None:
        scalesets.complete_job(busy)
        p.engine.finish_job(busy)

    timer = threading.Timer(0.2, finish)
    timer.start()
    cut = drain(p.mgr)
    timer.join()
    assert cut == [] and p.names() == []


def test_health_and_metrics_show_the_demand(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    p = pool(min_runners=1, max_runners=3)
    p.full()
    scalesets.enqueue(5)
    p.sync()
    snap = p.mgr.health.snapshot()["scale_set"]
    assert snap["desired"] == 3 and snap["assigned_jobs"] == 5 and snap["session"] == "live"
    assert snap["min_runners"] == 1 and snap["max_runners"] == 3 and snap["scale_set_name"] == PREFIX
    assert p.metric("ghr_scaleset_desired_runners") == 3
    assert p.metric("ghr_scaleset_jobs", state="assigned") == 5
    assert p.metric("ghr_scaleset_session_up") == 1
    assert len(p.names()) == 3


def test_a_github_outage_in_a_pass_keeps_capacity(pool: Callable[..., SSPool], github: FakeGitHub,
                                                  scalesets: FakeScaleSets) -> None:
    p = pool()
    p.full()
    try:
        scalesets.fail_next("get_scale_set_by_name")
        p.mgr._ss_synced = False
        p.fast()
    except GitHubError as exc:
        p.mgr._failed(exc)
    assert p.mgr.capacity() == 4


def test_capacity_stays_zero_while_the_image_is_missing_even_with_nothing_to_start(
        pool: Callable[..., SSPool], engine: FakeEngine) -> None:
    """No flapping: a pass with nothing to start still checks the image while the host is blocked."""
    p = pool(min_runners=0)
    p.full()
    engine.images.clear()
    p.mgr._failed(PoolError("image", "image 'runner:1' is not on this Docker engine"))
    with pytest.raises(PoolError):
        p.fast()
    assert p.mgr.capacity() == 0
    engine.images.add("runner:1")
    p.fast()
    p.mgr._succeeded()
    assert p.mgr.capacity() == 4


def test_a_reload_applies_min_and_max_in_place(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    p = pool(min_runners=0, max_runners=4)
    p.full()
    p.sync()
    assert p.names() == []
    p.source = ss_data(min_runners=3, max_runners=4)
    assert p.mgr.reload()
    p.fast()
    assert len(p.names()) == 3
    p.source = ss_data(min_runners=1, max_runners=2)
    assert p.mgr.reload()
    p.fast()
    assert len(p.names()) == 1 and all(int(c.labels["ghr.slot"]) < 2 for c in p.engine.running())
    assert p.mgr.health.snapshot()["scale_set"]["max_runners"] == 2
    p.source = ss_data(min_runners=1, max_runners=2, scale_set_name="another")
    assert not p.mgr.reload()  # which scale set: a new manager


def test_a_rate_limited_poll_waits_for_the_retry_time(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    from datetime import UTC, datetime, timedelta

    from github_client import RateLimited

    p = pool(backoff_initial=0.2, backoff_max=2.0)
    p.full()
    p.poll()
    retry_at = datetime.now(UTC) + timedelta(seconds=30)
    scalesets.fail_next("get_message", 1, RateLimited("secondary rate limit", status=403, retry_at=retry_at))
    assert 25 <= p.mgr.listener.step() <= 31


def test_a_scale_set_deleted_under_the_manager(pool: Callable[..., SSPool], scalesets: FakeScaleSets) -> None:
    """Found by name: made again. Named by id (the Pulumi program's): reported on the next pass, never made."""
    p = pool()
    p.full()
    p.poll()
    first = p.mgr.scale_set_id()
    scalesets.scale_sets.clear()
    scalesets.expire_sessions()
    p.mgr.listener.step()  # the session is gone
    p.mgr.listener.step()  # and the scale set: forgotten
    p.poll()
    assert p.mgr.scale_set_id() != first and len(scalesets.scale_sets) == 1
    q = pool(scale_set_id=p.mgr.scale_set_id(), min_runners=0)
    scalesets.scale_sets.clear()
    q.mgr.listener.step()
    with pytest.raises(PoolError, match="no longer exists"):
        q.full()
    assert scalesets.scale_sets == {}
