"""RunnerPool: one pool on one host - its RunnerRegistration, its manager container and its readiness."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import pulumi

from pool_manager.spec import FIXED_KEYS, PoolSpec

from .docker import DockerContainer
from .docker._connection import host_props
from .readiness import DEFAULT_READY_TIMEOUT, RunnerPoolReady, spec_hash, summary_of
from .registration import RunnerRegistration

SPEC_PATH = "/etc/ghr/pool.json"
# The credentials never touch the engine's storage: the manager's SECRETS_DIR is a bind mount of a
# per-pool folder under the host's /dev/shm (a tmpfs on every Linux host) that outlives container
# restarts; the file is written into it through the container (create and in-place rotation), and
# removed from it when the manager is deleted. After a host reboot it is gone: `pulumi up --refresh`
# sees it missing and replaces the manager, which delivers it again.
SECRETS_HOST_ROOT = "/dev/shm/ghr"
SECRETS_DIR = "/run/ghr-secrets"
CREDENTIALS_PATH = f"{SECRETS_DIR}/credentials.json"
STOP_MARGIN = 30


def secrets_host_dir(stack: str, pool: str) -> str:
    """The host folder (tmpfs) that holds a pool's credentials file, mounted at SECRETS_DIR in its manager."""
    return f"{SECRETS_HOST_ROOT}/{stack}-{pool}"


def _fixed_hash(spec: Mapping[str, Any]) -> str:
    """A digest of the spec keys (JSON form) a running manager cannot take on (pool_manager.spec.FIXED_KEYS)."""
    fixed = {key: spec.get(key) for key in FIXED_KEYS}
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


class RunnerPoolArgs(TypedDict):
    spec: PoolSpec  # the pool on this host (pool, stack, host, labels, slots, ...), without its image
    runner_image: pulumi.Input[str]  # the runner image id: the spec's image, known at deploy
    manager_image: pulumi.Input[str]
    host: Mapping[str, Any]  # how to reach the Docker engine: {"url", "ssh_options", "tls" (secret Output)}
    socket_path: str  # the Docker socket on that host, mounted into the manager
    credentials_file: pulumi.Input[str]  # secret JSON
    network_mode: NotRequired[str]  # the manager container's
    ready_timeout: NotRequired[int]  # seconds `pulumi up` waits for `slots` runners online; 0: no wait


class RunnerPool(pulumi.ComponentResource):
    """The manager container keeps the pool's slots filled; the registration is the GitHub side."""

    manager_container: pulumi.Output[dict[str, Any]]
    registration: pulumi.Output[dict[str, Any]]  # live counts, from the RunnerPoolReady after the manager
    name_prefix: pulumi.Output[str]

    def __init__(self, name: str, args: RunnerPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ghr:index:RunnerPool", name, None, opts)
        spec = args.get("spec")
        if not isinstance(spec, PoolSpec):
            raise TypeError(f"RunnerPool {name}: args['spec'] must be a pool_manager.spec.PoolSpec, got {type(spec).__name__}")
        if spec.image is not None:
            raise ValueError(f"RunnerPool {name}: spec.image is set ({spec.image!r}); leave it to args['runner_image']")
        stack, pool, host_name = spec.stack, spec.pool, spec.host
        wire = spec.dump()
        docker_props = host_props(args["host"])
        registration = RunnerRegistration(f"{name}-registration", {
            "scope_url": spec.scope_url,
            "api_url": spec.api_url,
            "name_prefix": spec.name_prefix,
            "labels": list(spec.labels),
            "runner_group": spec.runner_group,
            "drain_timeout": wire["drain_timeout"],
            "pool": pool, "host": host_name, "stack": stack,
            "docker": docker_props,
        }, pulumi.ResourceOptions(parent=self))
        spec_json = pulumi.Output.from_input(args["runner_image"]).apply(lambda image: spec.with_image(image).dumps())
        manager_name = f"ghr-{stack}-{pool}-manager"
        manager = DockerContainer(f"{name}-manager", {
            "name": manager_name,
            "image": args["manager_image"],
            "command": ["--spec", SPEC_PATH, "--credentials-file", CREDENTIALS_PATH],
            "host": args["host"],
            "mounts": [
                {"type": "bind", "source": args["socket_path"], "target": "/var/run/docker.sock"},
                # Host memory, not the container's writable layer; created by the engine when missing.
                {"type": "bind", "source": secrets_host_dir(stack, pool), "target": SECRETS_DIR,
                 "create_source": True},
            ],
            "network_mode": args.get("network_mode") or "host",
            "restart_policy": "always",
            # ghr.spec-fixed: a change of a spec key the manager cannot reload replaces the manager.
            "labels": {"ghr.role": "manager", "ghr.pool": pool, "ghr.stack": stack, "ghr.host": host_name,
                       "ghr.spec-fixed": _fixed_hash(wire)},
            # Any other spec change, and new credentials, are reloaded in place (SIGHUP): no drain.
            "uploads": [
                {"path": SPEC_PATH, "content": spec_json, "mode": 0o444, "reloadable": True},
                {"path": CREDENTIALS_PATH, "content": pulumi.Output.secret(args["credentials_file"]), "mode": 0o400,
                 "reloadable": True},
            ],
            "reload_signal": "SIGHUP",
            # SIGTERM makes the manager drain: idle runners go at once, busy ones finish their job.
            "stop_timeout": int(spec.drain_timeout) + STOP_MARGIN,
        }, pulumi.ResourceOptions(parent=self, depends_on=[registration]))
        # After the manager: `up` waits here until `slots` runners are online (or readyTimeout fails it).
        ready = RunnerPoolReady(f"{name}-ready", {
            "scope_url": spec.scope_url, "api_url": spec.api_url, "name_prefix": spec.name_prefix,
            "labels": list(spec.labels), "slots": spec.slots,
            "ready_timeout": args.get("ready_timeout", DEFAULT_READY_TIMEOUT),
            "pool": pool, "host": host_name, "stack": stack,
            "manager_container": manager.name, "manager_container_id": manager.container_id,
            "spec_hash": spec_json.apply(spec_hash), "docker": docker_props,
        }, pulumi.ResourceOptions(parent=self, depends_on=[manager]))
        self.name_prefix = pulumi.Output.from_input(spec.name_prefix)
        self.manager_container = pulumi.Output.all(
            name=manager.name, id=manager.container_id, state=manager.state).apply(lambda a: dict(a))
        self.registration = pulumi.Output.all(summary_of(ready), registration.runner_group_id).apply(
            lambda a: {**a[0], "runner_group_id": a[1]})
        self.register_outputs({
            "manager_container": self.manager_container, "registration": self.registration,
            "name_prefix": self.name_prefix,
        })
