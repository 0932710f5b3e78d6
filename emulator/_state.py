"""Thread-safe in-memory GitHub state: scopes, runner groups, runners, labels, tokens, jobs.

Every public method takes the one lock; long polls wait on the lock's condition so that a
job enqueue, a job completion or a runner deletion wakes them at once.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from ._errors import RUNNER_DOCS, ApiError, not_found, unprocessable
from ._jobspec import normalize_container, normalize_services

RUNNER_VERSION = "2.337.0"
MIN_RUNNER_VERSION = "2.329.0"
DEFAULT_GROUP_ID = 1
MAX_OUTPUT = 1 << 20  # job output kept per job (bytes of text); the tail is kept

_ORG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_REPO_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
# Labels GitHub applies itself; listed as read-only whoever sets them.
_SYSTEM_LABELS = {"self-hosted", "linux", "windows", "macos", "x64", "arm64", "arm"}


def parse_scope(scope: str) -> str:
    """Canonical scope key: `org`, `owner/repo` or `enterprises/slug`, lower case. Raises 404 when malformed."""
    parts = scope.strip("/").split("/")
    if len(parts) == 2 and parts[0].lower() == "enterprises" and _ORG_RE.match(parts[1]):
        return f"enterprises/{parts[1].lower()}"
    if len(parts) == 1 and _ORG_RE.match(parts[0]):
        return parts[0].lower()
    if len(parts) == 2 and _ORG_RE.match(parts[0]) and _REPO_RE.match(parts[1]) and parts[1] not in (".", ".."):
        return f"{parts[0].lower()}/{parts[1].lower()}"
    raise not_found()


def scope_kind(scope: str) -> str:
    if scope.startswith("enterprises/"):
        return "enterprise"
    return "repo" if "/" in scope else "org"


def _version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0,)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def iso_ms(ts: float | None) -> str:
    """RFC 3339 with milliseconds; None is Go's zero time, as the Actions service sends unset times."""
    if ts is None:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def tenant_of(scope: str) -> str:
    """The Actions-service tenant of a scope: a stable opaque id, part of the service URL."""
    return hashlib.sha256(scope.encode()).hexdigest()[:20]


def _b64(data: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


@dataclass
class Label:
    id: int
    name: str
    type: str  # "read-only" | "custom"

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "type": self.type}


@dataclass
class Runner:
    id: int
    name: str
    scope: str
    group_id: int
    labels: list[Label]
    ephemeral: bool
    jit: bool
    secret: str
    created_at: float
    work_folder: str = "_work"
    os: str = "unknown"
    version: str | None = None
    disable_update: bool = False
    session_id: str | None = None
    last_seen: float | None = None
    jit_used: bool = False
    job_id: int | None = None
    scale_set_id: int | None = None  # a runner from a scale set's JIT config takes only that scale set's jobs
    delete_at: float | None = None  # finished ephemeral runner, removed after state_lag
    # What the API shows lags the truth by state_lag: the view before the last change, and when it changed.
    shown_before: tuple[str, bool] | None = None
    changed_at: float = 0.0


@dataclass
class Job:
    id: int
    scope: str
    labels: list[str]
    script: str
    timeout: float
    created_at: float
    status: str = "queued"  # queued | in_progress | completed
    conclusion: str | None = None  # success | failure | cancelled
    exit_code: int | None = None
    output: str = ""
    runner_id: int | None = None
    runner_name: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    # Scale sets: the one this job is assigned to, the current runner request, its stage
    # (available: offered, not acquired; acquired: waiting for one of the scale set's runners).
    scale_set_id: int | None = None
    request_id: int | None = None
    ss_state: str | None = None  # available | acquired
    assigned_at: float | None = None
    runner_assigned_at: float | None = None
    acquire_deadline: float | None = None
    cancellations: int = 0  # assignments cancelled because nobody acquired the job in time
    not_before: float = 0.0  # no new assignment before this (growing delay after a cancellation)
    job_uuid: str = ""
    container: dict[str, Any] | None = None  # workflow-file shapes, normalised (_jobspec)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "scope": self.scope, "labels": list(self.labels), "status": self.status,
            "conclusion": self.conclusion, "exit_code": self.exit_code, "output": self.output,
            "runner_id": self.runner_id, "runner_name": self.runner_name, "timeout": self.timeout,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at) if self.started_at else None,
            "completed_at": iso(self.completed_at) if self.completed_at else None,
            "scale_set_id": self.scale_set_id, "runner_request_id": self.request_id,
            "scale_set_stage": self.ss_state, "cancelled_assignments": self.cancellations,
            "container": copy.deepcopy(self.container), "services": copy.deepcopy(self.services),
        }


