"""A scale-set pool's message session: long-poll, handle, acknowledge; and what the messages told (`Demand`).

The listener runs on its own thread and talks only to the scale set's message queue; the manager's
loop (`_scaleset.ScaleSetManager`) does everything that touches Docker or mints runners. The two meet
in `Demand` (under its lock) and through `ScaleSetManager.wake`.

- The statistics decide: every queue message carries the scale set's statistics, and the manager wants
  min(max_runners, min_runners + totalAssignedJobs) runners. Message counts decide nothing, so a
  message handled twice cannot start a second runner for one job.
- `JobAvailable` is acquired (not while draining); `JobStarted` marks its runner busy (it is never
  scaled down); `JobCompleted` marks its runner finished (the manager removes its container).
- A queue message is acknowledged after it was handled; one that comes again (the acknowledgement was
  lost) is acknowledged without handling it again. One the client cannot read, or of a type nobody
  knows, is logged and acknowledged: it never stops the loop.
- The session: one per scale set. Its id is kept in a small file (`SessionStore`) so that a manager
  that was killed replaces its own old session at restart (DELETE, then create) instead of waiting
  for GitHub to expire it; a session held by someone else (409) is retried with backoff and, after
  `bound` seconds, reported on /healthz (state `session`). No other session is ever deleted.
- Failures of the poll (5xx, dropped connections, expired tokens) back off (the pool's capped,
  jittered backoff) and poll again on the same session; a session the service no longer knows is
  created anew. Each counts in `ghr_scaleset_session_reconnects_total{reason}`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from github_client import BadCredentials, GitHubError, NotFound, RateLimited
from github_client._scaleset import (
    JobAvailable,
    JobCompleted,
    JobStarted,
    MessageBatch,
    MessageError,
    MessageSession,
    SessionConflict,
    Statistics,
)

from ._backoff import Backoff
from ._errors import classify
from ._log import event

if TYPE_CHECKING:
    from ._scaleset import ScaleSetManager

__all__ = ["Demand", "Listener", "SessionStore"]

_KEEP = 600.0  # seconds a finished runner's name, or a started job's request id, is remembered
_HANDLED = 1024  # queue message ids remembered (to acknowledge a redelivery without handling it again)


class Demand:
    """What the queue told the manager: the last statistics, busy runners, finished runners. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stats: Statistics | None = None
        self._busy: dict[str, float] = {}  # runner name -> when it was seen starting a job
        self._completed: dict[str, float] = {}  # runner name -> when its JobCompleted came
        self._exited: dict[str, float] = {}  # runner name -> when its container exited 0 (JobCompleted not yet seen)
        self._requests: OrderedDict[int, float] = OrderedDict()  # runner request ids seen started

    def update(self, stats: Statistics | None) -> bool:
        """Take the statistics of a message; True if they changed."""
        if stats is None:
            return False
        with self._lock:
            changed = stats != self.stats
            self.stats = stats
            return changed

    def desired(self, min_runners: int, max_runners: int) -> int:
        """min(max_runners, min_runners + totalAssignedJobs): the reference scaler's rule."""
        with self._lock:
            assigned = self.stats.total_assigned_jobs if self.stats is not None else 0
        return max(0, min(max_runners, min_runners + max(0, assigned)))

    def job_started(self, runner_name: str, runner_request_id: int) -> bool:
        """A runner started a job; True the first time this job's start is seen (for the latency)."""
        now = time.monotonic()
        with self._lock:
            if runner_name:
                self._busy[runner_name] = now
            first = runner_request_id not in self._requests
            self._requests[runner_request_id] = now
            while len(self._requests) > _HANDLED:
                self._requests.popitem(last=False)
            return first

    def job_completed(self, runner_name: str) -> None:
        if not runner_name:
            return  # a job cancelled before any runner had it (not acquired in time)
        with self._lock:
            self._completed[runner_name] = time.monotonic()
            self._busy.pop(runner_name, None)
            self._exited.pop(runner_name, None)

    def mark_busy(self, runner_name: str) -> None:
        """GitHub says the runner has a job (registration busy, or it refused to remove it)."""
        with self._lock:
            self._busy.setdefault(runner_name, time.monotonic())

    def started(self, runner_name: str) -> bool:
        """True if the runner ever started a job (it is then never scaled down)."""
        with self._lock:
            return runner_name in self._busy or runner_name in self._completed

    def completed(self, runner_name: str) -> bool:
        with self._lock:
            return runner_name in self._completed

    def exited(self, runner_name: str) -> None:
        """The runner's container ended by itself (exit 0) before its JobCompleted came."""
        with self._lock:
            if runner_name not in self._completed:
                self._exited.setdefault(runner_name, time.monotonic())

    def finishing(self, grace: float) -> int:
        """Runners whose container ended by itself within `grace` seconds, JobCompleted not yet in: their job
        still counts in totalAssignedJobs, so they count as runners (no replacement for a finished job)."""
        now = time.monotonic()
        with self._lock:
            for name in [n for n, t in self._exited.items() if now - t > grace]:
                del self._exited[name]
            return len(self._exited)

    def busy_names(self) -> set[str]:
        with self._lock:
            return set(self._busy)

    def forget(self, live: set[str]) -> None:
        """Drop what is known of runners that are gone (no container) and old enough."""
        cutoff = time.monotonic() - _KEEP
        with self._lock:
            for table in (self._busy, self._completed):
                for name in [n for n, t in table.items() if n not in live and t < cutoff]:
                    del table[name]


