"""Docker in jobs, stack config side: ghr:pools[i].docker / dockerUnsafeHost / dind become the pool spec's docker
keys, and every bad value fails at preview with its key path, the value and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from unit_helpers import base

from components.config import ConfigError, parse_config

SECRETS = ["ghr:github"]


def _pool(**keys: Any) -> dict[str, Any]:
    raw = base()
    raw["pools"][0].update(keys)
    return raw


def test_docker_is_off_by_default() -> None:
    """A pool without docker has none: its spec has no docker keys."""
    fleet = parse_config(base(), "dev", SECRETS)
    spec = fleet.spec("cpu", "local")
    assert fleet.pools[0].docker == "none" and spec.docker == "none" and spec.dind is None
    assert not {"docker", "dind"} & set(spec.dump())


def test_dind_pool_gets_a_sidecar_spec_without_image() -> None:
    """docker: dind with its settings lands in the spec (camelCase to snake_case); the sidecar image comes at deploy."""
    raw = _pool(docker="dind", dind={"security": "caps", "registryMirrors": ["http://10.0.0.5:5000/"],
                                     "insecureRegistries": ["10.0.0.5:5000"]})
    fleet = parse_config(raw, "dev", SECRETS)
    spec = fleet.spec("cpu", "local")
    assert fleet.pools[0].dind_sidecar and spec.dind_sidecar
    assert spec.dump()["dind"] == {"image": None, "security": "caps", "registry_mirrors": ["http://10.0.0.5:5000"],
                                   "insecure_registries": ["10.0.0.5:5000"]}


def test_dind_defaults_to_a_privileged_sidecar() -> None:
    """docker: dind alone is a privileged sidecar with no registry settings; snake_case keys work too."""
    spec = parse_config(_pool(docker="dind"), "dev", SECRETS).spec("cpu", "local")
    assert spec.dind is not None and spec.dind.security == "privileged" and spec.dind.registry_mirrors == ()
    snake = parse_config(_pool(docker="dind", dind={"registry_mirrors": ["https://m.example"]}), "dev", SECRETS)
    assert snake.spec("cpu", "local").dind.registry_mirrors == ("https://m.example",)  # type: ignore[union-attr]


def test_dind_runtime_runs_the_engine_in_the_runner() -> None:
    """dind.runtime (sysbox-runc) is the in-runner form: no sidecar, so the host builds no sidecar image."""
    fleet = parse_config(_pool(docker="dind", dind={"runtime": "sysbox-runc"}), "dev", SECRETS)
    assert not fleet.pools[0].dind_sidecar and not fleet.spec("cpu", "local").dind_sidecar


def test_hardened_runner_with_dind_sidecar_is_accepted() -> None:
    """hardened and a dind sidecar combine: the runner stays hardened."""
    spec = parse_config(_pool(docker="dind", container={"hardened": True}), "dev", SECRETS).spec("cpu", "local")
    assert spec.container.hardened and spec.dind_sidecar


def test_host_mode_needs_the_unsafe_flag_and_uses_the_hosts_socket() -> None:
    """docker: host with dockerUnsafeHost: true mounts the host's own socket path into runners."""
    raw = _pool(docker="host", dockerUnsafeHost=True)
    raw["hosts"][0]["socketPath"] = "/run/user-docker.sock"
    spec = parse_config(raw, "dev", SECRETS).spec("cpu", "local")
    assert (spec.docker, spec.docker_host_unsafe, spec.docker_host_socket) == ("host", True, "/run/user-docker.sock")


