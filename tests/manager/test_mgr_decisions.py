"""The pool manager's decisions, against in-memory fakes of Docker and GitHub (fast, no engine).

Each test drives the manager's passes directly (`pass_once`, `drain`, the run loop where the
loop itself is the subject) and reads the outcome off the fakes. The real-engine suites in this
folder check the same behaviour end to end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from github_client import RateLimited, RequestEvent
from pool_manager import load_spec
from pool_manager._drain import drain
from pool_manager._recovery import Recovery
from pool_manager.manager import PoolError, PoolManager
from pool_manager.metrics import Metrics
from tests.manager.fakes import EngineDown, FakeEngine, FakeGitHub

PREFIX = "t1-cpu"


def spec_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pool": "cpu", "stack": "t1", "host": "local", "scope_url": "https://github.com/acme", "api_url": None,
        "name_prefix": PREFIX, "labels": ["self-hosted", "linux"], "runner_group": "Default", "slots": 2,
        "image": "runner:1", "container": {"network_mode": "none"}, "drain_timeout": 5, "metrics_port": 0,
        "reconcile_interval": 30.0, "backoff_initial": 0.2, "backoff_max": 2.0,
    }
    data.update(changes)
    return data


class Pool:
    """One manager wired to the fakes; `source` is what a reload (SIGHUP) reads."""

    def __init__(self, github: FakeGitHub, engine: FakeEngine, orphan_grace: float, **spec: Any) -> None:
        self.github, self.engine = github, engine
        self.source = spec_data(**spec)
        self.mgr = PoolManager(load_spec(self.source), github, docker_factory=engine.client,  # type: ignore[arg-type]
                               orphan_grace=orphan_grace, spec_source=lambda: self.source,
                               github_probe=github.probe, probe_interval=0.05)
        self.mgr.drain_poll = 0.02

    def full(self) -> None:
        self.mgr.pass_once(full=True)

    def fast(self) -> None:
        self.mgr.pass_once(full=False)

    def engine_crash(self) -> None:
        """The watcher loses the event stream, the engine dies without a word (a pass fails) and comes back;
        the watcher is not back yet. The next pass finds what the outage left."""
        self.mgr._engine_went_away()
        self.engine.stop(crash=True)
        with pytest.raises(EngineDown):
            self.fast()
        self.engine.start_engine()

    def respec(self, **changes: Any) -> None:
        self.source = spec_data(**{**self.source, **changes})
        assert self.mgr.reload()

    def names(self) -> list[str]:
        """Runner names of the live containers, by slot."""
        live = sorted((c for c in self.engine.running() if c.role == "runner"), key=lambda c: int(c.labels["ghr.slot"]))
        return [c.labels["ghr.runner-name"] for c in live]

    def slots(self) -> list[int]:
        return sorted(int(c.labels["ghr.slot"]) for c in self.engine.running() if c.role == "runner")

    def metric(self, name: str, **labels: str) -> float:
        return float(self.mgr.metrics.registry.get_sample_value(name, labels or None) or 0.0)

    def health(self) -> dict[str, Any]:
        return self.mgr.health.snapshot()


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def engine(github: FakeGitHub) -> FakeEngine:
    return FakeEngine(github)


@pytest.fixture
def pool(github: FakeGitHub, engine: FakeEngine) -> Callable[..., Pool]:
    def make(orphan_grace: float = 30.0, **spec: Any) -> Pool:
        return Pool(github, engine, orphan_grace, **spec)
    return make


# -- fill ----------------------------------------------------------------------------------


def test_fills_every_slot_with_a_registered_runner(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """A full pass on an empty pool starts one runner per slot, each registered and online."""
    p = pool(slots=3)
    p.full()
    assert p.slots() == [0, 1, 2]
    assert all(github.by_name(n) is not None and github.by_name(n).online for n in p.names())  # type: ignore[union-attr]
    assert all(n.startswith(f"{PREFIX}-") for n in p.names())
    assert p.metric("ghr_pool_runner_starts_total") == 3


def test_a_full_pool_starts_nothing(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """Passes over a full pool mint no registration and start no container."""
    p = pool(slots=2)
    p.full()
    minted = github.calls["generate_jitconfig"]
    p.full()
    p.fast()
    assert github.calls["generate_jitconfig"] == minted == 2


def test_the_jit_config_is_handed_in_before_start(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """Each runner container gets its JIT config in /run/ghr before it starts."""
    p = pool(slots=1)
    p.full()
    (box,) = engine.running()
    assert list(box.files) == ["/run/ghr"]


def test_missing_image_mints_nothing(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """A pool whose image is not on the engine fails the pass with kind `image` before minting."""
    p = pool(slots=1, image="runner:missing")
    with pytest.raises(PoolError) as err:
        p.full()
    assert err.value.kind == "image" and github.calls["generate_jitconfig"] == 0


# -- exits ---------------------------------------------------------------------------------


def test_finished_runner_is_replaced_on_a_fast_pass(pool: Callable[..., Pool], engine: FakeEngine,
                                                    github: FakeGitHub) -> None:
    """Exit 0 (job done): removed as `done`, no GitHub delete (it is gone there), slot refilled."""
    p = pool(slots=1)
    p.full()
    (old,) = p.names()
    engine.finish_job(old)
    p.fast()
    (new,) = p.names()
    assert new != old and github.calls["delete_runner"] == 0
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 1


def test_killed_runner_is_deregistered_and_replaced(pool: Callable[..., Pool], engine: FakeEngine,
                                                    github: FakeGitHub) -> None:
    """A non-zero exit: its registration is deleted, it counts as `failed`, the slot is refilled."""
    p = pool(slots=1)
    p.full()
    (old,) = p.names()
    engine.kill(old)
    p.fast()
    assert github.by_name(old) is None and p.names() != [old]
    assert p.metric("ghr_pool_runner_exits_total", outcome="failed") == 1


def test_never_started_container_counts_as_unstarted(pool: Callable[..., Pool], engine: FakeEngine,
                                                     github: FakeGitHub) -> None:
    """A container left in `created` (manager died mid-start) is removed as `unstarted`."""
    p = pool(slots=1)
    jit = github.generate_jitconfig(f"{PREFIX}-0-abcdef", ["x"])
    labels = {"ghr.role": "runner", "ghr.pool": "cpu", "ghr.stack": "t1", "ghr.host": "local", "ghr.slot": "0",
              "ghr.runner-id": str(jit.runner.id), "ghr.runner-name": jit.runner.name}
    engine.client().containers.create("runner:1", f"{PREFIX}-0-abcdef", labels)
    p.full()
    assert p.metric("ghr_pool_runner_exits_total", outcome="unstarted") == 1
    assert github.by_name(jit.runner.name) is None and len(p.names()) == 1


# -- retire stale --------------------------------------------------------------------------


def test_idle_runners_of_an_older_spec_are_retired(pool: Callable[..., Pool]) -> None:
    """A reload that changes the runners' shape replaces idle runners with new-spec ones."""
    p = pool(slots=2)
    p.full()
    old = set(p.names())
    p.respec(labels=["self-hosted", "linux", "big"])
    p.full()
    assert len(p.names()) == 2 and not old & set(p.names())
    assert p.metric("ghr_pool_runner_exits_total", outcome="respec") == 2


