"""RunnerPoolReady: ``pulumi up`` finishes when a pool's runners are online, as a dynamic resource.

Created after the pool's manager container (it depends on it), so its ``create`` and ``update``
run once the manager has started:

- ``check`` is pure (no network): it runs on every preview.
- ``create`` / ``update`` poll GitHub (bounded interval) until ``slots`` runners of the pool's
  name prefix, carrying the pool's labels, are online, for at most ``ready_timeout`` seconds
  (0: count once, do not wait). The outputs are the real counts (online, busy, idle, offline,
  total, stale), whether the pool was ready and how long the wait took. On timeout the
  operation fails with a message naming the pool and host, ``N of M runners online``, and the
  manager container's last log lines, read from that host's Docker engine.
- ``update`` runs (and so waits again) whenever the pool spec (``spec_hash``: the manager's
  spec file), the slots, the labels or the manager container change.
- ``read`` (``pulumi refresh``) counts again, so refresh shows drift.
- A scale-set pool (``scaling: "scale_set"``) is ready when ``min_runners`` runners of its prefix are
  online (any labels: they are the scale set's) and its manager holds the scale set's message session:
  ``scale_set.session == "live"`` in the manager's ``/healthz`` (docs/design.md), read from inside the
  manager container (``docker exec`` of its Python against ``127.0.0.1:<metrics_port>``), so it works
  for every host the program reaches. With ``min_runners: 0`` the session is all there is to wait for.
  The scale-set inputs are absent for a fixed pool, so stacks deployed before see no diff.
- ``delete`` does nothing: it observes, it owns nothing. The GitHub-side lifecycle (label
  changes, the delete sweep) stays with :class:`~components.registration.RunnerRegistration`.

Credentials and GitHub clients are those of RunnerRegistration, through the same base and plain
functions (:mod:`components._github`: ``GitHubProvider`` with ``configure`` of ``ghr:github``, the
environment fallback and the client; the prefix filter and the counts; :mod:`components._provider`:
the shared check and diff). It does not inherit from the registration provider, and never pickles a
credential. Up to this change it was a
subclass of ``RunnerRegistrationProvider``; its pickled form was and is an empty state, so stacks
deployed before unpickle into this class unchanged.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    UpdateResult,
)

from github_client import GitHubClient, GitHubUnavailable, RateLimited, Runner, ServerError

from . import _github
from ._provider import diff_result, host_desc, is_unknown, pool_check, seconds_check
from .docker import client_from_props

DEFAULT_READY_TIMEOUT = 180
POLL_INITIAL = 1.0  # seconds between GitHub polls: starts here, grows by half each time ...
POLL_MAX = 5.0  # ... up to this
LOG_LINES = 30
LOG_CHARS = 4000
_INPUT_KEYS = (
    "scope_url", "api_url", "name_prefix", "labels", "slots", "ready_timeout", "pool", "host", "stack",
    "manager_container", "manager_container_id", "spec_hash", "docker_host", "ssh_options", "tls",
    "scaling", "min_runners", "metrics_port",  # a scale-set pool's only (None for a fixed pool)
)
_REPLACE_KEYS = ("scope_url", "api_url", "name_prefix")
_COUNT_KEYS = ("total", "online", "busy", "idle", "offline", "stale")
SESSION_LIVE = "live"
# Run by the manager's own Python inside its container: print /healthz whatever its status (503 too).
_HEALTHZ_SCRIPT = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    body = urllib.request.urlopen(f'http://127.0.0.1:{sys.argv[1]}/healthz', timeout=5).read()\n"
    "except urllib.error.HTTPError as e:\n"
    "    body = e.read()\n"
    "sys.stdout.write(body.decode())\n"
)


class PoolNotReady(RuntimeError):
    """Fewer than ``slots`` runners of a pool came online within its ``readyTimeout``."""


def spec_hash(spec_json: str) -> str:
    """A stable digest of the manager's spec file: a new digest makes the resource wait again."""
    return hashlib.sha256(spec_json.encode()).hexdigest()


