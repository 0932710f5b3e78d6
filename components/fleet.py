"""Fleet: the top-level component - credentials, then per pool and host the images, the
registration, the manager container and the readiness wait (its counts are the outputs)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import pulumi

from .config import FleetConfig
from .credentials import GitHubCredentials, GitHubCredentialsArgs
from .image import RunnerImage, RunnerImageArgs
from .pool import RunnerPool


class FleetArgs(TypedDict):
    config: FleetConfig
    runner_context: NotRequired[str]
    manager_context: NotRequired[str]


class Fleet(pulumi.ComponentResource):
    """Everything one stack declares. ``pools`` is {pool: {host: {images, manager, registration}}}.

    ``registration`` holds the live counts (online, busy, idle, offline, total, stale) as counted
    after ``up`` waited for the pool to be ready, plus ``ready``, ``wait_seconds`` and the runner group id.
    A scale-set pool adds ``scaling``, ``min_runners``, ``max_runners`` and ``scale_set`` (id, name, runner
    group id, owned, statistics); ``slots`` is its capacity (max_runners).
    """

    pools: pulumi.Output[dict[str, Any]]
    scope_url: pulumi.Output[str]

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ghr:index:Fleet", name, None, opts)
        cfg = args.get("config")
        if not isinstance(cfg, FleetConfig):
            raise TypeError("Fleet: args['config'] must be a FleetConfig from components.parse_config")
        gh = cfg.github
        cred_args: GitHubCredentialsArgs = {"scope_url": gh.scope_url, "api_url": gh.api_url}
        if gh.token is not None:  # parse_config sets either the PAT or the App's id and key
            cred_args["token"] = pulumi.Output.secret(gh.token)
        elif gh.app_id is not None and gh.private_key is not None:
            cred_args["app_id"] = gh.app_id
            cred_args["private_key"] = pulumi.Output.secret(gh.private_key)
            cred_args["installation_id"] = gh.installation_id
        self.credentials = GitHubCredentials(f"{name}-github", cred_args, pulumi.ResourceOptions(parent=self))

        hosts: dict[str, dict[str, Any]] = {}
        for h in cfg.hosts:
            hosts[h.name] = {"url": h.url, "ssh_options": list(h.ssh_options),
                             "tls": pulumi.Output.secret(dict(h.tls)) if h.tls else None}

        outputs: dict[str, dict[str, Any]] = {}
        self.pool_resources: dict[tuple[str, str], RunnerPool] = {}
        self.images: dict[tuple[str, str], RunnerImage] = {}
        for pool in cfg.pools:
            outputs[pool.name] = {}
            for host_name in pool.hosts:
                host_cfg = cfg.host(host_name)
                base = f"{name}-{pool.name}-{host_name}"
                image_args: RunnerImageArgs = {
                    "stack": cfg.stack, "pool": pool.name, "host_name": host_name, "host": hosts[host_name],
                    "build_args": pool.image.build_args(), "manager_base_image": pool.image.base,
                }
                if args.get("runner_context"):
                    image_args["runner_context"] = args["runner_context"]
                if args.get("manager_context"):
                    image_args["manager_context"] = args["manager_context"]
                image = RunnerImage(f"{base}-image", image_args, pulumi.ResourceOptions(parent=self))
                rp = RunnerPool(f"{base}-pool", {
                    "spec": cfg.spec(pool.name, host_name),
                    "runner_image": image.runner_image_id, "manager_image": image.manager_image_id,
                    "host": hosts[host_name], "socket_path": host_cfg.socket_path,
                    "credentials_file": self.credentials.credentials_file,
                    "network_mode": cfg.manager_network_mode, "ready_timeout": pool.ready_timeout,
                }, pulumi.ResourceOptions(parent=self))
                self.images[(pool.name, host_name)] = image
                self.pool_resources[(pool.name, host_name)] = rp
                outputs[pool.name][host_name] = {
                    "runner_image_id": image.runner_image_id,
                    "manager_image_id": image.manager_image_id,
                    "manager_container": rp.manager_container,
                    "registration": rp.registration,
                    "name_prefix": rp.name_prefix,
                    "slots": pool.slots,
                    "ready_timeout": pool.ready_timeout,
                    "labels": list(pool.labels),
                }
                if pool.scale_set:  # fixed pools' outputs stay as they were
                    outputs[pool.name][host_name].update(
                        scaling="scaleSet", min_runners=pool.min_runners, max_runners=pool.max_runners,
                        scale_set=rp.scale_set)
        self.pools = pulumi.Output.from_input(outputs)
        self.scope_url = pulumi.Output.from_input(gh.scope_url)
        self.register_outputs({"pools": self.pools, "scope_url": self.scope_url})