@dataclass
class ScopedToken:
    """Registration, remove and runner-admin tokens: bound to one scope, valid until expires_at."""

    kind: str  # registration | remove | runner_admin
    scope: str
    expires_at: float


@dataclass
class Group:
    id: int
    name: str
    default: bool


@dataclass
class Options:
    token_ttl: float = 3600.0  # registration/remove tokens
    session_timeout: float = 60.0  # no poll for this long: runner offline, its job failed
    ephemeral_offline_ttl: float = 86400.0  # never-connected ephemeral runner removed after this
    offline_ttl: float = 14 * 86400.0  # persistent runner removed after this long offline
    strict_scopes: bool = False  # True: only scopes added with add_scope exist
    max_poll_wait: float = 30.0
    # Realism (0 / False keep the behaviour the emulator had before scale sets).
    state_lag: float = 0.0  # busy/online changes show, and finished ephemeral runners go, this much later
    jit_labels_read_only: bool = False  # REST generate-jitconfig runners: every label read-only (GitHub's answer)
    # Runner scale sets (the Actions service).
    actions_token_ttl: float = 3600.0  # admin token (JWT) from runner-registration
    message_queue_token_ttl: float = 3600.0  # a message session's queue token
    message_poll_wait: float = 50.0  # longest a message GET is held before 202
    scale_set_session_timeout: float = 120.0  # a message session not heard from for this long is gone
    acquire_timeout: float = 60.0  # an offered job not acquired within this is cancelled and offered again
    reassign_delay: float = 1.0  # n-th re-offer waits n times this


class StateHooks:
    """What the scale-set layer hears from the runner protocol (called under the state lock)."""

    def job_enqueued(self) -> None:
        pass

    def job_started(self, r: Runner, j: Job) -> None:
        pass

    def job_finished(self, r: Runner | None, j: Job) -> None:
        pass

    def sweep(self, now: float) -> None:
        pass


