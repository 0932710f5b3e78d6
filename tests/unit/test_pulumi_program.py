"""The program's shape under Pulumi mocks: resource graph, ordering, secrets, config errors."""

from __future__ import annotations

import json
import os
import runpy

import pulumi
import pytest
from unit_helpers import FAKE_PEM_CERT, FAKE_PEM_KEY, ROOT, SECRET_SIG, TOKEN, base

from components import Fleet, parse_config


def _fleet(raw=None, secrets=("ghr:github", "ghr:hosts")) -> Fleet:
    return Fleet("fleet", {"config": parse_config(raw or base(), "unit", list(secrets))})


def _two_hosts() -> dict:
    raw = base()
    raw["hosts"].append({"name": "remote", "url": "tcp://10.0.0.2:2376",
                         "tls": {"ca": FAKE_PEM_CERT, "cert": FAKE_PEM_CERT, "key": FAKE_PEM_KEY}})
    raw["pools"][0]["hosts"] = ["local", "remote"]
    raw["pools"].append({"name": "gpu", "hosts": ["remote"], "slots": 1, "labels": ["gpu"], "metricsPort": 9200})
    return raw


@pulumi.runtime.test
def test_resource_graph_per_pool_and_host(mocks):
    """One RunnerImage (2 images) and one RunnerPool (registration + manager) per pool and host."""
    fleet = _fleet(_two_hosts())

    def check(_):
        mon = mocks.monitor
        assert len(mon.by_type("ghr:index:Fleet")) == 1
        assert len(mon.by_type("ghr:index:GitHubCredentials")) == 1
        assert len(mon.by_type("ghr:index:RunnerImage")) == 3  # cpu@local, cpu@remote, gpu@remote
        assert len(mon.by_type("ghr:index:RunnerPool")) == 3
        assert len(mon.by_type("dynamic/docker:Image")) == 6
        assert len(mon.by_type("dynamic/ghr:RunnerRegistration")) == 3
        assert len(mon.by_type("dynamic/docker:Container")) == 3
        for reg in mon.by_type("dynamic/ghr:RunnerRegistration") + mon.by_type("dynamic/docker:Container"):
            assert mon.by_urn(reg.parent).type == "ghr:index:RunnerPool"
        for img in mon.by_type("dynamic/docker:Image"):
            assert mon.by_urn(img.parent).type == "ghr:index:RunnerImage"
        for comp in mon.by_type("ghr:index:RunnerPool") + mon.by_type("ghr:index:RunnerImage"):
            assert mon.by_urn(comp.parent).type == "ghr:index:Fleet"

    return fleet.pools.apply(check)


def _uploads(inputs: dict) -> list[dict]:
    uploads = inputs["uploads"]
    if isinstance(uploads, dict) and SECRET_SIG in uploads.values():
        uploads = uploads["value"]  # the mock monitor hands secrets over still wrapped
    return uploads


