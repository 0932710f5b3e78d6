"""A scale-set pool in the program (issue 9): its RunnerScaleSet, the manager's spec and labels, the readiness wait.

Shape under Pulumi mocks (the mock RunnerScaleSet answers id 7), and RunnerPoolReady's scale-set wait:
`min_runners` online and the manager's message session `live` in its /healthz.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest
from unit_helpers import SECRET_SIG, TOKEN, base

from components import Fleet, parse_config
from components.pool import _fixed_hash
from components.readiness import PoolNotReady, RunnerPoolReadyProvider, session_state, wanted
from pool_manager.spec import load_spec


def _raw(min_runners: int = 0, max_runners: int = 3) -> dict[str, Any]:
    raw = base()
    del raw["pools"][0]["slots"]
    raw["pools"][0].update(scaling="scaleSet", minRunners=min_runners, maxRunners=max_runners)
    raw["pools"].append({"name": "fixed", "hosts": ["local"], "slots": 1, "labels": ["f"], "metricsPort": 9300})
    return raw


def _fleet(raw: dict[str, Any] | None = None) -> Fleet:
    return Fleet("fleet", {"config": parse_config(raw or _raw(), "unit", ["ghr:github", "ghr:hosts"])})


def _spec_upload(inputs: dict[str, Any]) -> dict[str, Any]:
    uploads = inputs["uploads"]
    if isinstance(uploads, dict) and SECRET_SIG in uploads.values():
        uploads = uploads["value"]
    return json.loads(next(u for u in uploads if u["path"] == "/etc/ghr/pool.json")["content"])


@pulumi.runtime.test
def test_a_scale_set_pool_gets_its_scale_set_before_the_manager(mocks: Any) -> Any:
    """One RunnerScaleSet for the scale-set pool (none for the fixed one), after the registration, before the manager."""
    fleet = _fleet()

    def check(_: Any) -> None:
        mon = mocks.monitor
        (ss,) = mon.by_type("dynamic/ghr:RunnerScaleSet")
        registrations = {r.name: r for r in mon.by_type("dynamic/ghr:RunnerRegistration")}
        managers = {r.name: r for r in mon.by_type("dynamic/docker:Container")}
        assert mon.by_urn(ss.parent).type == "ghr:index:RunnerPool"
        assert registrations["fleet-cpu-local-pool-registration"].urn in ss.dependencies
        assert ss.urn in managers["fleet-cpu-local-pool-manager"].dependencies
        assert ss.urn not in managers["fleet-fixed-local-pool-manager"].dependencies
        (args,) = mocks.of_type("RunnerScaleSet")
        assert (args.inputs["name"], args.inputs["name_prefix"]) == ("unit-cpu-local", "unit-cpu-local")
        assert args.inputs["labels"] == ["self-hosted", "linux"] and args.inputs["runner_group"] == "Default"
        assert TOKEN not in json.dumps(args.inputs)

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_the_manager_gets_the_scale_set_id_in_its_spec(mocks: Any) -> Any:
    """The spec file carries scaling, min/max, the name and the scale set's id; the fixed pool's is as before."""
    fleet = _fleet(_raw(min_runners=1))

    def check(_: Any) -> None:
        managers = {m.name: m.inputs for m in mocks.of_type("dynamic/docker:Container")}
        scale = managers["fleet-cpu-local-pool-manager"]
        spec = _spec_upload(scale)
        assert (spec["scaling"], spec["min_runners"], spec["max_runners"], spec["slots"]) == ("scale_set", 1, 3, 3)
        assert (spec["scale_set_name"], spec["scale_set_id"]) == ("unit-cpu-local", 7)
        assert load_spec(spec).scale_set_id == 7
        assert scale["labels"]["ghr.spec-fixed"] == _fixed_hash(spec)
        fixed = managers["fleet-fixed-local-pool-manager"]
        fixed_spec = _spec_upload(fixed)
        assert "scaling" not in fixed_spec and fixed["labels"]["ghr.spec-fixed"] == _fixed_hash(fixed_spec)

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_readiness_waits_for_min_runners_and_the_session(mocks: Any) -> Any:
    """The scale-set pool's wait gets scaling, min_runners and the metrics port; the fixed pool's inputs are unchanged."""
    fleet = _fleet(_raw(min_runners=2))

    def check(_: Any) -> None:
        ready = {r.name: r.inputs for r in mocks.of_type("RunnerPoolReady")}
        scale = ready["fleet-cpu-local-pool-ready"]
        assert (scale["scaling"], scale["min_runners"], scale["metrics_port"], scale["slots"]) == ("scale_set", 2, 9101, 3)
        assert not {"scaling", "min_runners", "metrics_port"} & set(ready["fleet-fixed-local-pool-ready"])

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_stack_outputs_show_the_scale_set(mocks: Any) -> Any:
    """pools[cpu][local] adds scaling, min/max and the scale set; the fixed pool's outputs keep their keys."""
    fleet = _fleet()

    def check(pools: dict[str, Any]) -> None:
        out = pools["cpu"]["local"]
        assert (out["scaling"], out["min_runners"], out["max_runners"], out["slots"]) == ("scaleSet", 0, 3, 3)
        assert out["scale_set"]["id"] == 7 and out["scale_set"]["name"] == "unit-cpu-local"
        assert "total_assigned_jobs" in out["scale_set"]["statistics"]
        assert not {"scaling", "scale_set"} & set(pools["fixed"]["local"])

    return fleet.pools.apply(check)


