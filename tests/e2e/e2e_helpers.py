"""Helpers for the real-engine e2e tests (waits with deadlines, stack config writing)."""

from __future__ import annotations

from typing import Any

import yaml

from tests._support.polling import free_port
from tests._support.pulumi_cli import PulumiStack


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


