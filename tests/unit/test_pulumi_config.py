"""Stack configuration: valid stacks parse; every bad value fails at preview with its key path and a fix."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import Any

import pytest
from unit_helpers import FAKE_PEM_CERT, FAKE_PEM_KEY, ROOT, TOKEN, base, load_stack_yaml

from components.config import ConfigError, parse_config, pool_spec

STACK_FILES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.yaml"))) + [os.path.join(ROOT, "Pulumi.sandbox.yaml")]


@pytest.mark.parametrize("path", STACK_FILES, ids=os.path.basename)
def test_documented_stacks_parse(path: str) -> None:
    """Every example stack config and the sandbox stack are valid."""
    raw, secrets = load_stack_yaml(path)
    fleet = parse_config(raw, "example", secrets)
    assert fleet.pools and fleet.hosts


def test_minimal_config_gets_defaults() -> None:
    """Hosts default to the local engine; image and drain settings get documented defaults."""
    raw = base()
    del raw["hosts"]
    del raw["pools"][0]["hosts"]
    fleet = parse_config(raw, "dev", ["ghr:github"])
    assert [h.name for h in fleet.hosts] == ["local"]
    pool = fleet.pools[0]
    assert pool.hosts == ("local",)
    assert pool.image.runner_version == "2.337.0" and len(pool.image.runner_sha256) == 64
    assert pool.drain_timeout == 600 and pool.runner_group == "Default"


def test_snake_case_keys_are_accepted() -> None:
    """snake_case spellings of the camelCase keys mean the same thing."""
    raw = base()
    raw["pools"][0]["drain_timeout"] = 30
    raw["pools"][0]["container"] = {"gpus": {"device_ids": ["0", "1"]}, "gpu_per_slot": True}
    fleet = parse_config(raw, "dev", ["ghr:github"])
    assert fleet.pools[0].drain_timeout == 30
    assert fleet.pools[0].container["gpu_per_slot"] is True


def test_pool_spec_matches_the_design_contract() -> None:
    """The spec written into the manager container has the fields design.md lists."""
    raw = base()
    raw["pools"][0]["container"] = {"memory": "4g", "networkMode": "host", "capDrop": ["NET_RAW"]}
    fleet = parse_config(raw, "dev", ["ghr:github"])
    spec = pool_spec(fleet, fleet.pools[0], "local", "sha256:abc")
    assert spec["name_prefix"] == "dev-cpu-local"
    assert spec["container"] == {"memory": "4g", "network_mode": "host", "cap_drop": ["NET_RAW"]}
    assert set(spec) == {"pool", "stack", "host", "scope_url", "api_url", "name_prefix", "labels", "runner_group",
                         "slots", "image", "container", "drain_timeout", "metrics_port"}
    from pool_manager.spec import load_spec

    load_spec(spec)


def test_app_auth_config() -> None:
    """A GitHub App: app id, secret key, installation looked up when not given."""
    raw = base()
    raw["github"] = {"scope": "https://github.com/acme", "appId": 42, "privateKey": FAKE_PEM_KEY}
    gh = parse_config(raw, "dev", ["ghr:github"]).github
    assert (gh.auth, gh.app_id, gh.installation_id, gh.token) == ("app", 42, None, None)
    assert FAKE_PEM_KEY not in repr(gh)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Mutator setting a dotted/indexed path (``pools[0].container.gpus``) in the raw config."""
    def apply(raw: dict[str, Any]) -> None:
        node: Any = raw
        parts = path.replace("]", "").replace("[", ".").split(".")
        for i, p in enumerate(parts):
            key: Any = int(p) if p.isdigit() else p
            if i == len(parts) - 1:
                if value is _DELETE:
                    del node[key]
                else:
                    node[key] = value
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
    return apply


_DELETE = object()


