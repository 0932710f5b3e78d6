"""Scale-set operations (the Actions service) of github_client: models, tokens, sessions, errors.

Most tests run the client against `FakeActionsService`, a minimal in-process stand-in for
GitHub's REST registration endpoints, the Actions service and the message queue, with the
shapes GitHub's Go client (actions/scaleset v0.4.0) expects. It answers through a scripted
requests session (no sockets, instant waits) and, for the wire-level tests at the end,
through a real HTTP server on loopback.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from ghc_fakes import FakeClock, ScriptedSession

from github_client import (
    ADMIN_TOKEN_REFRESH_MARGIN,
    MAX_CAPACITY_HEADER,
    REDACTED,
    SCALESET_KIND_PREFIX,
    BadCredentials,
    GitHubClient,
    GitHubError,
    GitHubUnavailable,
    InvalidInput,
    JobAssigned,
    JobAvailable,
    JobCompleted,
    JobStarted,
    JobStillRunning,
    MessageError,
    NotFound,
    PatAuth,
    RateLimited,
    RedactingFilter,
    RequestEvent,
    RunnerExists,
    ScaleSetClient,
    ServerError,
    Session,
    SessionConflict,
    Statistics,
    jwt_expiry,
    parse_message_batch,
    parse_scope,
    redact,
)

PAT = "ghp_" + "ScaleSetPat" * 4
ORG = "https://github.com/acme"
API = "https://api.github.com"
SERVICE = "https://pipelines.actions.example/tenant-1/"
QUEUE = "https://broker.actions.example/queue"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
STATS = {
    "totalAvailableJobs": 1,
    "totalAcquiredJobs": 2,
    "totalAssignedJobs": 3,
    "totalRunningJobs": 4,
    "totalRegisteredRunners": 5,
    "totalBusyRunners": 6,
    "totalIdleRunners": 7,
}

Reply = tuple[int, Any, dict[str, str]]


def exception(type_name: str, message: str) -> dict[str, Any]:
    """The Actions service's error envelope."""
    return {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": f"GitHub.DistributedTask.WebApi.{type_name}, GitHub.DistributedTask.WebApi",
        "typeKey": type_name,
        "errorCode": 0,
        "eventId": 3000,
    }


def job(message_type: str, request_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "messageType": message_type,
        "runnerRequestId": request_id,
        "repositoryName": "app",
        "ownerName": "acme",
        "jobId": f"job-{request_id}",
        "jobWorkflowRef": "acme/app/.github/workflows/ci.yml@refs/heads/main",
        "jobDisplayName": "build",
        "workflowRunId": 99,
        "eventName": "push",
        "requestLabels": ["ghr-cpu"],
        "queueTime": "2026-01-01T10:00:00Z",
        "scaleSetAssignTime": "2026-01-01T10:00:01Z",
        "runnerAssignTime": GO_ZERO_TIME,
        "finishTime": GO_ZERO_TIME,
        **extra,
    }


