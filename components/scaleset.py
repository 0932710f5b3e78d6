"""RunnerScaleSet: the GitHub runner scale set of one scale-set pool on one host, as a dynamic resource.

A scale-set pool (``ghr:pools[i].scaling: scaleSet``) follows demand: its manager holds a message
session on this scale set and starts runners for the jobs GitHub assigns to it. This resource owns
the scale set itself (GitHub's Actions service, through :class:`github_client.ScaleSetClient`):

- ``check`` is pure (no network): identity strings, the scale set's name as GitHub would take it,
  labels, the drain timeout.
- ``create`` resolves the runner group, then looks the scale set up by name in that group first
  (idempotent: a create that ran before, or a scale set someone made, is found, not duplicated) and
  creates it only when it is missing. Transactional: if anything after its own create fails, the scale
  set it created is deleted again before the error is raised.
- ``update`` changes name, labels and runner group in place (PATCH); the id stays.
- ``read`` (``pulumi refresh``) shows drift: the scale set's name, labels and group as GitHub has them
  (a later ``up`` sets them back), its ``statistics`` and the pool's registered runners (by name
  prefix). A scale set deleted behind our back drops out of the state; ``up`` creates it again.
- ``delete`` runs after the manager container is gone (the manager depends on this resource, through
  the scale set's id in its spec), so the manager has drained. It waits (up to ``drain_timeout``) while
  the scale set still reports busy runners, then deletes the scale set. Only a scale set the pool
  owns is deleted (``owned``): one it created, or one named by the pool's own name prefix (the derived
  name ``<stack>-<pool>-<host>``, the same rule by which the registration sweeps runners). A scale set
  with a configured ``scaleSetName`` that existed before is adopted and left in place.

Credentials never enter inputs, outputs or the pickled provider: ``configure()`` keeps ``ghr:github``
in the provider process, else the ``GHR_GITHUB_*`` environment (:mod:`components._github`, as for
RunnerRegistration). A server without runner scale sets (GitHub Enterprise Server before 3.9) fails
``create`` with a message saying so.
"""

from __future__ import annotations

import logging
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

from github_client import Conflict, GitHubClient, GitHubError, NotFound, ScaleSet, ScaleSetClient, Unprocessable
from pool_manager.spec import SpecError, check_scale_set_name

from . import _github
from ._provider import changed, diff_result, is_unknown, labels_check, pool_check, seconds_check

log = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
_INPUT_KEYS = (
    "scope_url", "api_url", "name", "name_prefix", "labels", "runner_group", "drain_timeout", "pool", "host",
    "stack",
)
# Another scope (or API root) is another Actions service: a new scale set. Name, labels and group change in place.
_REPLACE_KEYS = ("scope_url", "api_url")
STATISTICS_KEYS = (
    "total_available_jobs", "total_acquired_jobs", "total_assigned_jobs", "total_running_jobs",
    "total_registered_runners", "total_busy_runners", "total_idle_runners",
)
_RUNNER_KEYS = ("total", "online", "busy", "idle", "offline", "stale")
NO_SCALE_SETS = ("GitHub at {api} did not open its Actions service for {scope}: {error}. Runner scale sets need"
                 " github.com or GitHub Enterprise Server 3.9 or newer; use scaling: fixed on this server")


class ScaleSetBusy(RuntimeError):
    """The scale set still had busy runners when the drain timeout ran out (nothing was deleted)."""


def statistics_of(scale_set: ScaleSet) -> dict[str, int]:
    """The scale set's job and runner counts as plain outputs (zeros when GitHub sent none)."""
    stats = scale_set.statistics
    return {key: int(getattr(stats, key)) if stats is not None else 0 for key in STATISTICS_KEYS}


