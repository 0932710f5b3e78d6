"""Helpers for the real-engine e2e tests (waits with deadlines, stack config writing)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import yaml

from tests._support.pulumi_cli import PulumiStack


def wait_for(predicate: Callable[[], Any], what: str, timeout: float, interval: float = 0.5) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_stack_config(stack: PulumiStack, emu: Any, *, slots: int = 2, labels: list[str] | None = None,
                       extra: dict[str, Any] | None = None, pools: list[dict[str, Any]] | None = None,
                       hosts: list[dict[str, Any]] | None = None) -> None:
    """Write the plain part of the stack file, then set the token as a secret through the CLI."""
    path = stack.dir / f"Pulumi.{stack.stack}.yaml"
    doc = yaml.safe_load(path.read_text()) if path.exists() else {}
    doc = doc or {}
    secure = ((doc.get("config") or {}).get("ghr:github") or {}).get("token")
    pool = {
        "name": "cpu", "hosts": [h["name"] for h in hosts] if hosts else ["local"], "slots": slots,
        "labels": labels or ["self-hosted", "linux", "e2e"],
        "image": {"base": "ghr-base:bookworm", "runnerVersion": "2.337.0", "runnerUrl": emu.download_url(),
                  "runnerSha256": emu.tarball_sha256},
        "container": {"networkMode": "host", "memory": "1g", "pidsLimit": 1024},
        "drainTimeout": 120,
        "metricsPort": free_port(),  # managers use host networking: no clash with other stacks here
    }
    config: dict[str, Any] = {
        "ghr:github": {"scope": f"{emu.url}/acme", **({"token": secure} if secure else {})},
        "ghr:hosts": hosts or [{"name": "local", "url": "unix:///var/run/docker.sock"}],
        "ghr:pools": pools if pools is not None else [pool],
    }
    config.update(extra or {})
    doc["config"] = config
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    if not secure:
        stack.set_config("ghr:github.token", emu.admin_token, secret=True, path=True)