class FakeActionsService:
    """GitHub's side of the scale-set protocol, in memory. ``faults`` answers first, by kind."""

    def __init__(self, clock: FakeClock, service_url: str = SERVICE, queue_url: str = QUEUE) -> None:
        self.clock = clock
        self.service_url = service_url
        self.queue_url = queue_url
        self.token_ttl = 3600.0
        self.admin_tokens: list[str] = []
        self.queue_tokens: list[str] = []
        self.registration_tokens: list[str] = []
        self.scale_sets: dict[int, dict[str, Any]] = {}
        self.sessions: dict[str, int] = {}  # session id -> scale set id
        self.messages: list[dict[str, Any]] = []  # undeleted queue messages
        self.agents: dict[int, dict[str, Any]] = {}
        self.busy_agents: set[int] = set()
        self.faults: dict[str, list[Reply]] = {}
        self.lose: dict[str, int] = {}
        self.log: list[tuple[str, str, str]] = []  # (kind, method, url)
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []  # (kind, url, headers, body)
        self.non_jwt = False

    # -- helpers ----------------------------------------------------------------------------

    def admin_token(self) -> str:
        if self.non_jwt:
            return "opaque-admin-token-" + uuid.uuid4().hex
        now = self.clock.time()
        token = jwt.encode({"exp": int(now + self.token_ttl), "iat": int(now), "n": uuid.uuid4().hex}, "k" * 32)
        self.admin_tokens.append(token)
        return token

    def session_body(self, session_id: str, scale_set_id: int) -> dict[str, Any]:
        token = "queue-token-" + uuid.uuid4().hex
        self.queue_tokens.append(token)
        return {
            "sessionId": session_id,
            "ownerName": "host-1",
            "runnerScaleSet": self.scale_sets.get(scale_set_id),
            "messageQueueUrl": self.queue_url,
            "messageQueueAccessToken": token,
            "statistics": STATS,
        }

    def add_message(self, jobs: list[dict[str, Any]], message_id: int | None = None) -> int:
        message_id = message_id or len(self.messages) + 100
        self.messages.append(
            {
                "messageId": message_id,
                "messageType": "RunnerScaleSetJobMessages",
                "body": json.dumps(jobs),
                "statistics": STATS,
            }
        )
        return message_id

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.log]

    # -- routing ----------------------------------------------------------------------------

    def __call__(self, method: str, url: str, headers: dict[str, str], body: Any) -> Reply:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        kind, reply = self.route(method, url, parts.path, query, headers, body)
        self.log.append((kind, method, url))
        self.requests.append((kind, url, headers, body))
        if self.faults.get(kind):
            return self.faults[kind].pop(0)
        if self.lose.get(kind):  # done, but the answer is lost on the way back
            self.lose[kind] -= 1
            reply()
            return 502, None, {}
        return reply()

    def route(self, method: str, url: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any) -> Any:
        auth = headers.get("Authorization", "")
        if path.endswith("/runners/registration-token"):
            token = "AAREG" + uuid.uuid4().hex.upper()
            self.registration_tokens.append(token)
            return "registration_token", lambda: (201, {"token": token, "expires_at": "2030-01-01T00:00:00Z"}, {})
        if path.endswith("/actions/runner-registration") and not url.startswith(self.service_url):
            ok = auth == f"RemoteAuth {self.registration_tokens[-1]}" if self.registration_tokens else False
            return "connect", lambda: (
                (200, {"url": self.service_url, "token": self.admin_token()}, {}) if ok else (401, {"message": "no"}, {})
            )
        if url.startswith(self.queue_url):
            return self.route_queue(method, path, query, auth)
        assert url.startswith(self.service_url), url
        assert query.get("api-version") == "6.0-preview", url
        tail = path[len(urlsplit(self.service_url).path.rstrip("/")) :]
        if tail.endswith("/acquirejobs"):
            ok = bool(self.queue_tokens) and auth == f"Bearer {self.queue_tokens[-1]}"
            return "acquire_jobs", lambda: (200, {"count": len(body), "value": body}, {}) if ok else (401, None, {})
        if not self.admin_tokens or auth != f"Bearer {self.admin_tokens[-1]}":
            return "admin_refused", lambda: (401, {"message": "token expired"}, {})
        return self.route_service(method, tail, query, body)

    def route_service(self, method: str, tail: str, query: dict[str, str], body: Any) -> Any:
        segments = tail.strip("/").split("/")
        if tail.startswith("/_apis/runtime/runnergroups"):
            name = query["groupName"]
            groups = [{"id": 1, "name": "Default", "size": 0, "isDefaultGroup": True}]
            found = [g for g in groups if g["name"] == name]
            return "get_runner_group", lambda: (200, {"count": len(found), "value": found}, {})
        if tail.startswith("/_apis/distributedtask/pools/0/agents"):
            return self.route_agents(method, segments, query)
        # /_apis/runtime/runnerscalesets[/{id}[/sessions[/{sid}]|/generatejitconfig]]
        if len(segments) == 3 and method == "POST":
            return "create", lambda: self.create_scale_set(body)
        if len(segments) == 3 and method == "GET":
            found = [
                s
                for s in self.scale_sets.values()
                if s["name"] == query.get("name") and str(s["runnerGroupId"]) == query.get("runnerGroupId")
            ]
            return "get_by_name", lambda: (200, {"count": len(found), "value": found}, {})
        scale_set_id = int(segments[3])
        known = scale_set_id in self.scale_sets
        missing: Reply = (404, exception("RunnerScaleSetNotFoundException", "not found"), {})
        if len(segments) == 4:
            if method == "GET":
                return "get", lambda: (200, self.scale_sets[scale_set_id], {}) if known else missing
            if method == "PATCH":
                return "update", lambda: (200, self.update_scale_set(scale_set_id, body), {}) if known else missing
            if method == "DELETE":
                return "delete", lambda: (204, None, {}) if self.scale_sets.pop(scale_set_id, None) else missing
        if segments[4] == "generatejitconfig":
            return "generate_jitconfig", lambda: self.generate_jitconfig(scale_set_id, body)
        if segments[4] == "sessions" and len(segments) == 5:
            return "create_session", lambda: self.create_session(scale_set_id)
        session_id = segments[5]
        live = self.sessions.get(session_id) == scale_set_id
        if method == "PATCH":
            return "refresh_session", lambda: (
                (200, self.session_body(session_id, scale_set_id), {}) if live else (404, None, {})
            )
        return "delete_session", lambda: (204, None, {}) if self.sessions.pop(session_id, None) else (404, None, {})

    def route_agents(self, method: str, segments: list[str], query: dict[str, str]) -> Any:
        if len(segments) == 5:
            found = [a for a in self.agents.values() if a["name"] == query.get("agentName")]
            return "get_agent_by_name", lambda: (200, {"count": len(found), "value": found}, {})
        agent_id = int(segments[5])
        if method == "GET":
            return "get_agent", lambda: (200, self.agents[agent_id], {}) if agent_id in self.agents else (404, None, {})
        if agent_id in self.busy_agents:
            return "delete_agent", lambda: (
                400,
                exception("JobStillRunningException", f"Agent {agent_id} is running job; token {self.admin_tokens[-1]}"),
                {},
            )
        return "delete_agent", lambda: (204, None, {}) if self.agents.pop(agent_id, None) else (404, None, {})

    def route_queue(self, method: str, path: str, query: dict[str, str], auth: str) -> Any:
        ok = bool(self.queue_tokens) and auth == f"Bearer {self.queue_tokens[-1]}"
        expired: Reply = (401, None, {})
        if method == "GET":
            last = int(query.get("lastMessageId", "0"))
            pending = [m for m in self.messages if m["messageId"] > last]
            return "get_message", lambda: expired if not ok else (200, pending[0], {}) if pending else (202, None, {})
        message_id = int(path.rsplit("/", 1)[1])
        before = len(self.messages)
        if ok:
            self.messages = [m for m in self.messages if m["messageId"] != message_id]
        gone = len(self.messages) == before
        return "delete_message", lambda: expired if not ok else (404, None, {}) if gone else (204, None, {})

    # -- operations -------------------------------------------------------------------------

    def create_scale_set(self, body: dict[str, Any]) -> Reply:
        scale_set_id = len(self.scale_sets) + 1
        self.scale_sets[scale_set_id] = {
            "id": scale_set_id,
            "runnerGroupName": "Default",
            "createdOn": "2026-01-01T00:00:00Z",
            "runnerJitConfigUrl": f"{self.service_url}_apis/runtime/runnerscalesets/{scale_set_id}/generatejitconfig",
            "statistics": STATS,
            **body,
        }
        return 200, self.scale_sets[scale_set_id], {}

    def update_scale_set(self, scale_set_id: int, body: dict[str, Any]) -> dict[str, Any]:
        self.scale_sets[scale_set_id].update(body)
        return self.scale_sets[scale_set_id]

    def create_session(self, scale_set_id: int) -> Reply:
        if scale_set_id in self.sessions.values():
            return 409, exception("TaskAgentSessionConflictException", "session conflict"), {}
        session_id = str(uuid.uuid4())
        self.sessions[session_id] = scale_set_id
        return 200, self.session_body(session_id, scale_set_id), {}

    def generate_jitconfig(self, scale_set_id: int, body: dict[str, Any]) -> Reply:
        if any(a["name"] == body["name"] for a in self.agents.values()):
            return 409, exception("AgentExistsException", f"Agent {body['name']} exists"), {}
        agent_id = len(self.agents) + 10
        self.agents[agent_id] = {
            "id": agent_id,
            "name": body["name"],
            "runnerScaleSetId": scale_set_id,
            "status": "offline",
            "busy": False,
            "version": "",
        }
        return 200, {"runner": self.agents[agent_id], "encodedJITConfig": "eyJqaXQiOiAi" + "Q" * 80}, {}


