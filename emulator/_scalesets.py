"""Runner scale sets: the Actions-service side that GitHub's Go client `actions/scaleset` talks to.

Scale sets, their message sessions and queues, job assignment and acquisition, JIT configs and agents.
Everything runs under the state's one lock (``State.cond``); the runner protocol reports job starts and
ends through the :class:`StateHooks` this class implements. Wire facts: emulator/README.md, "Runner
scale sets" (with the list of behaviours the emulator had to guess).
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ._errors import ActionsError
from ._state import Job, Runner, State, StateHooks, iso_ms, tenant_of

MAX_BATCH = 50  # job messages per queue message
MAX_REASSIGN = 3  # offers cancelled for want of an acquire are re-offered at most this often
NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,45}$")
RESULTS = {"success": "succeeded", "failure": "failed", "cancelled": "canceled"}
SCALE_SETS = "/_apis/runtime/runnerscalesets"


def _bad(message: str) -> ActionsError:
    return ActionsError(400, "ArgumentException", message)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _bad(f"{what} must be an integer")
    try:
        return int(value)
    except ValueError:
        raise _bad(f"{what} must be an integer") from None


@dataclass
class QueueMessage:
    id: int
    body: str  # the JSON list of job messages, as the wire carries it (a string)
    delivered_to: str | None = None  # the session that last got it


@dataclass
class ScaleSet:
    id: int
    scope: str
    name: str
    group_id: int
    labels: list[dict[str, str]]  # [{type, name}]
    disable_update: bool
    created_on: float
    service_url: str  # the Actions-service URL (ends with /) the scale set was created through
    max_capacity: int | None = None  # last X-ScaleSetMaxCapacity; None: nothing is offered yet
    pending: list[dict[str, Any]] = field(default_factory=list)  # job messages not yet in a queue message
    messages: dict[int, QueueMessage] = field(default_factory=dict)  # unacknowledged, in id order


@dataclass
class Session:
    id: str
    scale_set_id: int
    owner: str
    token: str
    created: float
    last_seen: float
    polling: int = 0


class ScaleSets(StateHooks):
    def __init__(self, state: State) -> None:
        self.s = state
        self.sets: dict[int, ScaleSet] = {}
        self.sessions: dict[str, Session] = {}
        self.queue_tokens: dict[str, tuple[str, float]] = {}  # token -> (session id, expires)
        self._ids = {"set": 0, "request": 0, "message": 0}
        state.hooks = self

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    # ---- URLs ------------------------------------------------------------------------------
    @staticmethod
    def service_url(base_url: str, scope: str) -> str:
        return f"{base_url}/_services/pipelines/{tenant_of(scope)}/"

    # ---- runner groups -----------------------------------------------------------------------
    def runner_groups(self, scope: str, name: str | None) -> list[dict[str, Any]]:
        with self.s.cond:
            out = []
            for g in self.s._groups(scope):
                if name is not None and g.name.lower() != name.lower():
                    continue
                size = sum(1 for r in self.s.runners.values() if r.scope == scope and r.group_id == g.id)
                out.append({"id": g.id, "name": g.name, "size": size, "isDefaultGroup": g.default})
            return out

    # ---- scale sets --------------------------------------------------------------------------
    def _set(self, scope: str, set_id: Any) -> ScaleSet:
        try:
            sid = int(set_id)
        except (TypeError, ValueError):
            sid = -1
        ss = self.sets.get(sid)
        if ss is None or ss.scope != scope:
            raise ActionsError(404, "RunnerScaleSetNotFoundException", f"No runner scale set found with identifier {set_id}.")
        return ss

    def stats(self, ss: ScaleSet) -> dict[str, int]:
        available = acquired = running = assigned = 0
        for j in self.s.jobs.values():
            if j.scale_set_id != ss.id or j.status == "completed":
                continue
            assigned += 1
            if j.status == "in_progress":
                running += 1
            elif j.ss_state == "available":
                available += 1
            elif j.ss_state == "acquired":
                acquired += 1
        runners = [r for r in self.s.runners.values() if r.scale_set_id == ss.id]
        busy = sum(1 for r in runners if self.s.shown(r)[1])
        return {"totalAvailableJobs": available, "totalAcquiredJobs": acquired, "totalAssignedJobs": assigned,
                "totalRunningJobs": running, "totalRegisteredRunners": len(runners), "totalBusyRunners": busy,
                "totalIdleRunners": len(runners) - busy}

    def set_json(self, ss: ScaleSet) -> dict[str, Any]:
        return {"id": ss.id, "name": ss.name, "runnerGroupId": ss.group_id,
                "runnerGroupName": self.s._group_name(ss.scope, ss.group_id) or "",
                "labels": [dict(lb) for lb in ss.labels], "RunnerSetting": {"disableUpdate": ss.disable_update},
                "createdOn": iso_ms(ss.created_on),
                "runnerJitConfigUrl": f"{ss.service_url}_apis/runtime/runnerscalesets/{ss.id}/generatejitconfig",
                "statistics": self.stats(ss)}

    def _labels(self, raw: Any, name: str) -> list[dict[str, str]]:
        if raw is None or raw == []:
            return [{"type": "System", "name": name}]
        if not isinstance(raw, list) or len(raw) > 100:
            raise _bad("labels must be a list of at most 100 {type, name} objects")
        out: list[dict[str, str]] = []
        for lb in raw:
            if not isinstance(lb, dict) or not isinstance(lb.get("name"), str) or not lb["name"].strip() \
                    or len(lb["name"]) > 256:
                raise _bad("every label needs a non-empty name of at most 256 characters")
            if all(x["name"].lower() != lb["name"].lower() for x in out):
                out.append({"type": str(lb.get("type") or "System"), "name": lb["name"]})
        return out

    def _check_name(self, scope: str, name: Any, group_id: int, own_id: int | None) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise _bad("name must be 1 to 45 letters, digits, '-', '_' or '.'")
        if self.s._group_name(scope, group_id) is None:
            raise ActionsError(404, "RunnerGroupNotFoundException", f"No runner group found with identifier {group_id}.")
        for other in self.sets.values():
            if other.id != own_id and other.scope == scope and other.group_id == group_id \
                    and other.name.lower() == name.lower():
                raise ActionsError(409, "RunnerScaleSetExistsException",
                                   f"A runner scale set named {name} already exists in the runner group.")
        return name

    def create(self, scope: str, body: Any, base_url: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("a runner scale set object is required")
        with self.s.cond:
            group_id = _int(body.get("runnerGroupId") or 1, "runnerGroupId")
            name = self._check_name(scope, body.get("name"), group_id, None)
            setting = body.get("RunnerSetting") or body.get("runnerSetting") or {}
            ss = ScaleSet(self._next("set"), scope, name, group_id, self._labels(body.get("labels"), name),
                          bool(setting.get("disableUpdate")) if isinstance(setting, dict) else False,
                          self.s.now(), self.service_url(base_url, scope))
            self.sets[ss.id] = ss
            self._assign()
            return self.set_json(ss)

    def get(self, scope: str, set_id: Any) -> dict[str, Any]:
        with self.s.cond:
            return self.set_json(self._set(scope, set_id))

    def find(self, scope: str, group_id: str | None, name: str | None) -> list[dict[str, Any]]:
        with self.s.cond:
            gid = _int(group_id, "runnerGroupId") if group_id not in (None, "") else None
            return [self.set_json(ss) for ss in sorted(self.sets.values(), key=lambda x: x.id)
                    if ss.scope == scope and (gid is None or ss.group_id == gid)
                    and (name is None or ss.name.lower() == name.lower())]

    def update(self, scope: str, set_id: Any, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("a runner scale set object is required")
        with self.s.cond:
            ss = self._set(scope, set_id)
            group_id = _int(body["runnerGroupId"], "runnerGroupId") if body.get("runnerGroupId") else ss.group_id
            name = body.get("name") or ss.name
            ss.name = self._check_name(scope, name, group_id, ss.id)
            ss.group_id = group_id
            if body.get("labels"):
                ss.labels = self._labels(body["labels"], ss.name)
            setting = body.get("RunnerSetting")
            if isinstance(setting, dict) and "disableUpdate" in setting:
                ss.disable_update = bool(setting["disableUpdate"])
            self._assign()
            return self.set_json(ss)

    def delete(self, scope: str, set_id: Any) -> None:
        with self.s.cond:
            ss = self._set(scope, set_id)
            for j in self.s.jobs.values():
                if j.scale_set_id == ss.id and j.status == "queued":
                    self._release(j)
            for r in list(self.s.runners.values()):
                if r.scale_set_id == ss.id and r.job_id is None:
                    self.s._delete(r)
            for sess in [x for x in self.sessions.values() if x.scale_set_id == ss.id]:
                self._drop_session(sess)
            del self.sets[ss.id]
            self._assign()
            self.s.cond.notify_all()

    # ---- sessions ----------------------------------------------------------------------------
    def _live(self, sess: Session) -> bool:
        return sess.polling > 0 or self.s.now() - sess.last_seen <= self.s.opts.scale_set_session_timeout

    def _drop_session(self, sess: Session) -> None:
        self.sessions.pop(sess.id, None)
        for tok, (sid, _) in list(self.queue_tokens.items()):
            if sid == sess.id:
                del self.queue_tokens[tok]
        self.s.cond.notify_all()

    def _new_token(self, sess: Session) -> str:
        token = secrets.token_urlsafe(40)
        self.queue_tokens[token] = (sess.id, self.s.now() + self.s.opts.message_queue_token_ttl)
        sess.token = token
        return token

    def _session_json(self, ss: ScaleSet, sess: Session) -> dict[str, Any]:
        return {"sessionId": sess.id, "ownerName": sess.owner, "runnerScaleSet": self.set_json(ss),
                "messageQueueUrl": f"{ss.service_url}_apis/runtime/runnerscalesets/{ss.id}/sessions/{sess.id}/messages",
                "messageQueueAccessToken": sess.token, "statistics": self.stats(ss)}

    def create_session(self, scope: str, set_id: Any, body: Any) -> dict[str, Any]:
        owner = str(body.get("ownerName") or "") if isinstance(body, dict) else ""
        with self.s.cond:
            ss = self._set(scope, set_id)
            for other in list(self.sessions.values()):
                if other.scale_set_id != ss.id:
                    continue
                if self._live(other):
                    raise ActionsError(409, "TaskAgentSessionConflictException",
                                       f"The runner scale set {ss.name} already has an active session for owner "
                                       f"{other.owner}.")
                self._drop_session(other)
            now = self.s.now()
            sess = Session(str(uuid.uuid4()), ss.id, owner, "", now, now)
            self._new_token(sess)
            self.sessions[sess.id] = sess
            return self._session_json(ss, sess)

    def _session(self, ss: ScaleSet, session_id: str) -> Session:
        sess = self.sessions.get(session_id)
        if sess is None or sess.scale_set_id != ss.id or not self._live(sess):
            if sess is not None:
                self._drop_session(sess)
            raise ActionsError(404, "TaskAgentSessionNotFoundException", f"Session {session_id} was not found.")
        return sess

    def refresh_session(self, scope: str, set_id: Any, session_id: str) -> dict[str, Any]:
        with self.s.cond:
            ss = self._set(scope, set_id)
            sess = self._session(ss, session_id)
            sess.last_seen = self.s.now()
            self._new_token(sess)
            return self._session_json(ss, sess)

    def delete_session(self, scope: str, set_id: Any, session_id: str) -> None:
        with self.s.cond:
            ss = self._set(scope, set_id)
            self._drop_session(self._session(ss, session_id))

    def queue_principal(self, token: str, set_id: Any, session_id: str | None) -> tuple[ScaleSet, Session]:
        """The session a queue token belongs to; 401 when the token is unknown, expired, or not for this URL."""
        with self.s.cond:
            found = self.queue_tokens.get(token)
            unauthorized = ActionsError(401, "VssUnauthorizedException",
                                        "The message queue access token is expired or not valid.")
            if found is None:
                raise unauthorized
            sid, expires = found
            if expires <= self.s.now():
                del self.queue_tokens[token]
                raise unauthorized
            sess = self.sessions.get(sid)
            if sess is None or not self._live(sess) or str(sess.scale_set_id) != str(set_id) \
                    or (session_id is not None and session_id != sid):
                raise unauthorized
            return self.sets[sess.scale_set_id], sess

    # ---- messages ----------------------------------------------------------------------------
    def get_message(self, ss: ScaleSet, sess: Session, last_id: int, capacity: int | None,
                    wait: float | None = None) -> dict[str, Any] | None:
        """Long poll: the oldest unacknowledged message this session has not been given (or one past
        `last_id`), else a new one from pending job messages, else None after the wait."""
        limit = self.s.opts.message_poll_wait if wait is None else wait
        deadline = time.monotonic() + max(0.0, limit)
        with self.s.cond:
            sess.last_seen = self.s.now()
            if capacity is not None:
                ss.max_capacity = capacity
            sess.polling += 1
            try:
                while True:
                    if ss.id not in self.sets or sess.id not in self.sessions:
                        raise ActionsError(401, "VssUnauthorizedException", "The message session was deleted.")
                    self._timeouts()
                    self._assign()
                    msg = self._next_message(ss, sess, last_id)
                    if msg is not None:
                        msg.delivered_to = sess.id
                        return {"messageId": msg.id, "messageType": "RunnerScaleSetJobMessages", "body": msg.body,
                                "statistics": self.stats(ss)}
                    left = deadline - time.monotonic()
                    if left <= 0 or self.s.closed:
                        return None
                    self.s.cond.wait(min(left, 0.5))
            finally:
                sess.polling -= 1
                sess.last_seen = self.s.now()

    def _next_message(self, ss: ScaleSet, sess: Session, last_id: int) -> QueueMessage | None:
        for msg in ss.messages.values():
            if msg.id > last_id or msg.delivered_to != sess.id:
                return msg
        if not ss.pending:
            return None
        batch, ss.pending = ss.pending[:MAX_BATCH], ss.pending[MAX_BATCH:]
        msg = QueueMessage(self._next("message"), json.dumps(batch))
        ss.messages[msg.id] = msg
        return msg

    def delete_message(self, ss: ScaleSet, sess: Session, message_id: Any) -> None:
        with self.s.cond:
            sess.last_seen = self.s.now()
            ss.messages.pop(_int(message_id, "messageId"), None)

    # ---- jobs --------------------------------------------------------------------------------
    def acquire(self, scope: str, set_id: Any, body: Any) -> list[int]:
        if not isinstance(body, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in body):
            raise _bad("the body must be a JSON list of runner request ids")
        with self.s.cond:
            ss = self._set(scope, set_id)
            self._timeouts()
            got: list[int] = []
            for j in sorted(self.s.jobs.values(), key=lambda x: x.id):
                if j.scale_set_id != ss.id or j.request_id not in body or j.status != "queued":
                    continue
                if j.ss_state == "available":
                    j.ss_state, j.acquire_deadline = "acquired", None
                    ss.pending.append(self._event("JobAssigned", j))
                    self.s.cond.notify_all()
                if j.ss_state == "acquired":
                    got.append(int(j.request_id or 0))
            return got

    def _ss_matches(self, ss: ScaleSet, j: Job) -> bool:
        return self.s.reaches(ss.scope, [lb["name"] for lb in ss.labels], j)

    def _event(self, kind: str, j: Job, **extra: Any) -> dict[str, Any]:
        owner, _, repo = j.scope.partition("/")
        msg: dict[str, Any] = {
            "messageType": kind, "runnerRequestId": j.request_id, "repositoryName": repo, "ownerName": owner,
            "jobId": j.job_uuid, "jobWorkflowRef": f"{owner}/{repo or '.github'}/.github/workflows/emulated.yml@refs/heads/main",
            "jobDisplayName": f"job-{j.id}", "workflowRunId": j.id, "eventName": "workflow_dispatch",
            "requestLabels": list(j.labels), "queueTime": iso_ms(j.created_at),
            "scaleSetAssignTime": iso_ms(j.assigned_at), "runnerAssignTime": iso_ms(j.runner_assigned_at),
            "finishTime": iso_ms(j.completed_at),
        }
        msg.update(extra)
        return msg

    def _assign(self) -> None:
        """Offer queued jobs to matching scale sets, oldest job first, within each one's max capacity."""
        if not self.sets:
            return
        now = self.s.now()
        load: dict[int, int] = {sid: 0 for sid in self.sets}
        waiting: list[Job] = []
        for j in self.s.jobs.values():
            if j.status == "completed":
                continue
            if j.scale_set_id in load:
                load[j.scale_set_id] += 1
            elif j.scale_set_id is None and j.status == "queued" and j.not_before <= now:
                waiting.append(j)
        for j in sorted(waiting, key=lambda x: x.id):
            for ss in sorted(self.sets.values(), key=lambda x: x.id):
                if ss.max_capacity is None or load[ss.id] >= ss.max_capacity or not self._ss_matches(ss, j):
                    continue
                load[ss.id] += 1
                j.scale_set_id, j.ss_state, j.request_id = ss.id, "available", self._next("request")
                j.assigned_at, j.runner_assigned_at = now, None
                j.acquire_deadline = now + self.s.opts.acquire_timeout
                url = f"{ss.service_url}_apis/runtime/runnerscalesets/{ss.id}/acquirejobs"
                ss.pending.append(self._event("JobAvailable", j, acquireJobUrl=url))
                self.s.cond.notify_all()
                break

    def _release(self, j: Job) -> None:
        j.scale_set_id = j.ss_state = j.request_id = None
        j.assigned_at = j.acquire_deadline = None

    def _timeouts(self) -> None:
        """Offers nobody acquired in time: JobCompleted(canceled), then a new offer after a growing delay;
        after MAX_REASSIGN re-offers the job is cancelled."""
        now = self.s.now()
        for j in self.s.jobs.values():
            if j.ss_state != "available" or j.status != "queued" or j.acquire_deadline is None \
                    or j.acquire_deadline > now:
                continue
            ss = self.sets.get(j.scale_set_id or 0)
            if ss is not None:
                ss.pending.append(self._event("JobCompleted", j, result="canceled", runnerId=0, runnerName="",
                                              finishTime=iso_ms(now)))
            j.cancellations += 1
            self._release(j)
            if j.cancellations > MAX_REASSIGN:
                j.status, j.conclusion, j.completed_at = "completed", "cancelled", now
                j.output += "\n[emulator] no scale set acquired the job in time; cancelled\n"
            else:
                j.not_before = now + self.s.opts.reassign_delay * j.cancellations
            self.s.cond.notify_all()

    # ---- hooks from the runner protocol (state lock held) --------------------------------------
    def job_enqueued(self) -> None:
        self._assign()

    def job_started(self, r: Runner, j: Job) -> None:
        j.ss_state = None
        ss = self.sets.get(j.scale_set_id or 0)
        if ss is not None:
            ss.pending.append(self._event("JobStarted", j, runnerId=r.id, runnerName=r.name))

    def job_finished(self, r: Runner | None, j: Job) -> None:
        j.ss_state = None
        ss = self.sets.get(j.scale_set_id or 0)
        if ss is not None:
            ss.pending.append(self._event("JobCompleted", j, result=RESULTS.get(j.conclusion or "", "failed"),
                                          runnerId=r.id if r else 0, runnerName=r.name if r else ""))
        self._assign()

    def sweep(self, now: float) -> None:
        for sess in list(self.sessions.values()):
            if not self._live(sess):
                self._drop_session(sess)
        for tok, (_, expires) in list(self.queue_tokens.items()):
            if expires <= now:
                del self.queue_tokens[tok]
        self._timeouts()
        self._assign()

    # ---- JIT configs and agents ------------------------------------------------------------------
    def agent_json(self, r: Runner) -> dict[str, Any]:
        status, busy = self.s.shown(r)
        return {"id": r.id, "name": r.name, "version": r.version or "", "osDescription": r.os,
                "enabled": True, "status": status, "busy": busy, "provisioningState": "Provisioned",
                "ephemeral": r.ephemeral, "runnerScaleSetId": r.scale_set_id or 0, "createdOn": iso_ms(r.created_at),
                "labels": [{"id": lb.id, "name": lb.name, "type": "system" if lb.type == "read-only" else "user"}
                           for lb in r.labels]}

    def generate_jit(self, scope: str, set_id: Any, body: Any, base_url: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _bad("a {name, workFolder} object is required")
        name, work = body.get("name"), body.get("workFolder") or "_work"
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise _bad("name must be a non-empty string of at most 64 characters")
        if not isinstance(work, str) or work.startswith("/") or ".." in work.split("/"):
            raise _bad("workFolder must be a relative path")
        with self.s.cond:
            ss = self._set(scope, set_id)
            if self.s._find_by_name(scope, name) is not None:
                raise ActionsError(409, "TaskAgentExistsException", f"A runner named {name} already exists.")
            labels = [self.s._label(lb["name"], "read-only") for lb in ss.labels]
            r = self.s._new_runner(scope, name, ss.group_id, labels, ephemeral=True, jit=True, work_folder=work)
            r.scale_set_id, r.disable_update = ss.id, ss.disable_update
            return {"runner": self.agent_json(r), "encodedJITConfig": self.s.encode_jitconfig(r, base_url)}

    def _agent(self, scope: str, agent_id: Any) -> Runner:
        try:
            aid = int(agent_id)
        except (TypeError, ValueError):
            aid = -1
        r = self.s.runners.get(aid)
        if r is None or r.scope != scope:
            raise ActionsError(404, "TaskAgentNotFoundException", f"No runner found with identifier {agent_id}.")
        return r

    def get_agent(self, scope: str, agent_id: Any) -> dict[str, Any]:
        with self.s.cond:
            return self.agent_json(self._agent(scope, agent_id))

    def find_agents(self, scope: str, name: str | None) -> list[dict[str, Any]]:
        with self.s.cond:
            return [self.agent_json(r) for r in sorted(self.s.runners.values(), key=lambda x: x.id)
                    if r.scope == scope and (name is None or r.name.lower() == name.lower())]

    def delete_agent(self, scope: str, agent_id: Any) -> None:
        with self.s.cond:
            r = self._agent(scope, agent_id)
            if r.job_id is not None:
                raise ActionsError(400, "TaskAgentJobStillRunningException",
                                   f"The runner {r.name} is running job {r.job_id} and cannot be removed.")
            self.s._delete(r)

    # ---- control ---------------------------------------------------------------------------------
    def snapshot(self, scope: str | None = None) -> list[dict[str, Any]]:
        with self.s.cond:
            out = []
            for ss in sorted(self.sets.values(), key=lambda x: x.id):
                if scope is not None and ss.scope != scope:
                    continue
                d = self.set_json(ss)
                d.update(scope=ss.scope, max_capacity=ss.max_capacity, pending_messages=len(ss.pending),
                         unacknowledged_messages=sorted(ss.messages),
                         sessions=[x.id for x in self.sessions.values() if x.scale_set_id == ss.id])
                out.append(d)
            return out

    def end_sessions(self, scale_set_id: int | None = None) -> int:
        """Drop message sessions (all, or one scale set's), as GitHub does with a stale one; returns how many."""
        with self.s.cond:
            gone = [x for x in self.sessions.values() if scale_set_id is None or x.scale_set_id == scale_set_id]
            for sess in gone:
                self._drop_session(sess)
            return len(gone)

    def expire_queue_tokens(self, scale_set_id: int | None = None) -> int:
        """Make current queue tokens expire now (the next queue call gets 401); returns how many."""
        with self.s.cond:
            now, n = self.s.now(), 0
            for tok, (sid, _) in list(self.queue_tokens.items()):
                sess = self.sessions.get(sid)
                if scale_set_id is None or (sess is not None and sess.scale_set_id == scale_set_id):
                    self.queue_tokens[tok] = (sid, now)
                    n += 1
            return n

    def session_snapshot(self) -> list[dict[str, Any]]:
        with self.s.cond:
            return [{"sessionId": x.id, "scaleSetId": x.scale_set_id, "ownerName": x.owner,
                     "live": self._live(x), "polling": x.polling > 0}
                    for x in sorted(self.sessions.values(), key=lambda x: x.created)]
