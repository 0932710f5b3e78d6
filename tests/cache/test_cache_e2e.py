"""Per-host caches through the real Pulumi CLI and engine: `up` makes the cache (image, network, volumes,
containers) before the pool, whose manager's spec points at it; a size change replaces the cache container and
keeps its volume; `destroy` keeps the volumes by default (the next `up` adopts them), and with keepVolumes false
(changed in place) drops them. The pool is a scale-set pool at minRunners 0: no runner container is needed here
(jobs through the cache are tests/cache/test_cache_apt.py's)."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from tests._support.polling import free_port
from tests._support.pulumi_cli import ROOT, PulumiStack
from tests.e2e.e2e_helpers import write_stack_config

pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]
PROJECT = ROOT / "tests" / "e2e" / "project"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    from emulator import Emulator

    with Emulator() as emu:
        emu.set_message_poll_wait(2.0)
        yield emu


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulumiStack]:
    name = f"cache{uuid.uuid4().hex[:6]}"
    s = PulumiStack(PROJECT, Path(tmp_path_factory.mktemp(name)), name, passphrase="e2e",
                    env={"GHR_REPO_ROOT": str(ROOT), "GHR_SKIP_VERSION_CHECK": "1"})
    yield s
    s.destroy(check=False)
    s.run("stack", "rm", "--yes", "--force", check=False)
    client = docker.from_env()
    for kind in ("apt", "stats", "registry", "tools"):
        try:
            client.volumes.get(f"ghr-{name}-cache-{kind}").remove(force=True)
        except docker.errors.NotFound:
            pass


def _configure(stack: PulumiStack, emu: Any, cache: dict[str, Any]) -> None:
    write_stack_config(stack, emu)
    doc = yaml.safe_load((stack.dir / f"Pulumi.{stack.stack}.yaml").read_text())
    pool = dict(doc["config"]["ghr:pools"][0])
    pool.pop("slots")
    pool["container"] = {k: v for k, v in pool["container"].items() if k != "networkMode"}
    pool.update(scaling="scaleSet", minRunners=0, maxRunners=1, readyTimeout=120, cache=True,
                metricsPort=getattr(stack, "pool_port", None) or pool["metricsPort"])
    stack.pool_port = pool["metricsPort"]  # type: ignore[attr-defined]
    write_stack_config(stack, emu, pools=[pool],
                       hosts=[{"name": "local", "url": "unix:///var/run/docker.sock", "cache": cache}])


def _container(stack: PulumiStack, role: str) -> Any:
    return docker.from_env().containers.get(f"ghr-{stack.stack}-cache-{role}")


def _marker(volume: str, write: bool = False) -> str:
    cmd = ["sh", "-c", "echo warm > /v/ghr-e2e-marker"] if write else ["cat", "/v/ghr-e2e-marker"]
    out = docker.from_env().containers.run("ghr-base:bookworm", cmd, volumes=[f"{volume}:/v"], remove=True,
                                           network_mode="none")
    return bytes(out).decode().strip()


def test_cache_lifecycle_through_the_cli(stack: PulumiStack, emulator: Any) -> None:
    """up, a size change, destroy keeping volumes, up adopting them, keepVolumes false in place, destroy dropping."""
    client = docker.from_env()
    port = free_port()
    _configure(stack, emulator, {"apt": {"size": "1g"}, "metricsPort": port})
    stack.up()
    apt = _container(stack, "apt")
    assert apt.status == "running" and _container(stack, "metrics").status == "running"
    assert list(apt.attrs["NetworkSettings"]["Networks"]) == [f"ghr-{stack.stack}-cache"]
    assert not apt.attrs["HostConfig"].get("PortBindings")  # reachable from the cache network only
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
        assert json.loads(resp.read())["caches"]["apt"]["max_bytes"] == 1024**3
    manager = client.containers.get(f"ghr-{stack.stack}-cpu-manager")
    spec = json.loads(manager.exec_run(["cat", "/etc/ghr/pool.json"]).output)
    assert spec["cache"] == {"network": f"ghr-{stack.stack}-cache",
                             "apt_proxy": f"http://ghr-{stack.stack}-cache-apt:3142"}
    volume = f"ghr-{stack.stack}-cache-apt"
    _marker(volume, write=True)

    _configure(stack, emulator, {"apt": {"size": "2g"}, "metricsPort": port})
    stack.up()
    assert _container(stack, "apt").id != apt.id  # replaced with the new bound ...
    assert _marker(volume) == "warm"  # ... on the same volume

    stack.destroy()
    with pytest.raises(docker.errors.NotFound):
        _container(stack, "apt")
    with pytest.raises(docker.errors.NotFound):
        client.networks.get(f"ghr-{stack.stack}-cache")
    assert _marker(volume) == "warm"  # kept by default

    stack.up()
    assert _marker(volume) == "warm"  # adopted, warm
    apt = _container(stack, "apt")
    _configure(stack, emulator, {"apt": {"size": "2g"}, "metricsPort": port, "keepVolumes": False})
    stack.up()
    assert _container(stack, "apt").id == apt.id  # keepVolumes changes in place
    stack.destroy()
    for kind in ("apt", "stats"):
        with pytest.raises(docker.errors.NotFound):
            client.volumes.get(f"ghr-{stack.stack}-cache-{kind}")