class RecordingSession(ScriptedSession):
    """A scripted session answering from a FakeActionsService; records each send's timeout."""

    def __init__(self, service: FakeActionsService) -> None:
        super().__init__()
        self.timeouts: list[Any] = []

        def handler(request: requests.PreparedRequest) -> Reply:
            body = json.loads(request.body) if request.body else None
            return service(request.method or "", request.url or "", dict(request.headers), body)

        self.handler = handler

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.timeouts.append(kwargs.get("timeout"))
        return super().send(request, **kwargs)


@pytest.fixture
def service(clock: FakeClock) -> FakeActionsService:
    return FakeActionsService(clock)


@pytest.fixture
def wire(service: FakeActionsService) -> RecordingSession:
    return RecordingSession(service)


@pytest.fixture
def events() -> list[RequestEvent]:
    return []


@pytest.fixture
def scalesets(wire: RecordingSession, clock: FakeClock, events: list[RequestEvent]) -> ScaleSetClient:
    github = GitHubClient(
        parse_scope(ORG), PatAuth(PAT), session=wire, sleep=clock.sleep, clock=clock.time, on_request=events.append
    )
    return ScaleSetClient(github)


# -- pure parts ---------------------------------------------------------------------------------


def test_jwt_expiry_reads_exp_without_verifying() -> None:
    """The admin token's exp is read from the JWT payload, whatever key signed it."""
    token = jwt.encode({"exp": 1_800_000_000}, "some-key-we-do-not-have-0123456789")
    assert jwt_expiry(token) == 1_800_000_000.0
    assert jwt_expiry(jwt.encode({"iat": 1}, "k" * 32)) is None


@pytest.mark.parametrize("token", ["opaque", "a.b", "a.!!!.c", "x." + "bm90IGpzb24" + ".y"])
def test_jwt_expiry_refuses_what_is_not_a_jwt(token: str) -> None:
    """Anything but three base64url parts with a JSON payload is refused, without quoting it."""
    with pytest.raises(ValueError, match="not a JWT") as err:
        jwt_expiry(token)
    assert token not in str(err.value)


def test_message_batch_decodes_the_body_string() -> None:
    """The body is a JSON string of a list; each job message becomes its typed model."""
    body = [
        job("JobAvailable", 1, acquireJobUrl="https://x/acquire"),
        job("JobAssigned", 2),
        job("JobStarted", 3, runnerId=11, runnerName="r-11", runnerAssignTime="2026-01-01T10:00:02Z"),
        job("JobCompleted", 4, runnerId=12, runnerName="r-12", result="canceled", finishTime="2026-01-01T10:05:00Z"),
        {"messageType": "JobSomethingNew", "runnerRequestId": 5},
    ]
    batch = parse_message_batch(
        {"messageId": 7, "messageType": "RunnerScaleSetJobMessages", "body": json.dumps(body), "statistics": STATS}
    )
    assert batch.message_id == 7
    assert batch.statistics == Statistics(1, 2, 3, 4, 5, 6, 7)
    assert [type(m) for m in batch.messages] == [JobAvailable, JobAssigned, JobStarted, JobCompleted]
    assert batch.available[0].acquire_job_url == "https://x/acquire"
    assert batch.assigned[0].runner_request_id == 2
    started, completed = batch.started[0], batch.completed[0]
    assert (started.runner_id, started.runner_name, started.runner_assign_time is not None) == (11, "r-11", True)
    assert (completed.result, completed.runner_name, completed.finish_time is not None) == ("canceled", "r-12", True)
    first = batch.messages[0]
    assert first.job_id == "job-1" and first.workflow_run_id == 99 and first.request_labels == ("ghr-cpu",)
    assert first.queue_time is not None and first.queue_time.isoformat() == "2026-01-01T10:00:00+00:00"
    assert first.runner_assign_time is None and first.finish_time is None  # Go's zero time: not yet


@pytest.mark.parametrize("body", ["", None, "[]"])
def test_message_batch_with_empty_body(body: str | None) -> None:
    """An empty body is a batch without jobs (statistics only)."""
    batch = parse_message_batch({"messageId": 3, "messageType": "RunnerScaleSetJobMessages", "body": body})
    assert batch.messages == () and batch.message_id == 3


