"""Helpers for the pool manager tests: bounded waits, spec building, managers in-process or as processes."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import docker
import requests

from tests._support.polling import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "ghr-base:bookworm"
T = TypeVar("T")


def make_spec(emulator: Any, image: str, *, pool: str = "cpu", slots: int = 1, labels: list[str] | None = None,
              container: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A pool spec with a fresh stack name, so tests never see each other's containers."""
    stack = "t" + secrets.token_hex(3)
    spec: dict[str, Any] = {
        "pool": pool, "stack": stack, "host": "local",
        "scope_url": f"{emulator.url}/acme", "api_url": None,
        "name_prefix": f"{stack}-{pool}",
        "labels": labels or ["self-hosted", "linux", f"{stack}-{pool}"], "runner_group": "Default",
        "slots": slots, "image": image,
        "container": {"network_mode": "host", **(container or {})},
        "drain_timeout": 60, "metrics_port": 0,
        "reconcile_interval": 2.0, "backoff_initial": 0.2, "backoff_max": 2.0,
    }
    spec.update(extra)
    return spec


def pool_containers(client: docker.DockerClient, spec: dict[str, Any], all: bool = True) -> list[dict[str, Any]]:
    filters = {"label": [f"ghr.stack={spec['stack']}", f"ghr.pool={spec['pool']}", "ghr.role=runner"]}
    return client.api.containers(all=all, filters=filters)