BAD = [
    ("unknown mode", {"docker": "docker-in-docker"}, "ghr:pools[0].docker", ["'docker-in-docker'", "dind"]),
    ("mode not a string", {"docker": True}, "ghr:pools[0].docker", ["true", "none, dind or host"]),
    ("host without flag", {"docker": "host"}, "ghr:pools[0].docker", ["root on the host", "dockerUnsafeHost: true"]),
    ("host flag false", {"docker": "host", "dockerUnsafeHost": False}, "ghr:pools[0].docker", ["dockerUnsafeHost"]),
    ("flag not bool", {"docker": "host", "dockerUnsafeHost": "yes"}, "ghr:pools[0].dockerUnsafeHost",
     ["'yes'", "true or false"]),
    ("flag without host", {"docker": "dind", "dockerUnsafeHost": True}, "ghr:pools[0].dockerUnsafeHost",
     ["only applies to docker: host", "remove"]),
    ("dind without mode", {"dind": {"security": "caps"}}, "ghr:pools[0].dind", ["docker: dind"]),
    ("dind not an object", {"docker": "dind", "dind": "yes"}, "ghr:pools[0].dind", ["object"]),
    ("unknown dind key", {"docker": "dind", "dind": {"mirrors": ["https://m"]}}, "ghr:pools[0].dind.mirrors",
     ["not a known setting"]),
    ("dind image by hand", {"docker": "dind", "dind": {"image": "docker:dind"}}, "ghr:pools[0].dind.image",
     ["not a known setting"]),
    ("unknown security", {"docker": "dind", "dind": {"security": "root"}}, "ghr:pools[0].dind.security",
     ["'root'", "caps"]),
    ("mirror not a URL", {"docker": "dind", "dind": {"registryMirrors": ["mirror.example:5000"]}},
     "ghr:pools[0].dind.registryMirrors[0]", ["'mirror.example:5000'", "https://"]),
    ("mirror with path", {"docker": "dind", "dind": {"registryMirrors": ["https://m.example/v2/"]}},
     "ghr:pools[0].dind.registryMirrors[0]", ["no path"]),
    ("mirror with credentials", {"docker": "dind", "dind": {"registryMirrors": ["https://u:p@m.example"]}},
     "ghr:pools[0].dind.registryMirrors[0]", ["user:password"]),
    ("insecure with scheme", {"docker": "dind", "dind": {"insecureRegistries": ["http://r:5000"]}},
     "ghr:pools[0].dind.insecureRegistries[0]", ["host[:port]"]),
    ("runtime with security", {"docker": "dind", "dind": {"runtime": "sysbox-runc", "security": "caps"}},
     "ghr:pools[0].dind.security", ["no sidecar"]),
    ("runtime and hardened", {"docker": "dind", "dind": {"runtime": "sysbox-runc"}, "container": {"hardened": True}},
     "ghr:pools[0].container.hardened", ["drop hardened"]),
    ("host and hardened", {"docker": "host", "dockerUnsafeHost": True, "container": {"hardened": True}},
     "ghr:pools[0].container.hardened", ["root"]),
    ("dind with host network", {"docker": "dind", "container": {"networkMode": "host"}},
     "ghr:pools[0].container.networkMode", ["network namespace", "bridge"]),
    ("DOCKER_HOST by hand", {"docker": "dind", "container": {"env": {"DOCKER_HOST": "tcp://x:2375"}}},
     "ghr:pools[0].container.env.DOCKER_HOST", ["remove it"]),
]


@pytest.mark.parametrize(("keys", "path", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_docker_config_fails_with_path_value_and_fix(keys: dict[str, Any], path: str, words: list[str]) -> None:
    """Each bad docker setting is reported at its key path, with the value and what to do."""
    with pytest.raises(ConfigError) as info:
        parse_config(_pool(**keys), "dev", SECRETS)
    matching = [str(p) for p in info.value.problems if p.path == path]
    assert matching, f"no problem at {path}; got: {info.value}"
    assert all(any(w.lower() in m.lower() for m in matching) for w in words), matching


def test_host_mode_with_a_relative_socket_path_names_the_hosts_key() -> None:
    """docker: host mounts ghr:hosts[i].socketPath into runners: a relative one is reported there."""
    raw = _pool(docker="host", dockerUnsafeHost=True)
    raw["hosts"][0]["socketPath"] = "docker.sock"
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "dev", SECRETS)
    assert info.value.paths == ["ghr:hosts[0].socketPath"] and "absolute" in str(info.value)


def test_a_docker_refusal_is_reported_once_for_a_pool_on_two_hosts() -> None:
    """A bad mirror on a pool with two hosts is one problem, not one per host."""
    raw = _pool(docker="dind", dind={"registryMirrors": ["nope"]})
    raw["hosts"].append({"name": "remote", "url": "tcp://10.0.0.2:2375"})
    raw["pools"][0]["hosts"] = ["local", "remote"]
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "dev", SECRETS)
    assert info.value.paths == ["ghr:pools[0].dind.registryMirrors[0]"]