@pytest.mark.parametrize("body", ["not json", '{"a": 1}', "42"])
def test_message_batch_with_unreadable_body(body: str) -> None:
    """A body that is not a JSON list raises MessageError carrying the id to acknowledge."""
    with pytest.raises(MessageError) as err:
        parse_message_batch({"messageId": 8, "messageType": "RunnerScaleSetJobMessages", "body": body})
    assert err.value.message_id == 8


def test_message_batch_of_another_type_has_no_jobs() -> None:
    """A message type other than RunnerScaleSetJobMessages is kept (to acknowledge), without jobs."""
    batch = parse_message_batch({"messageId": 9, "messageType": "SomethingElse", "body": "[1]"})
    assert (batch.message_id, batch.message_type, batch.messages) == (9, "SomethingElse", ())


def test_session_model_hides_the_queue_token() -> None:
    """A Session's repr never shows the queue token, and the token is registered for redaction."""
    token = "queue-token-" + "z" * 20
    session = Session.from_api({"sessionId": "s-1", "ownerName": "h", "messageQueueUrl": QUEUE, "messageQueueAccessToken": token})
    assert token not in repr(session)
    assert redact(f"x {token} y") == f"x {REDACTED} y"


# -- connection and admin token -----------------------------------------------------------------


def test_connect_uses_registration_token_then_remote_auth(scalesets: ScaleSetClient, service: FakeActionsService) -> None:
    """A registration token over REST, then runner-registration with RemoteAuth and the scope URL."""
    scalesets.get_runner_group("Default")
    assert service.kinds() == ["registration_token", "connect", "get_runner_group"]
    _, url, headers, body = service.requests[1]
    assert url == f"{API}/actions/runner-registration"
    assert headers["Authorization"] == f"RemoteAuth {service.registration_tokens[0]}"
    assert body == {"url": ORG, "runner_event": "register"}
    _, url, headers, _ = service.requests[2]
    assert url.startswith(f"{SERVICE}_apis/runtime/runnergroups/?") and "api-version=6.0-preview" in url
    assert headers["Authorization"] == f"Bearer {service.admin_tokens[0]}"
    assert "X-GitHub-Api-Version" not in headers


def test_calls_are_counted_apart_from_rest(scalesets: ScaleSetClient, events: list[RequestEvent]) -> None:
    """Actions-service calls have their own kinds (prefix scaleset_); the REST token call keeps its own."""
    scalesets.get_runner_group("Default")
    assert [e.kind for e in events] == ["registration_token", "scaleset_connect", "scaleset_get_runner_group"]
    assert scalesets.github.calls == {"registration_token": 1}
    assert scalesets.calls == {"scaleset_connect": 1, "scaleset_get_runner_group": 1}
    assert all(k.startswith(SCALESET_KIND_PREFIX) for k in scalesets.calls)


def test_admin_token_is_reused_until_shortly_before_expiry(
    scalesets: ScaleSetClient, service: FakeActionsService, clock: FakeClock
) -> None:
    """The admin JWT is kept until ADMIN_TOKEN_REFRESH_MARGIN before its exp, then renewed first."""
    scalesets.get_runner_group("Default")
    clock.now += service.token_ttl - ADMIN_TOKEN_REFRESH_MARGIN - 5
    scalesets.get_runner_group("Default")
    assert service.kinds().count("connect") == 1
    clock.now += 10  # now inside the margin
    scalesets.get_runner_group("Default")
    assert service.kinds()[-3:] == ["registration_token", "connect", "get_runner_group"]
    assert len(service.admin_tokens) == 2


def test_admin_token_refused_reconnects_once(scalesets: ScaleSetClient, service: FakeActionsService) -> None:
    """A 401 from the service (token revoked early) reconnects and repeats the call once."""
    scalesets.get_runner_group("Default")
    service.admin_tokens.append("revoked-elsewhere")  # the service now expects another token
    group = scalesets.get_runner_group("Default")
    assert group.id == 1 and group.default
    assert service.kinds()[3:] == ["admin_refused", "registration_token", "connect", "get_runner_group"]


def test_refused_admin_token_is_replaced_once_for_all_threads(scalesets: ScaleSetClient, service: FakeActionsService) -> None:
    """Threads that all see the 401 share one reconnect."""
    scalesets.get_runner_group("Default")
    service.admin_tokens.append("revoked-elsewhere")
    with ThreadPoolExecutor(8) as pool:
        groups = list(pool.map(lambda _: scalesets.get_runner_group("Default"), range(8)))
    assert {g.id for g in groups} == {1}
    assert service.kinds().count("connect") == 2


def test_expired_queue_token_is_refreshed_once_for_all_threads(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int
) -> None:
    """Threads polling with an expired queue token share one session refresh."""
    session = scalesets.open_session(scale_set_id, "host-1")
    service.queue_tokens.append("rotated-by-the-service")
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: session.get_message(0, 1), range(6)))
    assert results == [None] * 6
    assert service.kinds().count("refresh_session") == 1


def test_admin_token_that_is_not_a_jwt_is_refused(scalesets: ScaleSetClient, service: FakeActionsService) -> None:
    """Like GitHub's client, the admin token must be a JWT with exp; the error never quotes it."""
    service.non_jwt = True
    with pytest.raises(GitHubError, match="JWT") as err:
        scalesets.get_runner_group("Default")
    assert "opaque-admin-token" not in str(err.value)


def test_runner_group_not_found(scalesets: ScaleSetClient) -> None:
    """An unknown runner group name is NotFound naming it."""
    with pytest.raises(NotFound, match="'GPU'"):
        scalesets.get_runner_group("GPU")


# -- scale sets -----------------------------------------------------------------------------------