def _whole(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and float(value).is_integer()


def is_scale_set(props: Mapping[str, Any]) -> bool:
    return props.get("scaling") == "scale_set"


def wanted(props: Mapping[str, Any]) -> int:
    """How many runners must be online: ``slots``, or a scale-set pool's ``min_runners`` (0 or more)."""
    return int(props.get("min_runners") or 0) if is_scale_set(props) else int(props["slots"])


def session_state(healthz: Mapping[str, Any]) -> str | None:
    """The message session's state in a manager's /healthz: ``{"scale_set": {"session": "live", ...}}`` (the
    manager's form), also read as a top-level ``session``, a string or ``{"state": ...}``."""
    scale_set = healthz.get("scale_set")
    session = scale_set.get("session") if isinstance(scale_set, Mapping) else healthz.get("session")
    if isinstance(session, Mapping):
        session = session.get("state")
    return session if isinstance(session, str) else None


def ready_runners(runners: Sequence[Runner], labels: Sequence[str]) -> list[Runner]:
    """Online runners that carry every label of the pool (case-insensitive, as GitHub matches)."""
    want = {str(x).casefold() for x in labels}
    return [r for r in runners if r.status == "online" and want <= {str(x).casefold() for x in r.labels}]


class RunnerPoolReadyProvider(_github.GitHubProvider):
    """Dynamic provider for RunnerPoolReady: waits for and counts a pool's online runners.

    Pickled into each stack's state by reference (``components.readiness.RunnerPoolReadyProvider``):
    keep the class at this path. Configured credentials are process-local and never pickled; older
    versions (a RunnerRegistrationProvider subclass) pickled nothing either.
    """

    resource = "RunnerPoolReady"

    # -- helpers -----------------------------------------------------------------------------

    _pool_runners = staticmethod(_github.pool_runners)

    def _count(self, client: GitHubClient, props: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
        runners = _github.pool_runners(client, props["name_prefix"])
        if is_scale_set(props):
            return _github.summary(runners), len([r for r in runners if r.status == "online"])
        return _github.summary(runners), len(ready_runners(runners, props.get("labels") or []))

    @staticmethod
    def _session(props: Mapping[str, Any]) -> str | None:
        """The scale-set manager's session state from its /healthz, read inside its container; None if unknown."""
        ref = props.get("manager_container_id") or props.get("manager_container")
        try:
            with client_from_props(props, timeout=30) as dc:
                result = dc.containers.get(str(ref)).exec_run(
                    ["python", "-c", _HEALTHZ_SCRIPT, str(int(props.get("metrics_port") or 0))])
            output = result.output
            if result.exit_code != 0 or not isinstance(output, bytes):
                return None
            healthz = json.loads(output.decode(errors="replace"))
            return session_state(healthz) if isinstance(healthz, Mapping) else None
        except Exception:  # noqa: BLE001 - not up yet (no listener, restarting): the wait goes on
            return None

    def _wait(self, props: Mapping[str, Any]) -> dict[str, Any]:
        """Counts once, then (ready_timeout > 0) polls until ``slots`` runners are online (a scale-set pool:
        ``min_runners`` and its session live) or time runs out."""
        slots = wanted(props)
        scale_set = is_scale_set(props)
        session: str | None = None
        timeout = float(props.get("ready_timeout") or 0)
        started = time.monotonic()
        deadline = started + timeout
        # One poll must never outlast the deadline by much: short HTTP timeouts, one retry.
        client = self._client(props, timeout=10.0, max_retries=1)
        interval = POLL_INITIAL
        summary: dict[str, Any] | None = None
        ready = 0
        last_error: Exception | None = None
        while True:
            try:
                summary, ready = self._count(client, props)
                last_error = None
            except (GitHubUnavailable, ServerError, RateLimited) as exc:
                if timeout <= 0:
                    raise
                last_error = exc  # transient: keep polling until the deadline
            if scale_set and ready >= slots:
                session = self._session(props)
            now = time.monotonic()
            if (ready >= slots and (not scale_set or session == SESSION_LIVE)) or now >= deadline:
                break
            time.sleep(max(0.0, min(interval, deadline - now)))
            interval = min(interval * 1.5, POLL_MAX)
        waited = round(time.monotonic() - started, 1)
        live = not scale_set or session == SESSION_LIVE
        if (ready < slots or not live) and timeout > 0:
            raise PoolNotReady(self._not_ready_message(props, summary, ready, timeout, last_error, session))
        outs = {k: props.get(k) for k in _INPUT_KEYS}
        outs.update(summary or {})
        outs.update(ready=ready >= slots and live, wait_seconds=waited)
        if scale_set:
            outs["session"] = session
        return outs

    @staticmethod
    def _manager_tail(props: Mapping[str, Any]) -> str:
        """The manager container's state and last log lines, from its host's Docker engine."""
        import docker.errors

        ref = props.get("manager_container_id") or props.get("manager_container")
        name = props.get("manager_container") or ref
        try:
            with client_from_props(props, timeout=30) as dc:
                c = dc.containers.get(str(ref))
                restarts = int(c.attrs.get("RestartCount") or 0)
                logs = c.logs(tail=LOG_LINES).decode(errors="replace").rstrip()
                state = f"{c.status}, {restarts} restart(s)"
        except docker.errors.NotFound:
            return f"manager container {name} is gone from {host_desc(props)}; run pulumi up again to recreate it"
        except Exception as exc:  # noqa: BLE001 - the timeout message matters more than this detail
            return f"could not read the logs of manager container {name} on {host_desc(props)} ({type(exc).__name__}: {exc})"
        if len(logs) > LOG_CHARS:
            logs = "..." + logs[-LOG_CHARS:]
        body = "\n".join(f"  | {line}" for line in logs.splitlines()) or "  | (no log output)"
        return f"manager container {name} ({state}), last {LOG_LINES} log lines:\n{body}"

    def _not_ready_message(self, props: Mapping[str, Any], summary: Mapping[str, Any] | None, ready: int,
                           timeout: float, last_error: Exception | None, session: str | None = None) -> str:
        slots = wanted(props)
        s = dict(summary or {})
        counts = (f"{ready} of {slots} runners online"
                  + (f" ({s.get('online', 0)} online in total, {s.get('busy', 0)} busy, {s.get('offline', 0)} offline, "
                     f"{s.get('total', 0)} registered)" if summary is not None else " (GitHub never answered)"))
        lines = [
            f"pool {props['pool']!r} on host {props['host']!r} ({host_desc(props)}) is not ready after "
            f"{timeout:g}s: {counts} with prefix {props['name_prefix']} and labels {', '.join(props.get('labels') or [])}"
        ]
        if is_scale_set(props):
            lines.append(f"scale set message session: {session or 'not reported'} (the manager's /healthz on port"
                         f" {props.get('metrics_port')}; ready needs {SESSION_LIVE!r})")
        if last_error is not None:
            lines.append(f"last GitHub error: {type(last_error).__name__}: {last_error}")
        lines.append(self._manager_tail(props))
        lines.append(f"fix what the manager log shows and run pulumi up again, or raise readyTimeout of pool "
                     f"{props['pool']!r} (ghr:pools[].readyTimeout; 0 does not wait)")
        return "\n".join(lines)

    # -- CRUD --------------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = pool_check(news)
        slots = news.get("slots")
        if not is_unknown(slots) and (isinstance(slots, bool) or not isinstance(slots, (int, float))
                                      or slots < 1 or int(slots) != slots):
            failures.append(CheckFailure("slots", "slots must be a whole number >= 1"))
        labels = news.get("labels")
        if not is_unknown(labels) and (not isinstance(labels, list) or not labels
                                       or any(not isinstance(x, str) or not x for x in labels)):
            failures.append(CheckFailure("labels", "expected a non-empty list of runner labels"))
        if news.get("scaling") not in (None, "fixed", "scale_set"):
            failures.append(CheckFailure("scaling", "scaling must be fixed or scale_set"))
        if is_scale_set(news):
            # Numbers cross the engine as floats (0.0): whole ones are fine.
            mr: Any = news.get("min_runners")
            if not is_unknown(mr) and not (_whole(mr) and mr >= 0):
                failures.append(CheckFailure("min_runners", "min_runners must be a whole number >= 0"))
            mp: Any = news.get("metrics_port")
            if not is_unknown(mp) and not (_whole(mp) and 0 < mp < 65536):
                failures.append(CheckFailure("metrics_port", "metrics_port must be the manager's port (1-65535)"))
        failures += seconds_check(news, "ready_timeout")
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return diff_result(olds, news, _INPUT_KEYS, _REPLACE_KEYS)

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._wait(props)
        return CreateResult(id_=f"{props['scope_url']}#{props['name_prefix']}", outs=outs)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._wait(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = self._client(props)
        summary, ready = self._count(client, props)
        outs = dict(props)
        outs.update(summary, ready=ready >= wanted(props))
        return ReadResult(id_=id_, outs=outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None  # owns nothing: the registration's delete sweeps GitHub, the container's delete the host


class RunnerPoolReadyArgs(TypedDict):
    """Inputs of a RunnerPoolReady (no credentials: see the module docstring)."""

    scope_url: pulumi.Input[str]
    api_url: NotRequired[pulumi.Input[str | None]]
    name_prefix: pulumi.Input[str]
    labels: pulumi.Input[Sequence[str]]
    slots: pulumi.Input[int]
    ready_timeout: NotRequired[pulumi.Input[int]]
    pool: pulumi.Input[str]
    host: pulumi.Input[str]
    stack: pulumi.Input[str]
    manager_container: pulumi.Input[str]  # name, for the message
    manager_container_id: pulumi.Input[str]  # a new manager container makes it wait again
    spec_hash: pulumi.Input[str]  # so does a new pool spec (see spec_hash())
    docker: NotRequired[Mapping[str, Any]]  # host props, to read the manager's logs
    # A scale-set pool only: wait for min_runners online and the manager's session (its /healthz on metrics_port).
    scaling: NotRequired[str]
    min_runners: NotRequired[pulumi.Input[int]]
    metrics_port: NotRequired[pulumi.Input[int]]


class RunnerPoolReady(Resource, module="ghr", name="RunnerPoolReady"):
    """A pool on a host is ready: ``slots`` runners online on GitHub. Outputs the live counts."""

    online: pulumi.Output[int]
    busy: pulumi.Output[int]
    idle: pulumi.Output[int]
    offline: pulumi.Output[int]
    total: pulumi.Output[int]
    stale: pulumi.Output[list[str]]
    ready: pulumi.Output[bool]
    wait_seconds: pulumi.Output[float]
    ready_timeout: pulumi.Output[int]

    def __init__(self, resource_name: str, args: RunnerPoolReadyArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        docker = dict(args.get("docker") or {})
        props: dict[str, Any] = {
            "scope_url": args["scope_url"],
            "api_url": args.get("api_url"),
            "name_prefix": args["name_prefix"],
            "labels": args["labels"],
            "slots": args["slots"],
            "ready_timeout": args.get("ready_timeout", DEFAULT_READY_TIMEOUT),
            "pool": args["pool"],
            "host": args["host"],
            "stack": args["stack"],
            "manager_container": args["manager_container"],
            "manager_container_id": args["manager_container_id"],
            "spec_hash": args["spec_hash"],
            "docker_host": docker.get("docker_host"),
            "ssh_options": docker.get("ssh_options") or [],
            "tls": docker.get("tls"),
            **{k: None for k in _COUNT_KEYS}, "ready": None, "wait_seconds": None,
        }
        if args.get("scaling") == "scale_set":  # absent for a fixed pool: deployed stacks see no new inputs
            props.update(scaling="scale_set", min_runners=args.get("min_runners", 0),
                         metrics_port=args.get("metrics_port"), session=None)
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["tls"]))
        super().__init__(RunnerPoolReadyProvider(), resource_name, props, opts)


def summary_of(ready: RunnerPoolReady) -> pulumi.Output[dict[str, Any]]:
    """The counts a pool reports in the stack outputs (plus whether it was ready and the wait)."""
    return pulumi.Output.all(
        online=ready.online, busy=ready.busy, idle=ready.idle, offline=ready.offline, total=ready.total,
        stale=ready.stale, ready=ready.ready, wait_seconds=ready.wait_seconds,
    ).apply(lambda a: dict(a))


__all__ = [
    "DEFAULT_READY_TIMEOUT", "SESSION_LIVE", "PoolNotReady", "RunnerPoolReady", "RunnerPoolReadyArgs", "RunnerPoolReadyProvider",
    "is_scale_set", "ready_runners", "session_state", "spec_hash", "summary_of", "wanted",
]
