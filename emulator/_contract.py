"""What the HTTP layer and the endpoint handlers share, and what they need from the Emulator.

The emulator's modules form a DAG: ``_errors`` <- ``_state`` <- ``_auth``, ``_scalesets`` <- ``_contract`` <-
``_routes``, ``_server`` <- ``_emulator``. ``_server`` (HTTP: dispatch, auth, limits, faults) and ``_routes`` (the
endpoint handlers) only know the :class:`EmulatorApi` protocol, which :class:`emulator.Emulator`
satisfies; neither imports the other nor ``_emulator``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from email.message import Message
from typing import Any, Protocol

from ._auth import Credentials, Principal
from ._errors import DOCS, ApiError
from ._scalesets import ScaleSets
from ._state import State

MAX_LATENCY = 30.0


@dataclass(frozen=True)
class FaultDecision:
    """The faults one request gets, decided once, atomically, when it arrives.

    ``kind``: ``drop`` (socket closed without an answer), ``error`` (``status``, a 5xx), ``secondary``
    (a secondary rate limit answering ``status`` with ``retry_after``), or None; ``latency`` is added
    either way. Changing the faults while the request is in flight does not change its answer.
    """

    latency: float = 0.0
    kind: str | None = None
    status: int | None = None
    retry_after: int | None = None


NO_FAULT = FaultDecision()


@dataclass
class Faults:
    """Injected misbehaviour for /api/v3 requests whose `METHOD template` contains `match` (all when None)."""

    errors: int = 0  # the next N matching requests answer error_status
    error_status: int = 502
    secondary: int = 0  # the next N matching requests hit a secondary rate limit
    secondary_status: int = 403
    retry_after: int | None = 60
    latency: float = 0.0  # seconds added to every matching request
    drop: int = 0  # the next N matching requests: socket closed without an answer
    exhaust: bool = False  # primary limit reads as exhausted for every principal
    primary_status: int = 403
    match: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def decide(self, endpoint: str) -> FaultDecision:
        """The fault for one request to ``endpoint`` (``METHOD template``), consuming its counter.

        One counted fault per request, first of drop, errors, secondary. The caller holds the lock
        that guards this object, so the decision and the consumption are one step.
        """
        if self.match is not None and self.match not in endpoint:
            return NO_FAULT
        latency = min(self.latency, MAX_LATENCY) if self.latency > 0 else 0.0
        if self.drop > 0:
            self.drop -= 1
            return FaultDecision(latency, "drop")
        if self.errors > 0:
            self.errors -= 1
            return FaultDecision(latency, "error", self.error_status)
        if self.secondary > 0:
            self.secondary -= 1
            return FaultDecision(latency, "secondary", self.secondary_status, self.retry_after)
        return FaultDecision(latency) if latency else NO_FAULT


class RequestLog:
    def __init__(self, maxlen: int = 5000) -> None:
        self.lock = threading.Lock()
        self.entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self.counts: Counter[str] = Counter()
        self.generation = 0  # bumped by reset: requests still in flight then are not counted

    def add(self, entry: dict[str, Any], generation: int) -> None:
        with self.lock:
            if generation != self.generation:
                return
            self.entries.append(entry)
            self.counts[entry["endpoint"]] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"counts": dict(self.counts), "log": list(self.entries)}

    def reset(self) -> None:
        with self.lock:
            self.entries.clear()
            self.counts.clear()
            self.generation += 1


class EmulatorApi(Protocol):
    """The part of :class:`emulator.Emulator` the HTTP layer and the handlers use."""

    state: State
    scalesets: ScaleSets
    creds: Credentials
    requests: RequestLog
    admin_token: str
    public_url: str | None
    deprecations: dict[str, tuple[str | None, str | None]]
    tarball: bytes
    tarball_sha256: str

    @property
    def url(self) -> str: ...

    def authenticate(self, authorization: str | None) -> Principal | None: ...

    def add_pat(self, token: str | None = None, scopes: Iterable[str] | None = None) -> str: ...

    def add_app(self, app_id: int | None, public_key_pem: str | bytes,
                installations: Iterable[str] | Mapping[str, Mapping[str, str] | None] = ()
                ) -> tuple[int, dict[str, int]]: ...

    def add_scope(self, scope: str) -> str: ...

    def add_runner_group(self, scope: str, name: str) -> int: ...

    def link_org(self, enterprise: str, org: str) -> None: ...

    def advance_clock(self, seconds: float) -> None: ...

    def enqueue_job(self, scope: str, labels: list[str], script: str, *, timeout: float = 600.0) -> int: ...

    def job(self, job_id: int) -> dict[str, Any]: ...

    def jobs(self) -> list[dict[str, Any]]: ...

    def runners(self, scope: str | None = None) -> list[dict[str, Any]]: ...

    def reset_requests(self) -> None: ...

    def set_faults(self, **kwargs: Any) -> None: ...

    def clear_faults(self) -> None: ...

    def faults_snapshot(self) -> Faults: ...

    def decide_fault(self, endpoint: str) -> FaultDecision: ...

    def options(self) -> dict[str, Any]: ...

    def end_scale_set_sessions(self, scale_set_id: int | None = None) -> int: ...

    def expire_queue_tokens(self, scale_set_id: int | None = None) -> int: ...

    def expire_admin_tokens(self) -> int: ...

    def set_options(self, **values: Any) -> None: ...


@dataclass
class Ctx:
    """One request as a handler sees it."""

    emu: EmulatorApi
    path: str  # the request target as sent (path and query)
    headers: Message
    params: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    principal: Principal | None
    base_url: str
    scope: str | None = None
    method: str = "GET"

    def q(self, name: str) -> str | None:
        v = self.query.get(name)
        return v[0] if v else None

    def json_body(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise ApiError(400, "Problems parsing JSON", DOCS)
        return self.body


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json; charset=utf-8"


Handler_t = Callable[[Ctx], Reply]


@dataclass
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    fn: Handler_t
    auth: str  # runners | jwt | remote | runner_admin | ratelimit | control | runner | public | actions | queue
