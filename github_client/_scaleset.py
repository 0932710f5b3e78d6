"""Runner scale sets: GitHub's Actions service (scale sets, message sessions, JIT runners, agents).

The wire facts come from GitHub's own Go client (``github.com/actions/scaleset``); see
``/work/shared/notes/scale-sets.md``. The code is ours and reuses the REST transport
(:mod:`._http`): the same timeouts, bounded retries with backoff, rate-limit waits,
typed errors, redaction and :class:`RequestEvent` hook. Every Actions-service call has
its own ``kind``, all starting with :data:`SCALESET_KIND_PREFIX`, so a hook can count
them apart from the REST calls (the registration token the connection needs is a REST
call of the :class:`GitHubClient`, reported by *its* hook as ``registration_token``).

    scalesets = ScaleSetClient(GitHubClient(parse_scope(url), PatAuth(token)))
    group = scalesets.get_runner_group("Default")
    scale_set = scalesets.get_scale_set_by_name("ghr-cpu", group.id) or scalesets.create_scale_set(
        "ghr-cpu", runner_group_id=group.id, labels=["ghr-cpu"])
    with scalesets.open_session(scale_set.id, owner="host-1", conflict_wait=300) as session:
        batch = session.get_message(last_message_id, max_capacity=4)   # None: nothing new (202)
"""

from __future__ import annotations

import base64
import binascii
import json as jsonlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from ._client import GitHubClient
from ._errors import BadCredentials, Conflict, GitHubError, InvalidInput, NotFound
from ._http import Hook, Response, Transport
from ._models import RunnerGroup, parse_time
from ._redact import register_secret
from ._validate import check_id, check_labels, check_runner_name, check_work_folder

log = logging.getLogger("github_client")

#: ``api-version`` of every Actions-service request (query), and of the queue's ``Accept``.
SCALESET_API_VERSION = "6.0-preview"
#: Header of the long-poll GET: how many runners the scale set may have at most.
MAX_CAPACITY_HEADER = "X-ScaleSetMaxCapacity"
#: Every Actions-service call's :attr:`RequestEvent.kind` starts with this.
SCALESET_KIND_PREFIX = "scaleset_"
#: Reconnect (new registration token, new admin token) this long before the admin JWT expires.
ADMIN_TOKEN_REFRESH_MARGIN = 60.0
#: Read timeout of the long-poll GET: the service holds it about 50 s before a 202.
LONG_POLL_TIMEOUT = 90.0
#: While another session holds the scale set (409), try again this often (within ``conflict_wait``).
SESSION_CONFLICT_DELAY = 30.0
#: Longest scale set name (actions-runner-controller enforces it; runner names may have 64).
MAX_SCALE_SET_NAME_LENGTH = 45

_GROUPS = "/_apis/runtime/runnergroups/"
_SCALE_SETS = "/_apis/runtime/runnerscalesets"
_AGENTS = "/_apis/distributedtask/pools/0/agents"
_JOB_MESSAGES = "RunnerScaleSetJobMessages"
_QUEUE_ACCEPT = f"application/json; api-version={SCALESET_API_VERSION}"
_BOM = b"\xef\xbb\xbf"
_MAX_ID = 2**63 - 1


# -- errors ---------------------------------------------------------------------------------


class SessionConflict(Conflict):
    """409 on creating a message session: another listener holds a session on this scale set.

    The old session ends when its owner deletes it or stops polling; retry later, or pass
    ``conflict_wait`` to :meth:`ScaleSetClient.create_session`.
    """


class JobStillRunning(GitHubError):
    """The runner (agent) is running a job (``JobStillRunningException``); remove it after the job."""


class RunnerExists(Conflict):
    """A runner with that name is already registered (``AgentExistsException``)."""


class MessageError(GitHubError):
    """A queue message whose content cannot be read. ``message_id`` lets the caller acknowledge it."""

    def __init__(self, message: str, *, message_id: int | None) -> None:
        super().__init__(message)
        self.message_id = message_id


# -- models ---------------------------------------------------------------------------------


def _int(value: object, default: int = 0) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return default
    if isinstance(value, float):
        return int(value)
    return default


