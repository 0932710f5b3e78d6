"""RunnerPool: one pool on one host - its RunnerRegistration, its manager container and its readiness.

A scale-set pool (``spec.scale_set``) also gets its RunnerScaleSet, after the registration (which proves
access first and, at destroy, still sweeps leftover runners and containers by prefix, after the scale set
is gone). Its id goes into the manager's spec, so the manager is created after it and deleted (drained)
before it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import pulumi

from pool_manager.spec import FIXED_KEYS, SCALE_SET_FIXED_KEYS, PoolSpec

from .docker import DockerContainer
from .docker._connection import host_props
from .readiness import DEFAULT_READY_TIMEOUT, RunnerPoolReady, RunnerPoolReadyArgs, spec_hash, summary_of
from .registration import RunnerRegistration
from .scaleset import RunnerScaleSet

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
    """A digest of the spec keys (JSON form) a running manager cannot take on (pool_manager.spec.FIXED_KEYS, and
    SCALE_SET_FIXED_KEYS where the spec has them: a fixed pool's digest is what it was before scale sets)."""
    fixed = {key: spec.get(key) for key in FIXED_KEYS}
    fixed.update({key: spec[key] for key in SCALE_SET_FIXED_KEYS if key in spec})
    return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]


def _with_images(spec: PoolSpec, runner_image: str, dind_image: str | None) -> PoolSpec:
    """The spec with the runner image and, for a dind sidecar pool, the sidecar image (both built at deploy)."""
    out = spec.with_image(runner_image)
    return out.with_dind_image(dind_image) if dind_image is not None else out


class RunnerPoolArgs(TypedDict):
    spec: PoolSpec  # the pool on this host (pool, stack, host, labels, slots, ...), without its image
    runner_image: pulumi.Input[str]  # the runner image id: the spec's image, known at deploy
    dind_image: NotRequired[pulumi.Input[str]]  # the sidecar image id (spec.dind.image): required for a dind sidecar pool
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
    scale_set: pulumi.Output[dict[str, Any]] | None  # a scale-set pool's: id, name, runner group id, statistics
    name_prefix: pulumi.Output[str]

    def __init__(self, name: str, args: RunnerPoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ghr:index:RunnerPool", name, None, opts)
        spec = args.get("spec")
        if not isinstance(spec, PoolSpec):
            raise TypeError(f"RunnerPool {name}: args['spec'] must be a pool_manager.spec.PoolSpec, got {type(spec).__name__}")
        if spec.image is not None:
            raise ValueError(f"RunnerPool {name}: spec.image is set ({spec.image!r}); leave it to args['runner_image']")
        if spec.dind is not None and spec.dind.image is not None:
            raise ValueError(f"RunnerPool {name}: spec.dind.image is set ({spec.dind.image!r}); leave it to"
                             " args['dind_image']")
        if spec.dind_sidecar and args.get("dind_image") is None:
            raise ValueError(f"RunnerPool {name}: pool {spec.pool!r} has docker: dind (a sidecar engine per runner) but"
                             " no sidecar image; build it with RunnerImage(..., dind_sidecar=True) and pass its"
                             " dind_image_id as args['dind_image']")
        if not spec.dind_sidecar and args.get("dind_image") is not None:
            raise ValueError(f"RunnerPool {name}: args['dind_image'] is given but pool {spec.pool!r} runs no dind"
                             " sidecar (docker is not dind, or dind.runtime puts the engine in the runner)")
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
        scale_set: RunnerScaleSet | None = None
        dind_image: pulumi.Input[str | None] = args.get("dind_image")
        fixed_hash: pulumi.Input[str] = _fixed_hash(wire)
        if spec.scale_set:
            scale_set = RunnerScaleSet(f"{name}-scaleset", {
                "scope_url": spec.scope_url, "api_url": spec.api_url, "name": spec.scale_set_name or spec.name_prefix,
                "name_prefix": spec.name_prefix, "labels": list(spec.labels), "runner_group": spec.runner_group,
                "drain_timeout": wire["drain_timeout"], "pool": pool, "host": host_name, "stack": stack,
            }, pulumi.ResourceOptions(parent=self, depends_on=[registration]))
            scale_set_id = scale_set.scale_set_id
            spec_json = pulumi.Output.all(args["runner_image"], scale_set_id, dind_image).apply(
                lambda a: _with_images(spec, a[0], a[2]).with_scale_set_id(int(a[1])).dumps())
            fixed_hash = scale_set_id.apply(lambda i: _fixed_hash(spec.with_scale_set_id(int(i)).dump()))
        else:
            spec_json = pulumi.Output.all(args["runner_image"], dind_image).apply(
                lambda a: _with_images(spec, a[0], a[1]).dumps())
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
                       "ghr.spec-fixed": fixed_hash},
            # Any other spec change, and new credentials, are reloaded in place (SIGHUP): no drain.
            "uploads": [
                {"path": SPEC_PATH, "content": spec_json, "mode": 0o444, "reloadable": True},
                {"path": CREDENTIALS_PATH, "content": pulumi.Output.secret(args["credentials_file"]), "mode": 0o400,
                 "reloadable": True},
            ],
            "reload_signal": "SIGHUP",
            # SIGTERM makes the manager drain: idle runners go at once, busy ones finish their job.
            "stop_timeout": int(spec.drain_timeout) + STOP_MARGIN,
        }, pulumi.ResourceOptions(parent=self, depends_on=[registration, *([scale_set] if scale_set else [])]))
        # After the manager: `up` waits here until `slots` runners are online (or readyTimeout fails it).
        # A scale-set pool: until min_runners are online and the manager's message session is live.
        ready_args: RunnerPoolReadyArgs = {
            "scope_url": spec.scope_url, "api_url": spec.api_url, "name_prefix": spec.name_prefix,
            "labels": list(spec.labels), "slots": spec.slots,
            "ready_timeout": args.get("ready_timeout", DEFAULT_READY_TIMEOUT),
            "pool": pool, "host": host_name, "stack": stack,
            "manager_container": manager.name, "manager_container_id": manager.container_id,
            "spec_hash": spec_json.apply(spec_hash), "docker": docker_props,
        }
        if spec.scale_set:
            ready_args["scaling"] = "scale_set"
            ready_args["min_runners"] = spec.min_runners or 0
            ready_args["metrics_port"] = spec.metrics_port
        ready = RunnerPoolReady(f"{name}-ready", ready_args, pulumi.ResourceOptions(parent=self, depends_on=[manager]))
        self.name_prefix = pulumi.Output.from_input(spec.name_prefix)
        self.manager_container = pulumi.Output.all(
            name=manager.name, id=manager.container_id, state=manager.state).apply(lambda a: dict(a))
        self.registration = pulumi.Output.all(summary_of(ready), registration.runner_group_id).apply(
            lambda a: {**a[0], "runner_group_id": a[1]})
        outputs: dict[str, Any] = {
            "manager_container": self.manager_container, "registration": self.registration,
            "name_prefix": self.name_prefix,
        }
        self.scale_set = None
        if scale_set is not None:
            self.scale_set = pulumi.Output.all(
                id=scale_set.scale_set_id, name=scale_set.name, runner_group_id=scale_set.runner_group_id,
                owned=scale_set.owned, statistics=scale_set.statistics).apply(lambda a: dict(a))
            outputs["scale_set"] = self.scale_set
        self.register_outputs(outputs)