def scale_set_of(emulator: Any, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The emulator's view of a scale-set pool's scale set (with `sessions`, `max_capacity`), or None."""
    name = spec.get("scale_set_name") or spec["name_prefix"]
    return next((s for s in emulator.scale_sets() if s["name"] == name), None)


def live_sessions(emulator: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    ss = scale_set_of(emulator, spec)
    if ss is None:
        return []
    return [s for s in emulator.scale_set_sessions() if s["scaleSetId"] == ss["id"] and s["live"]]


def pool_runners(emulator: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = spec["name_prefix"] + "-"
    return [r for r in emulator.runners() if r["name"].startswith(prefix)]


def online_idle(emulator: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in pool_runners(emulator, spec) if r["status"] == "online" and not r["busy"]]


def runner_labels(runner: dict[str, Any]) -> set[str]:
    return {lb["name"] if isinstance(lb, dict) else lb for lb in runner.get("labels") or []}


class InProcessManager:
    """A PoolManager on a thread of the test process (fast; metrics without HTTP)."""

    def __init__(self, spec: dict[str, Any], emulator: Any, token: str | None = None, orphan_grace: float = 30.0,
                 **options: Any):
        """`options` go to PoolManager as they are (e.g. probe_interval)."""
        from github_client import PatAuth
        from pool_manager import load_spec
        from pool_manager.__main__ import build_github_client
        from pool_manager.manager import make_manager
        from pool_manager.metrics import Metrics

        self.spec = load_spec(spec)
        self.metrics = Metrics(self.spec.pool)
        github = build_github_client(self.spec, PatAuth(token or emulator.admin_token), self.metrics)
        self.manager = make_manager(self.spec, github, metrics=self.metrics, orphan_grace=orphan_grace, **options)
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, name=f"manager-{self.spec.stack}", daemon=True)

    def _run(self) -> None:
        self.code = self.manager.run()

    def start(self) -> InProcessManager:
        self.thread.start()
        return self

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels or None)
        return float(value or 0.0)

    def stop(self, timeout: float = 90.0) -> int | None:
        self.manager.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "manager did not finish draining"
        return self.code


class ProcessManager:
    """`python -m pool_manager` as a child process, credentials in a file (or its environment)."""

    def __init__(self, spec: dict[str, Any], tmp: Path, token: str, *, via_env: bool = False):
        self.spec = dict(spec)
        if not self.spec.get("metrics_port"):
            self.spec["metrics_port"] = free_port()
        self.port = self.spec["metrics_port"]
        self.spec_path = tmp / f"{spec['stack']}-spec.json"
        self.spec_path.write_text(json.dumps(self.spec))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GHR_")}
        self.env["PYTHONPATH"] = str(REPO)
        self.args = [sys.executable, "-m", "pool_manager", "--spec", str(self.spec_path)]
        if via_env:
            self.env["GHR_GITHUB_TOKEN"] = token
        else:
            creds = tmp / f"{spec['stack']}-credentials.json"
            creds.write_text(json.dumps({"type": "pat", "token": token}))
            creds.chmod(0o600)
            self.args += ["--credentials-file", str(creds)]
        self.log_path = tmp / f"{spec['stack']}-manager.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ProcessManager:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json()
        except (requests.RequestException, ValueError):
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2).text
        except requests.RequestException:
            return ""

    def rewrite(self, **changes: Any) -> None:
        """Write the spec file again with `changes` (the running manager sees it after `hup`)."""
        self.spec.update(changes)
        self.spec_path.write_text(json.dumps(self.spec))

    def hup(self) -> None:
        """SIGHUP: reload the spec and credentials files."""
        assert self.proc is not None and self.proc.poll() is None, self.log()
        self.proc.send_signal(signal.SIGHUP)

    def write_credentials(self, data: dict[str, Any]) -> None:
        creds = self.spec_path.parent / f"{self.spec['stack']}-credentials.json"
        creds.write_text(json.dumps(data))

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, timeout: float = 90.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def local_engine(timeout: float) -> docker.DockerClient:
    """The local Docker engine, checked to answer and to hold the base image; RuntimeError naming the fix."""
    client = docker.from_env(timeout=timeout)
    try:
        client.ping()
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        raise RuntimeError(f"base image {BASE_IMAGE} missing: run toolchain/base-image.sh (make setup)") from None
    except Exception as exc:
        raise RuntimeError(f"Docker engine unreachable ({exc}): run toolchain/docker.sh (make setup)") from None
    return client


def build_image(client: docker.DockerClient, tag: str, **kwargs: Any) -> None:
    """`docker build` on the host network (so apt and pip reach the mirrors); RuntimeError with the log tail."""
    try:
        client.images.build(tag=tag, network_mode="host", rm=True, forcerm=True, **kwargs)
    except docker.errors.BuildError as exc:
        tail = "".join(str(c.get("stream") or c.get("error") or "") for c in exc.build_log)[-3000:]
        raise RuntimeError(f"building {tag} failed: {exc.msg}\n{tail}") from None


def ensure_built(client: docker.DockerClient, name: str, files: Sequence[Path], *, seed: str = "",
                 **kwargs: Any) -> str:
    """``<name>:<digest>``, built from runner-image/ (``kwargs``: dockerfile, buildargs) unless an image of that
    tag exists; the digest covers ``seed`` and the paths and contents of ``files``."""
    digest = hashlib.sha256(seed.encode())
    for p in files:
        digest.update(p.relative_to(REPO).as_posix().encode() + p.read_bytes())
    tag = f"{name}:{digest.hexdigest()[:12]}"
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_image(client, tag, path=str(REPO / "runner-image"), **kwargs)
    return tag


def ensure_runner_image(client: docker.DockerClient, emulator: Any) -> str:
    """runner-image/Dockerfile on the local base with the emulator's stand-in runner, tagged by content."""
    files = sorted(p for p in (REPO / "runner-image").rglob("*") if p.is_file())
    return ensure_built(client, "ghr-runner-test", files, seed=emulator.tarball_sha256,
                        buildargs={"BASE_IMAGE": BASE_IMAGE, "RUNNER_URL": emulator.download_url(),
                                   "RUNNER_SHA256": emulator.tarball_sha256, "RUNNER_TOOLS": ""})


def fault_answers(manager: InProcessManager) -> float:
    """GitHub answers the manager got that were faults (5xx, rate limits, no answer), probes included."""
    total = 0.0
    for metric in manager.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "ghr_github_api_calls_total" and sample.labels.get("fault", "none") != "none":
                total += sample.value
    return total


def storm_then_recover(emulator: Any, docker_client: Any, manager: InProcessManager, spec: dict[str, Any],
                       min_backoff: float) -> tuple[float, float]:
    """Empty the pool under a 502 storm until the backoff reaches `min_backoff` and 15+ faults were
    answered, end the storm, and return (seconds from the storm's end to every slot online again,
    seconds of backoff the manager still had to sleep out when the storm ended)."""
    slots = spec["slots"]
    old = {r["name"] for r in wait_for(lambda: len(online_idle(emulator, spec)) == slots and online_idle(emulator, spec),
                                       90, "a full pool")}
    emulator.set_faults(errors=10_000, error_status=502, match="/orgs/{org}/actions/runners")
    for box in pool_containers(docker_client, spec):
        docker_client.api.kill(box["Id"])  # work for the manager, against a failing API
    wait_for(lambda: manager.metric("ghr_pool_backoff_seconds") >= min_backoff and fault_answers(manager) >= 15,
             120, f"a backoff of {min_backoff} s or more after 15+ faults")
    retry_in = manager.metric("ghr_pool_backoff_seconds")  # the pass_failed event's retry_in
    failed_at = manager.metric("ghr_pool_last_error_timestamp_seconds", kind="github")
    emulator.clear_faults()
    ended = time.time()
    backoff_left = failed_at + retry_in - ended

    def full() -> bool:
        fresh = [r for r in online_idle(emulator, spec) if r["name"] not in old]
        return len(fresh) == slots

    wait_for(full, 120, "every slot online again", interval=0.05)
    return time.time() - ended, backoff_left



def ensure_dind_image(client: docker.DockerClient) -> str:
    """runner-image/dind.Dockerfile (the docker "dind" sidecar) on the local base, tagged by content."""
    names = ["dind.Dockerfile", "dind-entrypoint.sh"]
    files = [REPO / "runner-image" / n for n in names]
    files += sorted(p for p in (REPO / "runner-image" / "extra-ca").rglob("*") if p.is_file())
    return ensure_built(client, "ghr-dind-test", files, dockerfile="dind.Dockerfile", buildargs={"BASE_IMAGE": BASE_IMAGE})


def pair_containers(client: docker.DockerClient, spec: dict[str, Any], role: str = "sidecar") -> list[dict[str, Any]]:
    """A dind pool's containers of one role (`sidecar` or `runner`)."""
    filters = {"label": [f"ghr.stack={spec['stack']}", f"ghr.pool={spec['pool']}", f"ghr.role={role}"]}
    return client.api.containers(all=True, filters=filters)


def pair_volumes(client: docker.DockerClient, spec: dict[str, Any]) -> list[str]:
    """Volumes of a dind pool's pairs (the sidecars' anonymous volumes carry the pool's labels)."""
    found = client.api.volumes(filters={"label": [f"ghr.stack={spec['stack']}", f"ghr.pool={spec['pool']}"]})
    return [v["Name"] for v in (found or {}).get("Volumes") or []]
