"""RunnerPoolReady: `pulumi up` waits for each pool's runners; its counts are the stack outputs.

Shape under Pulumi mocks, readyTimeout validation, the provider's pickling and purity, and its
wait against the emulator on loopback (runners come online through the runner protocol).
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from typing import Any

import dill
import pulumi
import pytest
import requests
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider
from unit_helpers import TOKEN, base

from components import Fleet, parse_config
from components.config import ConfigError
from components.readiness import PoolNotReady, RunnerPoolReadyProvider, ready_runners, spec_hash
from components.registration import CredentialsMissing
from tests._support.polling import wait_for

PREFIX = "unit-cpu-local"
LABELS = ["self-hosted", "linux"]


def _configured(token: str = TOKEN) -> RunnerPoolReadyProvider:
    p = RunnerPoolReadyProvider()
    p.configure(ConfigureRequest(Config({"ghr:github": json.dumps({"scope": "x", "token": token})}, "ghr")))
    return p


def _props(scope_url: str, **over: Any) -> dict[str, Any]:
    props = {"scope_url": scope_url, "api_url": None, "name_prefix": PREFIX, "labels": list(LABELS), "slots": 2,
             "ready_timeout": 30, "pool": "cpu", "host": "local", "stack": "unit",
             "manager_container": "ghr-unit-cpu-manager", "manager_container_id": "cid-1", "spec_hash": "h1",
             "docker_host": "unix:///var/run/docker.sock", "ssh_options": [], "tls": None}
    props.update(over)
    return props


# ---- the program's shape (mocks) ------------------------------------------------------------

def _fleet(raw: dict[str, Any] | None = None) -> Fleet:
    return Fleet("fleet", {"config": parse_config(raw or base(), "unit", ["ghr:github"])})


@pulumi.runtime.test
def test_ready_resource_depends_on_the_manager(mocks):
    """One RunnerPoolReady per pool and host, child of the RunnerPool, created after the manager."""
    fleet = _fleet()

    def check(_):
        mon = mocks.monitor
        (ready,) = mon.by_type("dynamic/ghr:RunnerPoolReady")
        (manager,) = mon.by_type("dynamic/docker:Container")
        assert manager.urn in ready.dependencies
        assert mon.by_urn(ready.parent).type == "ghr:index:RunnerPool"
        assert "tls" in ready.additional_secret_outputs

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_ready_inputs_carry_the_pool_and_no_credentials(mocks):
    """The wait gets slots, labels, readyTimeout, the manager and a spec digest - never the token."""
    raw = base()
    raw["pools"][0].update(slots=3, readyTimeout=45)
    fleet = _fleet(raw)

    def check(_):
        (args,) = mocks.of_type("RunnerPoolReady")
        inputs = args.inputs
        assert (inputs["slots"], inputs["ready_timeout"], inputs["labels"]) == (3, 45, ["self-hosted", "linux"])
        assert inputs["name_prefix"] == "unit-cpu-local" and inputs["manager_container_id"] == "cid-fleet-cpu-local-pool-manager"
        assert len(inputs["spec_hash"]) == 64
        assert TOKEN not in json.dumps(inputs, default=str)

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_stack_outputs_show_the_counts_after_the_wait(mocks):
    """The pool's summary in the outputs comes from the readiness resource, not the registration."""
    fleet = _fleet()

    def check(pools):
        entry = pools["cpu"]["local"]
        summary = entry["registration"]
        assert (summary["online"], summary["idle"], summary["total"]) == (2, 2, 2)  # the mock readiness: all up
        assert summary["ready"] is True and summary["wait_seconds"] == 1.5 and summary["runner_group_id"] == 1
        assert entry["ready_timeout"] == 180

    return fleet.pools.apply(check)


# ---- config ---------------------------------------------------------------------------------

def test_ready_timeout_defaults_and_zero() -> None:
    """readyTimeout defaults to 180 s; 0 (no wait) is accepted."""
    assert parse_config(base(), "unit", ["ghr:github"]).pools[0].ready_timeout == 180
    raw = base()
    raw["pools"][0]["readyTimeout"] = 0
    assert parse_config(raw, "unit", ["ghr:github"]).pools[0].ready_timeout == 0
    raw["pools"][0] = {**raw["pools"][0], "ready_timeout": 20}
    del raw["pools"][0]["readyTimeout"]
    assert parse_config(raw, "unit", ["ghr:github"]).pools[0].ready_timeout == 20


