"""RunnerRegistration: the GitHub side of one pool on one host, as a dynamic resource.

- ``check`` is pure (no network): it runs on every preview.
- ``create`` proves the credentials reach the scope with runner-admin permission in one
  call (``check_access``) and resolves the runner group. It has no remote side effect to
  undo and is safe to repeat.
- ``read`` (``pulumi refresh``) lists the pool's runners by name prefix and reports online,
  busy and offline counts and stale (offline) registrations.
- ``update`` applies label changes to existing registrations and resolves a new group.
- ``delete`` (after the manager container is gone: it depends on this resource) removes every
  registration with the pool's prefix, waiting for busy runners up to ``drain_timeout``;
  404 counts as done. Then it removes any runner container the manager left on the host.

Credentials never enter the resource's inputs, outputs or the pickled provider: they come
from the stack config through :meth:`RunnerRegistrationProvider.configure` (``ghr:github``)
or, failing that, from the environment (``GHR_GITHUB_TOKEN`` or ``GHR_GITHUB_APP_ID`` +
``GHR_GITHUB_APP_PRIVATE_KEY`` [+ ``GHR_GITHUB_APP_INSTALLATION_ID``]), and become a client
through :func:`github_client.client_from_credentials` (see :mod:`components._github`, shared with
RunnerPoolReady). HTTP clients are built inside each method, with timeouts and bounded retries.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, Protocol, TypedDict

import pulumi
from pulumi.dynamic import (
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    UpdateResult,
)

from github_client import (
    CredentialsMissing,
    GitHubClient,
    GitHubError,
    InvalidInput,
    NotFound,
    Runner,
    RunnerDeprecation,
    Unprocessable,
    credentials_from_env,
)

from . import _github
from ._github import STALE_LIST_MAX, name_pattern
from ._provider import changed, diff_result, labels_check, pool_check, seconds_check
from .docker import client_from_props

POLL_INTERVAL = 2.0
_INPUT_KEYS = (
    "scope_url", "api_url", "name_prefix", "labels", "runner_group", "drain_timeout", "pool", "host", "stack",
    "docker_host", "ssh_options", "tls",
)
_REPLACE_KEYS = ("scope_url", "api_url", "name_prefix")


class DrainTimeout(RuntimeError):
    """Busy runners were still running jobs when the drain timeout ran out."""


class RunnerRegistrationProvider(_github.GitHubProvider):
    """Dynamic provider for RunnerRegistration. Holds only what ``configure`` gave it.

    Pickled into each stack's state by reference (``components.registration.RunnerRegistrationProvider``):
    keep the class at this path. Configured credentials are process-local and never pickled: the
    provider is pickled at construction, before configure runs, and this keeps it that way.
    """

    resource = "RunnerRegistration"

    # -- helpers -----------------------------------------------------------------------------

    _pool_runners = staticmethod(_github.pool_runners)
    _summary = staticmethod(_github.summary)

    @staticmethod
    def _group_id(client: GitHubClient, name: str) -> int:
        if client.scope.kind == "repo":
            if name.casefold() != "default":
                raise InvalidInput("runner_group", "repository runners can only join the Default group")
            return 1
        return int(client.find_runner_group(name).id)

    # -- CRUD --------------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = pool_check(news)
        failures += labels_check(news, blank_ok=True)
        failures += seconds_check(news, "drain_timeout")
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return diff_result(olds, news, _INPUT_KEYS, _REPLACE_KEYS)

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = self._client(props)
        access = client.check_access()  # one call: credentials + scope + runner-admin permission
        group_id = self._group_id(client, props.get("runner_group") or "Default")
        outs = {k: props.get(k) for k in _INPUT_KEYS}
        outs.update(
            runner_group_id=group_id, scope_kind=client.scope.kind, auth=access.auth,
            total=0, online=0, busy=0, idle=0, offline=0, stale=[],
        )
        return CreateResult(id_=f"{client.scope.web_url}#{props['name_prefix']}", outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        client = self._client(props)
        runners = self._pool_runners(client, props["name_prefix"])
        outs = dict(props)
        outs.update(self._summary(runners))
        return ReadResult(id_=id_, outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        client = self._client(news)
        outs = {k: news.get(k) for k in _INPUT_KEYS}
        group_id = olds.get("runner_group_id")
        if changed(olds, news, ("runner_group",)) or group_id is None:
            group_id = self._group_id(client, news.get("runner_group") or "Default")
        runners = self._pool_runners(client, news["name_prefix"])
        if changed(olds, news, ("labels",)):
            for r in runners:  # a label change never interrupts a job
                try:
                    client.set_runner_labels(r.id, list(news["labels"]))
                except NotFound:
                    continue
        outs.update(runner_group_id=group_id, scope_kind=client.scope.kind, auth=olds.get("auth"))
        outs.update(self._summary(runners))
        return UpdateResult(outs=outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        client = self._client(props)
        drain = float(props.get("drain_timeout") or 0)
        deadline = time.monotonic() + drain
        pending: list[Runner] = []
        while True:
            try:
                runners = self._pool_runners(client, props["name_prefix"])
            except NotFound:
                runners = []  # the scope itself is gone: nothing left to remove
            pending = []
            expired = time.monotonic() >= deadline
            for r in runners:
                if r.busy and not expired:
                    pending.append(r)
                    continue
                try:
                    client.delete_runner(r.id, missing_ok=True)
                except Unprocessable:
                    pending.append(r)  # still running a job
            if not pending or expired:
                break
            time.sleep(min(POLL_INTERVAL, max(0.1, deadline - time.monotonic())))
        self._remove_leftover_containers(props)
        if pending:
            names = ", ".join(sorted(r.name for r in pending)[:10])
            raise DrainTimeout(
                f"{len(pending)} runner(s) of {props['name_prefix']} were still running jobs after the "
                f"{drain:g}s drain timeout: {names}; cancel those jobs (or wait) and run pulumi destroy again"
            )

    @staticmethod
    def _remove_leftover_containers(props: Mapping[str, Any]) -> None:
        """Runner containers the manager did not get to remove (it was killed, or drained late), then the dind
        sidecars of a `docker: dind` pool (`ghr.role=sidecar`, pool_manager._dind) and the pair volumes they leave."""
        import docker.errors

        if not props.get("docker_host"):
            return
        pool = [f"ghr.stack={props['stack']}", f"ghr.pool={props['pool']}", f"ghr.host={props['host']}"]
        with client_from_props(props, timeout=60) as dc:
            for role in ("runner", "sidecar"):  # the runner first: it uses its sidecar's volumes and network
                filters: dict[str, str | list[str] | bool] = {"label": [*pool, f"ghr.role={role}"]}
                for c in dc.containers.list(all=True, filters=filters):
                    try:
                        c.remove(force=True, v=True)  # v: a hardened runner's handoff volume, a sidecar's store
                    except docker.errors.NotFound:
                        pass
            for v in dc.volumes.list(filters={"label": [*pool, "ghr.role=sidecar"]}):
                try:
                    v.remove(force=True)
                except docker.errors.NotFound:
                    pass


class _DeprecationSource(Protocol):
    def runner_deprecation(self, version: str) -> RunnerDeprecation: ...


def runner_version_warnings(client: _DeprecationSource, version: str, *, now: datetime | None = None,
                            window: timedelta = timedelta(days=7)) -> list[str]:
    """Warnings for a runner version GitHub will soon refuse (deprecation endpoint)."""
    now = now or datetime.now(UTC)
    try:
        dep = client.runner_deprecation(version)
    except NotFound:
        return []  # the endpoint is newer than this GitHub; nothing scheduled that we can see
    except GitHubError as exc:
        return [f"could not check runner {version} against GitHub's deprecation schedule ({type(exc).__name__}); "
                "deploying anyway"]
    out: list[str] = []
    for what, when in (("register", dep.registration_deprecates_at), ("run jobs", dep.runtime_deprecates_at)):
        if when is None:
            continue
        if when <= now:
            out.append(f"runner {version} can no longer {what} since {when:%Y-%m-%d}; "
                       "raise image.runnerVersion to the latest release")
        elif when - now <= window:
            out.append(f"runner {version} stops being able to {what} on {when:%Y-%m-%d} "
                       f"({(when - now).days} days left of its 30-day window); raise image.runnerVersion")
    return out


class RunnerRegistrationArgs(TypedDict):
    """Inputs of a RunnerRegistration (no credentials: see the module docstring)."""

    scope_url: pulumi.Input[str]
    api_url: NotRequired[pulumi.Input[str | None]]
    name_prefix: pulumi.Input[str]
    labels: pulumi.Input[Sequence[str]]
    runner_group: NotRequired[pulumi.Input[str]]
    drain_timeout: NotRequired[pulumi.Input[int]]
    pool: pulumi.Input[str]
    host: pulumi.Input[str]
    stack: pulumi.Input[str]
    docker: NotRequired[Mapping[str, Any]]  # host props for the leftover-container sweep


class RunnerRegistration(Resource, module="ghr", name="RunnerRegistration"):
    """The registrations of one pool on one host (GitHub side), with drift counts."""

    runner_group_id: pulumi.Output[int]
    online: pulumi.Output[int]
    busy: pulumi.Output[int]
    idle: pulumi.Output[int]
    offline: pulumi.Output[int]
    total: pulumi.Output[int]
    stale: pulumi.Output[list[str]]
    name_prefix: pulumi.Output[str]

    def __init__(self, resource_name: str, args: RunnerRegistrationArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        docker = dict(args.get("docker") or {})
        props: dict[str, Any] = {
            "scope_url": args["scope_url"],
            "api_url": args.get("api_url"),
            "name_prefix": args["name_prefix"],
            "labels": args["labels"],
            "runner_group": args.get("runner_group") or "Default",
            "drain_timeout": args.get("drain_timeout", 600),
            "pool": args["pool"],
            "host": args["host"],
            "stack": args["stack"],
            "docker_host": docker.get("docker_host"),
            "ssh_options": docker.get("ssh_options") or [],
            "tls": docker.get("tls"),
            "runner_group_id": None, "scope_kind": None, "auth": None,
            "total": None, "online": None, "busy": None, "idle": None, "offline": None, "stale": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["tls"]))
        super().__init__(RunnerRegistrationProvider(), resource_name, props, opts)


__all__ = [
    "POLL_INTERVAL", "STALE_LIST_MAX", "CredentialsMissing", "DrainTimeout", "RunnerRegistration",
    "RunnerRegistrationArgs", "RunnerRegistrationProvider", "credentials_from_env", "name_pattern",
    "runner_version_warnings",
]
