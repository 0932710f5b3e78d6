"""In-memory fakes of the two sides the pool manager talks to, for fast tests of its decisions.

`FakeEngine` stands in for the Docker engine and `FakeEngine.client()` for `docker.DockerClient`,
with exactly the SDK surface the manager uses (`ping`, `info`, `api.containers`,
`api.remove_container`, `api.inspect_image`, `api.inspect_volume`, `api.events`,
`volumes.create`, `containers.run`, `containers.create` -> `put_archive`, `start`).
`FakeGitHub` stands in for `github_client.GitHubClient` (`scope`, `generate_jitconfig`,
`list_runners`, `delete_runner`, `find_runner_group`). A started runner container comes online
on the fake GitHub, as the real runner does; `finish_job` and `kill` end it the two usual ways.
`FakeScaleSets` stands in for `github_client.ScaleSetClient` (a scale-set pool's Actions service: scale
sets, one message session, the queue with its statistics, acquire, JIT runners, agents), its runners
being the fake GitHub's registrations; `FakeMessageSession` for `MessageSession`.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import requests
from docker.errors import APIError, ImageNotFound, NotFound

from github_client import Conflict, GitHubError, JitConfig, Runner, RunnerGroup, Unprocessable
from github_client import NotFound as GhNotFound
from github_client._scaleset import (
    JobStillRunning,
    MessageBatch,
    RunnerReference,
    ScaleSet,
    ScaleSetJitConfig,
    Session,
    SessionConflict,
    Statistics,
    parse_message_batch,
)

__all__ = ["EngineDown", "FakeEngine", "FakeGitHub", "FakeMessageSession", "FakeScaleSets"]


# -- GitHub ---------------------------------------------------------------------------------


@dataclass
class _Scope:
    kind: str = "org"
    label: str = "org acme"


class FakeGitHub:
    """Runner registrations in a dict; `fail_next` makes the next calls raise (a GitHub outage)."""

    def __init__(self) -> None:
        self.scope = _Scope()
        self.runners: dict[int, Runner] = {}
        self.calls: Counter[str] = Counter()
        self.groups = {"Default": 1, "gpu": 7}
        self._ids = itertools.count(100)
        self._failures: list[Exception] = []
        self._lock = threading.Lock()

    # -- control -------------------------------------------------------------------------
    def fail_next(self, n: int, exc: Exception | None = None) -> None:
        """The next `n` calls raise `exc` (default: a 502 after retries)."""
        with self._lock:
            self._failures += [exc or GitHubError("GitHub answered 502", status=502)] * n

    def register(self, name: str, *, status: str = "online", busy: bool = False) -> Runner:
        """A registration made by someone else (or an earlier manager)."""
        runner = Runner(next(self._ids), name, "linux", status, busy, ["self-hosted"], 1, True)
        self.runners[runner.id] = runner
        return runner

    def by_name(self, name: str) -> Runner | None:
        return next((r for r in self.runners.values() if r.name == name), None)

    def set(self, name: str, **changes: Any) -> None:
        runner = self.by_name(name)
        assert runner is not None, name
        self.runners[runner.id] = replace(runner, **changes)

    def _call(self, method: str) -> None:
        self.calls[method] += 1
        with self._lock:
            if self._failures:
                raise self._failures.pop(0)

    # -- the GitHubClient surface the manager uses ----------------------------------------
    def generate_jitconfig(self, name: str, labels: list[str], *, runner_group_id: int = 1,
                           work_folder: str = "_work") -> JitConfig:
        self._call("generate_jitconfig")
        if self.by_name(name) is not None:
            raise Unprocessable(f"a runner named {name} exists", status=422)
        runner = Runner(next(self._ids), name, "linux", "offline", False, list(labels), runner_group_id, True)
        self.runners[runner.id] = runner
        return JitConfig(runner, f"jit-{name}")

    def list_runners(self, name: str | None = None) -> list[Runner]:
        self._call("list_runners")
        return [r for r in self.runners.values() if name is None or r.name == name]

    def delete_runner(self, runner_id: int, *, missing_ok: bool = False) -> bool:
        self._call("delete_runner")
        runner = self.runners.get(runner_id)
        if runner is None:
            if missing_ok:
                return False
            raise GhNotFound(f"runner {runner_id} not found", status=404)
        if runner.busy:
            raise Unprocessable(f"runner {runner.name} is running a job", status=422)
        del self.runners[runner_id]
        return True

    def find_runner_group(self, name: str) -> RunnerGroup:
        self._call("find_runner_group")
        return RunnerGroup(self.groups[name], name, name == "Default")

    def probe(self) -> object:
        """What the manager's recovery probe asks (one bounded GET)."""
        self._call("probe")
        return []