class RunnerScaleSetProvider(_github.GitHubProvider):
    """Dynamic provider for RunnerScaleSet. Holds only what ``configure`` gave it.

    Pickled into each stack's state by reference (``components.scaleset.RunnerScaleSetProvider``):
    keep the class at this path. Configured credentials are process-local and never pickled.
    """

    resource = "RunnerScaleSet"

    # -- helpers -----------------------------------------------------------------------------

    def _clients(self, props: Mapping[str, Any]) -> tuple[GitHubClient, ScaleSetClient]:
        github = self._client(props)
        return github, ScaleSetClient(github)

    @staticmethod
    def _group_id(service: ScaleSetClient, name: str) -> int:
        """The runner group's id; the default group is 1 (GitHub's own client does not look it up)."""
        if name.casefold() == "default":
            return 1
        return int(service.get_runner_group(name).id)

    @staticmethod
    def _connect(service: ScaleSetClient, props: Mapping[str, Any], group: str) -> int:
        """The runner group's id, the first Actions-service call: a server without scale sets fails here."""
        try:
            return RunnerScaleSetProvider._group_id(service, group)
        except NotFound as exc:
            if "runner group" in str(exc):
                raise
            raise GitHubError(NO_SCALE_SETS.format(api=service.github.scope.api_url, scope=props["scope_url"],
                                                   error=exc)) from None

    @staticmethod
    def _find(service: ScaleSetClient, props: Mapping[str, Any]) -> tuple[int, ScaleSet | None]:
        """The runner group's id and the scale set of that name in it (None: not there yet). These are the first
        Actions-service calls, so a server without scale sets (no runner-registration: 404) fails here, saying so."""
        group_id = RunnerScaleSetProvider._connect(service, props, props.get("runner_group") or "Default")
        try:
            return group_id, service.get_scale_set_by_name(str(props["name"]), group_id)
        except NotFound as exc:
            raise GitHubError(NO_SCALE_SETS.format(api=service.github.scope.api_url, scope=props["scope_url"],
                                                   error=exc)) from None

    @staticmethod
    def _runners(github: GitHubClient, props: Mapping[str, Any]) -> dict[str, Any]:
        """The pool's registered runners (by name prefix), counted; zeros when GitHub cannot list them now."""
        try:
            return _github.summary(_github.pool_runners(github, props["name_prefix"]))
        except GitHubError as exc:
            log.warning("could not count the runners of %s: %s", props["name_prefix"], exc)
            return {"total": 0, "online": 0, "busy": 0, "idle": 0, "offline": 0, "stale": []}

    @staticmethod
    def _outs(props: Mapping[str, Any], scale_set: ScaleSet, owned: bool, runners: Mapping[str, Any]) -> dict[str, Any]:
        outs: dict[str, Any] = {k: props.get(k) for k in _INPUT_KEYS}
        outs.update(
            scale_set_id=scale_set.id, name=scale_set.name, labels=list(scale_set.labels),
            runner_group_id=scale_set.runner_group_id, owned=owned, statistics=statistics_of(scale_set),
        )
        outs.update({k: runners.get(k) for k in _RUNNER_KEYS})
        return outs

    # -- CRUD --------------------------------------------------------------------------------

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = pool_check(news)
        name = news.get("name")
        if not is_unknown(name):
            try:
                check_scale_set_name(name, "name")
            except SpecError as exc:
                failures.append(CheckFailure("name", exc.reason))
        failures += labels_check(news, blank_ok=False)
        failures += seconds_check(news, "drain_timeout")
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return diff_result(olds, news, _INPUT_KEYS, _REPLACE_KEYS)

    def create(self, props: dict[str, Any]) -> CreateResult:
        github, service = self._clients(props)
        group_id, existing = self._find(service, props)
        name, labels = str(props["name"]), [str(x) for x in props["labels"]]
        if existing is not None:
            # Ours when named by the pool's prefix (a create whose answer was lost, or an earlier stack
            # state); a configured name that already existed is adopted and left at destroy.
            owned = name == props["name_prefix"]
            scale_set = existing
            if [x.casefold() for x in existing.labels] != [x.casefold() for x in labels]:
                scale_set = service.update_scale_set(existing.id, labels=labels)
            log.info("scale set %s (id %s) exists in group %s: %s", name, existing.id, group_id,
                     "the pool's own" if owned else "adopted, kept at destroy")
        else:
            scale_set = service.create_scale_set(name, runner_group_id=group_id, labels=labels, disable_update=True)
            owned = True
        try:
            outs = self._outs(props, scale_set, owned, self._runners(github, props))
        except BaseException:
            if existing is None:
                service.delete_scale_set(scale_set.id, missing_ok=True)  # nothing half-made is left behind
            raise
        return CreateResult(id_=str(scale_set.id), outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        github, service = self._clients(props)
        try:
            scale_set = service.get_scale_set(int(props.get("scale_set_id") or id_))
        except NotFound:
            return ReadResult(id_=None, outs={})  # deleted behind our back: `up` makes it again
        outs = self._outs(props, scale_set, bool(props.get("owned")), self._runners(github, props))
        if scale_set.runner_group_id != props.get("runner_group_id") and scale_set.runner_group_name:
            outs["runner_group"] = scale_set.runner_group_name  # moved to another group: the next up moves it back
        return ReadResult(id_=id_, outs=outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        github, service = self._clients(news)
        scale_set_id = int(olds.get("scale_set_id") or id_)
        patch: dict[str, Any] = {}
        if changed(olds, news, ("name",)):
            patch["name"] = str(news["name"])
        if changed(olds, news, ("labels",)):
            patch["labels"] = [str(x) for x in news["labels"]]
        if changed(olds, news, ("runner_group",)) or olds.get("runner_group_id") is None:
            group_id = self._connect(service, news, news.get("runner_group") or "Default")
            if group_id != olds.get("runner_group_id"):
                patch["runner_group_id"] = group_id
        try:
            scale_set = (service.update_scale_set(scale_set_id, **patch) if patch
                         else service.get_scale_set(scale_set_id))
        except NotFound:
            raise GitHubError(f"scale set {news['name']} (id {scale_set_id}) is gone from GitHub; run"
                              " pulumi up --refresh to create it again") from None
        return UpdateResult(outs=self._outs(news, scale_set, bool(olds.get("owned")), self._runners(github, news)))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        scale_set_id = int(props.get("scale_set_id") or id_)
        if not props.get("owned"):
            log.warning("scale set %s (id %s) existed before this stack: left in place", props.get("name"), scale_set_id)
            return
        _, service = self._clients(props)
        drain = float(props.get("drain_timeout") or 0)
        deadline = time.monotonic() + drain
        busy = 0
        while True:
            try:
                stats = statistics_of(service.get_scale_set(scale_set_id))
            except NotFound:
                return  # already gone
            busy = stats["total_busy_runners"]
            if busy == 0 or time.monotonic() >= deadline:
                break
            time.sleep(min(POLL_INTERVAL, max(0.1, deadline - time.monotonic())))
        while True:
            try:
                service.delete_scale_set(scale_set_id, missing_ok=True)
                return
            except (Conflict, Unprocessable) as exc:  # refused while runners still run jobs
                if time.monotonic() >= deadline:
                    raise ScaleSetBusy(
                        f"scale set {props.get('name')} (id {scale_set_id}) could not be deleted after the {drain:g}s"
                        f" drain timeout ({busy} busy runner(s); GitHub said: {exc}); let those jobs finish or"
                        " cancel them, then run pulumi destroy again") from None
                time.sleep(POLL_INTERVAL)


class RunnerScaleSetArgs(TypedDict):
    """Inputs of a RunnerScaleSet (no credentials: see the module docstring)."""

    scope_url: pulumi.Input[str]
    api_url: NotRequired[pulumi.Input[str | None]]
    name: pulumi.Input[str]  # the scale set's name (spec.scale_set_name)
    name_prefix: pulumi.Input[str]  # the pool's runner names; also decides ownership of a found scale set
    labels: pulumi.Input[Sequence[str]]
    runner_group: NotRequired[pulumi.Input[str]]
    drain_timeout: NotRequired[pulumi.Input[int]]
    pool: pulumi.Input[str]
    host: pulumi.Input[str]
    stack: pulumi.Input[str]


class RunnerScaleSet(Resource, module="ghr", name="RunnerScaleSet"):
    """One pool's scale set on one host (GitHub side): its id, name, group, statistics and runner counts."""

    scale_set_id: pulumi.Output[int]
    name: pulumi.Output[str]
    labels: pulumi.Output[list[str]]
    runner_group_id: pulumi.Output[int]
    owned: pulumi.Output[bool]
    statistics: pulumi.Output[dict[str, int]]
    online: pulumi.Output[int]
    busy: pulumi.Output[int]
    idle: pulumi.Output[int]
    offline: pulumi.Output[int]
    total: pulumi.Output[int]
    stale: pulumi.Output[list[str]]

    def __init__(self, resource_name: str, args: RunnerScaleSetArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = {
            "scope_url": args["scope_url"],
            "api_url": args.get("api_url"),
            "name": args["name"],
            "name_prefix": args["name_prefix"],
            "labels": args["labels"],
            "runner_group": args.get("runner_group") or "Default",
            "drain_timeout": args.get("drain_timeout", 600),
            "pool": args["pool"],
            "host": args["host"],
            "stack": args["stack"],
            "scale_set_id": None, "runner_group_id": None, "owned": None, "statistics": None,
            **{k: None for k in _RUNNER_KEYS},
        }
        super().__init__(RunnerScaleSetProvider(), resource_name, props, opts)


__all__ = [
    "STATISTICS_KEYS", "RunnerScaleSet", "RunnerScaleSetArgs", "RunnerScaleSetProvider", "ScaleSetBusy",
    "statistics_of",
]