def test_scale_set_lifecycle(scalesets: ScaleSetClient, service: FakeActionsService) -> None:
    """Create, get, get by name, update and delete send the Go client's shapes and parse the answers."""
    created = scalesets.create_scale_set("ghr-cpu", runner_group_id=1, labels=["ghr-cpu", "linux"])
    _, _, _, body = service.requests[-1]
    assert body == {
        "name": "ghr-cpu",
        "runnerGroupId": 1,
        "labels": [{"type": "System", "name": "ghr-cpu"}, {"type": "System", "name": "linux"}],
        "RunnerSetting": {"disableUpdate": False},
    }
    assert (created.id, created.name, created.labels, created.runner_group_name) == (
        1,
        "ghr-cpu",
        ("ghr-cpu", "linux"),
        "Default",
    )
    assert created.statistics is not None and created.statistics.total_assigned_jobs == 3
    assert scalesets.get_scale_set(created.id) == created
    assert scalesets.get_scale_set_by_name("ghr-cpu", 1) == created
    assert scalesets.get_scale_set_by_name("other", 1) is None
    updated = scalesets.update_scale_set(created.id, labels=["ghr-gpu"], disable_update=True)
    assert updated.labels == ("ghr-gpu",) and updated.disable_update
    assert service.requests[-1][3] == {
        "labels": [{"type": "System", "name": "ghr-gpu"}],
        "RunnerSetting": {"disableUpdate": True},
    }
    assert scalesets.delete_scale_set(created.id)
    assert scalesets.delete_scale_set(created.id, missing_ok=True) is False
    with pytest.raises(NotFound):
        scalesets.get_scale_set(created.id)


def test_scale_set_without_labels_is_labelled_by_its_name(scalesets: ScaleSetClient, service: FakeActionsService) -> None:
    """As in GitHub's client, a scale set without labels gets its name as the label."""
    assert scalesets.create_scale_set("ghr-x").labels == ("ghr-x",)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.create_scale_set(""), "name"),
        (lambda c: c.create_scale_set("s" * 46), "name"),
        (lambda c: c.get_scale_set(0), "scale_set_id"),
        (lambda c: c.create_session(1, " "), "owner"),
        (lambda c: c.generate_jitconfig(1, "a/b"), "name"),
        (lambda c: c.delete_agent(-1), "agent_id"),
    ],
)
def test_invalid_input_before_any_request(scalesets: ScaleSetClient, service: FakeActionsService, call: Any, field: str) -> None:
    """Bad arguments raise InvalidInput naming the field, before anything is sent."""
    with pytest.raises(InvalidInput) as err:
        call(scalesets)
    assert err.value.field == field and service.log == []


# -- sessions and the message queue ---------------------------------------------------------------


@pytest.fixture
def scale_set_id(scalesets: ScaleSetClient) -> int:
    return scalesets.create_scale_set("ghr-cpu").id


def test_session_conflict_is_typed(scalesets: ScaleSetClient, scale_set_id: int) -> None:
    """A second session on the same scale set is a SessionConflict (a Conflict), not a crash."""
    first = scalesets.create_session(scale_set_id, "host-1")
    with pytest.raises(SessionConflict, match="another session") as err:
        scalesets.create_session(scale_set_id, "host-2")
    assert err.value.status == 409 and "TaskAgentSessionConflictException" in str(err.value)
    assert scalesets.delete_session(scale_set_id, first.session_id)
    assert scalesets.delete_session(scale_set_id, first.session_id) is False


def test_session_conflict_waits_for_the_old_session(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int, clock: FakeClock
) -> None:
    """With conflict_wait, a 409 is tried again every 30 s until the old session is gone."""
    conflict: Reply = (409, exception("TaskAgentSessionConflictException", "conflict"), {})
    service.faults["create_session"] = [conflict, conflict]
    session = scalesets.create_session(scale_set_id, "host-1", conflict_wait=300)
    assert session.session_id in service.sessions
    assert clock.sleeps == [30.0, 30.0]


def test_session_conflict_wait_is_bounded(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int, clock: FakeClock
) -> None:
    """conflict_wait bounds the total wait; then SessionConflict is raised."""
    conflict: Reply = (409, exception("TaskAgentSessionConflictException", "conflict"), {})
    service.faults["create_session"] = [conflict] * 10
    with pytest.raises(SessionConflict):
        scalesets.create_session(scale_set_id, "host-1", conflict_wait=45)
    assert clock.sleeps == [30.0, 15.0]


def test_get_message_long_polls_with_capacity_and_202_is_none(
    scalesets: ScaleSetClient, service: FakeActionsService, wire: RecordingSession, scale_set_id: int
) -> None:
    """The poll carries the queue token, Accept with api-version and X-ScaleSetMaxCapacity; 202 -> None."""
    with scalesets.open_session(scale_set_id, "host-1") as session:
        assert session.statistics == Statistics(1, 2, 3, 4, 5, 6, 7)
        assert session.get_message(0, max_capacity=4) is None
        _, url, headers, _ = service.requests[-1]
        assert url == QUEUE
        assert headers["Authorization"] == f"Bearer {service.queue_tokens[-1]}"
        assert headers["Accept"] == "application/json; api-version=6.0-preview"
        assert headers[MAX_CAPACITY_HEADER] == "4"
        assert wire.timeouts[-1] == (10.0, 90.0)  # connect timeout, long-poll read timeout
        session.get_message(5, max_capacity=0, wait=120)
        assert service.requests[-1][1] == f"{QUEUE}?lastMessageId=5"
        assert wire.timeouts[-1] == (10.0, 120.0)
    assert service.sessions == {}  # closed on exit