# -- Docker ---------------------------------------------------------------------------------


class EngineDown(requests.exceptions.ConnectionError):
    """What the docker SDK raises when the engine's socket does not answer."""


@dataclass
class _Container:
    id: str
    name: str
    labels: dict[str, str]
    image: str
    state: str = "created"
    exit_code: int | None = None
    created: float = field(default_factory=time.time)
    files: dict[str, bytes] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)  # everything else `containers.create` was given
    anonymous: list[str] = field(default_factory=list)  # the anonymous volumes it made (removed with v=True)

    @property
    def role(self) -> str:
        return self.labels.get("ghr.role", "")

    def mounted(self) -> set[str]:
        return {m["Source"] for m in self.kwargs.get("mounts", []) if m["Type"] == "volume" and m.get("Source")}

    def as_list_item(self) -> dict[str, Any]:
        status = f"Exited ({self.exit_code}) 1 second ago" if self.state == "exited" else self.state.capitalize()
        return {"Id": self.id, "Names": [f"/{self.name}"], "Labels": dict(self.labels), "State": self.state,
                "Status": status, "Created": int(self.created)}


class _Stream:
    def __init__(self, engine: FakeEngine, filters: dict[str, Any]) -> None:
        self._engine = engine
        self.filters = filters
        self.queue: queue.Queue[dict[str, Any] | Exception | None] = queue.Queue()

    def __iter__(self) -> Any:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, Exception):
                raise item
            yield item

    def close(self) -> None:
        self.queue.put(None)
        self._engine.streams.discard(self)