class SessionStore:
    """The id of the session this pool holds, in a small file that survives a restart of the manager."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def load(self) -> tuple[int, str] | None:
        if self.path is None:
            return None
        try:
            data = json.loads(self.path.read_text())
            return int(data["scale_set_id"]), str(data["session_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, scale_set_id: int, session_id: str) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps({"scale_set_id": scale_set_id, "session_id": session_id}))
            os.chmod(tmp, 0o600)
            tmp.replace(self.path)
        except OSError as exc:
            event("session_store_failed", level=30, path=str(self.path), error=str(exc))

    def clear(self) -> None:
        if self.path is not None:
            try:
                self.path.unlink()
            except OSError:
                pass


class Listener:
    """Holds the scale set's message session on a thread (`start`, `close`); `step` is one turn of its loop."""

    def __init__(self, mgr: ScaleSetManager, *, store: SessionStore, owner: str, bound: float,
                 poll_wait: float | None) -> None:
        self.mgr = mgr
        self.store = store
        self.owner = owner
        self.bound = bound
        self.poll_wait = poll_wait
        self.session: MessageSession | None = None
        self.state = "none"  # none | connecting | live | conflict | error | closed
        self.state_since = time.time()
        self.trouble_since: float | None = None  # first failure since the session was last live
        self.last_error: str | None = None
        self.last_id = 0
        self.reconnects = 0
        self.handled_total = 0
        self._handled: OrderedDict[int, None] = OrderedDict()
        self._backoff = Backoff(mgr.spec.backoff_initial, mgr.spec.backoff_max)
        self._closing = threading.Event()
        self._lock = threading.Lock()  # session open/close against close()
        self._thread: threading.Thread | None = None

    # -- thread ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"scaleset-{self.mgr.spec.pool}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closing.is_set():
            delay = self.step()
            if delay > 0:
                self._closing.wait(delay)

    def close(self, timeout: float = 10.0) -> None:
        """End the session (DELETE) and the thread; the stored id goes too."""
        self._closing.set()
        with self._lock:
            session, self.session = self.session, None
        if session is not None:
            try:
                session.close()
                event("scaleset_session_closed", pool=self.mgr.spec.pool, session=session.session.session_id)
            except GitHubError as exc:
                event("scaleset_session_close_failed", level=30, pool=self.mgr.spec.pool, error=str(exc))
        self.store.clear()
        self._set_state("closed")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def drop_session(self) -> None:
        """Forget the session (new credentials): the next turn opens a new one, replacing the old."""
        with self._lock:
            self.session = None

    # -- one turn -------------------------------------------------------------------------

    def step(self) -> float:
        """Open the session if needed, poll once, handle and acknowledge. Returns the delay before the next
        turn: 0 after success, a backoff after a failure. Never raises."""
        try:
            self.poll_once()
        except SessionConflict as exc:
            return self._trouble("conflict", "conflict", f"another session holds the scale set ({exc})")
        except MessageError as exc:
            self._unreadable(exc)
            return 0.0
        except (NotFound, BadCredentials) as exc:  # the session is gone (expired, deleted): a new one
            with self._lock:
                self.session = None
            if self._closing.is_set():
                return 0.0
            return self._trouble("error", "session_lost", classify(exc)[1])
        except Exception as exc:  # 5xx, dropped connections, anything: poll again after the backoff
            if self._closing.is_set():
                return 0.0
            delay = self._trouble("error", "error", classify(exc)[1])
            if isinstance(exc, RateLimited) and exc.retry_at is not None:  # never before GitHub said
                delay = max(delay, min(exc.retry_at.timestamp() - time.time(), 3600.0))
            return delay
        return 0.0

    def poll_once(self) -> MessageBatch | None:
        session = self.session
        if session is None:
            session = self._open()
            if session is None:
                return None
        batch = session.get_message(self.last_id, max_capacity=self.mgr.capacity(), wait=self.poll_wait)
        self._live()
        if batch is None:
            return None
        if batch.message_id in self._handled:
            self.mgr.ss_metrics.batches.labels(outcome="redelivered").inc()
            event("scaleset_message_redelivered", pool=self.mgr.spec.pool, message_id=batch.message_id)
        else:
            self._handle(session, batch)
            self._handled[batch.message_id] = None
            while len(self._handled) > _HANDLED:
                self._handled.popitem(last=False)
            self.mgr.ss_metrics.batches.labels(outcome="handled").inc()
        session.delete_message(batch.message_id)
        self.last_id = max(self.last_id, batch.message_id)
        return batch

    def _open(self) -> MessageSession | None:
        if self._closing.is_set():
            return None
        self._set_state("connecting")
        mgr = self.mgr
        scale_set_id = mgr.scale_set_id()
        old = self.store.load()
        if old is not None:  # our own session of before a crash or restart: replace it
            old_set, old_id = old
            try:
                gone = mgr.scalesets.delete_session(old_set, old_id, missing_ok=True)
                event("scaleset_session_replaced", pool=mgr.spec.pool, old_session=old_id, was_live=gone)
            except GitHubError as exc:
                event("scaleset_session_replace_failed", level=30, pool=mgr.spec.pool, old_session=old_id,
                      error=classify(exc)[1])
            self.store.clear()
        try:
            session = mgr.scalesets.open_session(scale_set_id, self.owner)
        except NotFound:
            mgr.forget_scale_set()  # deleted under us: look it up again (by id: reported; by name: made again)
            raise
        with self._lock:
            if self._closing.is_set():
                session.close()
                return None
            self.session = session
        self.store.save(scale_set_id, session.session.session_id)
        self.last_id = 0
        mgr.demand.update(session.statistics)
        event("scaleset_session_opened", pool=mgr.spec.pool, scale_set_id=scale_set_id,
              session=session.session.session_id, owner=self.owner)
        self._live()
        mgr.wake()
        return session

    # -- handling ---------------------------------------------------------------------------

    def _handle(self, session: MessageSession, batch: MessageBatch) -> None:
        mgr = self.mgr
        metrics = mgr.ss_metrics
        changed = mgr.demand.update(batch.statistics)
        available: list[int] = []
        counts: dict[str, int] = {}
        if not batch.messages and batch.message_type != "RunnerScaleSetJobMessages":
            counts["unknown"] = 1
            event("scaleset_message_not_understood", level=30, pool=mgr.spec.pool, message_id=batch.message_id,
                  message_type=batch.message_type or "?")
        for message in batch.messages:
            kind = message.message_type
            try:
                if isinstance(message, JobAvailable):
                    available.append(message.runner_request_id)
                elif isinstance(message, JobStarted):
                    if mgr.demand.job_started(message.runner_name, message.runner_request_id):
                        latency = _latency(message)
                        if latency is not None:
                            metrics.latency.observe(latency)
                    changed = True
                    event("scaleset_job_started", pool=mgr.spec.pool, runner=message.runner_name,
                          request=message.runner_request_id, job=message.job_display_name)
                elif isinstance(message, JobCompleted):
                    mgr.demand.job_completed(message.runner_name)
                    changed = True
                    event("scaleset_job_completed", pool=mgr.spec.pool, runner=message.runner_name or None,
                          request=message.runner_request_id, result=message.result)
                elif kind != "JobAssigned":
                    kind = "unknown"
                    event("scaleset_message_not_understood", level=30, pool=mgr.spec.pool,
                          message_id=batch.message_id, message_type=message.message_type)
            except Exception as exc:  # a message we cannot make sense of: logged, acknowledged with the rest
                kind = "unknown"
                event("scaleset_message_not_understood", level=30, pool=mgr.spec.pool, message_id=batch.message_id,
                      message_type=message.message_type, error=classify(exc)[1])
            counts[kind] = counts.get(kind, 0) + 1
        if available and not mgr.draining:
            # A failure raises: the message is not acknowledged and comes again (acquiring twice is harmless).
            got = session.acquire_jobs(available)
            event("scaleset_jobs_acquired", pool=mgr.spec.pool, offered=len(available), acquired=len(got))
        for kind, n in counts.items():
            metrics.messages.labels(type=kind).inc(n)
        self.handled_total += sum(counts.values())
        if changed:
            mgr.wake()
        mgr.publish()

    def _unreadable(self, exc: MessageError) -> None:
        """A queue message the client cannot read: log it, acknowledge it, go on."""
        mgr = self.mgr
        event("scaleset_message_not_understood", level=30, pool=mgr.spec.pool, message_id=exc.message_id,
              error=str(exc))
        mgr.ss_metrics.messages.labels(type="unknown").inc()
        mgr.ss_metrics.batches.labels(outcome="unreadable").inc()
        session = self.session
        if exc.message_id is None or session is None:
            return
        try:
            session.delete_message(exc.message_id)
            self.last_id = max(self.last_id, exc.message_id)
        except Exception as ack_exc:  # acknowledged next time it comes
            event("scaleset_message_ack_failed", level=30, pool=mgr.spec.pool, message_id=exc.message_id,
                  error=classify(ack_exc)[1])

    # -- state ------------------------------------------------------------------------------

    def _live(self) -> None:
        if self.state != "live" or self.trouble_since is not None:
            was_trouble = self.trouble_since is not None
            self.trouble_since = None
            self.last_error = None
            self._backoff.reset()
            self._set_state("live")
            if was_trouble:
                event("scaleset_session_recovered", pool=self.mgr.spec.pool)
            self.mgr.session_changed()

    def _trouble(self, state: str, reason: str, message: str) -> float:
        now = time.time()
        if self.trouble_since is None:
            self.trouble_since = now
        self.last_error = message
        self.reconnects += 1
        self.mgr.ss_metrics.reconnects.labels(reason=reason).inc()
        delay = self._backoff.next()
        self._set_state(state)
        event("scaleset_poll_failed", level=40, pool=self.mgr.spec.pool, reason=reason, error=message,
              retry_in=f"{delay:.2f}", failing_for=f"{now - self.trouble_since:.1f}")
        self.mgr.session_changed()
        return delay

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_since = time.time()
        self.mgr.ss_metrics.session_up.set(1 if state == "live" else 0)
        self.mgr.publish()

    def trouble(self) -> str | None:
        """Why the pool has had no session for longer than `bound` seconds, else None."""
        since = self.trouble_since
        if since is None or time.time() - since < self.bound:
            return None
        what = "another session holds the scale set (409)" if self.state == "conflict" else "no message session"
        return f"{what} for {time.time() - since:.0f} s: {self.last_error}"

    def snapshot(self) -> dict[str, Any]:
        session = self.session
        return {"session": self.state, "session_since": self.state_since,
                "session_id": session.session.session_id if session is not None else None,
                "session_failing_since": self.trouble_since, "session_error": self.last_error,
                "session_reconnects": self.reconnects, "messages_handled": self.handled_total,
                "last_message_id": self.last_id}


def _latency(message: JobStarted) -> float | None:
    """Seconds from the job's queue time to its start on a runner (the runner's assign time when given)."""
    if message.queue_time is None:
        return None
    started = message.runner_assign_time.timestamp() if message.runner_assign_time is not None else time.time()
    return max(0.0, started - message.queue_time.timestamp())