def test_messages_come_until_acknowledged(scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int) -> None:
    """A message comes again until delete_message; acquire_jobs sends the request ids."""
    message_id = service.add_message([job("JobAvailable", 41), job("JobAvailable", 42)])
    session = scalesets.open_session(scale_set_id, "host-1")
    batch = session.get_message(0, 2)
    assert batch is not None and batch.message_id == message_id
    assert [m.runner_request_id for m in batch.available] == [41, 42]
    assert session.get_message(0, 2) == batch
    assert session.acquire_jobs([m.runner_request_id for m in batch.available]) == [41, 42]
    kind, url, headers, body = service.requests[-1]
    assert (kind, body) == ("acquire_jobs", [41, 42])
    assert url.startswith(f"{SERVICE}_apis/runtime/runnerscalesets/{scale_set_id}/acquirejobs?api-version=")
    assert headers["Authorization"] == f"Bearer {service.queue_tokens[-1]}"  # the queue token, as Go does
    session.delete_message(message_id)
    assert service.requests[-1][1] == f"{QUEUE}/{message_id}"
    assert session.get_message(message_id, 2) is None
    session.delete_message(message_id)  # already gone: fine
    assert session.acquire_jobs([]) == []
    session.close()


@pytest.mark.parametrize("op", ["get_message", "delete_message", "acquire_jobs"])
def test_expired_queue_token_refreshes_the_session(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int, op: str
) -> None:
    """401 with the queue token -> PATCH the session (new token) and repeat the call once."""
    message_id = service.add_message([job("JobAvailable", 7)])
    session = scalesets.open_session(scale_set_id, "host-1")
    old = session.session.message_queue_access_token
    service.queue_tokens.append("rotated-by-the-service")  # the old token now gets 401
    calls = {
        "get_message": lambda: session.get_message(0, 1),
        "delete_message": lambda: session.delete_message(message_id),
        "acquire_jobs": lambda: session.acquire_jobs([7]),
    }
    calls[op]()
    assert service.kinds()[-3:] == [op, "refresh_session", op]
    assert session.session.message_queue_access_token not in (old, "rotated-by-the-service")


def test_queue_token_refused_after_refresh_raises(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int
) -> None:
    """If the refreshed token is refused too, BadCredentials is raised (one refresh, no loop)."""
    session = scalesets.open_session(scale_set_id, "host-1")
    service.faults["get_message"] = [(401, None, {}), (401, None, {})]
    with pytest.raises(BadCredentials):
        session.get_message(0, 1)
    assert service.kinds().count("refresh_session") == 1


def test_session_gone_on_refresh_is_not_found(scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int) -> None:
    """A session the service dropped cannot be refreshed: NotFound saying to create a new one."""
    session = scalesets.open_session(scale_set_id, "host-1")
    service.sessions.clear()
    service.queue_tokens.append("rotated")
    with pytest.raises(NotFound, match="create a new one"):
        session.get_message(0, 1)
    session.close()  # already gone: fine


# -- runners (agents) -----------------------------------------------------------------------------


def test_jit_config_and_agents(scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int) -> None:
    """generatejitconfig sends {name, workFolder}; agents are found by id and name, and deleted."""
    jit = scalesets.generate_jitconfig(scale_set_id, "ghr-cpu-0-abc123")
    assert service.requests[-1][3] == {"name": "ghr-cpu-0-abc123", "workFolder": "_work"}
    assert jit.runner.name == "ghr-cpu-0-abc123" and jit.runner.scale_set_id == scale_set_id
    assert jit.encoded_jit_config not in repr(jit)
    assert scalesets.get_agent(jit.runner.id) == jit.runner
    assert scalesets.get_agent_by_name("ghr-cpu-0-abc123") == jit.runner
    assert scalesets.get_agent_by_name("nobody") is None
    with pytest.raises(RunnerExists):
        scalesets.generate_jitconfig(scale_set_id, "ghr-cpu-0-abc123")
    assert scalesets.delete_agent(jit.runner.id)
    assert scalesets.delete_agent(jit.runner.id, missing_ok=True) is False
    with pytest.raises(NotFound):
        scalesets.get_agent(jit.runner.id)


def test_jit_config_whose_answer_was_lost_is_reclaimed(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int
) -> None:
    """A retry that finds the name taken by our never-connected runner deletes it and registers again."""
    service.lose["generate_jitconfig"] = 1
    jit = scalesets.generate_jitconfig(scale_set_id, "ghr-lost")
    assert service.kinds()[-5:] == [
        "generate_jitconfig",
        "generate_jitconfig",
        "get_agent_by_name",
        "delete_agent",
        "generate_jitconfig",
    ]
    assert [a["name"] for a in service.agents.values()] == ["ghr-lost"] and jit.runner.name == "ghr-lost"


def test_jit_name_of_a_live_runner_is_not_reclaimed(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int
) -> None:
    """A taken name whose runner has connected (or is busy) stays: RunnerExists."""
    service.lose["generate_jitconfig"] = 1
    scalesets.generate_jitconfig(scale_set_id, "ghr-live")  # reclaimed once
    agent = next(iter(service.agents.values()))
    agent.update(status="online", version="2.330.0")
    service.lose["generate_jitconfig"] = 1
    service.agents[agent["id"] + 100] = {**agent, "id": agent["id"] + 100, "name": "ghr-other"}
    with pytest.raises(RunnerExists):
        scalesets.generate_jitconfig(scale_set_id, "ghr-other")


def test_busy_agent_delete_is_job_still_running(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int
) -> None:
    """Deleting a runner that runs a job raises JobStillRunning (from the exception envelope)."""
    jit = scalesets.generate_jitconfig(scale_set_id, "ghr-busy")
    service.busy_agents.add(jit.runner.id)
    with pytest.raises(JobStillRunning, match="still running a job") as err:
        scalesets.delete_agent(jit.runner.id)
    assert err.value.status == 400
    assert service.admin_tokens[-1] not in str(err.value)  # the service echoed it: redacted
    assert service.admin_tokens[-1] not in (err.value.github_message or "")