@pytest.mark.parametrize("value", [-1, "3m", True, 1.5, 3601])
def test_bad_ready_timeout_names_the_key_path(value: Any) -> None:
    """A readyTimeout that is not a whole number of seconds in 0..3600 is refused with its key path."""
    raw = base()
    raw["pools"][0]["readyTimeout"] = value
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "unit", ["ghr:github"])
    assert info.value.paths == ["ghr:pools[0].readyTimeout"]


# ---- the provider without a network -----------------------------------------------------------

def test_provider_pickles_without_credentials():
    """After configure(), the pickled provider holds no token and unpickles into a working instance."""
    provider = _configured()
    assert provider._credentials()["token"] == TOKEN
    blob = base64.b64decode(serialize_provider(provider))
    assert TOKEN.encode() not in blob
    restored = dill.loads(blob)
    assert type(restored).__name__ == "RunnerPoolReadyProvider"
    with pytest.raises(CredentialsMissing):
        restored._credentials()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("check() opened a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("over,bad_field", [
    ({"slots": 0}, "slots"),
    ({"ready_timeout": -5}, "ready_timeout"),
    ({"labels": []}, "labels"),
    ({"name_prefix": ""}, "name_prefix"),
    ({"docker_host": "tcp://h"}, "docker_host"),
])
def test_check_is_pure_and_names_the_field(no_network, over, bad_field):
    """check() validates without any network call and names the bad input."""
    failures = RunnerPoolReadyProvider().check({}, _props("https://github.com/acme", **over)).failures
    assert [f.property for f in failures] == [bad_field]


@pytest.mark.parametrize("key,value", [
    ("slots", 3), ("spec_hash", "h2"), ("manager_container_id", "cid-2"), ("labels", ["self-hosted", "x"]),
])
def test_a_new_spec_or_manager_waits_again(key, value):
    """A change of slots, spec, labels or manager container is an update (which waits again)."""
    olds = _props("https://github.com/acme")
    d = RunnerPoolReadyProvider().diff("id", olds, {**olds, key: value})
    assert d.changes and d.replaces == []
    assert RunnerPoolReadyProvider().diff("id", olds, dict(olds)).changes is False


def test_spec_hash_is_stable():
    """The same spec text gives the same digest; any change gives another."""
    assert spec_hash('{"slots": 2}') == spec_hash('{"slots": 2}') != spec_hash('{"slots": 3}')


# ---- the wait against the emulator ----------------------------------------------------------