@pytest.mark.parametrize(("key", "value", "replaces"), [
    ("min_runners", 2, False), ("max_runners", 9, False), ("slots", 9, False), ("labels", ["x"], False),
    ("scale_set_name", "other", True), ("scale_set_id", 8, True), ("scaling", "fixed", True),
])
def test_fixed_hash_of_a_scale_set_pool(key: str, value: Any, replaces: bool) -> None:
    """min/max reload in place; another scale set (name, id) or leaving scale sets replaces the manager."""
    spec = load_spec({"pool": "cpu", "stack": "s", "host": "local", "scope_url": "https://github.com/acme",
                      "name_prefix": "s-cpu-local", "labels": ["a"], "image": "i", "scaling": "scale_set",
                      "min_runners": 0, "max_runners": 4, "scale_set_id": 7}).dump()
    assert (_fixed_hash({**spec, key: value}) != _fixed_hash(spec)) is replaces


# ---- RunnerPoolReady of a scale-set pool ----------------------------------------------------

def _ready_props(scope_url: str, **over: Any) -> dict[str, Any]:
    props = {"scope_url": scope_url, "api_url": None, "name_prefix": "unit-cpu-local", "labels": ["self-hosted"],
             "slots": 4, "ready_timeout": 5, "pool": "cpu", "host": "local", "stack": "unit",
             "manager_container": "ghr-unit-cpu-manager", "manager_container_id": "cid-1", "spec_hash": "h1",
             "docker_host": "unix:///var/run/docker.sock", "ssh_options": [], "tls": None,
             "scaling": "scale_set", "min_runners": 0, "metrics_port": 9101}
    props.update(over)
    return props


def _provider(emu: Any) -> RunnerPoolReadyProvider:
    from pulumi.dynamic import ConfigureRequest
    from pulumi.dynamic.config import Config

    p = RunnerPoolReadyProvider()
    p.configure(ConfigureRequest(Config({"ghr:github": json.dumps({"token": emu.admin_token})}, "ghr")))
    return p


@pytest.mark.parametrize(("healthz", "state"), [
    ({"state": "ok", "scale_set": {"session": "live", "scale_set_id": 7}}, "live"),
    ({"scale_set": {"session": "conflict"}}, "conflict"), ({"scale_set": {}}, None),
    ({"session": {"state": "live", "scale_set_id": 7}}, "live"), ({"session": "connecting"}, "connecting"),
    ({"state": "ok"}, None), ({"session": {"scale_set_id": 7}}, None),
])
def test_session_state_of_healthz(healthz: dict[str, Any], state: str | None) -> None:
    assert session_state(healthz) == state