def _str(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _time(value: object) -> datetime | None:
    """A service timestamp; Go's zero time (``0001-01-01T00:00:00Z``) means "not yet"."""
    parsed = parse_time(value)
    return None if parsed is None or parsed.year <= 1 else parsed


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Statistics:
    """Job and runner counts of a scale set. Scale on ``total_assigned_jobs`` (waiting + running)."""

    total_available_jobs: int = 0
    total_acquired_jobs: int = 0
    total_assigned_jobs: int = 0
    total_running_jobs: int = 0
    total_registered_runners: int = 0
    total_busy_runners: int = 0
    total_idle_runners: int = 0

    @classmethod
    def from_api(cls, data: object) -> Statistics | None:
        if not isinstance(data, dict):
            return None
        return cls(
            total_available_jobs=_int(data.get("totalAvailableJobs")),
            total_acquired_jobs=_int(data.get("totalAcquiredJobs")),
            total_assigned_jobs=_int(data.get("totalAssignedJobs")),
            total_running_jobs=_int(data.get("totalRunningJobs")),
            total_registered_runners=_int(data.get("totalRegisteredRunners")),
            total_busy_runners=_int(data.get("totalBusyRunners")),
            total_idle_runners=_int(data.get("totalIdleRunners")),
        )


@dataclass(frozen=True)
class ScaleSet:
    """A runner scale set: jobs whose ``runs-on`` names one of its labels come to its sessions."""

    id: int
    name: str
    runner_group_id: int
    runner_group_name: str | None
    labels: tuple[str, ...]
    disable_update: bool = False
    created_on: datetime | None = None
    runner_jit_config_url: str | None = None
    statistics: Statistics | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ScaleSet:
        return cls(
            id=_int(data.get("id")),
            name=_str(data.get("name")),
            runner_group_id=_int(data.get("runnerGroupId")),
            runner_group_name=data.get("runnerGroupName") or None,
            labels=tuple(_str(_dict(label).get("name")) for label in data.get("labels") or []),
            disable_update=bool(_dict(data.get("RunnerSetting")).get("disableUpdate", False)),
            created_on=_time(data.get("createdOn")),
            runner_jit_config_url=data.get("runnerJitConfigUrl") or None,
            statistics=Statistics.from_api(data.get("statistics")),
        )


@dataclass(frozen=True)
class Session:
    """A message session: the queue to long-poll and its access token (a secret, refreshed by PATCH)."""

    session_id: str
    owner_name: str
    scale_set: ScaleSet | None
    message_queue_url: str
    message_queue_access_token: str = field(repr=False)
    statistics: Statistics | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Session:
        token = _str(data.get("messageQueueAccessToken"))
        register_secret(token)
        scale_set = data.get("runnerScaleSet")
        return cls(
            session_id=_str(data.get("sessionId")),
            owner_name=_str(data.get("ownerName")),
            scale_set=ScaleSet.from_api(scale_set) if isinstance(scale_set, dict) else None,
            message_queue_url=_str(data.get("messageQueueUrl")),
            message_queue_access_token=token,
            statistics=Statistics.from_api(data.get("statistics")),
        )


@dataclass(frozen=True, kw_only=True)
class JobMessage:
    """What every job message carries. Times are None while the step has not happened."""

    message_type: str
    runner_request_id: int
    job_id: str = ""
    repository_name: str = ""
    owner_name: str = ""
    job_workflow_ref: str = ""
    job_display_name: str = ""
    workflow_run_id: int = 0
    event_name: str = ""
    request_labels: tuple[str, ...] = ()
    queue_time: datetime | None = None
    scale_set_assign_time: datetime | None = None
    runner_assign_time: datetime | None = None
    finish_time: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class JobAvailable(JobMessage):
    """A job for this scale set: acquire it (:meth:`MessageSession.acquire_jobs`) to have it assigned."""

    acquire_job_url: str = ""


@dataclass(frozen=True, kw_only=True)
class JobAssigned(JobMessage):
    """The job is assigned to this scale set; a runner of the set will get it."""


@dataclass(frozen=True, kw_only=True)
class JobStarted(JobMessage):
    """A runner of the scale set started the job."""

    runner_id: int = 0
    runner_name: str = ""


@dataclass(frozen=True, kw_only=True)
class JobCompleted(JobMessage):
    """The job ended (``result``: succeeded, failed, canceled, ...); its runner is done."""

    result: str = ""
    runner_id: int = 0
    runner_name: str = ""


_MESSAGE_TYPES: dict[str, type[JobMessage]] = {
    "JobAvailable": JobAvailable,
    "JobAssigned": JobAssigned,
    "JobStarted": JobStarted,
    "JobCompleted": JobCompleted,
}

M = TypeVar("M", bound=JobMessage)


def parse_job_message(data: object) -> JobMessage | None:
    """One job message of a batch's body; None for a type this client does not know (skipped)."""
    if not isinstance(data, dict):
        return None
    message_type = _str(data.get("messageType"))
    cls = _MESSAGE_TYPES.get(message_type)
    if cls is None:
        return None
    common: dict[str, Any] = dict(
        message_type=message_type,
        runner_request_id=_int(data.get("runnerRequestId")),
        job_id=_str(data.get("jobId")),
        repository_name=_str(data.get("repositoryName")),
        owner_name=_str(data.get("ownerName")),
        job_workflow_ref=_str(data.get("jobWorkflowRef")),
        job_display_name=_str(data.get("jobDisplayName")),
        workflow_run_id=_int(data.get("workflowRunId")),
        event_name=_str(data.get("eventName")),
        request_labels=tuple(_str(label) for label in data.get("requestLabels") or []),
        queue_time=_time(data.get("queueTime")),
        scale_set_assign_time=_time(data.get("scaleSetAssignTime")),
        runner_assign_time=_time(data.get("runnerAssignTime")),
        finish_time=_time(data.get("finishTime")),
    )
    if cls is JobAvailable:
        return JobAvailable(acquire_job_url=_str(data.get("acquireJobUrl")), **common)
    if cls is JobStarted:
        return JobStarted(runner_id=_int(data.get("runnerId")), runner_name=_str(data.get("runnerName")), **common)
    if cls is JobCompleted:
        return JobCompleted(
            result=_str(data.get("result")),
            runner_id=_int(data.get("runnerId")),
            runner_name=_str(data.get("runnerName")),
            **common,
        )
    return JobAssigned(**common)


@dataclass(frozen=True)
class MessageBatch:
    """One queue message: up to 50 job messages and the scale set's statistics at that time.

    Acknowledge it with :meth:`MessageSession.delete_message` (``message_id``) once handled;
    an unacknowledged message comes again. ``message_type`` other than
    ``RunnerScaleSetJobMessages`` carries no jobs (acknowledge it all the same).
    """

    message_id: int
    message_type: str
    statistics: Statistics | None
    messages: tuple[JobMessage, ...] = ()

    def of_type(self, cls: type[M]) -> tuple[M, ...]:
        return tuple(m for m in self.messages if isinstance(m, cls))

    @property
    def available(self) -> tuple[JobAvailable, ...]:
        return self.of_type(JobAvailable)

    @property
    def assigned(self) -> tuple[JobAssigned, ...]:
        return self.of_type(JobAssigned)

    @property
    def started(self) -> tuple[JobStarted, ...]:
        return self.of_type(JobStarted)

    @property
    def completed(self) -> tuple[JobCompleted, ...]:
        return self.of_type(JobCompleted)


def parse_message_batch(data: object) -> MessageBatch:
    """A 200 answer of the queue. ``body`` is a JSON *string* holding the list of job messages."""
    if not isinstance(data, dict):
        raise MessageError("the Actions service answered the message poll with a non-object body", message_id=None)
    message_id = _int(data.get("messageId"))
    message_type = _str(data.get("messageType"))
    statistics = Statistics.from_api(data.get("statistics"))
    if message_type != _JOB_MESSAGES:
        log.warning("event=scaleset_message_skipped message_id=%d message_type=%s", message_id, message_type)
        return MessageBatch(message_id, message_type, statistics)
    body = data.get("body")
    items: object
    if body is None or body == "":
        items = []
    elif isinstance(body, str):
        try:
            items = jsonlib.loads(body.lstrip("\ufeff"))
        except ValueError:
            items = None
    else:
        items = body  # already decoded (lenient: GitHub sends a string)
    if not isinstance(items, list):
        raise MessageError(
            f"queue message {message_id}: its body is not a JSON list of job messages; "
            "acknowledge it (delete_message) to move on",
            message_id=message_id,
        )
    messages = []
    for item in items:
        parsed = parse_job_message(item)
        if parsed is None:
            log.warning(
                "event=scaleset_job_message_skipped message_id=%d message_type=%s",
                message_id,
                _str(_dict(item).get("messageType")) or "?",
            )
            continue
        messages.append(parsed)
    return MessageBatch(message_id, message_type, statistics, tuple(messages))


@dataclass(frozen=True)
class RunnerReference:
    """A runner (the service calls it an agent) of a scale set.

    ``status`` (``online``/``offline``), ``busy`` and ``version`` are None when the answer
    leaves them out (GitHub's Go client reads only id, name and scale set).
    """

    id: int
    name: str
    scale_set_id: int | None = None
    status: str | None = None
    busy: bool | None = None
    version: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RunnerReference:
        status, busy, version = data.get("status"), data.get("busy"), data.get("version")
        return cls(
            id=_int(data.get("id")),
            name=_str(data.get("name")),
            scale_set_id=_int(data.get("runnerScaleSetId")) or None,
            status=status if isinstance(status, str) else None,
            busy=busy if isinstance(busy, bool) else None,
            version=version if isinstance(version, str) and version else None,
        )


#: What the agent endpoints answer.
Agent = RunnerReference


@dataclass(frozen=True)
class ScaleSetJitConfig:
    """A just-in-time runner of a scale set; the encoded config is a secret for one runner, one job."""

    runner: RunnerReference
    encoded_jit_config: str = field(repr=False)


# -- JWT expiry -----------------------------------------------------------------------------


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, read without verifying it; None if it has none.

    Raises ValueError when ``token`` is not a JWT at all (the message never quotes it).
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError(f"not a JWT: {len(parts)} dot-separated part(s), expected 3")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = jsonlib.loads(base64.urlsafe_b64decode(payload.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a JWT: the payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ValueError("not a JWT: the payload is not a JSON object")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


# -- transport plumbing ---------------------------------------------------------------------


class _CallContext(threading.local):
    """Per-thread settings of the call in flight (headers, timeout) and its error's exception type."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.timeout: float | tuple[float, float] | None = None
        self.exception_type: str | None = None


def _exception_type(resp: requests.Response) -> str | None:
    """``typeName`` (or ``typeKey``) of the Actions service's exception envelope, if any."""
    try:
        body = resp.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    for key in ("typeName", "typeKey"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return None


class _ServiceSession(requests.Session):
    """The HTTP session of one thread for Actions-service calls.

    The shared :class:`Transport` sends GitHub REST headers; this swaps in the headers
    and timeout of the call in flight, drops a UTF-8 BOM (the service may send one) and
    notes the exception type of an error answer, so errors can be typed precisely.
    """

    def __init__(self, inner: requests.Session | None, ctx: _CallContext) -> None:
        super().__init__()
        self.trust_env = False
        self._inner = inner
        self._ctx = ctx

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        headers = {k: v for k, v in (kwargs.pop("headers", None) or {}).items() if k != "X-GitHub-Api-Version"}
        headers.update(self._ctx.headers)
        kwargs["headers"] = headers
        if self._ctx.timeout is not None:
            kwargs["timeout"] = self._ctx.timeout
        if self._inner is not None:
            resp = self._inner.request(method, url, *args, **kwargs)
        else:
            resp = super().request(method, url, *args, **kwargs)
        if resp.content and resp.content.startswith(_BOM):
            resp._content = resp.content[len(_BOM) :]
        self._ctx.exception_type = _exception_type(resp) if resp.status_code >= 400 else None
        return resp


class _ServiceTransport(Transport):
    """The REST transport (retries, rate limits, events) with a :class:`_ServiceSession` per thread."""

    def __init__(self, origin: str, *, inner: requests.Session | None, ctx: _CallContext, **options: Any) -> None:
        super().__init__(origin, **options)
        self._inner = inner
        self._ctx = ctx
        self._service_local = threading.local()

    def session(self) -> requests.Session:
        session: _ServiceSession | None = getattr(self._service_local, "session", None)
        if session is None:
            session = self._service_local.session = _ServiceSession(self._inner, self._ctx)
        return session


@dataclass(frozen=True)
class _Connection:
    service_url: str  # no trailing slash
    admin_token: str = field(repr=False)
    expires_at: float  # epoch seconds (the JWT's exp)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise GitHubError(f"the Actions service gave an unusable URL ({parts.scheme or 'no'} scheme); cannot call it")
    return f"{parts.scheme}://{parts.netloc}"


def _with_path(url: str, suffix: str) -> str:
    """``url`` with ``suffix`` appended to its path, its query kept."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + suffix, parts.query, parts.fragment))


def _check_count(value: object, field_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (0 <= value <= _MAX_ID):
        raise InvalidInput(field_name, f"expected a non-negative integer, got {value!r}")
    return value


def _check_scale_set_name(value: object, field_name: str = "name") -> str:
    name = check_runner_name(value, field_name)
    if len(name) > MAX_SCALE_SET_NAME_LENGTH:
        raise InvalidInput(
            field_name, f"scale set name is {len(name)} characters; GitHub allows at most {MAX_SCALE_SET_NAME_LENGTH}"
        )
    return name


def _check_session_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or "/" in value or value != value.strip():
        raise InvalidInput("session_id", f"expected the session's id (a UUID), got {value!r}")
    return value


def _bearer(token: str) -> Callable[[], str]:
    return lambda: f"Bearer {token}"


def _listed(body: object) -> list[dict[str, Any]]:
    """The ``value`` list of a ``{count, value}`` answer."""
    return [item for item in _dict(body).get("value") or [] if isinstance(item, dict)]


# -- the client -----------------------------------------------------------------------------


class ScaleSetClient:
    """Runner scale sets of one scope, through GitHub's Actions service. Thread-safe.

    Built from a :class:`GitHubClient` (its scope, credentials and transport options:
    ``timeout``, ``max_retries``, ``max_wait``, ``sleep``, ``clock``, ``on_request``,
    ``session``). The first call connects: a registration token over REST, then
    ``POST /actions/runner-registration`` gives the service URL and an admin token (a
    JWT), renewed :data:`ADMIN_TOKEN_REFRESH_MARGIN` before its ``exp`` and after a 401.
    ``poll_timeout`` is the read timeout of the message long poll.
    """

    def __init__(self, github: GitHubClient, *, poll_timeout: float = LONG_POLL_TIMEOUT) -> None:
        if not isinstance(github, GitHubClient):
            raise InvalidInput("github", "expected a GitHubClient")
        if isinstance(poll_timeout, bool) or not isinstance(poll_timeout, (int, float)) or not 0 < poll_timeout <= 600:
            raise InvalidInput("poll_timeout", f"expected seconds in (0, 600], got {poll_timeout!r}")
        self.github = github
        self.poll_timeout = float(poll_timeout)
        base = github._t
        self._options: dict[str, Any] = dict(
            timeout=base.timeout,
            max_retries=base.max_retries,
            max_wait=base.max_wait,
            user_agent=base.user_agent,
            sleep=base.sleep,
            clock=base.clock,
            on_request=base.on_request,
        )
        self._inner = base._session
        self._ctx = _CallContext()
        self._lock = threading.Lock()  # guards _transports
        self._conn_lock = threading.Lock()  # one reconnect at a time
        self._transports: dict[str, _ServiceTransport] = {}
        self._conn: _Connection | None = None

    def __repr__(self) -> str:
        return f"ScaleSetClient(scope={self.github.scope.web_url!r})"

    @property
    def calls(self) -> Counter[str]:
        """HTTP attempts of Actions-service calls so far, by kind (REST calls: ``github.calls``)."""
        total: Counter[str] = Counter()
        with self._lock:
            transports = list(self._transports.values())
        for transport in transports:
            with transport._lock:
                total.update(transport.calls)
        return total

    @property
    def on_request(self) -> Hook | None:
        return self._options["on_request"]  # type: ignore[no-any-return]

    def _clock(self) -> float:
        clock: Callable[[], float] = self._options["clock"]
        return clock()

    def _transport(self, url: str) -> _ServiceTransport:
        origin = _origin(url)
        with self._lock:
            transport = self._transports.get(origin)
            if transport is None:
                transport = self._transports[origin] = _ServiceTransport(
                    origin, inner=self._inner, ctx=self._ctx, **self._options
                )
            return transport

    def _send(
        self,
        method: str,
        url: str,
        kind: str,
        *,
        authorization: Callable[[], str],
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | tuple[float, float] | None = None,
        on_unauthorized: Callable[[], bool] | None = None,
        hints: Mapping[int, str] | None = None,
    ) -> Response:
        """One call through the shared transport, with this call's headers and timeout; typed errors."""
        ctx = self._ctx
        saved = (ctx.headers, ctx.timeout)
        ctx.headers = dict(headers or {"Accept": "application/json"})
        ctx.timeout = timeout
        ctx.exception_type = None
        try:
            return self._transport(url).request(
                method,
                url,
                kind=kind,
                authorization=authorization,
                params=params,
                json=json,
                on_unauthorized=on_unauthorized,
                hints=hints,
            )
        except GitHubError as exc:
            typed = _typed_error(exc, ctx.exception_type)
            if typed is exc:
                raise
            raise typed from exc
        finally:
            ctx.headers, ctx.timeout = saved

    # -- the admin connection ---------------------------------------------------------------

    def _connection(self, refused: _Connection | None = None) -> _Connection:
        """The admin connection, renewed near its expiry or when it is the one just ``refused`` (401)."""
        with self._conn_lock:
            conn = self._conn
            fresh = conn is not None and self._clock() < conn.expires_at - ADMIN_TOKEN_REFRESH_MARGIN
            if conn is not None and fresh and conn is not refused:
                return conn  # (another thread may already have replaced a refused one)
            self._conn = conn = self._connect()
            return conn

    def _connect(self) -> _Connection:
        scope = self.github.scope
        token = [self.github.registration_token().token]

        def new_registration_token() -> bool:
            # GitHub's client retries a 401/403 here; a fresh token is the one thing worth trying.
            token[0] = self.github.registration_token().token
            return True

        resp = self._send(
            "POST",
            f"{scope.api_url}/actions/runner-registration",
            f"{SCALESET_KIND_PREFIX}connect",
            authorization=lambda: f"RemoteAuth {token[0]}",
            json={"url": scope.web_url, "runner_event": "register"},
            on_unauthorized=new_registration_token,
            hints={
                401: "GitHub refused the fresh registration token for the Actions service; check the scope URL "
                "and that the credentials may administer its runners",
                404: f"GitHub did not accept the registration token for {scope.web_url}; check the scope URL "
                "(this GitHub may not offer runner scale sets)",
            },
        )
        body = _dict(resp.body)
        url, admin = body.get("url"), body.get("token")
        if not isinstance(admin, str) or not admin:
            raise GitHubError("POST /actions/runner-registration answered without an admin token; cannot connect")
        register_secret(admin)
        if not isinstance(url, str) or not url:
            raise GitHubError("POST /actions/runner-registration answered without the Actions service URL")
        _origin(url)
        try:
            expires = jwt_expiry(admin)
        except ValueError as exc:
            raise GitHubError(
                f"the Actions service admin token from /actions/runner-registration is unusable ({exc}); "
                "GitHub's own client needs a JWT with exp too: check the API URL points at GitHub"
            ) from None
        if expires is None:
            raise GitHubError("the Actions service admin token has no exp claim; cannot tell when to renew it")
        log.info(
            "event=scaleset_connected scope=%s service=%s expires_in=%.0f",
            scope.web_url,
            _origin(url),
            expires - self._clock(),
        )
        return _Connection(service_url=url.rstrip("/"), admin_token=admin, expires_at=expires)

    def _delete(self, path: str, kind: str, *, missing_ok: bool) -> bool:
        """An Actions-service DELETE; False when the thing was already gone and ``missing_ok``, else NotFound."""
        try:
            self._service("DELETE", path, kind)
        except NotFound:
            if missing_ok:
                return False
            raise
        return True

    def _service(
        self,
        method: str,
        path: str,
        kind: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        hints: Mapping[int, str] | None = None,
    ) -> Response:
        """An Actions-service call with the admin token; a 401 reconnects and retries once."""
        query = {**(params or {}), "api-version": SCALESET_API_VERSION}
        refused: _Connection | None = None
        for attempt in (1, 2):
            conn = self._connection(refused)
            try:
                return self._send(
                    method,
                    conn.service_url + path,
                    SCALESET_KIND_PREFIX + kind,
                    authorization=_bearer(conn.admin_token),
                    params=query,
                    json=json,
                    hints={
                        401: "the Actions service refused a fresh admin token; check the credentials' permissions",
                        **(hints or {}),
                    },
                )
            except BadCredentials:
                if attempt == 2:
                    raise
                refused = conn
                log.info("event=scaleset_admin_token_refused kind=%s action=reconnect", kind)
        raise AssertionError("unreachable")

    # -- runner groups and scale sets -------------------------------------------------------

    def get_runner_group(self, name: str) -> RunnerGroup:
        """The runner group named ``name`` (the default group is id 1). NotFound if there is none."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("runner_group", "is empty; use 'Default' for the default group")
        resp = self._service("GET", _GROUPS, "get_runner_group", params={"groupName": name})
        groups = _listed(resp.body)
        if not groups:
            raise NotFound(
                f"runner group {name!r} not found in the {self.github.scope.label}; create it in the "
                "Actions settings or fix the runner group name",
                method="GET",
                path=_GROUPS,
            )
        if len(groups) > 1:
            raise GitHubError(f"the Actions service found {len(groups)} runner groups named {name!r}; expected one")
        group = groups[0]
        return RunnerGroup(id=_int(group.get("id")), name=_str(group.get("name")), default=bool(group.get("isDefaultGroup")))

    def create_scale_set(
        self,
        name: str,
        *,
        runner_group_id: int = 1,
        labels: Iterable[str] = (),
        disable_update: bool = False,
    ) -> ScaleSet:
        """Create a scale set (names are unique within a runner group). Without labels, its name is the label."""
        name = _check_scale_set_name(name, "name")
        runner_group_id = check_id(runner_group_id, "runner_group_id")
        label_list = check_labels(labels, min_items=0) or [name]
        body = {
            "name": name,
            "runnerGroupId": runner_group_id,
            "labels": [{"type": "System", "name": label} for label in label_list],
            "RunnerSetting": {"disableUpdate": bool(disable_update)},
        }
        resp = self._service(
            "POST",
            _SCALE_SETS,
            "create",
            json=body,
            hints={409: f"a scale set named {name!r} exists in runner group {runner_group_id}; look it up by name"},
        )
        return ScaleSet.from_api(_dict(resp.body))

    def get_scale_set(self, scale_set_id: int) -> ScaleSet:
        scale_set_id = check_id(scale_set_id, "scale_set_id")
        resp = self._service(
            "GET",
            f"{_SCALE_SETS}/{scale_set_id}",
            "get",
            hints={404: f"scale set {scale_set_id} does not exist (deleted?)"},
        )
        if not isinstance(resp.body, dict):
            raise NotFound(f"scale set {scale_set_id} does not exist (the service answered no object)", method="GET")
        return ScaleSet.from_api(resp.body)

    def get_scale_set_by_name(self, name: str, runner_group_id: int = 1) -> ScaleSet | None:
        """The scale set named ``name`` in the runner group, or None."""
        name = _check_scale_set_name(name, "name")
        runner_group_id = check_id(runner_group_id, "runner_group_id")
        resp = self._service("GET", _SCALE_SETS, "get_by_name", params={"runnerGroupId": runner_group_id, "name": name})
        found = _listed(resp.body)
        if len(found) > 1:
            raise GitHubError(f"the Actions service found {len(found)} scale sets named {name!r}; expected one")
        return ScaleSet.from_api(found[0]) if found else None

    def update_scale_set(
        self,
        scale_set_id: int,
        *,
        name: str | None = None,
        runner_group_id: int | None = None,
        labels: Iterable[str] | None = None,
        disable_update: bool | None = None,
    ) -> ScaleSet:
        """Change what is given (PATCH); returns the scale set as the service has it now."""
        scale_set_id = check_id(scale_set_id, "scale_set_id")
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = _check_scale_set_name(name, "name")
        if runner_group_id is not None:
            body["runnerGroupId"] = check_id(runner_group_id, "runner_group_id")
        if labels is not None:
            body["labels"] = [{"type": "System", "name": label} for label in check_labels(labels)]
        if disable_update is not None:
            body["RunnerSetting"] = {"disableUpdate": bool(disable_update)}
        resp = self._service(
            "PATCH",
            f"{_SCALE_SETS}/{scale_set_id}",
            "update",
            json=body,
            hints={404: f"scale set {scale_set_id} does not exist (deleted?)"},
        )
        return ScaleSet.from_api(_dict(resp.body))

    def delete_scale_set(self, scale_set_id: int, *, missing_ok: bool = False) -> bool:
        """Delete a scale set. Returns False if it was already gone and ``missing_ok``."""
        scale_set_id = check_id(scale_set_id, "scale_set_id")
        return self._delete(f"{_SCALE_SETS}/{scale_set_id}", "delete", missing_ok=missing_ok)

    # -- sessions ---------------------------------------------------------------------------

    def create_session(self, scale_set_id: int, owner: str, *, conflict_wait: float = 0.0) -> Session:
        """Open a message session on the scale set (one live session per scale set).

        A 409 means another session holds it: :class:`SessionConflict` at once, or, with
        ``conflict_wait`` seconds, tried again every :data:`SESSION_CONFLICT_DELAY` s until
        that time is spent (a listener that crashed leaves a session the service expires).
        """
        scale_set_id = check_id(scale_set_id, "scale_set_id")
        if not isinstance(owner, str) or not owner.strip():
            raise InvalidInput("owner", "is empty; name the host or process that listens")
        if isinstance(conflict_wait, bool) or not isinstance(conflict_wait, (int, float)) or conflict_wait < 0:
            raise InvalidInput("conflict_wait", f"expected seconds >= 0, got {conflict_wait!r}")
        waited = 0.0
        while True:
            try:
                resp = self._service(
                    "POST",
                    f"{_SCALE_SETS}/{scale_set_id}/sessions",
                    "create_session",
                    json={"ownerName": owner},
                    hints={404: f"scale set {scale_set_id} does not exist (deleted?)"},
                )
                break
            except SessionConflict as exc:
                delay = min(SESSION_CONFLICT_DELAY, conflict_wait - waited)
                if delay <= 0:
                    raise
                log.warning(
                    "event=scaleset_session_conflict scale_set_id=%d owner=%s attempts=%s wait=%.0f",
                    scale_set_id,
                    owner,
                    exc.attempts,
                    delay,
                )
                sleep: Callable[[float], None] = self._options["sleep"]
                sleep(delay)
                waited += delay
        session = Session.from_api(_dict(resp.body))
        log.info("event=scaleset_session_created scale_set_id=%d session_id=%s", scale_set_id, session.session_id)
        return session

    def refresh_session(self, scale_set_id: int, session_id: str) -> Session:
        """A new queue token for the session (PATCH). NotFound once the session is gone."""
        scale_set_id = check_id(scale_set_id, "scale_set_id")
        session_id = _check_session_id(session_id)
        resp = self._service(
            "PATCH",
            f"{_SCALE_SETS}/{scale_set_id}/sessions/{quote(session_id, safe='')}",
            "refresh_session",
            hints={404: "the session is gone (expired or deleted); create a new one"},
        )
        return Session.from_api(_dict(resp.body))

    def delete_session(self, scale_set_id: int, session_id: str, *, missing_ok: bool = True) -> bool:
        """End the session (204). Returns False if it was already gone and ``missing_ok``."""
        scale_set_id = check_id(scale_set_id, "scale_set_id")
        session_id = _check_session_id(session_id)
        path = f"{_SCALE_SETS}/{scale_set_id}/sessions/{quote(session_id, safe='')}"
        return self._delete(path, "delete_session", missing_ok=missing_ok)

    def open_session(self, scale_set_id: int, owner: str, *, conflict_wait: float = 0.0) -> MessageSession:
        """:meth:`create_session` wrapped in a :class:`MessageSession` (queue calls, token refresh, close)."""
        return MessageSession(self, scale_set_id, self.create_session(scale_set_id, owner, conflict_wait=conflict_wait))

    # -- runners ----------------------------------------------------------------------------

    def generate_jitconfig(self, scale_set_id: int, name: str, work_folder: str = "_work") -> ScaleSetJitConfig:
        """Register one just-in-time runner in the scale set; the encoded config is a secret.

        As with the REST call: if a retry finds the name taken (:class:`RunnerExists` after an
        attempt whose answer was lost) by a runner that is offline, not busy and has never
        connected (no version), that runner is deleted and the registration repeated once.
        """
        scale_set_id = check_id(scale_set_id, "scale_set_id")
        name = check_runner_name(name)
        work_folder = check_work_folder(work_folder)

        def post() -> Response:
            return self._service(
                "POST",
                f"{_SCALE_SETS}/{scale_set_id}/generatejitconfig",
                "generate_jitconfig",
                json={"name": name, "workFolder": work_folder},
                hints={404: f"scale set {scale_set_id} does not exist (deleted?)"},
            )

        try:
            resp = post()
        except RunnerExists as exc:
            if (exc.attempts or 1) <= 1:
                raise  # the first attempt: someone else has the name
            stale = self.get_agent_by_name(name)
            if stale is None or stale.status in (None, "online") or stale.busy is not False or stale.version:
                raise
            self.delete_agent(stale.id, missing_ok=True)
            log.warning("event=scaleset_jit_reclaimed name=%s agent_id=%d", name, stale.id)
            resp = post()
        body = _dict(resp.body)
        encoded = _str(body.get("encodedJITConfig"))
        if not encoded:
            raise GitHubError(f"generatejitconfig for {name!r} answered without a JIT config")
        register_secret(encoded)
        return ScaleSetJitConfig(runner=RunnerReference.from_api(_dict(body.get("runner"))), encoded_jit_config=encoded)

    def get_agent(self, agent_id: int) -> RunnerReference:
        agent_id = check_id(agent_id, "agent_id")
        resp = self._service("GET", f"{_AGENTS}/{agent_id}", "get_agent", hints={404: "no such runner"})
        return RunnerReference.from_api(_dict(resp.body))

    def get_agent_by_name(self, name: str) -> RunnerReference | None:
        """The runner named ``name``, or None."""
        name = check_runner_name(name)
        resp = self._service("GET", _AGENTS, "get_agent_by_name", params={"agentName": name})
        found = _listed(resp.body)
        if len(found) > 1:
            raise GitHubError(f"the Actions service found {len(found)} runners named {name!r}; expected one")
        return RunnerReference.from_api(found[0]) if found else None

    def delete_agent(self, agent_id: int, *, missing_ok: bool = False) -> bool:
        """Remove a runner. :class:`JobStillRunning` while it runs a job; False if gone and ``missing_ok``."""
        agent_id = check_id(agent_id, "agent_id")
        return self._delete(f"{_AGENTS}/{agent_id}", "delete_agent", missing_ok=missing_ok)


class MessageSession:
    """A live message session: long-poll, acknowledge, acquire. Thread-safe; close it when done.

    A 401 from the queue (or from acquirejobs, which also uses the queue token) means the
    token expired: the session is refreshed (PATCH) and the call repeated once.
    """

    def __init__(self, client: ScaleSetClient, scale_set_id: int, session: Session) -> None:
        self.client = client
        self.scale_set_id = scale_set_id
        self._session = session
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"MessageSession(scale_set_id={self.scale_set_id}, session_id={self._session.session_id!r})"

    @property
    def session(self) -> Session:
        with self._lock:
            return self._session

    @property
    def statistics(self) -> Statistics | None:
        """Statistics as of the session's creation or last refresh."""
        return self.session.statistics

    def refresh(self) -> Session:
        """A new queue token (the service may also move the queue)."""
        with self._lock:
            refreshed = self.client.refresh_session(self.scale_set_id, self._session.session_id)
            self._session = refreshed
        log.info("event=scaleset_session_refreshed scale_set_id=%d", self.scale_set_id)
        return refreshed

    def _with_queue_token(self, call: Callable[[Session], Response], kind: str) -> Response:
        session = self.session
        try:
            return call(session)
        except BadCredentials:
            log.info("event=scaleset_queue_token_expired kind=%s action=refresh_session", kind)
        with self._lock:
            if self._session is session:  # another thread may have refreshed it already
                self._session = self.client.refresh_session(self.scale_set_id, session.session_id)
            session = self._session
        return call(session)

    def get_message(self, last_message_id: int = 0, max_capacity: int = 0, wait: float | None = None) -> MessageBatch | None:
        """The next queue message after ``last_message_id``, or None (202: nothing within the long poll).

        ``max_capacity``: the most runners this scale set may have now (sent as
        ``X-ScaleSetMaxCapacity``). ``wait``: read timeout for this poll (default: the
        client's ``poll_timeout``; keep it above the service's ~50 s hold).
        """
        last_message_id = _check_count(last_message_id, "last_message_id")
        max_capacity = _check_count(max_capacity, "max_capacity")
        read_timeout = self.client.poll_timeout if wait is None else wait
        if isinstance(read_timeout, bool) or not isinstance(read_timeout, (int, float)) or read_timeout <= 0:
            raise InvalidInput("wait", f"expected seconds > 0, got {wait!r}")
        params = {"lastMessageId": last_message_id} if last_message_id > 0 else None
        connect_timeout: float = self.client._options["timeout"]
        kind = f"{SCALESET_KIND_PREFIX}get_message"

        def call(session: Session) -> Response:
            return self.client._send(
                "GET",
                session.message_queue_url,
                kind,
                authorization=lambda: f"Bearer {session.message_queue_access_token}",
                params=params,
                headers={"Accept": _QUEUE_ACCEPT, MAX_CAPACITY_HEADER: str(max_capacity)},
                timeout=(connect_timeout, float(read_timeout)),
                hints={401: "the message queue refused a freshly refreshed session token"},
            )

        resp = self._with_queue_token(call, kind)
        if resp.status == 202 or resp.body is None:
            return None
        return parse_message_batch(resp.body)

    def delete_message(self, message_id: int) -> None:
        """Acknowledge a message (it would come again otherwise). A message already gone counts as done."""
        message_id = check_id(message_id, "message_id")
        kind = f"{SCALESET_KIND_PREFIX}delete_message"

        def call(session: Session) -> Response:
            return self.client._send(
                "DELETE",
                _with_path(session.message_queue_url, f"/{message_id}"),
                kind,
                authorization=lambda: f"Bearer {session.message_queue_access_token}",
                headers={"Accept": _QUEUE_ACCEPT},
                hints={401: "the message queue refused a freshly refreshed session token"},
            )

        try:
            self._with_queue_token(call, kind)
        except NotFound:
            log.info("event=scaleset_message_already_deleted message_id=%d", message_id)

    def acquire_jobs(self, runner_request_ids: Iterable[int]) -> list[int]:
        """Ask for the jobs of these ``runner_request_id``s; returns the ids the service gave this scale set."""
        ids = [check_id(i, "runner_request_ids") for i in runner_request_ids]
        if not ids:
            return []
        kind = f"{SCALESET_KIND_PREFIX}acquire_jobs"
        path = f"{_SCALE_SETS}/{self.scale_set_id}/acquirejobs"

        def call(session: Session) -> Response:
            conn = self.client._connection()
            return self.client._send(
                "POST",
                conn.service_url + path,
                kind,
                authorization=lambda: f"Bearer {session.message_queue_access_token}",
                params={"api-version": SCALESET_API_VERSION},
                json=ids,
                hints={401: "the Actions service refused a freshly refreshed session token"},
            )

        resp = self._with_queue_token(call, kind)
        return [_int(i) for i in _dict(resp.body).get("value") or []]

    def close(self) -> None:
        """Delete the session (idempotent; a session already gone is fine)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session_id = self._session.session_id
        self.client.delete_session(self.scale_set_id, session_id, missing_ok=True)
        log.info("event=scaleset_session_closed scale_set_id=%d", self.scale_set_id)

    def __enter__(self) -> MessageSession:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _typed_error(exc: GitHubError, exception_type: str | None) -> GitHubError:
    """The precise error for an Actions-service answer (its exception envelope, or a session 409)."""
    status = exc.status
    if status is None or not 400 <= status < 500:
        return exc
    meta: dict[str, Any] = dict(
        status=status,
        method=exc.method,
        path=exc.path,
        github_message=exc.github_message,
        documentation_url=exc.documentation_url,
        request_id=exc.request_id,
        attempts=exc.attempts,
    )
    said = f" ({exception_type}: {exc.github_message})" if exception_type else ""
    name = exception_type or ""
    if "JobStillRunningException" in name:
        return JobStillRunning(
            f"{exc.method} {exc.path}: the runner is still running a job{said}; remove it after the job ends",
            **meta,
        )
    if "AgentExistsException" in name:
        return RunnerExists(
            f"{exc.method} {exc.path}: a runner with that name already exists{said}; use a unique name or delete the old runner",
            **meta,
        )
    if "SessionConflict" in name or (status == 409 and (exc.path or "").endswith("/sessions")):
        return SessionConflict(
            f"{exc.method} {exc.path}: another session is open on this scale set ({status}){said}; "
            "stop the other listener, or wait for its session to expire and retry (conflict_wait)",
            **meta,
        )
    return exc


__all__ = [
    "ADMIN_TOKEN_REFRESH_MARGIN",
    "LONG_POLL_TIMEOUT",
    "MAX_CAPACITY_HEADER",
    "MAX_SCALE_SET_NAME_LENGTH",
    "SCALESET_API_VERSION",
    "SCALESET_KIND_PREFIX",
    "SESSION_CONFLICT_DELAY",
    "Agent",
    "JobAssigned",
    "JobAvailable",
    "JobCompleted",
    "JobMessage",
    "JobStarted",
    "JobStillRunning",
    "MessageBatch",
    "MessageError",
    "MessageSession",
    "RunnerExists",
    "RunnerReference",
    "ScaleSet",
    "ScaleSetClient",
    "ScaleSetJitConfig",
    "Session",
    "SessionConflict",
    "Statistics",
    "jwt_expiry",
    "parse_job_message",
    "parse_message_batch",
]
