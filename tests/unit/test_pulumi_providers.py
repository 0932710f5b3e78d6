"""Dynamic providers: pickling, purity of check, and RunnerRegistration CRUD against the emulator."""

from __future__ import annotations

import base64
import json
import socket
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import dill
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider
from unit_helpers import TOKEN

from components.docker import DockerContainerProvider, DockerImageProvider
from components.registration import (
    CredentialsMissing,
    DrainTimeout,
    RunnerRegistrationProvider,
    runner_version_warnings,
)

PREFIX = "unit-cpu-local"


def _configured(token: str = TOKEN, **extra: Any) -> RunnerRegistrationProvider:
    p = RunnerRegistrationProvider()
    github = json.dumps({"scope": "https://github.com/acme", "token": token, **extra})
    p.configure(ConfigureRequest(Config({"ghr:github": github, "other:key": "x"}, "ghr")))
    return p


def _props(scope_url: str, **over: Any) -> dict[str, Any]:
    props = {"scope_url": scope_url, "api_url": None, "name_prefix": PREFIX, "labels": ["self-hosted", "linux"],
             "runner_group": "Default", "drain_timeout": 5, "pool": "cpu", "host": "local", "stack": "unit",
             "docker_host": None, "ssh_options": [], "tls": None}
    props.update(over)
    return props


# ---- pickling -------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [RunnerRegistrationProvider, DockerImageProvider, DockerContainerProvider])
def test_provider_survives_pickle_round_trip(cls):
    """The provider pickles (as Pulumi does, with dill) and unpickles into a working instance."""
    blob = serialize_provider(cls())
    restored = dill.loads(base64.b64decode(blob))
    assert type(restored).__name__ == cls.__name__
    assert restored.check({}, {}).failures is not None


def test_configured_credentials_are_never_pickled():
    """Even after configure(), the serialized provider does not contain the token."""
    provider = _configured()
    assert provider._credentials()["token"] == TOKEN
    blob = base64.b64decode(serialize_provider(provider))
    assert TOKEN.encode() not in blob
    assert b"ghp_" not in dill.dumps(provider, recurse=True)
    restored = dill.loads(blob)
    with pytest.raises(CredentialsMissing):
        restored._credentials()


def test_credentials_fall_back_to_environment(monkeypatch):
    """Without ghr:github in the config, GHR_GITHUB_TOKEN is used; with neither, a clear error."""
    p = RunnerRegistrationProvider()
    p.configure(ConfigureRequest(Config({}, "ghr")))
    monkeypatch.delenv("GHR_GITHUB_TOKEN", raising=False)
    with pytest.raises(CredentialsMissing, match="pulumi config set --secret"):
        p._credentials()
    monkeypatch.setenv("GHR_GITHUB_TOKEN", "env-token")
    assert p._credentials() == {"token": "env-token"}


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("check() opened a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("provider,news,bad_field", [
    (RunnerRegistrationProvider(), _props("https://github.com/acme", labels=[]), "labels"),
    (DockerImageProvider(), {"tag": "", "context": "/x", "dockerfile": "Dockerfile", "docker_host": "unix:///s"}, "tag"),
    (DockerContainerProvider(), {"name": "c", "image": "i", "docker_host": "tcp://h", "restart_policy": "always"},
     "docker_host"),
    (DockerContainerProvider(), {"name": "c", "image": "i", "restart_policy": "sometimes"}, "restart_policy"),
    (DockerContainerProvider(), {"name": "c", "image": "i", "uploads": [{"path": "rel/x", "content": "s"}]},
     "uploads[0].path"),
])
def test_check_is_pure_and_names_the_field(no_network, provider, news, bad_field):
    """check() validates without any network call and names the bad input."""
    failures = provider.check({}, news).failures
    assert bad_field in [f.property for f in failures]


def test_container_diff_replaces_and_reports_stopped():
    """Any setting change replaces the container (delete first); a stopped container is replaced too."""
    p = DockerContainerProvider()
    olds = {"name": "c", "image": "i1", "state": "running"}
    assert p.diff("id", olds, {"name": "c", "image": "i2"}).replaces == ["image"]
    assert p.diff("id", olds, {"name": "c", "image": "i1"}).changes is False
    stopped = p.diff("id", {**olds, "state": "exited"}, {"name": "c", "image": "i1"})
    assert stopped.replaces == ["state"] and stopped.delete_before_replace


_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi's "not known at preview" sentinel
_SPEC = {"path": "/etc/ghr/pool.json", "content": "{}", "mode": 0o444, "reloadable": True}
_CREDS = {"path": "/etc/ghr/credentials.json", "content": "c1", "mode": 0o400, "reloadable": True}
_RELOADING = {"name": "c", "image": "i", "state": "running", "reload_signal": "SIGHUP", "uploads": [_SPEC, _CREDS]}