@pytest.mark.parametrize(("over", "ok"), [
    ({"min_runners": 0.0, "metrics_port": 9101.0}, True), ({"min_runners": 2}, True),
    ({"min_runners": -1}, False), ({"min_runners": 1.5}, False), ({"metrics_port": 0}, False),
    ({"scaling": "auto"}, False),
])
def test_check_takes_numbers_as_the_engine_sends_them(over: dict[str, Any], ok: bool) -> None:
    """Whole numbers arrive as floats through the engine (0.0): accepted; others are named."""
    failures = RunnerPoolReadyProvider().check({}, _ready_props("https://github.com/acme", **over)).failures
    assert (not failures) is ok, failures


def test_wanted_is_min_runners_for_a_scale_set() -> None:
    assert wanted(_ready_props("x", min_runners=0)) == 0 and wanted(_ready_props("x", min_runners=2)) == 2
    assert wanted({**_ready_props("x"), "scaling": None}) == 4


def test_min_zero_waits_for_the_live_session(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """minRunners 0: no runner needed; `up` returns once the manager's session is live."""
    states = iter(["connecting", "conflict", "live"])
    monkeypatch.setattr(RunnerPoolReadyProvider, "_session", staticmethod(lambda props: next(states)))
    monkeypatch.setattr("components.readiness.POLL_INITIAL", 0.01)
    outs = _provider(emu).create(_ready_props(f"{emu.url}/acme")).outs
    assert outs["ready"] is True and outs["session"] == "live" and outs["online"] == 0


def test_a_session_never_live_fails_with_its_state(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the deadline the message names the session state and the manager's log."""
    monkeypatch.setattr(RunnerPoolReadyProvider, "_session", staticmethod(lambda props: "conflict"))
    monkeypatch.setattr(RunnerPoolReadyProvider, "_manager_tail", staticmethod(lambda props: "manager log here"))
    monkeypatch.setattr("components.readiness.POLL_INITIAL", 0.01)
    with pytest.raises(PoolNotReady) as info:
        _provider(emu).create(_ready_props(f"{emu.url}/acme", ready_timeout=0.1))
    msg = str(info.value)
    assert "0 of 0 runners online" in msg and "session: conflict" in msg and "manager log here" in msg


class _Exec:
    def __init__(self, exit_code: int, output: bytes) -> None:
        self.exit_code, self.output = exit_code, output


def _fake_docker(monkeypatch: pytest.MonkeyPatch, result: _Exec, seen: list[Any]) -> None:
    class Container:
        def exec_run(self, cmd: list[str]) -> _Exec:
            seen.append(cmd)
            return result

    class Containers:
        def get(self, ref: str) -> Container:
            seen.append(ref)
            return Container()

    class Ctx:
        containers = Containers()

        def __enter__(self) -> Ctx:
            return self

        def __exit__(self, *exc: Any) -> bool:
            return False

    monkeypatch.setattr("components.readiness.client_from_props", lambda props, timeout: Ctx())


@pytest.mark.parametrize(("result", "state"), [
    (_Exec(0, json.dumps({"ok": True, "scale_set": {"session": "live", "scale_set_id": 7}}).encode()), "live"),
    (_Exec(0, b'{"ok": false, "state": "starting"}'), None),
    (_Exec(1, b"ConnectionRefusedError"), None),
    (_Exec(0, b"not json"), None),
])
def test_session_is_read_inside_the_manager_container(monkeypatch: pytest.MonkeyPatch, result: _Exec,
                                                      state: str | None) -> None:
    """The manager's own Python fetches 127.0.0.1:<metrics_port>/healthz; anything unreadable is 'not yet'."""
    seen: list[Any] = []
    _fake_docker(monkeypatch, result, seen)
    assert RunnerPoolReadyProvider._session(_ready_props("x", metrics_port=9123)) == state
    ref, cmd = seen
    assert ref == "cid-1" and cmd[:2] == ["python", "-c"] and cmd[-1] == "9123" and "/healthz" in cmd[2]
