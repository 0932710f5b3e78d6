"""The public `Emulator`: owns the HTTP server thread, the state and the credentials."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from ._auth import ALL_PAT_SCOPES, Credentials, Principal, fingerprint
from ._contract import FaultDecision, Faults, RequestLog
from ._routes import build_routes
from ._scalesets import ScaleSets
from ._server import Server
from ._state import Options, State, parse_scope
from ._tarball import build as build_tarball
from ._tarball import filename_for
from ._tarball import sha256 as tarball_sha256

log = logging.getLogger("emulator")


class Emulator:
    """A GitHub (GHES-style) REST emulator on loopback. See emulator/README.md.

    Options (keyword-only): admin_token, public_url, token_ttl, installation_token_ttl, session_timeout,
    ephemeral_offline_ttl, offline_ttl, strict_scopes, rate_limit, installation_rate_limit, rate_window,
    rate_limit_status, max_poll_wait, deprecations; realism: state_lag, jit_labels_read_only; scale sets:
    actions_token_ttl, message_queue_token_ttl, message_poll_wait, scale_set_session_timeout,
    acquire_timeout, reassign_delay (these last eight can change at run time with `set_options`).
    """

    RUNTIME_OPTIONS = ("state_lag", "jit_labels_read_only", "actions_token_ttl", "message_queue_token_ttl",
                       "message_poll_wait", "scale_set_session_timeout", "acquire_timeout", "reassign_delay")

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, admin_token: str | None = None,
                 public_url: str | None = None, token_ttl: float = 3600.0, installation_token_ttl: float = 3600.0,
                 session_timeout: float = 60.0, ephemeral_offline_ttl: float = 86400.0,
                 offline_ttl: float = 14 * 86400.0, strict_scopes: bool = False, rate_limit: int = 5000,
                 installation_rate_limit: int = 5000, rate_window: float = 3600.0, rate_limit_status: int = 403,
                 max_poll_wait: float = 30.0,
                 deprecations: Mapping[str, tuple[str | None, str | None]] | None = None,
                 state_lag: float = 0.0, jit_labels_read_only: bool = False, actions_token_ttl: float = 3600.0,
                 message_queue_token_ttl: float = 3600.0, message_poll_wait: float = 50.0,
                 scale_set_session_timeout: float = 120.0, acquire_timeout: float = 60.0,
                 reassign_delay: float = 1.0) -> None:
        self.host, self._port = host, port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.state = State(Options(token_ttl=token_ttl, session_timeout=session_timeout,
                                   ephemeral_offline_ttl=ephemeral_offline_ttl, offline_ttl=offline_ttl,
                                   strict_scopes=strict_scopes, max_poll_wait=max_poll_wait))
        self.scalesets = ScaleSets(self.state)
        self.set_options(state_lag=state_lag, jit_labels_read_only=jit_labels_read_only,
                         actions_token_ttl=actions_token_ttl, message_queue_token_ttl=message_queue_token_ttl,
                         message_poll_wait=message_poll_wait, scale_set_session_timeout=scale_set_session_timeout,
                         acquire_timeout=acquire_timeout, reassign_delay=reassign_delay)
        self.creds = Credentials(self.state.now, installation_token_ttl=installation_token_ttl,
                                 rate_limit=rate_limit, installation_rate_limit=installation_rate_limit,
                                 rate_window=rate_window)
        self.creds.limit_status = rate_limit_status
        self._rate_limit_status = rate_limit_status
        self.admin_token = self.creds.add_pat(admin_token, ALL_PAT_SCOPES)
        self.requests = RequestLog()
        self.deprecations = dict(deprecations or {})
        self._faults = Faults()
        self._faults_lock = threading.Lock()
        self.tarball = build_tarball()
        self.tarball_sha256 = tarball_sha256(self.tarball)
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> Emulator:
        if self._server is not None:
            return self
        self._server = Server((self.host, self._port), self, build_routes())
        self._stop.clear()
        serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},  # stop() waits at most this
                                 name="emulator-http", daemon=True)
        janitor = threading.Thread(target=self._janitor, name="emulator-janitor", daemon=True)
        self._threads = [serve, janitor]
        for t in self._threads:
            t.start()
        log.info("event=emulator_started url=%s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stop.set()
        self.state.close()  # wakes long polls so their threads end
        self._server.shutdown()
        self._server.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._server = None
        log.info("event=emulator_stopped")

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _janitor(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.state.sweep()
            except Exception:  # keep sweeping; a bug here must not stop the emulator
                log.exception("event=janitor_error")

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api/v3"

    def download_url(self, arch: str = "x64") -> str:
        return f"{self.url}/_emulator/downloads/{filename_for(arch)}"

    # ---- credentials ------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> Principal | None:
        parts = (authorization or "").split(None, 1)
        if len(parts) == 2 and parts[0].lower() in ("bearer", "token") and parts[1].startswith("eyJ"):
            # The runner-admin token is a JWT too (signed by the emulator, not an App): try it first.
            t = self.state.check_token(parts[1].strip(), ("runner_admin",))
            if t is not None:
                return Principal("runner_admin", f"radm:{fingerprint(parts[1].strip())}", scope=t.scope)
        p = self.creds.authenticate(authorization)
        if p is not None and p.kind == "unknown" and authorization:
            token = authorization.split(None, 1)[1].strip()
            t = self.state.check_token(token, ("runner_admin",))
            if t is not None:
                return Principal("runner_admin", f"radm:{fingerprint(token)}", scope=t.scope)
        return p

    def add_pat(self, token: str | None = None, scopes: Iterable[str] | None = None) -> str:
        """Register a classic PAT with the given scopes (all scopes when None); returns the token."""
        return self.creds.add_pat(token, ALL_PAT_SCOPES if scopes is None else scopes)

    def remove_pat(self, token: str) -> None:
        self.creds.remove_pat(token)

    def add_app(self, app_id: int | None, public_key_pem: str | bytes,
                installations: Iterable[str] | Mapping[str, Mapping[str, str] | None] = ()) -> tuple[int, dict[str, int]]:
        """Register a GitHub App by its public key, installed on the given accounts (org logins or
        `enterprises/<slug>`; a mapping gives each installation its permissions). Returns
        `(app_id, {account: installation_id})`."""
        return self.creds.add_app(app_id, public_key_pem, installations)

    # ---- world ----------------------------------------------------------------------------
    def add_scope(self, scope: str) -> str:
        return self.state.add_scope(scope)

    def add_runner_group(self, scope: str, name: str) -> int:
        return self.state.add_group(scope, name)

    def link_org(self, enterprise: str, org: str) -> None:
        """Make `org` part of `enterprise`: enterprise runners then take that org's jobs."""
        self.state.link_org(enterprise, org)

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's clock forward (token expiry, offline removal) without sleeping."""
        self.state.advance_clock(seconds)

    # ---- jobs and runners -------------------------------------------------------------------
    def enqueue_job(self, scope: str, labels: list[str], script: str, *, timeout: float = 600.0,
                    container: str | dict[str, Any] | None = None,
                    services: dict[str, dict[str, Any]] | None = None) -> int:
        """Queue a job. `container`/`services` take a workflow file's shapes (see `_jobspec`): the stand-in
        runs the job's script in the job container and starts the services, through the Docker CLI."""
        return self.state.enqueue_job(scope, labels, script, timeout, container=container, services=services)

    def job(self, job_id: int) -> dict[str, Any]:
        return self.state.job(job_id)

    def jobs(self) -> list[dict[str, Any]]:
        return self.state.all_jobs()

    def wait_job(self, job_id: int, timeout: float = 60.0) -> dict[str, Any]:
        """Block until the job completes; raises TimeoutError after `timeout` seconds."""
        return self.state.wait_job(job_id, timeout)

    def runners(self, scope: str | None = None) -> list[dict[str, Any]]:
        return self.state.all_runners(scope)

    # ---- runner scale sets ------------------------------------------------------------------
    def scale_sets(self, scope: str | None = None) -> list[dict[str, Any]]:
        """Scale sets as the Actions service answers them, plus `scope`, `max_capacity` (last reported),
        `pending_messages`, `unacknowledged_messages` (ids) and `sessions` (ids)."""
        return self.scalesets.snapshot(parse_scope(scope) if scope else None)

    def scale_set_sessions(self) -> list[dict[str, Any]]:
        """Message sessions: `{sessionId, scaleSetId, ownerName, live, polling}`."""
        return self.scalesets.session_snapshot()

    def end_scale_set_sessions(self, scale_set_id: int | None = None) -> int:
        """Drop message sessions (all, or one scale set's): their queue tokens answer 401, refreshing them 404,
        and a new session can be created at once. Returns how many were dropped."""
        return self.scalesets.end_sessions(scale_set_id)

    def expire_queue_tokens(self, scale_set_id: int | None = None) -> int:
        """Expire the message-queue tokens now (sessions stay): the next queue call gets 401 until the session
        is refreshed (PATCH). Returns how many."""
        return self.scalesets.expire_queue_tokens(scale_set_id)

    def expire_admin_tokens(self) -> int:
        """Expire every Actions-service admin token (runner-registration JWT) now: 401 until a client gets a
        new one. Returns how many."""
        return self.state.expire_tokens(("runner_admin",))

    def options(self) -> dict[str, Any]:
        """The options `set_options` can change, with their current values."""
        return {name: getattr(self.state.opts, name) for name in self.RUNTIME_OPTIONS}

    def set_options(self, **values: Any) -> None:
        """Change run-time options, e.g. `set_options(message_poll_wait=0.5, acquire_timeout=2)`."""
        unknown = sorted(set(values) - set(self.RUNTIME_OPTIONS))
        if unknown:
            raise TypeError(f"unknown options: {', '.join(unknown)} (known: {', '.join(self.RUNTIME_OPTIONS)})")
        for name, value in values.items():
            if name == "jit_labels_read_only":
                if not isinstance(value, bool):
                    raise ValueError("jit_labels_read_only must be true or false")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0")
        with self.state.cond:
            for name, value in values.items():
                setattr(self.state.opts, name, value if name == "jit_labels_read_only" else float(value))
            self.state.cond.notify_all()

    def set_message_poll_wait(self, seconds: float) -> None:
        """How long a scale-set message GET is held before 202 (GitHub: about 50 s)."""
        self.set_options(message_poll_wait=seconds)

    # ---- request log ------------------------------------------------------------------------
    def request_counts(self) -> dict[str, int]:
        return dict(self.requests.snapshot()["counts"])

    def request_log(self) -> list[dict[str, Any]]:
        return list(self.requests.snapshot()["log"])

    def reset_requests(self) -> None:
        self.requests.reset()

    # ---- faults -------------------------------------------------------------------------------
    def set_faults(self, **kwargs: Any) -> None:
        """Replace the active faults, e.g. `set_faults(errors=3, error_status=503, match="generate-jitconfig")`.
        Fields: errors, error_status, secondary, secondary_status, retry_after, latency, drop, exhaust,
        primary_status, match."""
        faults = Faults(**kwargs)
        with self._faults_lock:
            self._faults = faults
            self.creds.exhausted = faults.exhaust
            self.creds.limit_status = faults.primary_status if faults.exhaust else self._rate_limit_status

    def clear_faults(self) -> None:
        self.set_faults()

    def faults_snapshot(self) -> Faults:
        with self._faults_lock:
            return dataclasses.replace(self._faults)

    def decide_fault(self, endpoint: str) -> FaultDecision:
        """The faults for one API request to `endpoint` (`METHOD template`), decided and consumed at once."""
        with self._faults_lock:
            return self._faults.decide(endpoint)