def _second_pool(**overrides: Any) -> Callable[[dict[str, Any]], None]:
    def apply(raw: dict[str, Any]) -> None:
        raw["pools"].append({"name": "gpu", "hosts": ["local"], "slots": 1, "labels": ["gpu"], **overrides})
    return apply


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    # id, mutation, expected key path, expected words in the message
    ("no-github", _set("github", _DELETE), "ghr:github", "is required"),
    ("bad-scope", _set("github.scope", "github.com/acme"), "ghr:github.scope", "https://github.com/ORG"),
    ("http-scope-remote", _set("github.scope", "http://github.example.com/acme"), "ghr:github.scope", "https://"),
    ("no-credentials", _set("github.token", _DELETE), "ghr:github", "no credentials"),
    ("token-and-app", _set("github.appId", 42), "ghr:github", "either"),
    ("app-without-key", lambda r: r["github"].update(token=None) or r["github"].pop("token") or
     r["github"].update(appId=42), "ghr:github.privateKey", "is required"),
    ("app-key-not-pem", lambda r: r["github"].pop("token") and r["github"].update(appId=42, privateKey="nope"),
     "ghr:github.privateKey", "PEM"),
    ("app-for-enterprise", lambda r: r["github"].pop("token") and r["github"].update(
        scope="https://github.com/enterprises/big", appId=42, privateKey=FAKE_PEM_KEY), "ghr:github.appId",
     "classic PAT"),
    ("installation-id-with-pat", _set("github.installationId", 5), "ghr:github.installationId", "GitHub App"),
    ("bad-api-url", _set("github.apiUrl", "ftp://ghe/api"), "ghr:github.apiUrl", "https://HOST/api/v3"),
    ("unknown-github-key", _set("github.tokn", "x"), "ghr:github.tokn", "not a known setting"),
    ("unknown-top-key", _set("pool", []), "ghr:pool", "did you mean ghr:pools"),
    ("host-bad-scheme", _set("hosts[0].url", "http://h:2375"), "ghr:hosts[0].url", "unsupported scheme"),
    ("host-tcp-no-port", _set("hosts[0].url", "tcp://h"), "ghr:hosts[0].url", "no port"),
    ("host-tls-on-unix", _set("hosts[0].tls", {"ca": FAKE_PEM_CERT, "cert": FAKE_PEM_CERT, "key": FAKE_PEM_KEY}),
     "ghr:hosts[0].tls", "only used with tcp://"),
    ("host-tls-missing-key", lambda r: r["hosts"][0].update(
        url="tcp://h:2376", tls={"ca": FAKE_PEM_CERT, "cert": FAKE_PEM_CERT}), "ghr:hosts[0].tls.key", "not PEM"),
    ("host-ssh-option-form", lambda r: r["hosts"][0].update(url="ssh://u@h", sshOptions=["-i key"]),
     "ghr:hosts[0].sshOptions", "Key=Value"),
    ("host-duplicate", lambda r: r["hosts"].append({"name": "local", "url": "unix:///x.sock"}),
     "ghr:hosts[1].name", "defined twice"),
    ("host-bad-name", _set("hosts[0].name", "Local Host"), "ghr:hosts[0].name", "lowercase"),
    ("no-pools", _set("pools", []), "ghr:pools", "non-empty list"),
    ("pool-unknown-host", _set("pools[0].hosts", ["gpu9"]), "ghr:pools[0].hosts[0]", "use one of: local"),
    ("slots-zero", _set("pools[0].slots", 0), "ghr:pools[0].slots", "between 1 and 64"),
    ("slots-string", _set("pools[0].slots", "2"), "ghr:pools[0].slots", "whole number"),
    ("no-labels", _set("pools[0].labels", []), "ghr:pools[0].labels", "non-empty list"),
    ("label-comma", _set("pools[0].labels", ["a,b"]), "ghr:pools[0].labels[0]", "without commas"),
    ("label-duplicate", _set("pools[0].labels", ["Linux", "linux"]), "ghr:pools[0].labels", "twice"),
    ("repo-runner-group", lambda r: r["github"].update(scope="https://github.com/acme/app") or
     r["pools"][0].update(runnerGroup="ci"), "ghr:pools[0].runnerGroup", "Default group"),
    ("runner-too-old", _set("pools[0].image.runnerVersion", "2.300.0"), "ghr:pools[0].image.runnerVersion",
     "2.329.0 or newer"),
    ("runner-version-form", _set("pools[0].image.runnerVersion", "v2.337"), "ghr:pools[0].image.runnerVersion",
     "like 2.337.0"),
    ("unknown-version-needs-sha", _set("pools[0].image.runnerVersion", "2.340.0"),
     "ghr:pools[0].image.runnerSha256", "is required"),
    ("bad-sha", _set("pools[0].image.runnerSha256", "abc"), "ghr:pools[0].image.runnerSha256", "64"),
    ("bad-package", _set("pools[0].image.extraPackages", ["curl; rm -rf /"]), "ghr:pools[0].image.extraPackages[0]",
     "apt package"),
    ("gpus-bad", _set("pools[0].container.gpus", "two"), "ghr:pools[0].container.gpus", '"all"'),
    ("gpu-per-slot-without-ids", _set("pools[0].container.gpuPerSlot", True), "ghr:pools[0].container.gpuPerSlot",
     "device"),
    ("gpu-per-slot-too-few", lambda r: r["pools"][0].update(
        slots=3, container={"gpus": {"deviceIds": ["0", "1"]}, "gpuPerSlot": True}), "ghr:pools[0].slots",
     "3 slots"),
    ("memory-bad", _set("pools[0].container.memory", "lots"), "ghr:pools[0].container.memory", "size like"),
    ("docker-socket-in-jobs", _set("pools[0].container.volumes", [
        {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}]),
     "ghr:pools[0].container.volumes[0].source", "root on the host"),
    ("volume-relative-target", _set("pools[0].container.volumes", [{"type": "volume", "source": "v1", "target": "x"}]),
     "ghr:pools[0].container.volumes[0].target", "absolute path"),
    ("env-credentials", _set("pools[0].container.env", {"GHR_GITHUB_TOKEN": "x"}),
     "ghr:pools[0].container.env.GHR_GITHUB_TOKEN", "never go to runner containers"),
    ("hardened-cap-add", _set("pools[0].container", {"hardened": True, "capAdd": ["NET_ADMIN"]}),
     "ghr:pools[0].container.capAdd", "hardened"),
    ("unknown-container-key", _set("pools[0].container.privileged", True), "ghr:pools[0].container.privileged",
     "not a known setting"),
    ("second-pool-bad-gpus", _second_pool(container={"gpus": {"count": 0}}), "ghr:pools[1].container.gpus.count",
     "positive integer"),
    ("metrics-port-clash", _second_pool(metricsPort=9101), "ghr:pools[1].metricsPort", "already used"),
    ("pool-duplicate-name", lambda r: r["pools"].append(dict(r["pools"][0])), "ghr:pools[1].name", "defined twice"),
    ("ambiguous-prefix", lambda r: r["hosts"].extend([{"name": "b-c", "url": "unix:///b.sock"},
                                                      {"name": "c", "url": "unix:///c.sock"}]) or
     r["pools"].extend([{"name": "a", "hosts": ["b-c"], "slots": 1, "labels": ["x"], "metricsPort": 9300},
                        {"name": "a-b", "hosts": ["c"], "slots": 1, "labels": ["x"], "metricsPort": 9301}]),
     "ghr:pools[2].name", "same runner name prefix"),
    ("drain-negative", _set("pools[0].drainTimeout", -1), "ghr:pools[0].drainTimeout", "between 0"),
]