@pytest.mark.parametrize("news,replaces,updates", [
    ({"uploads": [{**_SPEC, "content": '{"slots": 3}'}, _CREDS]}, [], True),
    ({"uploads": [_SPEC, {**_CREDS, "content": "c2"}]}, [], True),
    ({"uploads": [{**_SPEC, "content": _UNKNOWN}, _CREDS]}, [], True),
    ({"stop_timeout": 99}, [], True),
    ({"uploads": [{**_SPEC, "content": "x", "reloadable": False}, _CREDS]}, ["uploads"], True),
    ({"uploads": [{**_SPEC, "mode": 0o400}, _CREDS]}, ["uploads"], True),
    ({"uploads": [{**_SPEC, "path": "/etc/other.json"}, _CREDS]}, ["uploads"], True),
    ({"uploads": [_SPEC]}, ["uploads"], True),
    ({"reload_signal": None, "uploads": [{**_SPEC, "content": "x"}, _CREDS]}, ["uploads"], True),
    ({"uploads": [{**_SPEC, "content": "x"}, _CREDS], "image": "i2"}, ["image"], True),
    ({"labels": {"ghr.spec-fixed": "other"}}, ["labels"], True),
    ({}, [], False),
])
def test_container_diff_reloads_in_place_or_replaces(news, replaces, updates):
    """With reload_signal, a change of reloadable contents only is an update; anything else replaces."""
    d = DockerContainerProvider().diff("id", _RELOADING, {**_RELOADING, **news})
    assert sorted(d.replaces) == replaces and d.changes is updates


def test_container_diff_replaces_a_stopped_container_even_for_a_reload():
    """A stopped container is replaced, not signalled."""
    news = {**_RELOADING, "uploads": [{**_SPEC, "content": "x"}, _CREDS]}
    assert DockerContainerProvider().diff("id", {**_RELOADING, "state": "exited"}, news).replaces == ["state"]


def test_container_check_names_a_bad_reload_signal(no_network):
    """reload_signal must be a signal name; reloadable a boolean."""
    news = {"name": "c", "image": "i", "docker_host": "unix:///var/run/docker.sock", "reload_signal": "SIGNOPE",
            "uploads": [{"path": "/x", "content": "s", "reloadable": "yes"}]}
    failed = {f.property for f in DockerContainerProvider().check({}, news).failures}
    assert failed == {"reload_signal", "uploads[0].reloadable"}


def test_image_diff_rebuilds_on_context_change():
    """A new context hash or build arg is an in-place rebuild; a new host is a replacement."""
    p = DockerImageProvider()
    olds = {"tag": "t", "context": "/c", "context_hash": "a", "build_args": {"A": "1"}, "docker_host": "unix:///s"}
    d = p.diff("id", olds, {**olds, "context_hash": "b"})
    assert d.changes and d.replaces == []
    assert p.diff("id", olds, {**olds, "docker_host": "ssh://u@h"}).replaces == ["docker_host"]


# ---- RunnerRegistration against the emulator --------------------------------------------------

def test_create_proves_access_with_one_call_and_resolves_group(emu):
    """create makes one access call and resolves the named runner group; outputs carry no token."""
    gid = emu.add_runner_group("acme", "ci")
    provider = _configured(emu.admin_token)
    emu.reset_requests()
    result = provider.create(_props(f"{emu.url}/acme", runner_group="ci"))
    assert result.outs["runner_group_id"] == gid
    assert emu.admin_token not in json.dumps(result.outs)
    counts = emu.request_counts()
    assert sum(v for k, v in counts.items() if "registration-token" in k or "check_access" in k) == 1, counts


def test_create_with_bad_token_fails_clearly(emu):
    """A wrong token fails create with BadCredentials, and the message carries no token."""
    from github_client import BadCredentials

    with pytest.raises(BadCredentials) as info:
        _configured("ghp_wrong_token_123456").create(_props(f"{emu.url}/acme"))
    assert "ghp_wrong_token_123456" not in str(info.value)


def test_create_unknown_group_names_the_known_ones(emu):
    """A runner group that does not exist fails with the list of known groups."""
    from github_client import NotFound

    with pytest.raises(NotFound, match="Default"):
        _configured(emu.admin_token).create(_props(f"{emu.url}/acme", runner_group="nope"))


def test_create_is_safe_to_repeat(emu):
    """create twice gives the same id and no side effect."""
    p = _configured(emu.admin_token)
    assert p.create(_props(f"{emu.url}/acme")).id == p.create(_props(f"{emu.url}/acme")).id


def test_read_reports_counts_and_stale(emu, gh):
    """refresh lists only this pool's runners: offline (never connected) ones are stale."""
    gh.generate_jitconfig(f"{PREFIX}-0-aaaaaa", ["self-hosted"])
    gh.generate_jitconfig(f"{PREFIX}-1-bbbbbb", ["self-hosted"])
    gh.generate_jitconfig("other-pool-0-cccccc", ["self-hosted"])
    p = _configured(emu.admin_token)
    outs = p.read("id", _props(f"{emu.url}/acme")).outs
    assert (outs["total"], outs["online"], outs["offline"]) == (2, 0, 2)
    assert outs["stale"] == [f"{PREFIX}-0-aaaaaa", f"{PREFIX}-1-bbbbbb"]