def test_busy_runner_of_an_older_spec_finishes_first(pool: Callable[..., Pool], engine: FakeEngine,
                                                     github: FakeGitHub) -> None:
    """A busy old-spec runner keeps its slot until its job ends; then the slot gets a new-spec runner."""
    p = pool(slots=2)
    p.full()
    busy, idle = p.names()
    github.set(busy, busy=True)
    p.respec(labels=["self-hosted", "linux", "big"])
    p.full()
    assert busy in p.names() and idle not in p.names()
    engine.finish_job(busy)
    p.fast()
    assert busy not in p.names() and len(p.names()) == 2


def test_nothing_is_retired_while_the_new_image_is_missing(pool: Callable[..., Pool]) -> None:
    """A new spec whose image is not on the engine: the old runners stay, the pass reports `image`."""
    p = pool(slots=2)
    p.full()
    old = p.names()
    p.respec(image="runner:2")
    with pytest.raises(PoolError) as err:
        p.full()
    assert err.value.kind == "image" and p.names() == old


def test_unchanged_spec_reload_retires_nothing(pool: Callable[..., Pool]) -> None:
    """Changing only `slots`-independent tuning (reconcile_interval) keeps every runner."""
    p = pool(slots=2)
    p.full()
    old = p.names()
    p.respec(reconcile_interval=10.0)
    p.full()
    assert p.names() == old


