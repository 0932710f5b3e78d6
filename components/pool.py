"""RunnerPool: one pool on one host - its RunnerRegistration, its manager container and its readiness."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi

from pool_manager.spec import FIXED_KEYS

from .docker import DockerContainer
from .docker._connection import host_props
from .readiness import DEFAULT_READY_TIMEOUT, RunnerPoolReady, spec_hash, summary_of
from .registration import RunnerRegistration

SPEC_PATH = "/etc/ghr/pool.json"
CREDENTIALS_PATH = "/etc/ghr/credentials.json"
STOP_MARGIN = 30


def _fixed_hash(spec: Mapping[str, Any]) -> str:
    """A digest of the spec keys a running manager cannot take on (pool_manager.spec.FIXED_KEYS)."""
    fixed = {key: spec.get(key) for key in FIXED_KEYS}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


class RunnerPoolArgs(TypedDict):
    stack: str
    pool: str
    host_name: str
    host: Mapping[str, Any]  # {"url", "ssh_options", "tls" (secret Output)}
    socket_path: str  # the Docker socket on that host, mounted into the manager
    spec: Mapping[str, Any]  # pool spec without "image" (design.md); the runner image id is added here
    runner_image: pulumi.Input[str]
    manager_image: pulumi.Input[str]
    credentials_file: pulumi.Input[str]  # secret JSON
    labels: Sequence[str]
    runner_group: str
    drain_timeout: int
    network_mode: NotRequired[str]
    ready_timeout: NotRequired[int]  # seconds `pulumi up` waits for `slots` runners online; 0: no wait


class RunnerPool(pulumi.ComponentResource):
    """The manager container keeps the pool's slots filled; the registration is the GitHub side."""

    manager_container: pulumi.Output[dict[str, Any]]
    registration: pulumi.Output[dict[str, Any]]  # live counts, from the RunnerPoolReady after the manager
    name_prefix: pulumi.Output[str]

    def __init__(self, name: str, args: RunnerPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ghr:index:RunnerPool", name, None, opts)
        spec = dict(args["spec"])
        for key in ("scope_url", "name_prefix", "slots"):
            if key not in spec:
                raise ValueError(f"RunnerPool {name}: spec.{key} is required")
        stack, pool, host_name = args["stack"], args["pool"], args["host_name"]
        docker_props = host_props(args["host"])
        registration = RunnerRegistration(f"{name}-registration", {
            "scope_url": spec["scope_url"],
            "api_url": spec.get("api_url"),
            "name_prefix": spec["name_prefix"],
            "labels": list(args["labels"]),
            "runner_group": args["runner_group"],
            "drain_timeout": args["drain_timeout"],
            "pool": pool, "host": host_name, "stack": stack,
            "docker": docker_props,
        }, pulumi.ResourceOptions(parent=self))
        spec_json = pulumi.Output.from_input(args["runner_image"]).apply(
            lambda image: json.dumps({**spec, "image": image}, indent=2, sort_keys=True))
        manager_name = f"ghr-{stack}-{pool}-manager"
        manager = DockerContainer(f"{name}-manager", {
            "name": manager_name,
            "image": args["manager_image"],
            "command": ["--spec", SPEC_PATH, "--credentials-file", CREDENTIALS_PATH],
            "host": args["host"],
            "mounts": [{"type": "bind", "source": args["socket_path"], "target": "/var/run/docker.sock"}],
            "network_mode": args.get("network_mode") or "host",
            "restart_policy": "always",
            # ghr.spec-fixed: a change of a spec key the manager cannot reload replaces the manager.
            "labels": {"ghr.role": "manager", "ghr.pool": pool, "ghr.stack": stack, "ghr.host": host_name,
                       "ghr.spec-fixed": _fixed_hash(spec)},
            # Any other spec change, and new credentials, are reloaded in place (SIGHUP): no drain.
            "uploads": [
                {"path": SPEC_PATH, "content": spec_json, "mode": 0o444, "reloadable": True},
                {"path": CREDENTIALS_PATH, "content": pulumi.Output.secret(args["credentials_file"]), "mode": 0o400,
                 "reloadable": True},
            ],
            "reload_signal": "SIGHUP",
            # SIGTERM makes the manager drain: idle runners go at once, busy ones finish their job.
            "stop_timeout": int(args["drain_timeout"]) + STOP_MARGIN,
        }, pulumi.ResourceOptions(parent=self, depends_on=[registration]))
        # After the manager: `up` waits here until `slots` runners are online (or readyTimeout fails it).
        ready = RunnerPoolReady(f"{name}-ready", {
            "scope_url": spec["scope_url"], "api_url": spec.get("api_url"), "name_prefix": spec["name_prefix"],
            "labels": list(args["labels"]), "slots": spec["slots"],
            "ready_timeout": args.get("ready_timeout", DEFAULT_READY_TIMEOUT),
            "pool": pool, "host": host_name, "stack": stack,
            "manager_container": manager.name, "manager_container_id": manager.container_id,
            "spec_hash": spec_json.apply(spec_hash), "docker": docker_props,
        }, pulumi.ResourceOptions(parent=self, depends_on=[manager]))
        self.name_prefix = pulumi.Output.from_input(spec["name_prefix"])
        self.manager_container = pulumi.Output.all(
            name=manager.name, id=manager.container_id, state=manager.state).apply(lambda a: dict(a))
        self.registration = pulumi.Output.all(summary_of(ready), registration.runner_group_id).apply(
            lambda a: {**a[0], "runner_group_id": a[1]})
        self.register_outputs({
            "manager_container": self.manager_container, "registration": self.registration,
            "name_prefix": self.name_prefix,
        })