# -- faults, rate limits, redaction ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["connect", "create_session", "get_message", "acquire_jobs", "delete_agent"])
def test_5xx_is_retried(
    scalesets: ScaleSetClient,
    service: FakeActionsService,
    scale_set_id: int,
    events: list[RequestEvent],
    kind: str,
) -> None:
    """Server errors on Actions-service and queue endpoints are retried like REST calls."""
    scalesets._conn = None  # reconnect, so the "connect" case hits the fault
    events.clear()
    service.faults[kind] = [(502, None, {}), (503, {"message": "busy"}, {})]
    session = scalesets.open_session(scale_set_id, "host-1")
    jit = scalesets.generate_jitconfig(scale_set_id, "ghr-r")
    session.get_message(0, 1)
    session.acquire_jobs([1])
    scalesets.delete_agent(jit.runner.id)
    faulty = [e for e in events if e.kind == SCALESET_KIND_PREFIX + kind]
    assert [(e.status, e.fault, e.attempt) for e in faulty] == [(502, "5xx", 1), (503, "5xx", 2), (faulty[-1].status, None, 3)]


def test_429_waits_for_retry_after(
    scalesets: ScaleSetClient, service: FakeActionsService, scale_set_id: int, clock: FakeClock
) -> None:
    """A 429 with retry-after on the queue waits that long, then polls again."""
    session = scalesets.open_session(scale_set_id, "host-1")
    clock.sleeps.clear()
    service.faults["get_message"] = [(429, {"message": "slow down"}, {"retry-after": "7"})]
    assert session.get_message(0, 1) is None
    assert clock.sleeps == [7.0]


def test_5xx_gives_up_after_max_retries(wire: RecordingSession, clock: FakeClock, service: FakeActionsService) -> None:
    """Retries stop at max_retries with a ServerError naming the bound."""
    github = GitHubClient(parse_scope(ORG), PatAuth(PAT), session=wire, sleep=clock.sleep, clock=clock.time, max_retries=2)
    service.faults["get_runner_group"] = [(500, None, {})] * 5
    with pytest.raises(ServerError, match=r"max_retries=2"):
        ScaleSetClient(github).get_runner_group("Default")


def test_rate_limit_beyond_max_wait(scalesets: ScaleSetClient, service: FakeActionsService) -> None:
    """A retry-after beyond max_wait raises RateLimited at once."""
    service.faults["get_runner_group"] = [(429, {"message": "rate limit"}, {"retry-after": "3600"})]
    with pytest.raises(RateLimited):
        scalesets.get_runner_group("Default")