def test_update_applies_labels_to_existing_runners(emu, gh):
    """A label change is applied to every registration of the pool."""
    jit = gh.generate_jitconfig(f"{PREFIX}-0-aaaaaa", ["self-hosted", "linux"])
    p = _configured(emu.admin_token)
    olds = {**_props(f"{emu.url}/acme"), "runner_group_id": 1}
    p.update("id", olds, _props(f"{emu.url}/acme", labels=["self-hosted", "linux", "big"]))
    assert "big" in gh.runner_labels(jit.runner.id)


def test_delete_sweeps_the_prefix_only_and_repeats(emu, gh):
    """delete removes every registration with the pool's prefix, leaves others, and 404 is done."""
    gh.generate_jitconfig(f"{PREFIX}-0-aaaaaa", ["self-hosted"])
    gh.generate_jitconfig(f"{PREFIX}-1-bbbbbb", ["self-hosted"])
    gh.generate_jitconfig(f"{PREFIX}x-0-cccccc", ["self-hosted"])
    p = _configured(emu.admin_token)
    p.delete("id", _props(f"{emu.url}/acme"))
    assert [r.name for r in gh.list_runners()] == [f"{PREFIX}x-0-cccccc"]
    p.delete("id", _props(f"{emu.url}/acme"))  # nothing left: still fine


class _FakeClient:
    """A GitHub client whose runner is busy for `busy_polls` list calls."""

    def __init__(self, busy_polls: int) -> None:
        self.busy_polls = busy_polls
        self.deleted: list[int] = []
        self.scope = SimpleNamespace(kind="org", web_url="https://github.com/acme")

    def list_runners(self):
        from github_client import Runner

        if self.deleted:
            return []
        busy = self.busy_polls > 0
        self.busy_polls -= 1
        return [Runner(7, f"{PREFIX}-0-aaaaaa", "Linux", "online", busy, [], 1, True)]

    def delete_runner(self, runner_id, missing_ok=False):
        self.deleted.append(runner_id)
        return True


def test_delete_waits_for_busy_runner(monkeypatch):
    """A busy runner is left to finish its job; it is removed once idle (within the drain timeout)."""
    fake = _FakeClient(busy_polls=2)
    monkeypatch.setattr("components.registration.POLL_INTERVAL", 0.01)
    p = _configured()
    monkeypatch.setattr(p, "_client", lambda props, **k: fake)
    p.delete("id", _props("https://github.com/acme", drain_timeout=30))
    assert fake.deleted == [7]


def test_delete_gives_up_after_drain_timeout(monkeypatch):
    """A runner still busy after the drain timeout fails destroy with a message saying what to do."""
    from github_client import Runner, Unprocessable

    class Stuck(_FakeClient):
        def list_runners(self):
            return [Runner(7, f"{PREFIX}-0-aaaaaa", "Linux", "online", True, [], 1, True)]

        def delete_runner(self, runner_id, missing_ok=False):
            raise Unprocessable("busy")

    p = _configured()
    monkeypatch.setattr(p, "_client", lambda props, **k: Stuck(0))
    with pytest.raises(DrainTimeout, match="cancel those jobs"):
        p.delete("id", _props("https://github.com/acme", drain_timeout=0))


def test_runner_version_warnings():
    """A deprecation date within a week, or past, produces a warning that says what to do."""
    from github_client import RunnerDeprecation

    now = datetime(2026, 1, 1, tzinfo=UTC)

    class C:
        def __init__(self, when):
            self.when = when

        def runner_deprecation(self, version):
            return RunnerDeprecation(version, self.when, None)

    assert runner_version_warnings(C(None), "2.337.0", now=now) == []
    assert runner_version_warnings(C(now + timedelta(days=30)), "2.337.0", now=now) == []
    (soon,) = runner_version_warnings(C(now + timedelta(days=3)), "2.337.0", now=now)
    assert "2.337.0" in soon and "runnerVersion" in soon
    (past,) = runner_version_warnings(C(now - timedelta(days=1)), "2.337.0", now=now)
    assert "no longer" in past


def test_preflight_warns_from_the_deprecation_endpoint():
    """At preview, a runner version GitHub will refuse within days produces a warning."""
    from components.config import GitHubConfig
    from components.preflight import runner_version_warnings_for
    from emulator import Emulator

    soon = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with Emulator(deprecations={"2.335.1": (soon, None)}) as emu:
        gh = GitHubConfig(scope_url=f"{emu.url}/acme", api_url=None, auth="pat", token=emu.admin_token)
        warnings = runner_version_warnings_for(gh, ["2.335.1", "2.337.0"])
    assert len(warnings) == 1 and "2.335.1" in warnings[0] and "runnerVersion" in warnings[0]