def _online(emu: Any, gh: Any, name: str, labels: list[str] = LABELS) -> None:
    """Register `name` (JIT) and open its listener session, as a started runner does: it shows online."""
    jit = gh.generate_jitconfig(name, labels)
    files = json.loads(base64.b64decode(jit.encoded_jit_config))
    token = json.loads(base64.b64decode(files[".credentials"]))["data"]["token"]
    resp = requests.post(f"{emu.url}/_emulator/runner/sessions", json={"os": "Linux", "version": "2.337.0"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 201, resp.text


def test_returns_counts_once_runners_come_online(emu, gh, monkeypatch):
    """create waits while runners appear (one per poll) and returns the counts once slots are online."""
    p = _configured(emu.admin_token)
    names = iter([f"{PREFIX}-0-aaaaaa", f"{PREFIX}-1-bbbbbb"])
    real_count = p._count

    def count_then_start_one(client, props):  # each poll sees the manager start one more runner
        result = real_count(client, props)
        name = next(names, None)
        if name:
            _online(emu, gh, name)
        return result

    monkeypatch.setattr(p, "_count", count_then_start_one)
    monkeypatch.setattr("components.readiness.POLL_INITIAL", 0.01)
    gh.generate_jitconfig(f"{PREFIX}-9-zzzzzz", LABELS)  # registered, never connected: offline
    outs = p.create(_props(f"{emu.url}/acme")).outs
    assert (outs["online"], outs["idle"], outs["busy"], outs["offline"], outs["total"]) == (2, 2, 0, 1, 3)
    assert outs["ready"] is True and outs["wait_seconds"] >= 0
    assert emu.admin_token not in json.dumps(outs)


def test_zero_timeout_counts_once_without_waiting(emu, gh):
    """readyTimeout 0: one count (a single request), no wait, no failure, ready false."""
    _online(emu, gh, f"{PREFIX}-0-aaaaaa")
    emu.reset_requests()
    outs = _configured(emu.admin_token).create(_props(f"{emu.url}/acme", ready_timeout=0)).outs
    assert (outs["online"], outs["total"], outs["ready"]) == (1, 1, False)
    assert sum(emu.request_counts().values()) == 1


def test_runners_without_the_pool_labels_do_not_count(emu, gh):
    """An online runner of the prefix that lacks a pool label (an old spec) is not ready yet."""
    _online(emu, gh, f"{PREFIX}-0-aaaaaa", ["self-hosted", "linux", "gpu"])
    _online(emu, gh, f"{PREFIX}-1-bbbbbb", ["self-hosted"])
    p = _configured(emu.admin_token)
    runners = p._pool_runners(gh, PREFIX)
    assert [r.name for r in ready_runners(runners, ["Self-Hosted", "linux"])] == [f"{PREFIX}-0-aaaaaa"]


def test_refresh_recounts(emu, gh):
    """read re-counts from GitHub (drift after up), keeping the recorded wait."""
    p = _configured(emu.admin_token)
    olds = {**_props(f"{emu.url}/acme"), "online": 2, "total": 2, "ready": True, "wait_seconds": 4.2}
    outs = p.read("id", olds).outs
    assert (outs["online"], outs["total"], outs["ready"], outs["wait_seconds"]) == (0, 0, False, 4.2)


@pytest.fixture
def talking_container():
    """A stand-in manager on the local Docker engine that logs why it cannot start runners."""
    docker = pytest.importorskip("docker")
    client = docker.from_env()
    script = ('echo "event=start pool=cpu"; echo "event=runner_start_failed reason=\'could not select device '
              'driver nvidia with capabilities: [[gpu]]\'"; sleep 120')
    c = client.containers.run("ghr-base:bookworm", ["sh", "-c", script], name=f"ghr-unit-ready-{uuid.uuid4().hex[:6]}",
                              detach=True, labels={"ghr.test": "readiness"})
    try:
        yield c
    finally:
        c.remove(force=True)
        client.close()


@pytest.mark.docker
def test_timeout_names_pool_host_counts_and_manager_log(emu, gh, talking_container, monkeypatch):
    """At the deadline: pool, host, N of M online, and the manager's last log lines from its host."""
    wait_for(lambda: b"runner_start_failed" in talking_container.logs(), 30, "the manager's log line", interval=0.1)
    _online(emu, gh, f"{PREFIX}-0-aaaaaa")
    monkeypatch.setattr("components.readiness.POLL_INITIAL", 0.01)
    props = _props(f"{emu.url}/acme", ready_timeout=0.2, manager_container=talking_container.name,
                   manager_container_id=talking_container.id)
    with pytest.raises(PoolNotReady) as info:
        _configured(emu.admin_token).create(props)
    msg = str(info.value)
    assert "pool 'cpu' on host 'local'" in msg and "unix:///var/run/docker.sock" in msg
    assert "1 of 2 runners online" in msg
    assert "could not select device driver nvidia" in msg and talking_container.name in msg
    assert "readyTimeout" in msg and emu.admin_token not in msg


def test_timeout_when_the_manager_is_gone_says_so(emu, monkeypatch):
    """No manager container on the host: the message says it is gone instead of showing logs."""
    import docker.errors

    class Containers:
        def get(self, ref):
            raise docker.errors.NotFound(f"no such container {ref}")

    class FakeDocker:
        containers = Containers()

    class Ctx:
        def __enter__(self):
            return FakeDocker()

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("components.readiness.client_from_props", lambda props, timeout: Ctx())
    monkeypatch.setattr("components.readiness.POLL_INITIAL", 0.01)
    with pytest.raises(PoolNotReady, match=r"0 of 2 runners online[\s\S]*is gone from unix://"):
        _configured(emu.admin_token).create(_props(f"{emu.url}/acme", ready_timeout=0.05))