def test_tokens_never_reach_errors_or_logs(
    scalesets: ScaleSetClient,
    service: FakeActionsService,
    scale_set_id: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Admin and queue tokens echoed by the service are redacted in errors and log lines."""
    caplog.set_level(logging.DEBUG, logger="github_client")
    caplog.handler.addFilter(RedactingFilter())
    session = scalesets.open_session(scale_set_id, "host-1")
    admin, queue = service.admin_tokens[-1], session.session.message_queue_access_token
    service.faults["get_message"] = [(400, {"message": f"bad token {queue} / {admin}"}, {})]
    with pytest.raises(GitHubError) as err:
        session.get_message(0, 1)
    logging.getLogger("github_client").warning("echo %s %s", admin, queue)
    for text in (str(err.value), repr(err.value), err.value.github_message or "", caplog.text, repr(session)):
        assert admin not in text and queue not in text


# -- over real HTTP (loopback) ------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    service: FakeActionsService
    delays: dict[str, float]
    bom = False

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        host = f"http://{self.headers['Host']}"
        status, body, headers = self.service(
            self.command, host + self.path, dict(self.headers.items()), json.loads(raw) if raw else None
        )
        kind = self.service.log[-1][0]
        time.sleep(self.delays.get(kind, 0.0))
        data = b"" if body is None else json.dumps(body).encode()
        if data and self.bom and kind not in ("registration_token", "connect"):  # only the service sends one
            data = b"\xef\xbb\xbf" + data
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def loopback(clock: FakeClock) -> Iterator[tuple[str, FakeActionsService, type[_Handler]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    service = FakeActionsService(FakeClock(time.time()), f"{base}/tenant-1/", f"{base}/queue")
    handler = type("Handler", (_Handler,), {"service": service, "delays": {}})
    server.RequestHandlerClass = handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, service, handler
    finally:
        server.shutdown()
        server.server_close()


def _loopback_client(base: str, **kwargs: Any) -> ScaleSetClient:
    github = GitHubClient(parse_scope(f"{base}/acme"), PatAuth(PAT), sleep=lambda s: None, **kwargs)
    return ScaleSetClient(github)


def test_long_poll_outlasts_the_request_timeout(loopback: tuple[str, FakeActionsService, type[_Handler]]) -> None:
    """The poll's read timeout is its own: a 202 after longer than `timeout` still arrives."""
    base, service, handler = loopback
    client = _loopback_client(base, timeout=0.3, max_retries=0)
    scale_set = client.create_scale_set("ghr-cpu")
    session = client.open_session(scale_set.id, "host-1")
    handler.delays["get_message"] = 0.8
    assert session.get_message(0, 1, wait=5) is None
    with pytest.raises(GitHubUnavailable):
        session.get_message(0, 1, wait=0.3)
    handler.delays.clear()
    session.close()


def test_bom_prefixed_answers_are_read(loopback: tuple[str, FakeActionsService, type[_Handler]]) -> None:
    """Answers starting with a UTF-8 byte order mark (the service sends them) decode like any other."""
    base, service, handler = loopback
    handler.bom = True
    client = _loopback_client(base)
    scale_set = client.create_scale_set("ghr-bom")
    assert client.get_scale_set(scale_set.id).name == "ghr-bom"
    service.add_message([job("JobAssigned", 5)])
    with client.open_session(scale_set.id, "host-1") as session:
        batch = session.get_message(0, 1)
        assert batch is not None and batch.assigned[0].runner_request_id == 5


# -- against the emulator -----------------------------------------------------------------------
# The emulator serves the Actions service and queue (emulator/_scalesets.py); these run only where
# it does (they skip on an emulator without scale sets). Waits advance the emulator's clock.


@pytest.fixture(scope="module")
def ss_emu() -> Iterator[Any]:
    from emulator import Emulator

    if not hasattr(Emulator, "scale_sets"):
        pytest.skip("this emulator does not serve runner scale sets yet")
    emulator = Emulator(port=0, message_poll_wait=0.3, message_queue_token_ttl=60, scale_set_session_timeout=120)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


def emu_client(emu: Any, org: str, events: list[RequestEvent] | None = None, **kwargs: Any) -> ScaleSetClient:
    github = GitHubClient(
        parse_scope(f"{emu.url}/{org}"),
        PatAuth(emu.admin_token),
        sleep=emu.advance_clock,
        clock=emu.state.now,
        on_request=events.append if events is not None else None,
        **kwargs,
    )
    return ScaleSetClient(github)


def test_emulator_job_offer_acquire_and_runners(ss_emu: Any, org: str) -> None:
    """A queued job is offered (JobAvailable), acquired, then assigned; JIT runners and agents work."""
    client = emu_client(ss_emu, org)
    group = client.get_runner_group("Default")
    scale_set = client.create_scale_set("ghr-emu", runner_group_id=group.id, labels=["ghr-emu"])
    assert client.get_scale_set_by_name("ghr-emu", group.id) == scale_set
    with client.open_session(scale_set.id, "host-1") as session:
        assert session.get_message(0, 2) is None  # nothing queued: 202 after the poll wait
        ss_emu.enqueue_job(org, ["ghr-emu"], "echo hi")
        offer = session.get_message(0, 2)
        assert offer is not None and len(offer.available) == 1
        session.delete_message(offer.message_id)
        request_id = offer.available[0].runner_request_id
        assert session.acquire_jobs([request_id]) == [request_id]
        assigned = session.get_message(offer.message_id, 2)
        assert assigned is not None and [m.runner_request_id for m in assigned.assigned] == [request_id]
        assert assigned.statistics is not None and assigned.statistics.total_assigned_jobs == 1
        session.delete_message(assigned.message_id)
        jit = client.generate_jitconfig(scale_set.id, "ghr-emu-0-abc123")
        assert jit.runner.scale_set_id == scale_set.id
        agent = client.get_agent(jit.runner.id)
        assert (agent.name, agent.busy) == ("ghr-emu-0-abc123", False)
        assert client.get_agent_by_name("ghr-emu-0-abc123") == agent
        with pytest.raises(RunnerExists):
            client.generate_jitconfig(scale_set.id, "ghr-emu-0-abc123")
        assert client.delete_agent(jit.runner.id)
        assert client.get_agent_by_name("ghr-emu-0-abc123") is None
    assert all(s["scaleSetId"] != scale_set.id for s in ss_emu.scale_set_sessions())  # closed
    assert client.delete_scale_set(scale_set.id)
    assert client.get_scale_set_by_name("ghr-emu", group.id) is None


def test_emulator_session_conflict_and_wait(ss_emu: Any, org: str) -> None:
    """A second session is a SessionConflict; with conflict_wait it is opened once the first lapses."""
    client = emu_client(ss_emu, org)
    scale_set = client.create_scale_set("ghr-conflict")
    first = client.create_session(scale_set.id, "host-1")
    with pytest.raises(SessionConflict):
        client.create_session(scale_set.id, "host-2")
    second = client.create_session(scale_set.id, "host-2", conflict_wait=600)  # host-1 stopped polling
    assert second.session_id != first.session_id
    client.delete_session(scale_set.id, second.session_id)


def test_emulator_expired_queue_token_refreshes_the_session(ss_emu: Any, org: str) -> None:
    """After the queue token's lifetime the poll gets 401; the session is refreshed and the poll repeated."""
    events: list[RequestEvent] = []
    client = emu_client(ss_emu, org, events)
    scale_set = client.create_scale_set("ghr-refresh")
    with client.open_session(scale_set.id, "host-1") as session:
        old = session.session.message_queue_access_token
        ss_emu.advance_clock(61)
        assert session.get_message(0, 1) is None
        kinds = [(e.kind, e.status) for e in events][-3:]
        assert kinds == [("scaleset_get_message", 401), ("scaleset_refresh_session", 200), ("scaleset_get_message", 202)]
        assert session.session.message_queue_access_token != old


def test_emulator_admin_token_renewed_before_expiry(ss_emu: Any, org: str) -> None:
    """The emulator's admin JWT is renewed (new registration token, new connection) before its exp."""
    client = emu_client(ss_emu, org)
    client.get_runner_group("Default")
    ss_emu.advance_clock(3600 - ADMIN_TOKEN_REFRESH_MARGIN + 1)
    client.get_runner_group("Default")
    assert client.github.calls["registration_token"] == 2 and client.calls["scaleset_connect"] == 2


def test_emulator_5xx_on_the_service_is_retried(ss_emu: Any, org: str) -> None:
    """Faults the emulator injects on Actions-service endpoints are absorbed by retries."""
    events: list[RequestEvent] = []
    client = emu_client(ss_emu, org, events)
    client.get_runner_group("Default")
    ss_emu.set_faults(errors=2, match="runnergroups")
    try:
        client.get_runner_group("Default")
    finally:
        ss_emu.clear_faults()
    tail = [(e.status, e.attempt) for e in events if e.kind == "scaleset_get_runner_group"][-3:]
    assert tail == [(502, 1), (502, 2), (200, 3)]
