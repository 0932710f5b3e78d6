"""RunnerScaleSet (issue 9): pickling, a pure check, diff keys, and CRUD against the emulator's Actions service."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any

import dill
import pulumi
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider
from unit_helpers import TOKEN

from components.scaleset import STATISTICS_KEYS, RunnerScaleSet, RunnerScaleSetProvider

PREFIX = "unit-cpu-local"


def _configured(token: str = TOKEN) -> RunnerScaleSetProvider:
    p = RunnerScaleSetProvider()
    p.configure(ConfigureRequest(Config({"ghr:github": json.dumps({"scope": "https://github.com/acme", "token": token})},
                                        "ghr")))
    return p


def _props(scope_url: str = "https://github.com/acme", **over: Any) -> dict[str, Any]:
    props = {"scope_url": scope_url, "api_url": None, "name": PREFIX, "name_prefix": PREFIX,
             "labels": ["self-hosted", "linux"], "runner_group": "Default", "drain_timeout": 2, "pool": "cpu",
             "host": "local", "stack": "unit"}
    props.update(over)
    return props


# ---- pickling, check, diff (no network) -------------------------------------------------------

def test_provider_pickles_without_credentials() -> None:
    """The provider pickles by reference (as Pulumi does, with dill); configured credentials are not in it."""
    provider = _configured()
    blob = base64.b64decode(serialize_provider(provider))
    assert TOKEN.encode() not in blob and b"ghp_" not in dill.dumps(provider, recurse=True)
    restored = dill.loads(blob)
    assert type(restored).__name__ == "RunnerScaleSetProvider" and restored.__dict__ == {}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: Any, **_k: Any) -> None:
        raise AssertionError("check() opened a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(("over", "field"), [
    ({"name": "a" * 46}, "name"), ({"name": "gpu pool"}, "name"), ({"name": ""}, "name"),
    ({"labels": []}, "labels"), ({"labels": ["a,b"]}, "labels"), ({"drain_timeout": -1}, "drain_timeout"),
    ({"name_prefix": ""}, "name_prefix"), ({"scope_url": None}, "scope_url"),
])
def test_check_is_pure_and_names_the_field(no_network: None, over: dict[str, Any], field: str) -> None:
    """check() refuses what GitHub would refuse, without any network call, naming the input."""
    failures = RunnerScaleSetProvider().check({}, _props(**over)).failures
    assert field in [f.property for f in failures]
    assert not RunnerScaleSetProvider().check({}, _props()).failures


@pytest.mark.parametrize(("over", "replaces", "changes"), [
    ({"labels": ["x"]}, [], True), ({"name": "renamed"}, [], True), ({"runner_group": "ci"}, [], True),
    ({"drain_timeout": 60}, [], True), ({"scope_url": "https://github.com/other"}, ["scope_url"], True),
    ({"api_url": "https://ghe.example/api/v3"}, ["api_url"], True), ({}, [], False),
])
def test_diff_updates_in_place_and_replaces_only_for_another_scope(over: dict[str, Any], replaces: list[str],
                                                                   changes: bool) -> None:
    """Labels, name and group change in place (PATCH, same id); another scope or API root is a new scale set."""
    olds = {**_props(), "scale_set_id": 3, "runner_group_id": 1, "owned": True, "statistics": {}}
    d = RunnerScaleSetProvider().diff("3", olds, {**_props(), **over})
    assert d.replaces == replaces and d.changes is changes


@pulumi.runtime.test
def test_resource_shape(mocks: Any) -> Any:
    """A RunnerScaleSet sends its inputs (no credentials) and exposes id, name, group and statistics."""
    args: Any = {k: v for k, v in _props().items() if k != "api_url"}
    ss = RunnerScaleSet("ss", args)

    def check(values: list[Any]) -> None:
        (reg,) = mocks.of_type("RunnerScaleSet")
        assert reg.inputs["name"] == PREFIX and reg.inputs["labels"] == ["self-hosted", "linux"]
        assert "token" not in json.dumps(reg.inputs) and TOKEN not in json.dumps(reg.inputs)
        name, scale_set_id, statistics = values
        assert name == PREFIX and scale_set_id == 7 and "total_assigned_jobs" in statistics

    return pulumi.Output.all(ss.name, ss.scale_set_id, ss.statistics).apply(check)


# ---- CRUD against the emulator's Actions service -----------------------------------------------

@pytest.fixture
def scale_sets(emu: Any) -> Any:
    """The emulator's scale sets, through the same client the provider uses (skipped before the emulator has them)."""
    from github_client import GitHubClient, PatAuth, ScaleSetClient, parse_scope

    client = ScaleSetClient(GitHubClient(parse_scope(f"{emu.url}/acme"), PatAuth(emu.admin_token), max_retries=0))
    try:
        client.get_runner_group("Default")
    except Exception as exc:  # noqa: BLE001 - an emulator without the Actions service
        pytest.skip(f"the emulator has no scale-set protocol yet ({type(exc).__name__})")
    return client


