"""In-memory fakes of the two sides the pool manager talks to, for fast tests of its decisions.

`FakeEngine` stands in for the Docker engine and `FakeEngine.client()` for `docker.DockerClient`,
with exactly the SDK surface the manager uses (`ping`, `info`, `api.containers`,
`api.remove_container`, `api.inspect_image`, `api.inspect_volume`, `api.events`,
`volumes.create`, `containers.run`, `containers.create` -> `put_archive`, `start`).
`FakeGitHub` stands in for `github_client.GitHubClient` (`scope`, `generate_jitconfig`,
`list_runners`, `delete_runner`, `find_runner_group`). A started runner container comes online
on the fake GitHub, as the real runner does; `finish_job` and `kill` end it the two usual ways.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from docker.errors import ImageNotFound, NotFound

from github_client import GitHubError, JitConfig, Runner, RunnerGroup, Unprocessable
from github_client import NotFound as GhNotFound

__all__ = ["EngineDown", "FakeEngine", "FakeGitHub"]


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
        if container_id not in self._e.containers:
            raise NotFound(f"No such container: {container_id}")
        del self._e.containers[container_id]

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

    def create(self, image: str, name: str, labels: dict[str, str], **_: Any) -> _Handle:
        self._e.check("create")
        if image not in self._e.images:
            raise ImageNotFound(f"No such image: {image}")
        cid = f"{next(self._e.ids):064x}"
        container = _Container(cid, name, dict(labels), image)
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
        return {"Runtimes": {"runc": {}}}


def all_labels(labels: dict[str, str], wanted: list[str]) -> bool:
    return all(labels.get(k) == v for k, _, v in (w.partition("=") for w in wanted))


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
        c.state = "running"
        if self.github is not None and self.github.by_name(c.labels.get("ghr.runner-name", "")):
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
        return next(c for c in self.containers.values() if c.labels.get("ghr.runner-name") == name)

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