# -- surplus -------------------------------------------------------------------------------


def test_slots_down_removes_idle_surplus_at_once(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """slots 3 -> 1: the runners of slots 1 and 2 are deregistered and removed as `surplus`."""
    p = pool(slots=3)
    p.full()
    keep, *gone = p.names()
    p.respec(slots=1)
    p.full()
    assert p.names() == [keep] and all(github.by_name(n) is None for n in gone)
    assert p.metric("ghr_pool_runner_exits_total", outcome="surplus") == 2


def test_busy_surplus_finishes_its_job_and_is_not_refilled(pool: Callable[..., Pool], engine: FakeEngine,
                                                           github: FakeGitHub) -> None:
    """A busy runner in a slot no longer in the spec keeps running; once done, its slot stays empty."""
    p = pool(slots=2)
    p.full()
    first, busy = p.names()
    github.set(busy, busy=True)
    p.respec(slots=1)
    p.full()
    assert p.names() == [first, busy]
    engine.finish_job(busy)
    p.fast()
    assert p.names() == [first] and p.slots() == [0]


# -- orphans -------------------------------------------------------------------------------


def test_registration_without_container_is_deleted_after_grace(pool: Callable[..., Pool],
                                                               github: FakeGitHub) -> None:
    """A pool registration with no container is deleted, and counted, once older than the grace."""
    p = pool(slots=1, orphan_grace=0.0)
    orphan = github.register(f"{PREFIX}-5-zzzzzz", status="offline")
    p.full()
    assert github.by_name(orphan.name) is None
    assert p.metric("ghr_pool_orphans_removed_total", what="registration") == 1


def test_freshly_minted_registration_is_spared_within_grace(pool: Callable[..., Pool], engine: FakeEngine,
                                                            github: FakeGitHub) -> None:
    """A registration this manager just minted survives a sweep while its container is on its way."""
    p = pool(slots=1, orphan_grace=30.0)
    p.full()
    (name,) = p.names()
    engine.containers.clear()  # as if the container were not listed yet
    p.mgr._sweep([], {name: github.by_name(name)})  # type: ignore[dict-item]
    assert github.by_name(name) is not None


def test_busy_and_foreign_registrations_are_never_swept(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """Busy registrations and names outside the pool's pattern are left alone."""
    p = pool(slots=1, orphan_grace=0.0)
    busy = github.register(f"{PREFIX}-5-bbbbbb", busy=True)
    foreign = github.register("someone-elses-runner")
    p.full()
    assert github.by_name(busy.name) is not None and github.by_name(foreign.name) is not None


def test_container_without_registration_is_removed_after_grace(pool: Callable[..., Pool], engine: FakeEngine,
                                                               github: FakeGitHub) -> None:
    """A pool container whose registration is gone is removed as an orphan, then the slot refilled."""
    p = pool(slots=1, orphan_grace=0.0)
    p.full()
    (name,) = p.names()
    del github.runners[github.by_name(name).id]  # type: ignore[union-attr]
    p.full()
    assert p.metric("ghr_pool_orphans_removed_total", what="container") == 1
    assert len(p.names()) == 1 and p.names() != [name]


def test_young_container_without_registration_is_kept(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """Within the grace, a container without a registration is not an orphan yet."""
    p = pool(slots=1, orphan_grace=30.0)
    p.full()
    (name,) = p.names()
    del github.runners[github.by_name(name).id]  # type: ignore[union-attr]
    p.full()
    assert p.names() == [name]


# -- drain ---------------------------------------------------------------------------------


def test_drain_removes_idle_runners_at_once(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """Drain with no job running: every runner and registration goes, none is cut off."""
    p = pool(slots=3)
    p.full()
    started = time.monotonic()
    p.mgr.drain()
    assert time.monotonic() - started < 2.0
    assert p.names() == [] and github.runners == {}
    assert p.metric("ghr_pool_runner_exits_total", outcome="drained") == 3
    assert p.health()["state"] == "stopped"


def test_drain_waits_for_a_busy_runner_to_finish(pool: Callable[..., Pool], engine: FakeEngine,
                                                 github: FakeGitHub) -> None:
    """A busy runner is left to finish its job during the drain; idle ones go first."""
    p = pool(slots=2, drain_timeout=30)
    p.full()
    busy, idle = p.names()
    github.set(busy, busy=True)
    seen: list[list[str]] = []
    finisher = threading.Timer(0.3, lambda: (seen.append(p.names()), engine.finish_job(busy), p.mgr.wake()))
    finisher.start()
    remaining = drain(p.mgr)
    finisher.join()
    assert seen == [[busy]]  # the idle one was gone while the job ran
    assert remaining == [] and p.names() == []
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 1


def test_drain_cuts_off_busy_runners_at_the_timeout(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """A job still running at drain_timeout is cut off: container removed, registration deleted."""
    p = pool(slots=1, drain_timeout=0.2)
    p.full()
    (busy,) = p.names()
    github.set(busy, busy=True)
    remaining = drain(p.mgr)
    assert [b.runner_name for b in remaining] == [busy]
    assert p.names() == [] and p.metric("ghr_pool_runner_exits_total", outcome="drain_timeout") == 1


def test_drain_starts_no_runner(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """Once draining, a pass never refills an empty slot."""
    p = pool(slots=1, drain_timeout=0.1)
    p.mgr.drain()
    p.full()
    assert github.calls["generate_jitconfig"] == 0


# -- engine outage -------------------------------------------------------------------------


def test_runners_stopped_by_an_engine_restart_count_as_interrupted(running: Callable[..., Pool],
                                                                   engine: FakeEngine, github: FakeGitHub) -> None:
    """dockerd's shutdown SIGTERMs every runner (exit 0): `interrupted`, not `done`; deregistered; refilled."""
    p = running(slots=2, reconcile_interval=0.2, backoff_initial=0.05, backoff_max=0.1)
    _until(lambda: len(p.names()) == 2 and engine.streams)
    old = set(p.names())
    engine.stop()
    _until(lambda: p.health()["state"] == "docker")
    engine.start_engine()
    _until(lambda: len(p.names()) == 2 and not old & set(p.names()) and p.health()["ok"])
    assert p.metric("ghr_pool_runner_exits_total", outcome="interrupted") == 2
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 0
    assert not old & {r.name for r in github.runners.values()}


def test_exits_unseen_during_an_engine_crash_count_as_interrupted(pool: Callable[..., Pool], engine: FakeEngine,
                                                                  github: FakeGitHub) -> None:
    """No event at all (stream lost first): exits found while the engine was lost are `interrupted`."""
    p = pool(slots=2)
    p.full()
    old = set(p.names())
    p.engine_crash()
    p.full()  # the engine answers before the watcher is back: the exits are still unexplained
    assert p.metric("ghr_pool_runner_exits_total", outcome="interrupted") == 2
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 0
    assert not old & {r.name for r in github.runners.values()} and len(p.names()) == 2


def test_a_runner_started_after_the_engine_came_back_is_done_not_interrupted(
        pool: Callable[..., Pool], engine: FakeEngine, github: FakeGitHub) -> None:
    """The engine answers before the watcher is back: a runner started then, whose job ends, counts `done`."""
    p = pool(slots=1)
    p.full()
    (old,) = p.names()
    # All of this happens within one second of `Created` (whole seconds), as when the engine restarts fast:
    # only container ids tell old from new.
    p.engine_crash()
    p.full()  # the old runner is an outage victim; a new one takes its slot while the stream is still lost
    (new,) = p.names()
    assert new != old
    engine.finish_job(new)  # its job ends, with no event: the watcher is not back yet
    p.full()
    assert p.metric("ghr_pool_runner_exits_total", outcome="interrupted") == 1
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 1


def test_a_brief_engine_crash_is_caught_by_the_watcher(running: Callable[..., Pool], engine: FakeEngine) -> None:
    """Engine gone and back between two passes, no event: the exits found are `interrupted`, slots refilled."""
    p = running(slots=2, reconcile_interval=600.0)
    _until(lambda: len(p.names()) == 2 and engine.streams)
    old = set(p.names())
    engine.stop(crash=True)
    engine.start_engine()
    _until(lambda: len(p.names()) == 2 and not old & set(p.names()))
    assert p.metric("ghr_pool_runner_exits_total", outcome="interrupted") == 2


def test_docker_stop_is_interrupted_and_docker_kill_failed(running: Callable[..., Pool], engine: FakeEngine) -> None:
    """SIGTERM from the engine (`docker stop`) counts `interrupted`; SIGKILL (`docker kill`, 137) `failed`."""
    p = running(slots=2, reconcile_interval=600.0)
    _until(lambda: len(p.names()) == 2 and engine.streams)
    stopped, killed = p.names()
    engine.docker_stop(stopped)
    engine.kill(killed)
    _until(lambda: len(p.names()) == 2 and not {stopped, killed} & set(p.names()))
    _until(lambda: p.metric("ghr_pool_runner_exits_total", outcome="interrupted") == 1
           and p.metric("ghr_pool_runner_exits_total", outcome="failed") == 1)
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 0


def test_exit_seen_as_a_die_event_is_not_interrupted(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """Once the stream is back, a runner that exits 0 on its own, with its event, is `done` again."""
    p = pool(slots=1)
    p.full()
    p.mgr._engine_went_away()
    p.mgr._engine_back(set())  # nothing ended meanwhile
    (name,) = p.names()
    engine.finish_job(name)
    p.mgr._watcher.record(engine.by_runner(name).id, 0)
    p.fast()
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 1
    assert p.metric("ghr_pool_runner_exits_total", outcome="interrupted") == 0


# -- health --------------------------------------------------------------------------------


def test_health_is_starting_until_the_first_reconcile(pool: Callable[..., Pool]) -> None:
    """`starting` (503) before the first full pass, `ok` (200) after it."""
    p = pool(slots=1)
    assert p.health()["state"] == "starting" and not p.health()["ok"]
    p.full()
    p.mgr._succeeded()
    assert p.health()["state"] == "ok" and p.health()["ok"]


def test_health_leaves_starting_before_a_slow_fill_ends(pool: Callable[..., Pool], github: FakeGitHub) -> None:
    """The first reconcile, not the end of the fill, ends `starting` (a slow API mid-fill is not a fresh start)."""
    p = pool(slots=2)
    states: list[str] = []
    real = github.generate_jitconfig

    def spy(*args: Any, **kwargs: Any) -> Any:
        states.append(p.health()["state"])
        return real(*args, **kwargs)

    github.generate_jitconfig = spy  # type: ignore[method-assign]
    p.full()
    assert states == ["ok", "ok"]


@pytest.mark.parametrize(("fault", "expected"), [
    (dict(fault="secondary", status=429), "secondary answer to list_runners"),
    (dict(attempt=2, status=200), "list_runners retried"),
    (dict(duration=3.0, status=200), "list_runners took 3.0 s"),
])
def test_health_is_degraded_after_slow_or_faulty_answers(pool: Callable[..., Pool], fault: dict[str, Any],
                                                        expected: str) -> None:
    """A pass that works after a fault, retry or slow answer reports `degraded` (still 200) and why."""
    p = pool(slots=1)
    p.full()
    ev = dict(kind="list_runners", method="GET", path="/x", status=200, attempt=1, duration=0.1)
    ev.update(fault)
    p.mgr.metrics.observe_request(_event(**ev))
    p.full()
    p.mgr._succeeded()
    health = p.health()
    assert health["state"] == "degraded" and health["ok"] and health["degraded_reason"] == expected


def test_a_held_long_poll_is_not_a_slow_answer(pool: Callable[..., Pool]) -> None:
    """The scale-set message queue holds its GET ~50 s on purpose: that is `ok`, not `degraded`."""
    p = pool(slots=1)
    p.full()
    p.mgr.metrics.observe_request(_event(kind="scaleset_get_message", status=202, duration=50.0))
    p.full()
    p.mgr._succeeded()
    assert p.health()["state"] == "ok"


@pytest.mark.parametrize("side", ["github", "docker"])
def test_health_names_the_outage_and_since_when(pool: Callable[..., Pool], github: FakeGitHub,
                                               engine: FakeEngine, side: str) -> None:
    """A failed pass says `github` or `docker`, with `since` set when the state began and kept while it lasts."""
    p = pool(slots=1)
    p.full()
    p.mgr._succeeded()
    before = time.time()
    for _ in range(2):
        if side == "github":
            github.fail_next(1)
            p.mgr._dc = None
            engine.containers.clear()
        else:
            engine.up = False
        with pytest.raises(Exception) as err:
            p.full()
        p.mgr._failed(err.value)
        if _ == 0:
            since = p.health()["since"]
    health = p.health()
    assert health["state"] == side and not health["ok"] and health["last_error_kind"] == side
    assert before <= since == health["since"]


def test_other_failures_are_errors_not_outages(pool: Callable[..., Pool]) -> None:
    """A missing image is `error` with kind `image`, not an outage of GitHub or Docker."""
    p = pool(slots=1, image="runner:missing")
    with pytest.raises(PoolError) as err:
        p.full()
    p.mgr._failed(err.value)
    assert p.health()["state"] == "error" and p.health()["last_error_kind"] == "image"


# -- metrics of API calls ------------------------------------------------------------------


def _event(**fields: Any) -> RequestEvent:
    return RequestEvent(**{"kind": "list_runners", "method": "GET", "path": "/x", "status": 200, "attempt": 1,
                           "duration": 0.1, **fields})


@pytest.mark.parametrize(("status", "fault", "status_label", "fault_label"), [
    (200, None, "2xx", "none"),
    (404, None, "4xx", "none"),
    (429, "secondary", "4xx", "secondary"),
    (403, "primary", "4xx", "primary"),
    (502, "5xx", "5xx", "5xx"),
    (None, "connection", "none", "connection"),
])
def test_api_calls_are_counted_by_status_class_and_fault(status: int | None, fault: str | None,
                                                         status_label: str, fault_label: str) -> None:
    """Each attempt counts under its status class and fault kind."""
    metrics = Metrics("cpu")
    metrics.observe_request(_event(kind="list_runners", method="GET", path="/x", status=status, attempt=1,
                                   duration=0.1, fault=fault))
    value = metrics.registry.get_sample_value("ghr_github_api_calls_total",
                                              {"kind": "list_runners", "status": status_label, "fault": fault_label})
    assert value == 1


def test_retries_are_counted() -> None:
    """Attempts after the first count in ghr_github_api_retries_total."""
    metrics = Metrics("cpu")
    for attempt in (1, 2, 3):
        metrics.observe_request(_event(kind="delete_runner", method="DELETE", path="/x", status=502,
                                       attempt=attempt, duration=0.1, fault="5xx"))
    assert metrics.registry.get_sample_value("ghr_github_api_retries_total", {"kind": "delete_runner"}) == 2


# -- recovery probes -----------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _recovery(probe: Callable[[], object], clock: _Clock, wall: Callable[[], float] = time.time) -> Recovery:
    return Recovery({"github": probe}, interval=1.0, metrics=Metrics("cpu"), pool="cpu", clock=clock, wall=wall)


def test_probe_is_planned_only_for_a_backoff_longer_than_the_interval() -> None:
    """A short backoff is slept out; a long one gets a probe one interval in."""
    clock = _Clock()
    rec = _recovery(lambda: None, clock)
    rec.arm("github", clock.now + 0.8)
    assert rec.next_at() is None
    rec.arm("github", clock.now + 30)
    assert rec.next_at() == clock.now + 1.0


def test_successful_probe_ends_the_backoff() -> None:
    """A probe that answers says so once and plans no further probe."""
    clock = _Clock()
    rec = _recovery(lambda: None, clock)
    rec.arm("github", clock.now + 30)
    clock.now += 1.0
    assert rec.due() and rec.probe() and rec.next_at() is None


def test_failed_probe_plans_the_next_one() -> None:
    """A probe that fails is retried one interval later, never past the backoff's end."""
    clock = _Clock()

    def down() -> None:
        raise ConnectionError("still down")

    rec = _recovery(down, clock)
    rec.arm("github", clock.now + 2.5)
    clock.now += 1.0
    assert not rec.probe() and rec.next_at() == clock.now + 1.0
    clock.now += 1.0
    assert not rec.probe() and rec.next_at() is None  # the backoff ends before another interval


def test_no_probe_before_retry_after() -> None:
    """After a rate limit naming a time, the first probe waits for that time."""
    clock = _Clock()
    wall = 5000.0
    rec = _recovery(lambda: None, clock, wall=lambda: wall)
    limited = RateLimited("wait", retry_at=datetime.fromtimestamp(wall + 20, tz=UTC))
    rec.arm("github", clock.now + 40, limited)
    assert rec.next_at() == pytest.approx(clock.now + 20)


def test_rate_limited_probe_defers_to_its_retry_after() -> None:
    """A probe answered with a rate limit plans the next one no earlier than its retry-after."""
    clock = _Clock()
    wall = 5000.0

    def limited() -> None:
        raise RateLimited("wait", retry_at=datetime.fromtimestamp(wall, tz=UTC) + timedelta(seconds=10))

    rec = _recovery(limited, clock, wall=lambda: wall)
    rec.arm("github", clock.now + 60)
    clock.now += 1.0
    assert not rec.probe() and rec.next_at() == pytest.approx(clock.now + 10)


# -- the loop ------------------------------------------------------------------------------


@pytest.fixture
def running(pool: Callable[..., Pool]) -> Iterator[Callable[..., Pool]]:
    threads: list[tuple[Pool, threading.Thread]] = []

    def start(**spec: Any) -> Pool:
        p = pool(**spec)
        thread = threading.Thread(target=lambda: setattr(p, "code", p.mgr.run()), daemon=True)
        thread.start()
        threads.append((p, thread))
        return p

    yield start
    for p, thread in threads:
        p.mgr.request_stop()
        thread.join(10)
        assert not thread.is_alive()


def _until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_die_event_refills_the_slot_without_waiting_for_a_full_pass(running: Callable[..., Pool],
                                                                      engine: FakeEngine) -> None:
    """The watcher's `die` event wakes the loop: the slot is refilled long before reconcile_interval."""
    p = running(slots=1, reconcile_interval=600.0)
    _until(lambda: len(p.names()) == 1 and engine.streams)
    (old,) = p.names()
    engine.finish_job(old)
    _until(lambda: len(p.names()) == 1 and p.names() != [old])


def test_recovery_probe_ends_a_long_backoff(running: Callable[..., Pool], github: FakeGitHub) -> None:
    """GitHub fails, then answers: the pool fills on the next probe, not after the (10 s+) backoff."""
    github.fail_next(1)
    p = running(slots=2, backoff_initial=20.0, backoff_max=60.0)
    _until(lambda: len(p.names()) == 2, timeout=5.0)  # the backoff alone would wait at least 10 s
    assert github.calls["probe"] >= 1
    assert p.metric("ghr_pool_recovery_probes_total", kind="github", result="ok") == 1


def test_stop_drains_and_exits_zero(running: Callable[..., Pool], github: FakeGitHub) -> None:
    """SIGTERM (request_stop): the loop drains every idle runner and run() returns 0."""
    p = running(slots=2)
    _until(lambda: len(p.names()) == 2)
    p.mgr.request_stop()
    _until(lambda: getattr(p, "code", None) is not None)
    assert p.code == 0 and p.names() == [] and github.runners == {}  # type: ignore[attr-defined]