@pytest.mark.parametrize(("mutate", "path", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_fails_with_path_and_fix(mutate: Callable[[dict[str, Any]], None], path: str, words: str) -> None:
    """Each bad value is reported with its key path and a message that says what to do."""
    raw = base()
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "dev", ["ghr:github", "ghr:hosts"])
    matching = [p for p in info.value.problems if p.path == path]
    assert matching, f"no problem at {path}; got: {info.value}"
    assert any(words.lower() in str(p).lower() for p in matching), str(info.value)
    assert "nothing was changed" in str(info.value)


def test_bad_config_matrix_is_large_enough() -> None:
    """The issue asks for at least 20 distinct bad-config cases."""
    assert len(BAD) >= 20


def test_plain_text_token_is_refused_without_echoing_it() -> None:
    """A token not stored as a secret is an error, and the message never contains it."""
    with pytest.raises(ConfigError) as info:
        parse_config(base(), "dev", secret_keys=[])
    assert "ghr:github.token" in info.value.paths
    assert TOKEN not in str(info.value) and "--secret" in str(info.value)


def test_errors_never_echo_secret_values() -> None:
    """Secret values (keys, TLS material) are shown as [secret] in messages."""
    raw = base()
    raw["github"] = {"scope": "https://github.com/acme", "appId": 1, "privateKey": "not-a-pem-but-secret-XYZ"}
    raw["hosts"][0] = {"name": "r", "url": "tcp://h:2376", "tls": {"ca": "secret-CA-XYZ", "cert": "c", "key": "k"}}
    raw["pools"][0]["hosts"] = ["r"]
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "dev", ["ghr:github", "ghr:hosts"])
    assert "XYZ" not in str(info.value)


def test_all_problems_are_reported_at_once() -> None:
    """Several mistakes give several lines, not one error per preview."""
    raw = base()
    raw["pools"][0]["slots"] = 0
    raw["hosts"][0]["url"] = "http://x"
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "dev", ["ghr:github"])
    assert {"ghr:pools[0].slots", "ghr:hosts[0].url"} <= set(info.value.paths)


def test_token_placeholder_constant_is_not_in_defaults() -> None:
    """Sanity: the fake token used in these tests is not a default anywhere."""
    assert TOKEN not in repr(parse_config(base(), "dev", ["ghr:github"]))