def _emu_provider(emu: Any) -> RunnerScaleSetProvider:
    p = RunnerScaleSetProvider()
    p.configure(ConfigureRequest(Config({"ghr:github": json.dumps({"token": emu.admin_token})}, "ghr")))
    return p


def test_create_is_idempotent_and_delete_removes_it(emu: Any, scale_sets: Any) -> None:
    """create makes the scale set; a second create (state lost) finds the same one; delete removes it."""
    p = _emu_provider(emu)
    props = _props(f"{emu.url}/acme")
    first = p.create(props)
    outs = first.outs
    assert outs["scale_set_id"] == int(first.id) and outs["name"] == PREFIX and outs["owned"] is True
    assert outs["runner_group_id"] == 1 and set(outs["statistics"]) == set(STATISTICS_KEYS)
    assert outs["total"] == 0 and "token" not in json.dumps(outs)
    again = p.create(props)
    assert again.id == first.id and again.outs["owned"] is True  # named by the pool's prefix: the pool's own
    p.delete(first.id, outs)
    assert scale_sets.get_scale_set_by_name(PREFIX, 1) is None
    p.delete(first.id, outs)  # already gone: done


def test_update_patches_in_place_and_read_shows_drift(emu: Any, scale_sets: Any) -> None:
    """Labels and name change in place (same id); refresh shows what GitHub has, and a deleted scale set drops out."""
    p = _emu_provider(emu)
    created = p.create(_props(f"{emu.url}/acme"))
    olds = created.outs
    news = _props(f"{emu.url}/acme", labels=["self-hosted", "gpu"], name="unit-renamed")
    outs = p.update(created.id, olds, news).outs
    assert outs["scale_set_id"] == olds["scale_set_id"] and outs["labels"] == ["self-hosted", "gpu"]
    assert scale_sets.get_scale_set(olds["scale_set_id"]).name == "unit-renamed"
    scale_sets.update_scale_set(olds["scale_set_id"], labels=["changed-by-hand"])
    read = p.read(created.id, outs)
    assert read.id == created.id and read.outs["labels"] == ["changed-by-hand"]
    assert p.diff(created.id, read.outs, news).changes  # the next up sets them back
    scale_sets.delete_scale_set(olds["scale_set_id"])
    assert not p.read(created.id, outs).id


def test_an_existing_scale_set_with_a_configured_name_is_adopted_not_deleted(emu: Any, scale_sets: Any) -> None:
    """Nothing is deleted that the pool did not create: a configured name that existed before is kept."""
    theirs = scale_sets.create_scale_set("shared-set", labels=["old"])
    p = _emu_provider(emu)
    created = p.create(_props(f"{emu.url}/acme", name="shared-set"))
    assert created.id == str(theirs.id) and created.outs["owned"] is False
    assert list(scale_sets.get_scale_set(theirs.id).labels) == ["self-hosted", "linux"]
    p.delete(created.id, created.outs)
    assert scale_sets.get_scale_set(theirs.id).id == theirs.id


def test_create_leaves_nothing_behind_when_it_fails(emu: Any, scale_sets: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Transactional: a failure after its own create deletes the scale set it made."""
    p = _emu_provider(emu)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("lost the answer")
    monkeypatch.setattr(RunnerScaleSetProvider, "_outs", staticmethod(broken))
    with pytest.raises(RuntimeError, match="lost the answer"):
        p.create(_props(f"{emu.url}/acme"))
    assert scale_sets.get_scale_set_by_name(PREFIX, 1) is None


def test_unknown_runner_group_is_named(emu: Any, scale_sets: Any) -> None:
    """A runner group the scope does not have fails create with the group named, and creates nothing."""
    from github_client import NotFound

    with pytest.raises(NotFound, match="nosuchgroup"):
        _emu_provider(emu).create(_props(f"{emu.url}/acme", runner_group="nosuchgroup"))
    assert scale_sets.get_scale_set_by_name(PREFIX, 1) is None


def test_a_server_without_scale_sets_says_so(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Actions service (runner-registration answers 404, as on GHES before 3.9): create fails saying what to use."""
    from github_client import GitHubError, NotFound, ScaleSetClient

    def no_service(self: Any, *_a: Any, **_k: Any) -> Any:
        raise NotFound("POST /actions/runner-registration: 404 (this GitHub may not offer runner scale sets)")
    monkeypatch.setattr(ScaleSetClient, "_connection", no_service)
    with pytest.raises(GitHubError, match="Enterprise Server 3.9 or newer; use scaling: fixed"):
        _emu_provider(emu).create(_props(f"{emu.url}/acme"))