class State:
    def __init__(self, options: Options | None = None) -> None:
        self.opts = options or Options()
        self.cond = threading.Condition(threading.RLock())
        self.clock_offset = 0.0
        self.closed = False
        self._ids = {"runner": 0, "job": 0, "label": 0}
        self.known_scopes: set[str] = set()
        self.enterprise_orgs: dict[str, set[str]] = {}  # enterprise slug -> orgs
        self.groups: dict[str, list[Group]] = {}  # org / enterprise scope -> groups
        self.label_ids: dict[str, int] = {}
        self.runners: dict[int, Runner] = {}
        self.jobs: dict[int, Job] = {}
        self.tokens: dict[str, ScopedToken] = {}
        self.sessions: dict[str, int] = {}  # session id -> runner id
        self.runner_secrets: dict[str, int] = {}  # runner credential -> runner id
        self.hooks = StateHooks()
        self.signing_key = secrets.token_bytes(32)  # signs the Actions-service admin tokens (JWT, HS256)

    # ---- clock and ids -------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance_clock(self, seconds: float) -> None:
        with self.cond:
            self.clock_offset += seconds
            self.sweep()
            self.cond.notify_all()

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _label(self, name: str, type_: str | None = None) -> Label:
        key = name.lower()
        if key not in self.label_ids:
            self.label_ids[key] = self._next("label")
        kind = type_ or ("read-only" if key in _SYSTEM_LABELS else "custom")
        return Label(self.label_ids[key], name, kind)

    # ---- scopes and groups ---------------------------------------------------------------
    def add_scope(self, scope: str) -> str:
        key = parse_scope(scope)
        with self.cond:
            self.known_scopes.add(key)
            if scope_kind(key) == "repo":
                self.known_scopes.add(key.split("/")[0])
        return key

    def link_org(self, enterprise: str, org: str) -> None:
        ent = parse_scope(f"enterprises/{enterprise}").split("/")[1]
        with self.cond:
            self.enterprise_orgs.setdefault(ent, set()).add(parse_scope(org))

    def require_scope(self, scope: str) -> str:
        key = parse_scope(scope)
        if self.opts.strict_scopes and key not in self.known_scopes:
            raise not_found(RUNNER_DOCS)
        return key

    def _groups(self, scope: str) -> list[Group]:
        if scope_kind(scope) == "repo":
            return [Group(DEFAULT_GROUP_ID, "Default", True)]
        return self.groups.setdefault(scope, [Group(DEFAULT_GROUP_ID, "Default", True)])

    def add_group(self, scope: str, name: str) -> int:
        key = parse_scope(scope)
        if scope_kind(key) == "repo":
            raise ValueError("runner groups belong to organisations and enterprises")
        with self.cond:
            groups = self._groups(key)
            for g in groups:
                if g.name.lower() == name.lower():
                    return g.id
            gid = max(g.id for g in groups) + 1
            groups.append(Group(gid, name, False))
            return gid

    def list_groups(self, scope: str) -> list[Group]:
        with self.cond:
            return list(self._groups(self.require_scope(scope)))

    def _group_name(self, scope: str, gid: int) -> str | None:
        for g in self._groups(scope):
            if g.id == gid:
                return g.name
        return None

    # ---- scoped tokens -------------------------------------------------------------------
    def create_token(self, kind: str, scope: str, audience: str = "") -> tuple[str, float]:
        with self.cond:
            key = self.require_scope(scope)
            if kind == "runner_admin":
                # The Actions-service admin token is a JWT: GitHub's client reads its `exp` to refresh it.
                now = self.now()
                expires = now + self.opts.actions_token_ttl
                claims = {"iss": "ghr-emulator", "aud": audience or "actions", "sub": key, "iat": int(now),
                          "nbf": int(now) - 1, "exp": int(expires), "jti": secrets.token_hex(8)}
                token = jwt.encode(claims, self.signing_key, algorithm="HS256")
                self.tokens[token] = ScopedToken(kind, key, expires)
                return token, expires
            # Same alphabet and length as GitHub's registration tokens (29 upper-case characters).
            token = "A" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(28))
            expires = self.now() + self.opts.token_ttl
            self.tokens[token] = ScopedToken(kind, key, expires)
            return token, expires

    def expire_tokens(self, kinds: tuple[str, ...]) -> int:
        """Make every token of these kinds expire now; returns how many."""
        with self.cond:
            gone = [tok for tok, t in self.tokens.items() if t.kind in kinds]
            for tok in gone:
                del self.tokens[tok]
            return len(gone)

    def check_token(self, token: str, kinds: tuple[str, ...]) -> ScopedToken | None:
        with self.cond:
            t = self.tokens.get(token)
            if t is None or t.kind not in kinds:
                return None
            if t.expires_at <= self.now():
                del self.tokens[token]
                return None
            return t

    # ---- runners -------------------------------------------------------------------------
    def _status(self, r: Runner) -> str:
        if r.session_id and r.last_seen is not None and self.now() - r.last_seen <= self.opts.session_timeout:
            return "online"
        return "offline"

    def shown(self, r: Runner) -> tuple[str, bool]:
        """(status, busy) as the API shows them: the truth, or for state_lag after a change the view before it."""
        if r.shown_before is not None and self.now() - r.changed_at < self.opts.state_lag:
            return r.shown_before
        return self._status(r), r.job_id is not None

    def _changing(self, r: Runner) -> None:
        """Call before changing a runner's session or job: the API keeps showing the old view for state_lag."""
        if self.opts.state_lag > 0:
            r.shown_before, r.changed_at = self.shown(r), self.now()

    def runner_json(self, r: Runner) -> dict[str, Any]:
        status, busy = self.shown(r)
        return {
            "id": r.id, "name": r.name, "os": r.os, "status": status, "busy": busy,
            "ephemeral": r.ephemeral, "runner_group_id": r.group_id, "version": r.version,
            "labels": [lb.as_json() for lb in r.labels],
        }

    def runner_internal(self, r: Runner) -> dict[str, Any]:
        out = self.runner_json(r)
        out.update(scope=r.scope, jit=r.jit, jit_used=r.jit_used, job_id=r.job_id, created_at=iso(r.created_at),
                   scale_set_id=r.scale_set_id)
        return out

    def _check_new_runner(self, scope: str, name: str, group_id: int, labels: list[str]) -> None:
        errors: list[str] = []
        if not isinstance(name, str) or not name.strip():
            errors.append("name must be a non-empty string")
        elif len(name) > 64:
            errors.append("name must be 64 characters or fewer")
        if not isinstance(group_id, int) or isinstance(group_id, bool):
            errors.append("runner_group_id must be an integer")
        if not isinstance(labels, list) or not 1 <= len(labels) <= 100:
            errors.append("labels must have between 1 and 100 items")
        elif any(not isinstance(lb, str) or not lb.strip() or len(lb) > 256 for lb in labels):
            errors.append("labels must be non-empty strings of at most 256 characters")
        if errors:
            raise unprocessable("Invalid request.", errors=errors)
        if self._group_name(scope, group_id) is None:
            raise unprocessable("Invalid request.", errors=[f"runner group {group_id} does not exist"])

    def _find_by_name(self, scope: str, name: str) -> Runner | None:
        for r in self.runners.values():
            if r.scope == scope and r.name.lower() == name.lower():
                return r
        return None

    def _new_runner(self, scope: str, name: str, group_id: int, labels: list[Label], *,
                    ephemeral: bool, jit: bool, work_folder: str) -> Runner:
        secret = secrets.token_urlsafe(32)
        r = Runner(self._next("runner"), name, scope, group_id, labels, ephemeral, jit, secret, self.now(),
                   work_folder=work_folder)
        self.runners[r.id] = r
        self.runner_secrets[secret] = r.id
        return r

    def runner_files(self, r: Runner, base_url: str) -> dict[str, dict[str, Any]]:
        """The files a runner keeps in its folder (`.runner`, `.credentials`, `.credentials_rsaparams`)."""
        return {
            ".runner": {
                "agentId": r.id, "agentName": r.name, "poolId": r.group_id,
                "poolName": self._group_name(r.scope, r.group_id) or "Default",
                "serverUrl": f"{base_url}/_emulator/runner", "gitHubUrl": f"{base_url}/{r.scope}",
                "workFolder": r.work_folder, "ephemeral": r.ephemeral, "disableUpdate": r.disable_update,
                "useV2Flow": True, **({"runnerScaleSetId": r.scale_set_id} if r.scale_set_id else {}),
            },
            # The stand-in has no RSA key pair (stdlib only): its one secret is this bearer credential.
            ".credentials": {
                "scheme": "OAuth",
                "data": {"clientId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{base_url}/runner/{r.id}")),
                         "authorizationUrl": f"{base_url}/_emulator/runner/token",
                         "requireFipsCryptography": "False", "token": r.secret},
            },
            ".credentials_rsaparams": {"standin": "no RSA parameters: the stand-in authenticates with .credentials"},
        }

    def generate_jitconfig(self, scope: str, body: dict[str, Any], base_url: str) -> tuple[dict[str, Any], str]:
        with self.cond:
            key = self.require_scope(scope)
            name, group_id, labels = body.get("name"), body.get("runner_group_id"), body.get("labels")
            work = body.get("work_folder", "_work")
            missing = [f for f in ("name", "runner_group_id", "labels") if f not in body]
            if missing:
                raise unprocessable("Invalid request.", errors=[f"{f} is required" for f in missing])
            if not isinstance(work, str) or not work or work.startswith("/") or ".." in work.split("/"):
                raise unprocessable("Invalid request.", errors=["work_folder must be a relative path"])
            self._check_new_runner(key, name, group_id, labels)  # type: ignore[arg-type]
            assert isinstance(name, str) and isinstance(labels, list) and isinstance(group_id, int)
            if self._find_by_name(key, name):
                raise ApiError(409, f"Already exists - A runner with the name {name} already exists.", RUNNER_DOCS)
            lbs: list[Label] = []
            kind = "read-only" if self.opts.jit_labels_read_only else None
            for lb in labels:
                if all(x.name.lower() != lb.lower() for x in lbs):
                    lbs.append(self._label(lb, kind))
            r = self._new_runner(key, name, group_id, lbs, ephemeral=True, jit=True, work_folder=work)
            return self.runner_json(r), self.encode_jitconfig(r, base_url)

    def encode_jitconfig(self, r: Runner, base_url: str) -> str:
        """The JIT config the stand-in's `run.sh --jitconfig` takes: base64 JSON of base64 file contents."""
        files = self.runner_files(r, base_url)
        return _b64({k: _b64(v) for k, v in files.items()})

    def register(self, scope: str, body: dict[str, Any], base_url: str) -> tuple[dict[str, Any], Runner]:
        """The runner's own registration (config.sh): labels come typed, may replace a runner of the same name."""
        with self.cond:
            key = self.require_scope(scope)
            name, group_id = body.get("name"), body.get("group_id", DEFAULT_GROUP_ID)
            raw = body.get("labels") or []
            names = [lb.get("name") if isinstance(lb, dict) else lb for lb in raw]
            self._check_new_runner(key, name, group_id, names)  # type: ignore[arg-type]
            assert isinstance(name, str) and isinstance(group_id, int)
            version = str(body.get("version") or "")
            if _version_tuple(version) < _version_tuple(MIN_RUNNER_VERSION):
                raise ApiError(400, f"Runner version v{version} is deprecated and cannot be registered. "
                               f"Update to {MIN_RUNNER_VERSION} or later.", RUNNER_DOCS)
            existing = self._find_by_name(key, name)
            if existing:
                if not body.get("replace"):
                    raise ApiError(409, f"Already exists - A runner with the name {name} already exists.", RUNNER_DOCS)
                self._delete(existing)
            lbs = [self._label(lb["name"], lb.get("type")) if isinstance(lb, dict) else self._label(lb) for lb in raw]
            r = self._new_runner(key, name, group_id, lbs, ephemeral=bool(body.get("ephemeral")), jit=False,
                                 work_folder=str(body.get("work_folder") or "_work"))
            r.version, r.disable_update = version, bool(body.get("updates_disabled"))
            return self.runner_files(r, base_url), r

    def _in_scope(self, scope: str, runner_id: int) -> Runner:
        r = self.runners.get(runner_id)
        if r is None or r.scope != scope:
            raise not_found(RUNNER_DOCS)
        return r

    def list_runners(self, scope: str, name: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            key = self.require_scope(scope)
            self.sweep()
            rs = [r for r in sorted(self.runners.values(), key=lambda r: r.id) if r.scope == key]
            if name is not None:
                rs = [r for r in rs if r.name.lower() == name.lower()]
            return [self.runner_json(r) for r in rs]

    def get_runner(self, scope: str, runner_id: int) -> dict[str, Any]:
        with self.cond:
            self.sweep()
            return self.runner_json(self._in_scope(self.require_scope(scope), runner_id))

    def delete_runner(self, scope: str, runner_id: int) -> None:
        with self.cond:
            r = self._in_scope(self.require_scope(scope), runner_id)
            if r.job_id is not None:
                raise unprocessable(f'Bad request - Runner "{r.name}" is still running a job"')
            self._delete(r)

    def _delete(self, r: Runner) -> None:
        self.runners.pop(r.id, None)
        self.runner_secrets.pop(r.secret, None)
        if r.session_id:
            self.sessions.pop(r.session_id, None)
        self.cond.notify_all()

    def all_runners(self, scope: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            self.sweep()
            key = parse_scope(scope) if scope else None
            return [self.runner_internal(r) for r in sorted(self.runners.values(), key=lambda r: r.id)
                    if key is None or r.scope == key]

    # ---- labels --------------------------------------------------------------------------
    def labels(self, scope: str, runner_id: int) -> list[dict[str, Any]]:
        with self.cond:
            return [lb.as_json() for lb in self._in_scope(self.require_scope(scope), runner_id).labels]

    def _label_input(self, body: dict[str, Any], min_items: int) -> list[str]:
        labels = body.get("labels")
        if not isinstance(labels, list) or not min_items <= len(labels) <= 100 or \
                any(not isinstance(x, str) or not x.strip() for x in labels):
            raise unprocessable("Validation Failed", errors=[f"labels must have between {min_items} and 100 non-empty strings"])
        return labels

    def add_labels(self, scope: str, runner_id: int, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self.cond:
            r = self._in_scope(self.require_scope(scope), runner_id)
            for name in self._label_input(body, 1):
                if all(lb.name.lower() != name.lower() for lb in r.labels):
                    r.labels.append(self._label(name, "custom"))
            return [lb.as_json() for lb in r.labels]

    def set_labels(self, scope: str, runner_id: int, body: dict[str, Any]) -> list[dict[str, Any]]:
        with self.cond:
            r = self._in_scope(self.require_scope(scope), runner_id)
            names = self._label_input(body, 0)
            keep = [lb for lb in r.labels if lb.type == "read-only"]
            for name in names:
                if all(lb.name.lower() != name.lower() for lb in keep):
                    keep.append(self._label(name, "custom"))
            r.labels = keep
            return [lb.as_json() for lb in r.labels]

    def clear_labels(self, scope: str, runner_id: int) -> list[dict[str, Any]]:
        with self.cond:
            r = self._in_scope(self.require_scope(scope), runner_id)
            r.labels = [lb for lb in r.labels if lb.type == "read-only"]
            return [lb.as_json() for lb in r.labels]

    def remove_label(self, scope: str, runner_id: int, name: str) -> list[dict[str, Any]]:
        with self.cond:
            r = self._in_scope(self.require_scope(scope), runner_id)
            match = [lb for lb in r.labels if lb.name.lower() == name.lower()]
            if not match:
                raise not_found(RUNNER_DOCS)
            if match[0].type == "read-only":
                raise unprocessable(f"Cannot remove read-only label {name}.")
            r.labels = [lb for lb in r.labels if lb is not match[0]]
            return [lb.as_json() for lb in r.labels]

    # ---- jobs ----------------------------------------------------------------------------
    def enqueue_job(self, scope: str, labels: list[str], script: str, timeout: float = 600.0,
                    container: Any = None, services: Any = None) -> int:
        key = parse_scope(scope)
        job_container, job_services = normalize_container(container), normalize_services(services)
        if not isinstance(labels, list) or not labels or any(not isinstance(x, str) for x in labels):
            raise ValueError("labels must be a non-empty list of strings")
        if not isinstance(script, str):
            raise ValueError("script must be a string")
        with self.cond:
            job = Job(self._next("job"), key, list(labels), script, float(timeout), self.now(),
                      job_uuid=str(uuid.uuid4()), container=job_container, services=job_services)
            self.jobs[job.id] = job
            self.hooks.job_enqueued()
            self.cond.notify_all()
            return job.id

    def job(self, job_id: int) -> dict[str, Any]:
        with self.cond:
            j = self.jobs.get(job_id)
            if j is None:
                raise KeyError(job_id)
            return j.as_json()

    def all_jobs(self) -> list[dict[str, Any]]:
        with self.cond:
            return [j.as_json() for j in sorted(self.jobs.values(), key=lambda j: j.id)]

    def wait_job(self, job_id: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                j = self.jobs.get(job_id)
                if j is None:
                    raise KeyError(job_id)
                if j.status == "completed":
                    return j.as_json()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} is still {j.status} after {timeout}s")
                self.cond.wait(min(left, 1.0))

    def _takes(self, r: Runner, j: Job) -> bool:
        """A scale set's runner takes the jobs its scale set acquired; other runners take unassigned jobs."""
        if r.scale_set_id is not None:
            return j.scale_set_id == r.scale_set_id and j.ss_state == "acquired"
        return j.scale_set_id is None and self._matches(r, j)

    def _matches(self, r: Runner, j: Job) -> bool:
        return self.reaches(r.scope, [lb.name for lb in r.labels], j)

    def reaches(self, scope: str, labels: Iterable[str], j: Job) -> bool:
        """Whether a runner (or scale set) of ``scope`` with ``labels`` may take job ``j``: it has every label
        of the job (case-insensitive) and its scope is the job's repository, the owning org or the org's enterprise."""
        have = {x.lower() for x in labels}
        if not {x.lower() for x in j.labels} <= have:
            return False
        if scope == j.scope:
            return True
        owner = j.scope.split("/")[0]
        if scope_kind(scope) == "org":
            return owner == scope
        if scope_kind(scope) == "enterprise":
            return owner in self.enterprise_orgs.get(scope.split("/")[1], set())
        return False

    # ---- runner protocol (stand-in runner <-> emulator) ----------------------------------
    def runner_by_secret(self, secret: str) -> Runner | None:
        with self.cond:
            rid = self.runner_secrets.get(secret)
            return self.runners.get(rid) if rid is not None else None

    def open_session(self, r: Runner, os_name: str, version: str) -> str:
        with self.cond:
            if r.id not in self.runners:
                raise not_found(RUNNER_DOCS)
            if r.jit and r.jit_used:
                raise ApiError(403, "This JIT configuration has already been used. Generate a new one.", RUNNER_DOCS)
            if r.session_id and self._status(r) == "online":
                raise ApiError(409, f"A session for runner {r.name} already exists.", RUNNER_DOCS)
            if r.session_id:
                self.sessions.pop(r.session_id, None)
            self._changing(r)
            r.jit_used = r.jit_used or r.jit
            r.session_id = secrets.token_hex(16)
            r.last_seen = self.now()
            r.os, r.version = os_name or "Linux", version or r.version
            self.sessions[r.session_id] = r.id
            self.cond.notify_all()
            return r.session_id

    def _session_runner(self, r: Runner, session_id: str) -> Runner:
        if r.id not in self.runners or r.session_id != session_id:
            raise not_found(RUNNER_DOCS)
        return r

    def close_session(self, r: Runner, session_id: str) -> None:
        with self.cond:
            r = self._session_runner(r, session_id)
            self._changing(r)
            r.session_id = None
            self.sessions.pop(session_id, None)
            self.cond.notify_all()

    def poll(self, r: Runner, session_id: str, wait: float) -> dict[str, Any] | None:
        """Long poll: the next matching queued job, assigned to this runner, or None when `wait` ran out."""
        deadline = time.monotonic() + max(0.0, min(wait, self.opts.max_poll_wait))
        with self.cond:
            while True:
                r = self._session_runner(r, session_id)
                r.last_seen = self.now()
                if r.job_id is None and r.delete_at is None:
                    for j in sorted(self.jobs.values(), key=lambda j: j.id):
                        if j.status == "queued" and self._takes(r, j):
                            self._changing(r)
                            j.status, j.started_at = "in_progress", self.now()
                            j.runner_id, j.runner_name, r.job_id = r.id, r.name, j.id
                            if j.scale_set_id is not None:
                                j.runner_assigned_at = j.started_at
                                self.hooks.job_started(r, j)
                            self.cond.notify_all()
                            return {"job_id": j.id, "script": j.script, "scope": j.scope, "labels": j.labels,
                                    "timeout": j.timeout, "container": copy.deepcopy(j.container),
                                    "services": copy.deepcopy(j.services)}
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(min(left, 1.0))

    def heartbeat(self, r: Runner, job_id: int, output: str | None) -> None:
        with self.cond:
            j = self.jobs.get(job_id)
            if j is None or j.runner_id != r.id or r.id not in self.runners or r.job_id != job_id:
                raise not_found(RUNNER_DOCS)
            r.last_seen = self.now()
            if output:
                j.output = (j.output + output)[-MAX_OUTPUT:]

    def complete(self, r: Runner, job_id: int, exit_code: int | None, output: str, conclusion: str | None) -> None:
        with self.cond:
            j = self.jobs.get(job_id)
            if j is None or j.runner_id != r.id or j.status != "in_progress":
                raise not_found(RUNNER_DOCS)
            j.status, j.completed_at, j.exit_code = "completed", self.now(), exit_code
            j.conclusion = conclusion or ("success" if exit_code == 0 else "failure")
            j.output = (j.output + (output or ""))[-MAX_OUTPUT:]
            live = self.runners.get(r.id)
            if live is not None:
                self._changing(live)
                live.job_id, live.last_seen = None, self.now()
                # GitHub deletes an ephemeral runner once its one job is done (state_lag later).
                if live.ephemeral:
                    self._retire(live)
            if j.scale_set_id is not None:
                self.hooks.job_finished(live or r, j)
            self.cond.notify_all()

    def _retire(self, r: Runner) -> None:
        """A finished ephemeral runner: deleted now, or after state_lag (its session ends now)."""
        if self.opts.state_lag <= 0:
            self._delete(r)
            return
        if r.session_id:
            self.sessions.pop(r.session_id, None)
            r.session_id = None
        r.delete_at = self.now() + self.opts.state_lag

    # ---- housekeeping --------------------------------------------------------------------
    def sweep(self) -> None:
        """Fail jobs of runners that went silent; remove runners offline for too long; drop expired tokens."""
        with self.cond:
            now = self.now()
            for r in list(self.runners.values()):
                if r.delete_at is not None:
                    if r.delete_at <= now:
                        self._delete(r)
                    continue
                online = self._status(r) == "online"
                if r.job_id is not None and not online:
                    j = self.jobs.get(r.job_id)
                    if j is not None and j.status == "in_progress":
                        j.status, j.conclusion, j.completed_at = "completed", "failure", now
                        j.output += "\n[emulator] the runner lost communication with the server\n"
                        if j.scale_set_id is not None:
                            self.hooks.job_finished(r, j)
                    r.job_id = None
                    if r.ephemeral:
                        self._delete(r)
                        continue
                if not online:
                    since = r.last_seen if r.last_seen is not None else r.created_at
                    ttl = self.opts.ephemeral_offline_ttl if r.ephemeral else self.opts.offline_ttl
                    if now - since > ttl:
                        self._delete(r)
            for tok, t in list(self.tokens.items()):
                if t.expires_at <= now:
                    del self.tokens[tok]
            self.hooks.sweep(now)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
