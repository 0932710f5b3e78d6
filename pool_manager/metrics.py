"""Prometheus metrics (`/metrics`) and health (`/healthz`) of one pool manager.

Each manager owns its own `CollectorRegistry`, so several managers can live in one process
(tests) without clashing.

GitHub API attempts are counted by `observe_request` (the GitHub client's `on_request` hook):
by call kind, status class (`2xx`, `3xx`, `4xx`, `5xx`, `none` when no answer came) and fault
kind (`secondary`, `primary`, `5xx`, `connection`, `none`); retries the client absorbed are
counted apart, so a storm the retries hid still shows. `/healthz` states: see `Health`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from github_client import SCALESET_KIND_PREFIX, RequestEvent

__all__ = ["Health", "Metrics", "ScaleSetMetrics", "serve", "status_class"]

SLOW_CALL = 2.0  # seconds: an API answer slower than this makes the manager `degraded`
# Calls the service holds open until it has something to say (the scale-set message queue, ~50 s).
LONG_POLL_KINDS = frozenset({f"{SCALESET_KIND_PREFIX}get_message"})
FAULTS = ("secondary", "primary", "5xx", "connection")


def status_class(status: int | None) -> str:
    """`2xx` .. `5xx` for an HTTP status, `none` when no answer came back."""
    if status is None:
        return "none"
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class Metrics:
    def __init__(self, pool: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.slots = Gauge("ghr_pool_slots", "Runner slots this manager keeps filled.", registry=r)
        self.runners = Gauge("ghr_pool_runners", "Runner containers by state.", ["state"], registry=r)
        self.starts = Counter("ghr_pool_runner_starts", "Runner containers started.", registry=r)
        self.exits = Counter("ghr_pool_runner_exits", "Runner containers that exited and were removed.",
                             ["outcome"], registry=r)
        self.failures = Counter("ghr_pool_failures", "Failures by kind (github, docker, image, start, ...).",
                                ["kind"], registry=r)
        self.api_calls = Counter("ghr_github_api_calls", "GitHub API HTTP attempts by call kind, status class"
                                 " (2xx..5xx, none: no answer) and fault (secondary, primary, 5xx, connection, none).",
                                 ["kind", "status", "fault"], registry=r)
        self.api_retries = Counter("ghr_github_api_retries", "GitHub API attempts that were retries inside the"
                                   " client (absorbed faults).", ["kind"], registry=r)
        self.api_duration = Histogram("ghr_github_api_duration_seconds", "Duration of each GitHub API attempt.",
                                      buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0), registry=r)
        self.recovery_probes = Counter("ghr_pool_recovery_probes", "Cheap probes of a failed dependency during a"
                                       " backoff, by dependency and result (ok, failed).", ["kind", "result"],
                                       registry=r)
        self.orphans = Counter("ghr_pool_orphans_removed", "Orphans removed, by what was left over.",
                               ["what"], registry=r)
        self.dind_ready = Histogram("ghr_pool_dind_engine_wait_seconds", "docker \"dind\": how long a new runner"
                                    " waited, after its registration and container were made, for its sidecar engine"
                                    " to answer.", buckets=(0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
                                    registry=r)
        self.last_error = Gauge("ghr_pool_last_error_timestamp_seconds",
                                "When the last failure of each kind happened (unix time).", ["kind"], registry=r)
        self.healthy = Gauge("ghr_pool_healthy", "1 when the last cycle succeeded, else 0.", registry=r)
        self.draining = Gauge("ghr_pool_draining", "1 while draining after SIGTERM.", registry=r)
        self.backoff = Gauge("ghr_pool_backoff_seconds", "Current backoff delay (0 when healthy).", registry=r)
        self.spec_reloads = Counter("ghr_pool_spec_reloads", "Spec reloads (SIGHUP) applied.", registry=r)
        self.spec_reload_failures = Counter("ghr_pool_spec_reload_failures",
                                            "Spec reloads (SIGHUP) refused; the previous spec stays.", registry=r)
        self.spec_reload_ok = Gauge("ghr_pool_spec_reload_ok", "0 while the last reload was refused, else 1.",
                                    registry=r)
        self.spec_reload_ok.set(1)
        for state in ("idle", "busy", "starting"):
            self.runners.labels(state=state).set(0)
        self.pool = pool
        self._trouble_lock = threading.Lock()
        self._trouble_at: float | None = None  # last API answer that was slow, retried or a fault
        self._trouble: str | None = None

    def observe_request(self, ev: RequestEvent) -> None:
        """The GitHub client's `on_request` hook: one call per HTTP attempt (github_client.RequestEvent)."""
        kind = ev.kind or "other"
        fault = ev.fault
        if fault is None and ev.status is None:
            fault = "connection"
        self.api_calls.labels(kind=kind, status=status_class(ev.status), fault=fault or "none").inc()
        if ev.retry:
            self.api_retries.labels(kind=kind).inc()
        self.api_duration.observe(ev.duration)
        # A long poll is held open by the service on purpose: its length says nothing about GitHub's health.
        slow = ev.duration >= SLOW_CALL and kind not in LONG_POLL_KINDS
        why = (f"{fault} answer to {kind}" if fault else f"{kind} retried" if ev.retry
               else f"{kind} took {ev.duration:.1f} s" if slow else None)
        if why is not None:
            with self._trouble_lock:
                self._trouble_at, self._trouble = time.time(), why

    def api_trouble(self, since: float) -> str | None:
        """What made the API slow or faulty since `since` (unix time), or None if it was not."""
        with self._trouble_lock:
            if self._trouble_at is not None and self._trouble_at >= since:
                return self._trouble
            return None