@pulumi.runtime.test
def test_manager_depends_on_registration(mocks):
    """The manager container depends on its registration: created after it, destroyed before the sweep."""
    fleet = _fleet()

    def check(_):
        mon = mocks.monitor
        (reg,) = mon.by_type("dynamic/ghr:RunnerRegistration")
        (manager,) = mon.by_type("dynamic/docker:Container")
        assert reg.urn in manager.dependencies

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_manager_container_settings(mocks):
    """The manager gets the pool spec and credentials as files, the host socket, restart always."""
    fleet = _fleet()

    def check(_):
        (manager,) = mocks.of_type("dynamic/docker:Container")
        inputs = manager.inputs
        assert inputs["name"] == "ghr-unit-cpu-manager"
        assert inputs["restart_policy"] == "always"
        assert inputs["labels"]["ghr.role"] == "manager"
        assert {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"} in inputs["mounts"]
        files = {u["path"]: u for u in _uploads(inputs)}
        spec = json.loads(files["/etc/ghr/pool.json"]["content"])
        assert spec["name_prefix"] == "unit-cpu-local" and spec["image"] == "sha256:fleet-cpu-local-image-runner"
        assert files["/run/ghr-secrets/credentials.json"]["mode"] == 0o400  # host tmpfs: test_pulumi_credentials_storage
        assert inputs["stop_timeout"] > spec["drain_timeout"]
        assert "--credentials-file" in inputs["command"]
        from pool_manager.spec import load_spec

        load_spec(spec)

    return fleet.pools.apply(check)


@pulumi.runtime.test
def test_manager_takes_spec_and_credentials_in_place(mocks):
    """Spec and credentials uploads are reloadable with SIGHUP; the keys a manager cannot reload label it."""
    fleet = _fleet()

    def check(_):
        (manager,) = mocks.of_type("dynamic/docker:Container")
        inputs = manager.inputs
        uploads = _uploads(inputs)
        assert inputs["reload_signal"] == "SIGHUP"
        assert [u["reloadable"] for u in uploads] == [True, True]
        spec = json.loads({u["path"]: u for u in uploads}["/etc/ghr/pool.json"]["content"])
        from components.pool import _fixed_hash

        assert inputs["labels"]["ghr.spec-fixed"] == _fixed_hash(spec)

    return fleet.pools.apply(check)


@pytest.mark.parametrize(("key", "value", "replaces"), [
    ("slots", 3, False), ("labels", ["x"], False), ("runner_group", "ci", False), ("container", {"cpus": 1}, False),
    ("image", "sha256:new", False), ("drain_timeout", 5, False),
    ("scope_url", "https://github.com/other", True), ("api_url", "https://ghe/api/v3", True),
    ("name_prefix", "p2", True), ("metrics_port", 9200, True), ("pool", "gpu", True),
])
def test_fixed_hash_follows_only_the_keys_a_manager_cannot_reload(key, value, replaces):
    """ghr.spec-fixed (a replace key of the manager) changes exactly for pool_manager's FIXED_KEYS."""
    from components.pool import _fixed_hash

    spec = {"pool": "cpu", "stack": "s", "host": "local", "scope_url": "https://github.com/acme", "api_url": None,
            "name_prefix": "s-cpu-local", "labels": ["a"], "runner_group": "Default", "slots": 2, "image": "i",
            "container": {}, "drain_timeout": 60, "metrics_port": 9101}
    assert (_fixed_hash({**spec, key: value}) != _fixed_hash(spec)) is replaces


@pulumi.runtime.test
def test_secrets_stay_secret(mocks):
    """Token, credentials file and TLS material are sent as secrets and marked secret in outputs."""
    fleet = _fleet(_two_hosts())

    def check(_):
        mon = mocks.monitor
        for c in mon.by_type("dynamic/docker:Container"):
            assert {"tls", "uploads"} <= set(c.additional_secret_outputs)
            assert any(p.startswith("uploads[1].content") for p in c.secret_paths), c.secret_paths
        remote = [r for r in mon.by_type("dynamic/docker:Image") if "remote" in r.name]
        assert remote and all("tls" in r.secret_paths for r in remote)
        for reg in mon.by_type("dynamic/ghr:RunnerRegistration"):
            assert TOKEN not in json.dumps(reg.raw)  # no credentials in the registration's inputs

    return pulumi.Output.all(fleet.pools, fleet.credentials.credentials_file).apply(check)


@pulumi.runtime.test
def test_credentials_output_is_secret(mocks):
    """The credentials file output is a secret Output; stack outputs (pools) carry no secret."""
    fleet = _fleet()

    async def check():
        assert await fleet.credentials.credentials_file.is_secret()
        assert not await fleet.pools.is_secret()
        pools = await fleet.pools.future()
        assert TOKEN not in json.dumps(pools, default=str)

    return pulumi.Output.from_input(None).apply(lambda _: check())


@pulumi.runtime.test
def test_app_credentials_file(mocks):
    """A GitHub App becomes a credentials file of type app (secret), with the installation id."""
    raw = base()
    raw["github"] = {"scope": "https://github.com/acme", "appId": 7, "privateKey": FAKE_PEM_KEY, "installationId": 9}
    fleet = _fleet(raw)

    def check(doc):
        assert json.loads(doc) == {"type": "app", "app_id": 7, "private_key": FAKE_PEM_KEY, "installation_id": 9}

    return fleet.credentials.credentials_file.apply(check)


@pulumi.runtime.test
def test_stack_outputs_summary(mocks):
    """Per pool and host: image ids, manager container and registration counts."""
    fleet = _fleet()

    def check(pools):
        entry = pools["cpu"]["local"]
        assert entry["runner_image_id"].startswith("sha256:")
        assert entry["manager_container"]["state"] == "running"
        assert set(entry["registration"]) >= {"online", "busy", "offline"}

    return fleet.pools.apply(check)


def _config_for_main(raw: dict, secrets: list[str]) -> dict[str, str]:
    return {f"ghr:{k}": json.dumps(v) for k, v in raw.items()}, secrets


@pytest.fixture
def no_version_check(monkeypatch):
    monkeypatch.setenv("GHR_SKIP_VERSION_CHECK", "1")


@pulumi.runtime.test
def test_main_reads_config_in_one_place(mocks, no_version_check):
    """__main__.py parses the stack config and builds the Fleet (no network with the check off)."""
    cfg, secrets = _config_for_main(base(), ["ghr:github"])
    pulumi.runtime.set_all_config(cfg, secrets)
    program = runpy.run_path(os.path.join(ROOT, "__main__.py"))

    def check(pools):
        assert mocks.of_type("ghr:index:Fleet") and set(pools) == {"cpu"}

    return program["fleet"].pools.apply(check)


def test_main_bad_config_creates_nothing(mocks, monkeypatch):
    """A bad config raises a RunError listing the key path; no resource is registered."""
    raw = base()
    raw["pools"][0]["container"] = {"gpus": "two"}
    cfg, secrets = _config_for_main(raw, ["ghr:github"])
    pulumi.runtime.set_all_config(cfg, secrets)
    with pytest.raises(pulumi.RunError, match=r"ghr:pools\[0\]\.container\.gpus"):
        runpy.run_path(os.path.join(ROOT, "__main__.py"))
    assert mocks.resources == []