class _Api:
    def __init__(self, engine: FakeEngine) -> None:
        self._e = engine

    def containers(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        self._e.check("containers")
        wanted = (filters or {}).get("label", [])
        wanted = [wanted] if isinstance(wanted, str) else wanted
        items = []
        for c in list(self._e.containers.values()):
            if all or c.state == "running":
                if all_labels(c.labels, wanted):
                    items.append(c.as_list_item())
        return items

    def remove_container(self, container_id: str, force: bool = False, v: bool = False) -> None:
        self._e.check("remove_container")
        c = self._e.find(container_id)
        if c is None:
            raise NotFound(f"No such container: {container_id}")
        del self._e.containers[c.id]
        self._e.removed.append(c.name)
        if v:  # Docker keeps an anonymous volume another container still mounts (by name)
            for name in c.anonymous:
                if not any(name in o.mounted() for o in self._e.containers.values()):
                    self._e.anonymous.pop(name, None)

    def inspect_container(self, container_id: str) -> dict[str, Any]:
        self._e.check("inspect_container")
        c = self._e.find(container_id)
        if c is None:
            raise NotFound(f"No such container: {container_id}")
        mounts = [{"Type": m["Type"], "Destination": m["Target"], "Name": m["Source"]}
                  for m in c.kwargs.get("mounts", []) if m["Type"] == "volume"]
        return {"Id": c.id, "Name": f"/{c.name}", "Config": {"Labels": dict(c.labels),
                "Env": [f"{k}={v}" for k, v in (c.kwargs.get("environment") or {}).items()]},
                "HostConfig": {k: v for k, v in c.kwargs.items() if k != "environment"}, "Mounts": mounts,
                "State": {"Status": c.state, "ExitCode": c.exit_code or 0}}

    def volumes(self, filters: dict[str, Any] | None = None) -> dict[str, Any]:
        self._e.check("volumes")
        wanted = (filters or {}).get("label", [])
        wanted = [wanted] if isinstance(wanted, str) else wanted
        return {"Volumes": [{"Name": n, "Labels": dict(lb)} for n, lb in self._e.anonymous.items()
                            if all_labels(lb, wanted)]}

    def remove_volume(self, name: str, force: bool = False) -> None:
        self._e.check("remove_volume")
        if name not in self._e.anonymous:
            raise NotFound(f"No such volume: {name}")
        if any(name in c.mounted() for c in self._e.containers.values()):
            raise _api_error(409, f"volume {name} is in use")
        del self._e.anonymous[name]

    def exec_create(self, container_id: str, cmd: list[str], **_: Any) -> dict[str, Any]:
        self._e.check("exec_create")
        c = self._e.find(container_id)
        if c is None:
            raise NotFound(f"No such container: {container_id}")
        if c.state != "running":
            raise _api_error(409, f"Container {container_id} is not running")
        self._e.execs.append((c.name, list(cmd)))
        return {"Id": c.id}

    def exec_start(self, exec_id: str) -> bytes:
        self._e.check("exec_start")
        return b"20.10.24" if self._e.engine_answers(exec_id) else b"Cannot connect to the Docker daemon"

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {"ExitCode": 0 if self._e.engine_answers(exec_id) else 1}

    def inspect_image(self, image: str) -> dict[str, Any]:
        self._e.check("inspect_image")
        if image not in self._e.images:
            raise ImageNotFound(f"No such image: {image}")
        return {"Id": image}

    def inspect_volume(self, name: str) -> dict[str, Any]:
        self._e.check("inspect_volume")
        if name not in self._e.volumes:
            raise NotFound(f"No such volume: {name}")
        return {"Name": name}

    def events(self, decode: bool = True, filters: dict[str, Any] | None = None) -> _Stream:
        self._e.check("events")
        stream = _Stream(self._e, filters or {})
        self._e.streams.add(stream)
        return stream


class _Handle:
    def __init__(self, engine: FakeEngine, container: _Container) -> None:
        self._e = engine
        self.id = container.id

    def put_archive(self, path: str, data: bytes) -> bool:
        self._e.check("put_archive")
        self._e.containers[self.id].files[path] = data
        return True

    def start(self) -> None:
        self._e.check("start")
        self._e.start(self.id)


class _Containers:
    def __init__(self, engine: FakeEngine) -> None:
        self._e = engine

    def create(self, image: str, name: str, labels: dict[str, str], **kwargs: Any) -> _Handle:
        self._e.check("create")
        if image not in self._e.images:
            raise ImageNotFound(f"No such image: {image}")
        if any(c.name == name for c in self._e.containers.values()):
            raise _api_error(409, f"Conflict. The container name \"/{name}\" is already in use")
        network = str(kwargs.get("network_mode") or "")
        if network.startswith("container:") and self._e.find(network.split(":", 1)[1]) is None:
            raise NotFound(f"No such container: {network.split(':', 1)[1]}")
        cid = f"{next(self._e.ids):064x}"
        mounts = []
        anonymous = []
        for m in kwargs.get("mounts", []):
            m = dict(m)
            if m["Type"] == "volume" and not m.get("Source"):
                m["Source"] = f"anon-{cid[-6:]}-{len(anonymous)}"
                anonymous.append(m["Source"])
                self._e.anonymous[m["Source"]] = dict((m.get("VolumeOptions") or {}).get("Labels") or {})
            mounts.append(m)
        container = _Container(cid, name, dict(labels), image, kwargs={**kwargs, "mounts": mounts},
                               anonymous=anonymous)
        self._e.containers[cid] = container
        self._e.created.append(name)
        return _Handle(self._e, container)

    def run(self, image: str, **kwargs: Any) -> None:
        self._e.check("run")
        self._e.ran.append((image, kwargs))


class _Volumes:
    def __init__(self, engine: FakeEngine) -> None:
        self._e = engine

    def create(self, name: str, labels: dict[str, str] | None = None) -> None:
        self._e.check("volume_create")
        self._e.volumes.add(name)


class FakeClient:
    def __init__(self, engine: FakeEngine) -> None:
        self._e = engine
        self.api = _Api(engine)
        self.containers = _Containers(engine)
        self.volumes = _Volumes(engine)

    def ping(self) -> bool:
        self._e.check("ping")
        return True

    def info(self) -> dict[str, Any]:
        self._e.check("info")
        return {"Runtimes": {"runc": {}}, "CgroupDriver": "cgroupfs", "CgroupVersion": "1"}


def all_labels(labels: dict[str, str], wanted: list[str]) -> bool:
    return all(labels.get(k) == v for k, _, v in (w.partition("=") for w in wanted))


def _api_error(status: int, message: str) -> APIError:
    response = requests.Response()
    response.status_code = status
    return APIError(message, response=response, explanation=message)


class FakeEngine:
    """Containers, images and volumes in dicts; `stop` and `start` model an engine restart."""

    def __init__(self, github: FakeGitHub | None = None, images: tuple[str, ...] = ("runner:1",)) -> None:
        self.github = github
        self.images = set(images)
        self.volumes: set[str] = set()
        self.containers: dict[str, _Container] = {}
        self.created: list[str] = []  # names of every container created, in order
        self.ran: list[tuple[str, dict[str, Any]]] = []
        self.streams: set[_Stream] = set()
        self.ids = itertools.count(1)
        self.up = True
        self.calls: Counter[str] = Counter()
        self.removed: list[str] = []  # names of every container removed, in order
        self.anonymous: dict[str, dict[str, str]] = {}  # anonymous volume name -> its labels
        self.execs: list[tuple[str, list[str]]] = []  # (container name, command) of every exec
        self.dead_engines: set[str] = set()  # sidecar names whose engine never answers

    def find(self, id_or_name: str) -> _Container | None:
        """A container by id or name, as the engine resolves either."""
        return self.containers.get(id_or_name) or next(
            (c for c in self.containers.values() if c.name == id_or_name), None)

    def engine_answers(self, container_id: str) -> bool:
        c = self.containers.get(container_id)
        return c is not None and c.state == "running" and c.name not in self.dead_engines

    def client(self) -> FakeClient:
        """The manager's `docker_factory`."""
        return FakeClient(self)

    def check(self, call: str) -> None:
        self.calls[call] += 1
        if not self.up:
            raise EngineDown("Connection refused: /var/run/docker.sock")

    # -- what happens to containers --------------------------------------------------------
    def start(self, cid: str) -> None:
        c = self.containers[cid]
        network = str(c.kwargs.get("network_mode") or "")
        if network.startswith("container:"):
            other = self.find(network.split(":", 1)[1])
            if other is None or other.state != "running":
                raise _api_error(409, f"cannot join the network of a non running container: {network}")
        c.state = "running"
        if c.role == "runner" and self.github is not None and self.github.by_name(c.labels.get("ghr.runner-name", "")):
            self.github.set(c.labels["ghr.runner-name"], status="online")

    def _publish(self, c: _Container, action: str, **attributes: str) -> None:
        item = {"id": c.id, "status": action, "Action": action, "Actor": {"ID": c.id, "Attributes": attributes}}
        for stream in list(self.streams):
            if action in stream.filters.get("event", [action]) and all_labels(c.labels, stream.filters.get("label", [])):
                stream.queue.put(item)

    def _die(self, c: _Container, code: int, *, event: bool = True) -> None:
        c.state, c.exit_code = "exited", code
        if event:
            self._publish(c, "die", exitCode=str(code))

    def by_runner(self, name: str) -> _Container:
        return next(c for c in self.containers.values()
                    if c.labels.get("ghr.runner-name") == name and c.role == "runner")

    def sidecar_of(self, name: str) -> _Container | None:
        """The dind sidecar of runner `name`, if there is one."""
        return next((c for c in self.containers.values()
                     if c.labels.get("ghr.pair") == name and c.role == "sidecar"), None)

    def kill_sidecar(self, runner_name: str, code: int = 137) -> None:
        """`docker kill` of a runner's sidecar: its engine is gone; the runner itself keeps running."""
        c = self.sidecar_of(runner_name)
        assert c is not None, runner_name
        self._publish(c, "kill", signal="9")
        self._die(c, code)

    def in_use(self) -> set[str]:
        """Anonymous volumes some container mounts."""
        return {name for c in self.containers.values() for name in c.mounted()}

    def finish_job(self, runner_name: str) -> None:
        """The ephemeral runner ran its job: GitHub deletes its registration, the container exits 0."""
        if self.github is not None:
            reg = self.github.by_name(runner_name)
            if reg is not None:
                del self.github.runners[reg.id]
        self._die(self.by_runner(runner_name), 0)

    def kill(self, runner_name: str, code: int = 137) -> None:
        """`docker kill`: SIGKILL, the container dies, its registration stays (offline)."""
        c = self.by_runner(runner_name)
        self._publish(c, "kill", signal="9")
        self._die(c, code)
        if self.github is not None and self.github.by_name(runner_name):
            self.github.set(runner_name, status="offline", busy=False)

    def stop(self, *, crash: bool = False) -> None:
        """The engine shuts down as dockerd does: its API refuses at once; each running container gets
        SIGTERM (a `kill` event, signal 15) and exits 0 (`die`); then the event streams end.
        `crash`: the streams break first and the containers end without any event."""
        self.up = False
        if crash:
            self._break_streams()
        for c in self.containers.values():
            if c.state == "running":
                if not crash:
                    self._publish(c, "kill", signal="15")
                self._die(c, 0, event=not crash)
                if self.github is not None and self.github.by_name(c.labels.get("ghr.runner-name", "")):
                    self.github.set(c.labels["ghr.runner-name"], status="offline", busy=False)
        self._break_streams()

    def _break_streams(self) -> None:
        for stream in list(self.streams):
            stream.queue.put(EngineDown("the engine closed the connection"))
        self.streams.clear()

    def docker_stop(self, runner_name: str) -> None:
        """`docker stop`: SIGTERM from the engine; the runner exits 0."""
        c = self.by_runner(runner_name)
        self._publish(c, "kill", signal="15")
        self._die(c, 0)

    def start_engine(self) -> None:
        self.up = True

    def running(self) -> list[_Container]:
        return [c for c in self.containers.values() if c.state == "running"]


# -- the Actions service (runner scale sets) ---------------------------------------------------


@dataclass
class _FakeJob:
    request_id: int
    state: str = "available"  # available | acquired | running | done
    runner: str = ""
    queued_at: float = field(default_factory=time.time)


class FakeMessageSession:
    """`github_client.MessageSession` over `FakeScaleSets`: no long poll (an empty queue answers None at once)."""

    def __init__(self, fake: FakeScaleSets, scale_set_id: int, session_id: str) -> None:
        self.fake = fake
        self.scale_set_id = scale_set_id
        self.session = Session(session_id, "owner", None, "https://pipelines.example/queue", "queue-token",
                               fake.statistics())
        self.capacities: list[int] = []

    @property
    def statistics(self) -> Statistics:
        return self.session.statistics or Statistics()

    def get_message(self, last_message_id: int = 0, max_capacity: int = 0, wait: float | None = None) -> MessageBatch | None:
        self.fake._call("get_message")
        self.fake._check_session(self.session.session_id)
        self.capacities.append(max_capacity)
        self.fake.capacity = max_capacity
        return self.fake._next_message(self.session.session_id, last_message_id)

    def delete_message(self, message_id: int) -> None:
        self.fake._call("delete_message")
        self.fake._check_session(self.session.session_id)
        self.fake.queue.pop(message_id, None)
        self.fake.acked.append(message_id)

    def acquire_jobs(self, runner_request_ids: list[int]) -> list[int]:
        self.fake._call("acquire_jobs")
        got = []
        for rid in runner_request_ids:
            job = self.fake.jobs.get(rid)
            if job is not None and job.state in ("available", "acquired"):
                if job.state == "available":
                    job.state = "acquired"
                    self.fake.post("JobAssigned", job)
                got.append(rid)
        return got

    def close(self) -> None:
        self.fake.delete_session(self.scale_set_id, self.session.session_id, missing_ok=True)


class FakeScaleSets:
    """`github_client.ScaleSetClient` in memory, on top of a `FakeGitHub` (its runners are the registrations).

    Jobs: `enqueue` offers jobs (JobAvailable); the manager acquires them (JobAssigned); `start_job` puts
    one on a runner (JobStarted, registration busy); `complete_job` ends it (JobCompleted, registration
    gone). The statistics, as GitHub computes them, ride on every queue message. `fail_next` makes calls
    raise; `inject` queues a raw queue message (parsed by the real client's parser)."""

    def __init__(self, github: FakeGitHub) -> None:
        self.github = github
        self.calls: Counter[str] = Counter()
        self.scale_sets: dict[int, ScaleSet] = {}
        self.sessions: dict[str, int] = {}  # live session id -> scale set id
        self.deleted_sessions: list[str] = []
        self.jobs: dict[int, _FakeJob] = {}
        self.pending: list[dict[str, Any]] = []  # job messages not yet in a queue message
        self.queue: dict[int, tuple[dict[str, Any], str | None]] = {}  # unacknowledged: id -> (raw, delivered to)
        self.acked: list[int] = []
        self.capacity: int | None = None
        self._ids = itertools.count(1)
        self._failures: dict[str, list[Exception]] = {}

    # -- control -------------------------------------------------------------------------
    def fail_next(self, call: str, n: int = 1, exc: Exception | None = None) -> None:
        self._failures.setdefault(call, []).extend([exc or GitHubError("GitHub answered 502", status=502)] * n)

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        failures = self._failures.get(name)
        if failures:
            raise failures.pop(0)

    def _check_session(self, session_id: str) -> None:
        if session_id not in self.sessions:
            raise GhNotFound("the session is gone (expired or deleted); create a new one", status=404)

    def statistics(self) -> Statistics:
        live = [j for j in self.jobs.values() if j.state != "done"]
        names = {r.name for r in self.github.runners.values()}
        busy = sum(1 for r in self.github.runners.values() if r.busy)
        return Statistics(total_available_jobs=sum(1 for j in live if j.state == "available"),
                          total_acquired_jobs=sum(1 for j in live if j.state == "acquired"),
                          total_assigned_jobs=len(live),
                          total_running_jobs=sum(1 for j in live if j.state == "running"),
                          total_registered_runners=len(names), total_busy_runners=busy,
                          total_idle_runners=len(names) - busy)

    def post(self, kind: str, job: _FakeJob, **extra: Any) -> None:
        self.pending.append({"messageType": kind, "runnerRequestId": job.request_id, "jobId": f"job-{job.request_id}",
                             "jobDisplayName": f"job {job.request_id}", "requestLabels": ["self-hosted"],
                             "queueTime": _iso(job.queued_at), **extra})

    def enqueue(self, n: int = 1) -> list[int]:
        ids = []
        for _ in range(n):
            job = _FakeJob(next(self._ids))
            self.jobs[job.request_id] = job
            self.post("JobAvailable", job, acquireJobUrl="https://pipelines.example/acquirejobs")
            ids.append(job.request_id)
        return ids

    def start_job(self, runner_name: str, request_id: int | None = None) -> int:
        job = self.jobs[request_id] if request_id is not None else next(
            j for j in self.jobs.values() if j.state == "acquired")
        job.state, job.runner = "running", runner_name
        self.github.set(runner_name, busy=True)
        reg = self.github.by_name(runner_name)
        self.post("JobStarted", job, runnerId=reg.id if reg else 0, runnerName=runner_name,
                  runnerAssignTime=_iso(time.time()))
        return job.request_id

    def complete_job(self, runner_name: str, result: str = "succeeded") -> None:
        job = next(j for j in self.jobs.values() if j.runner == runner_name and j.state == "running")
        job.state = "done"
        reg = self.github.by_name(runner_name)
        if reg is not None:
            del self.github.runners[reg.id]
        self.post("JobCompleted", job, result=result, runnerId=reg.id if reg else 0, runnerName=runner_name)

    def cancel_offer(self, request_id: int) -> None:
        """An offer nobody acquired in time: JobCompleted(canceled) without a runner; offered again."""
        job = self.jobs[request_id]
        self.post("JobCompleted", job, result="canceled", runnerId=0, runnerName="")
        job.state = "available"
        self.post("JobAvailable", job)

    def inject(self, raw: dict[str, Any]) -> int:
        """A raw queue message (messageType, body, statistics) as the wire carries it; returns its id."""
        mid = next(self._ids)
        self.queue[mid] = ({"messageId": mid, **raw}, None)
        return mid

    def expire_sessions(self) -> None:
        self.sessions.clear()

    def _next_message(self, session_id: str, last_id: int) -> MessageBatch | None:
        for mid, (raw, delivered) in sorted(self.queue.items()):
            if mid > last_id or delivered != session_id:
                self.queue[mid] = (raw, session_id)
                return parse_message_batch({**raw, "statistics": _stats_json(self.statistics())})
        if not self.pending:
            return None
        batch, self.pending = self.pending[:50], self.pending[50:]
        mid = next(self._ids)
        raw = {"messageId": mid, "messageType": "RunnerScaleSetJobMessages", "body": json.dumps(batch)}
        self.queue[mid] = (raw, session_id)
        return parse_message_batch({**raw, "statistics": _stats_json(self.statistics())})

    # -- the ScaleSetClient surface the manager uses ----------------------------------------
    def get_runner_group(self, name: str) -> RunnerGroup:
        self._call("get_runner_group")
        return RunnerGroup(self.github.groups[name], name, name == "Default")

    def get_scale_set(self, scale_set_id: int) -> ScaleSet:
        self._call("get_scale_set")
        if scale_set_id not in self.scale_sets:
            raise GhNotFound(f"scale set {scale_set_id} does not exist", status=404)
        return self.scale_sets[scale_set_id]

    def get_scale_set_by_name(self, name: str, runner_group_id: int = 1) -> ScaleSet | None:
        self._call("get_scale_set_by_name")
        return next((s for s in self.scale_sets.values() if s.name == name and s.runner_group_id == runner_group_id),
                    None)

    def create_scale_set(self, name: str, *, runner_group_id: int = 1, labels: Any = ()) -> ScaleSet:
        self._call("create_scale_set")
        ss = ScaleSet(next(self._ids), name, runner_group_id, None, tuple(labels))
        self.scale_sets[ss.id] = ss
        return ss

    def update_scale_set(self, scale_set_id: int, *, labels: Any = None, runner_group_id: int | None = None) -> ScaleSet:
        self._call("update_scale_set")
        ss = self.scale_sets[scale_set_id]
        ss = replace(ss, labels=tuple(labels) if labels is not None else ss.labels,
                     runner_group_id=runner_group_id if runner_group_id is not None else ss.runner_group_id)
        self.scale_sets[scale_set_id] = ss
        return ss

    def delete_scale_set(self, scale_set_id: int, *, missing_ok: bool = False) -> bool:
        self._call("delete_scale_set")
        return self.scale_sets.pop(scale_set_id, None) is not None

    def open_session(self, scale_set_id: int, owner: str, *, conflict_wait: float = 0.0) -> FakeMessageSession:
        self._call("create_session")
        if scale_set_id not in self.scale_sets:
            raise GhNotFound(f"scale set {scale_set_id} does not exist (deleted?)", status=404)
        if scale_set_id in self.sessions.values():
            raise SessionConflict("another session is open on this scale set (409)", status=409)
        sid = f"session-{next(self._ids)}"
        self.sessions[sid] = scale_set_id
        return FakeMessageSession(self, scale_set_id, sid)

    def delete_session(self, scale_set_id: int, session_id: str, *, missing_ok: bool = True) -> bool:
        self._call("delete_session")
        if self.sessions.pop(session_id, None) is None:
            if missing_ok:
                return False
            raise GhNotFound("no such session", status=404)
        self.deleted_sessions.append(session_id)
        for mid, (raw, delivered) in list(self.queue.items()):
            if delivered == session_id:
                self.queue[mid] = (raw, None)  # unacknowledged: delivered again to the next session
        return True

    def generate_jitconfig(self, scale_set_id: int, name: str, work_folder: str = "_work") -> ScaleSetJitConfig:
        self._call("generate_jitconfig")
        if self.github.by_name(name) is not None:
            raise Conflict(f"a runner named {name} exists", status=409)
        runner = Runner(next(self.github._ids), name, "linux", "offline", False,
                        list(self.scale_sets[scale_set_id].labels), 1, True)
        self.github.runners[runner.id] = runner
        return ScaleSetJitConfig(RunnerReference(runner.id, name, scale_set_id), f"ssjit-{name}")

    def delete_agent(self, agent_id: int, *, missing_ok: bool = False) -> bool:
        self._call("delete_agent")
        runner = self.github.runners.get(agent_id)
        if runner is None:
            if missing_ok:
                return False
            raise GhNotFound(f"runner {agent_id} not found", status=404)
        if runner.busy:
            raise JobStillRunning(f"the runner {runner.name} is still running a job", status=400)
        del self.github.runners[agent_id]
        return True


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _stats_json(s: Statistics) -> dict[str, int]:
    return {"totalAvailableJobs": s.total_available_jobs, "totalAcquiredJobs": s.total_acquired_jobs,
            "totalAssignedJobs": s.total_assigned_jobs, "totalRunningJobs": s.total_running_jobs,
            "totalRegisteredRunners": s.total_registered_runners, "totalBusyRunners": s.total_busy_runners,
            "totalIdleRunners": s.total_idle_runners}