class ScaleSetMetrics:
    """A scale-set pool's own series, in the manager's registry (a fixed pool has none of them)."""

    def __init__(self, metrics: Metrics) -> None:
        r = metrics.registry
        self.jobs = Gauge("ghr_scaleset_jobs", "The scale set's jobs by the last statistics: assigned (waiting +"
                          " running), running, available, acquired.", ["state"], registry=r)
        self.runners = Gauge("ghr_scaleset_runners", "The scale set's runners by the last statistics: registered,"
                             " busy, idle.", ["state"], registry=r)
        self.desired = Gauge("ghr_scaleset_desired_runners", "Runners wanted: min(max_runners, min_runners +"
                             " totalAssignedJobs).", registry=r)
        self.capacity = Gauge("ghr_scaleset_max_capacity", "The max capacity last reported to GitHub"
                              " (X-ScaleSetMaxCapacity).", registry=r)
        self.session_up = Gauge("ghr_scaleset_session_up", "1 while the manager holds the scale set's message"
                                " session.", registry=r)
        self.reconnects = Counter("ghr_scaleset_session_reconnects", "Message-session reconnects after a failed"
                                  " poll, by reason (error, session_lost, conflict).", ["reason"], registry=r)
        self.messages = Counter("ghr_scaleset_messages_handled", "Job messages handled, by type (JobAvailable,"
                                " JobAssigned, JobStarted, JobCompleted, unknown).", ["type"], registry=r)
        self.batches = Counter("ghr_scaleset_queue_messages", "Queue messages acknowledged, by outcome (handled,"
                               " redelivered, unreadable).", ["outcome"], registry=r)
        self.latency = Histogram("ghr_scaleset_job_start_latency_seconds", "From a job's queue time to its"
                                 " JobStarted on a runner of this pool.",
                                 buckets=(0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0), registry=r)
        for state in ("assigned", "running", "available", "acquired"):
            self.jobs.labels(state=state).set(0)
        for state in ("registered", "busy", "idle"):
            self.runners.labels(state=state).set(0)
        self.session_up.set(0)


@dataclass
class Health:
    """What `/healthz` reports. Written by the manager loop, read by the HTTP thread.

    `state`, and `since` (unix time) when it began:
    - `starting`: until the first successful reconcile (registrations listed and compared);
    - `ok`: the last pass succeeded and GitHub answered promptly, without faults or retries;
    - `degraded`: still working, but within the last minute an answer was slow (> SLOW_CALL), a
      fault, or a retry the client absorbed (`degraded_reason` says which);
    - `github`, `docker`: the last pass failed because GitHub or the Docker engine did not answer
      (or refused); `error`: it failed for another reason (image, start, gpu, internal: see
      `last_error_kind`);
    - `draining`, `stopped`: after SIGTERM.
    `ok` (HTTP 200) is true for `ok` and `degraded`, else false (503).
    """

    pool: str
    slots: int = 0
    ok: bool = False
    state: str = "starting"  # starting | ok | degraded | github | docker | error | draining | stopped
    since: float = field(default_factory=time.time)
    degraded_reason: str | None = None
    idle: int = 0
    busy: int = 0
    starting: int = 0
    last_error: str | None = None
    last_error_kind: str | None = None
    last_error_at: float | None = None
    last_success_at: float | None = None
    spec_hash: str | None = None  # the spec runners are made from (their ghr.spec-hash label)
    spec_reload_ok: bool = True  # False while the last SIGHUP's spec was refused (the old one runs on)
    spec_reload_field: str | None = None
    spec_reload_error: str | None = None
    spec_reload_failed_at: float | None = None
    spec_reloaded_at: float | None = None
    scale_set: dict[str, Any] | None = None  # a scale-set pool's session and demand (left out for a fixed pool)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **values: Any) -> None:
        with self._lock:
            for key, value in values.items():
                setattr(self, key, value)

    def set_state(self, state: str, **values: Any) -> None:
        """Move to `state` (`since` changes only when the state does) and update other fields."""
        with self._lock:
            if state != self.state:
                self.state = state
                self.since = time.time()
            for key, value in values.items():
                setattr(self, key, value)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            snap = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        if snap["scale_set"] is None:
            del snap["scale_set"]
        else:
            snap["scale_set"] = dict(snap["scale_set"])
        return snap


def serve(metrics: Metrics, health: Health, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve `/metrics` and `/healthz` on a daemon thread; port 0 picks a free one (see `server_port`)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body = generate_latest(metrics.registry)
                self._send(200, CONTENT_TYPE_LATEST, body)
            elif path == "/healthz":
                snap = health.snapshot()
                snap["now"] = time.time()
                self._send(200 if snap["ok"] else 503, "application/json", json.dumps(snap).encode())
            else:
                self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # scrapes are not events

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="ghr-metrics", daemon=True).start()
    return server
