"""Helpers for the pool manager tests: bounded waits, spec building, managers in-process or as processes."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, TypeVar

import docker
import requests

from tests._support.polling import free_port

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


def pool_runners(emulator: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = spec["name_prefix"] + "-"
    return [r for r in emulator.runners() if r["name"].startswith(prefix)]


def online_idle(emulator: Any, spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in pool_runners(emulator, spec) if r["status"] == "online" and not r["busy"]]


def runner_labels(runner: dict[str, Any]) -> set[str]:
    return {lb["name"] if isinstance(lb, dict) else lb for lb in runner.get("labels") or []}


class InProcessManager:
    """A PoolManager on a thread of the test process (fast; metrics without HTTP)."""

    def __init__(self, spec: dict[str, Any], emulator: Any, token: str | None = None, orphan_grace: float = 30.0):
        from github_client import PatAuth
        from pool_manager import load_spec
        from pool_manager.__main__ import build_github_client
        from pool_manager.manager import PoolManager
        from pool_manager.metrics import Metrics

        self.spec = load_spec(spec)
        self.metrics = Metrics(self.spec.pool)
        github = build_github_client(self.spec, PatAuth(token or emulator.admin_token), self.metrics)
        self.manager = PoolManager(self.spec, github, metrics=self.metrics, orphan_grace=orphan_grace)  # type: ignore[arg-type]
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


def build_image(client: docker.DockerClient, tag: str, **kwargs: Any) -> None:
    """`docker build` on the host network (so apt and pip reach the mirrors); RuntimeError with the log tail."""
    try:
        client.images.build(tag=tag, network_mode="host", rm=True, forcerm=True, **kwargs)
    except docker.errors.BuildError as exc:
        tail = "".join(str(c.get("stream") or c.get("error") or "") for c in exc.build_log)[-3000:]
        raise RuntimeError(f"building {tag} failed: {exc.msg}\n{tail}") from None


def ensure_runner_image(client: docker.DockerClient, emulator: Any) -> str:
    """runner-image/Dockerfile on the local base with the emulator's stand-in runner, tagged by content."""
    import hashlib

    files = sorted(p for p in (REPO / "runner-image").rglob("*") if p.is_file())
    digest = hashlib.sha256(emulator.tarball_sha256.encode())
    for p in files:
        digest.update(p.relative_to(REPO).as_posix().encode() + p.read_bytes())
    tag = f"ghr-runner-test:{digest.hexdigest()[:12]}"
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_image(client, tag, path=str(REPO / "runner-image"),
                    buildargs={"BASE_IMAGE": BASE_IMAGE, "RUNNER_URL": emulator.download_url(),
                               "RUNNER_SHA256": emulator.tarball_sha256, "RUNNER_TOOLS": ""})
    return tag
