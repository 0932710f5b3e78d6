"""A pool that follows demand through a GitHub runner scale set (spec `scaling: "scale_set"`).

`ScaleSetManager` is the fixed-slots `PoolManager` with three things changed:
- *how many*: not `slots`, but min(max_runners, min_runners + totalAssignedJobs) from the statistics the
  scale set's message queue delivers (`_listener`: the session, on its own thread);
- *where runners come from*: `generatejitconfig` of the scale set (Actions service), not the REST one;
  registrations are removed with the Actions service's agent DELETE, which refuses a runner that runs a
  job (`JobStillRunning`): the race-free idle check, as the REST 422 is for a fixed pool;
- *when a runner goes*: `JobCompleted` removes its runner's container; scale-down removes only runners
  that never started a job (no `JobStarted`, registration not busy), newest first, and only after GitHub
  agreed to delete their registration. A busy runner is never killed.
Everything else is the fixed pool's code: container creation, adoption of the pool's containers after a
restart (by their labels), exited runners, orphan sweeps (full passes), image and cache checks, backoff,
recovery probes, SIGHUP reload (min/max/labels/group/image in place), drain on SIGTERM.

The scale set: `scale_set_id` from the spec (made by the Pulumi program), else looked up by
`scale_set_name` in the pool's runner group and created when missing; its labels and runner group are set
to the pool's when they differ. The manager never deletes a scale set, a session it did not open, or a
runner whose name is not one of the pool's.

Max capacity (X-ScaleSetMaxCapacity on every poll) is what the host can really take: `max_runners`, or 0
while draining or while the last pass failed for a reason of this host (engine down, image missing, the
engine refusing containers), so GitHub does not assign jobs here that no runner could take.

Full passes (REST list of registrations, orphan sweep) run at start and every
max(reconcile_interval, FULL_INTERVAL) seconds: between them the message queue tells what changed, so an
idle pool costs about one long poll a minute plus a list every few minutes.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from github_client import GitHubClient, NotFound, Runner
from github_client._scaleset import JobStillRunning, ScaleSet, ScaleSetClient

from ._box import Box, outcome
from ._errors import PoolError, classify
from ._listener import Demand, Listener, SessionStore
from ._log import event
from .manager import PoolManager
from .metrics import ScaleSetMetrics
from .spec import PoolSpec

__all__ = ["FULL_INTERVAL", "ScaleSetManager"]

FULL_INTERVAL = 300.0  # seconds between full passes at least (the queue reports changes in between)
SESSION_BOUND = 60.0  # seconds without a session before /healthz reports it (state `session`)
COMPLETION_GRACE = 10.0  # seconds a runner that exited by itself counts until its JobCompleted comes
_LOCAL_KINDS = ("docker", "image", "start", "gpu", "dind")  # failures that mean this host cannot take jobs now


class ScaleSetManager(PoolManager):
    """A scale-set pool's manager (see the module's doc). `run`, `request_stop`, `reload` as PoolManager."""

    def __init__(self, spec: PoolSpec, github: GitHubClient, *, scalesets: ScaleSetClient | None = None,
                 session_bound: float = SESSION_BOUND, poll_wait: float | None = None,
                 state_dir: Path | str | None = None, full_interval: float | None = None,
                 completion_grace: float = COMPLETION_GRACE, **kwargs: Any) -> None:
        """`scalesets`: the Actions-service client (default: one built on `github`, sharing its hooks).
        `session_bound`: seconds without a session before /healthz says so. `poll_wait`: read timeout of
        the long poll (default: the client's). `state_dir`: where the session id is kept across restarts
        (default $GHR_STATE_DIR, else <tmp>/ghr-manager). `full_interval`: seconds between full passes
        (default max(reconcile_interval, FULL_INTERVAL)). Other options: PoolManager's."""
        if not spec.scale_set:
            raise ValueError("ScaleSetManager needs a pool spec with scaling 'scale_set'")
        super().__init__(spec, github, **kwargs)
        self._own_client = scalesets is None
        self.scalesets: ScaleSetClient = scalesets if scalesets is not None else ScaleSetClient(github)
        self.ss_metrics = ScaleSetMetrics(self.metrics)
        self.demand = Demand()
        self.full_interval = full_interval
        self.completion_grace = completion_grace
        self._ss: ScaleSet | None = None
        self._ss_synced = False
        self._ss_lock = threading.Lock()
        self._blocked: str | None = None  # why this host cannot take jobs now (max capacity 0)
        base = Path(state_dir or os.environ.get("GHR_STATE_DIR") or Path(tempfile.gettempdir()) / "ghr-manager")
        store = SessionStore(base / f"{spec.name_prefix}.session.json")
        owner = f"{spec.name_prefix}@{socket.gethostname()}"[:128]
        self.listener = Listener(self, store=store, owner=owner, bound=session_bound, poll_wait=poll_wait)
        self.publish()

    # -- the scale set ------------------------------------------------------------------

    def scale_set_id(self) -> int:
        """The pool's scale set (looked up, made or brought in line with the spec once per spec)."""
        with self._ss_lock:
            if self._ss is None or not self._ss_synced:
                self._ss = self._sync_scale_set()
                self._ss_synced = True
            return self._ss.id

    def forget_scale_set(self) -> None:
        """The scale set was not found (deleted under the manager): the next use looks it up again."""
        with self._ss_lock:
            self._ss_synced = False

    def _sync_scale_set(self) -> ScaleSet:
        spec = self.spec
        name = spec.scale_set_name
        assert name is not None  # a scale-set spec always has one
        group_id = self._scale_set_group_id()
        if spec.scale_set_id is not None:
            try:
                ss = self.scalesets.get_scale_set(spec.scale_set_id)
            except NotFound:
                raise PoolError("scale_set", f"scale set {spec.scale_set_id} ({name}) no longer exists on GitHub;"
                                " pulumi up makes it again") from None
        else:
            found = self.scalesets.get_scale_set_by_name(name, group_id)
            if found is None:
                found = self.scalesets.create_scale_set(name, runner_group_id=group_id, labels=list(spec.labels))
                event("scale_set_created", pool=spec.pool, scale_set=name, scale_set_id=found.id, group_id=group_id)
            ss = found
        if sorted(ss.labels) != sorted(spec.labels) or ss.runner_group_id != group_id:
            ss = self.scalesets.update_scale_set(ss.id, labels=list(spec.labels), runner_group_id=group_id)
            event("scale_set_updated", pool=spec.pool, scale_set=ss.name, scale_set_id=ss.id,
                  labels=",".join(spec.labels), group_id=group_id)
        return ss

    def _scale_set_group_id(self) -> int:
        group = self.spec.runner_group
        if group.casefold() == "default" or self.github.scope.kind == "repo":
            return 1
        return self.scalesets.get_runner_group(group).id

    def capacity(self) -> int:
        """The max capacity to report: max_runners, or 0 while draining or while this host cannot start runners."""
        if self._draining or self.stop.is_set() or self._blocked is not None:
            return 0
        return self.spec.max_runners or 0

    @property
    def draining(self) -> bool:
        return self._draining or self.stop.is_set()

    def desired(self) -> int:
        return self.demand.desired(self.spec.min_runners or 0, self.spec.max_runners or 0)

    # -- runners: minted in the scale set, removed through the Actions service --------------

    def _mint(self, name: str, group_id: int) -> tuple[int, str]:
        jit = self.scalesets.generate_jitconfig(self.scale_set_id(), name)
        return jit.runner.id, jit.encoded_jit_config

    def _unregister(self, runner_id: int, name: str) -> bool | None:
        """Remove a runner of the scale set; None if it runs a job (GitHub refuses: JobStillRunning), marked busy."""
        try:
            return self.scalesets.delete_agent(runner_id, missing_ok=True)
        except JobStillRunning:
            self.demand.mark_busy(name)
            return None

    # -- the passes -----------------------------------------------------------------------

    def pass_once(self, full: bool) -> None:
        """One pass: remove finished runners (exited, or JobCompleted), (full: sweep orphans), then scale."""
        self.scale_set_id()
        boxes = self._boxes()
        if self._blocked is not None:
            self._check_image()  # capacity stays 0 until the host could start a runner again
        registrations = self._registrations() if full else None
        for box in boxes:
            if not box.live and box.exit_code == 0 and not box.interrupted:
                self.demand.exited(box.runner_name)
        done: list[tuple[Box, str]] = []
        try:
            exited: list[Box] = []
            boxes = self._finish_exited(boxes, registrations, defer=exited)
            done += [(b, outcome(b)) for b in exited]
            kept = []
            for box in boxes:
                if self.demand.completed(box.runner_name):
                    done.append((box, "done"))  # its job is over: the container goes (the runner may still be exiting)
                else:
                    kept.append(box)
            self._fill(kept, registrations)
        finally:
            for box, why in done:
                self._remove(box, why)
            self.publish()

    def _fill(self, boxes: list[Box], registrations: dict[str, Runner] | None) -> None:
        if registrations is not None:
            self._sweep(boxes, registrations)
            boxes = [b for b in self._boxes() if b.live and not self.demand.completed(b.runner_name)]
            for box in boxes:
                reg = registrations.get(box.runner_name)
                if reg is not None and reg.busy:
                    self.demand.mark_busy(box.runner_name)
            self._report(boxes, registrations)
            self.demand.forget({b.runner_name for b in boxes})
            if not self._reconciled:
                self._reconciled = True
                self._healthy()
            if not self._draining:
                boxes = self._retire_stale(boxes, registrations)
        else:
            self._report_fast(boxes)
        self._scale(boxes)

    def _scale(self, boxes: list[Box]) -> None:
        """Start or remove runners so that the pool has `desired` (busy runners are never removed)."""
        spec = self.spec
        maximum = spec.max_runners or 0
        live = list(boxes)
        for box in [b for b in live if b.slot >= maximum or b.slot < 0]:  # max_runners lowered by a reload
            if not self.demand.started(box.runner_name) and self._delete_registration(
                    box.runner_id, box.runner_name, "slot no longer in spec"):
                self._remove(box, "surplus")
                live.remove(box)
        desired = self.desired()
        have = len(live) + self.demand.finishing(self.completion_grace)
        if have > desired and self.demand.stats is None:
            pass  # no statistics yet (a restart, before the session): adopted runners stay until the queue tells
        elif have > desired:
            idle = sorted((b for b in live if not self.demand.started(b.runner_name)), key=lambda b: -b.created)
            for box in idle[: have - desired]:
                if self._delete_registration(box.runner_id, box.runner_name, "scale down"):
                    self._remove(box, "scaled_down")
                    event("runner_scaled_down", pool=spec.pool, runner=box.runner_name, desired=desired)
        elif have < desired and not self._draining:
            taken = {b.slot for b in live}
            empty = [s for s in range(maximum) if s not in taken][: desired - have]
            if empty:
                self._check_image()
                self._ensure_caches()
                for slot in empty:
                    if self.stop.is_set():
                        return
                    self._start_runner(slot, 0)

    def _report_fast(self, boxes: list[Box]) -> None:
        busy = sum(1 for b in boxes if self.demand.started(b.runner_name))
        self.metrics.runners.labels(state="busy").set(busy)
        self.metrics.runners.labels(state="idle").set(len(boxes) - busy)
        self.metrics.runners.labels(state="starting").set(0)
        self.health.update(idle=len(boxes) - busy, busy=busy, starting=0)

    def _busy(self, box: Box, reg: Runner | None) -> bool:
        """A runner GitHub assigned a job to (JobStarted) is busy before its registration says so."""
        return self.demand.started(box.runner_name) or super()._busy(box, reg)

    def _full_interval(self) -> float:
        if self.full_interval is not None:
            return self.full_interval
        return max(self.spec.reconcile_interval, FULL_INTERVAL)

    # -- health and metrics -----------------------------------------------------------------

    def publish(self) -> None:
        """The scale set's statistics, demand and session state into the metrics and /healthz."""
        stats = self.demand.stats
        desired = self.desired()
        m = self.ss_metrics
        m.desired.set(desired)
        capacity = self.capacity()
        m.capacity.set(capacity)
        if stats is not None:
            m.jobs.labels(state="assigned").set(stats.total_assigned_jobs)
            m.jobs.labels(state="running").set(stats.total_running_jobs)
            m.jobs.labels(state="available").set(stats.total_available_jobs)
            m.jobs.labels(state="acquired").set(stats.total_acquired_jobs)
            m.runners.labels(state="registered").set(stats.total_registered_runners)
            m.runners.labels(state="busy").set(stats.total_busy_runners)
            m.runners.labels(state="idle").set(stats.total_idle_runners)
        listener = getattr(self, "listener", None)
        snap: dict[str, Any] = listener.snapshot() if listener is not None else {"session": "none"}
        ss = self._ss
        snap.update(scale_set_id=ss.id if ss is not None else self.spec.scale_set_id,
                    scale_set_name=self.spec.scale_set_name, min_runners=self.spec.min_runners,
                    max_runners=self.spec.max_runners, desired=desired, max_capacity=capacity,
                    assigned_jobs=stats.total_assigned_jobs if stats is not None else None,
                    running_jobs=stats.total_running_jobs if stats is not None else None,
                    blocked=self._blocked)
        self.health.update(scale_set=snap)

    def session_changed(self) -> None:
        """The listener's session got into or out of trouble: /healthz follows."""
        trouble = self.listener.trouble()
        if trouble is not None:
            if not self._draining:
                self.health.set_state("session", ok=False, last_error=trouble, last_error_kind="session",
                                      last_error_at=time.time())
        elif self.health.state == "session" and self._backoff.failures == 0:
            self._healthy()
        self.publish()

    def _healthy(self) -> None:
        trouble = self.listener.trouble() if hasattr(self, "listener") else None
        if trouble is not None and not self._draining:
            self.health.set_state("session", ok=False, last_error=trouble, last_error_kind="session")
            return
        super()._healthy()

    def _failed(self, exc: BaseException) -> float:
        kind, message = classify(exc)
        if kind in _LOCAL_KINDS:
            self._blocked = f"{kind}: {message}"
        delay = super()._failed(exc)
        self.publish()
        return delay

    def _succeeded(self) -> None:
        self._blocked = None
        super()._succeeded()

    # -- reload, run, stop ------------------------------------------------------------------

    def reload(self) -> bool:
        old_github = self.github
        if not super().reload():
            return False
        with self._ss_lock:
            self._ss_synced = False  # labels or runner group may have changed
        if self.github is not old_github and self._own_client:
            self.scalesets = ScaleSetClient(self.github)
            self.listener.drop_session()
        self.publish()
        return True

    def run(self) -> int:
        """Hold the session (listener thread) while the passes run; drain; then end the session."""
        self.listener.start()
        try:
            return super().run()
        finally:
            self.listener.close()
            self.publish()
