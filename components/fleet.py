"""Fleet: the top-level component - credentials, then per pool and host the images, the
registration, the manager container and the readiness wait (its counts are the outputs)."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import pulumi

from .cache import HostCache, HostCacheArgs
from .config import FleetConfig, PoolConfig, pool_cache_kinds
from .credentials import GitHubCredentials, GitHubCredentialsArgs
from .image import RunnerImage, RunnerImageArgs
from .pool import RunnerPool, RunnerPoolArgs


def docker_warnings(cfg: FleetConfig) -> list[str]:
    """What a pool's Docker-in-jobs setting gives away, said at every preview (README, "Docker in jobs")."""
    out: list[str] = []
    for i, pool in enumerate(cfg.pools):
        out.extend(_pool_docker_warnings(i, pool))
    return out


def _pool_docker_warnings(i: int, pool: PoolConfig) -> list[str]:
    where = f"ghr:pools[{i}] (pool {pool.name!r})"
    if pool.docker == "host":
        return [f"{where}: docker: host (dockerUnsafeHost) hands every job the host's Docker socket: every job is"
                " root on the host and can read, exec into and stop every other job's containers (and this stack's"
                " managers, with their GitHub credentials); container:/services: bind mounts resolve on the host,"
                " not in the runner. Run only workflows you trust as root here; docker: dind gives each job its own"
                " engine instead."]
    if pool.docker != "dind":
        return []
    runtime = pool.dind.get("runtime")
    if runtime is not None:
        return [f"{where}: docker: dind with dind.runtime {runtime!r} runs each job's Docker engine inside its runner"
                " container under that runtime, with no privileged sidecar. This path is untested by this project,"
                " and the runner image has only the Docker CLI: its jobs find an engine only once the image carries"
                " dockerd and starts it; a host whose engine has no such runtime fails the runners."]
    security = pool.dind.get("security") or "privileged"
    form = ("--privileged" if security == "privileged" else
            "every capability but SYS_RESOURCE, no seccomp/AppArmor, /sys/fs/cgroup writable")
    warning = (f"{where}: docker: dind starts a privileged Docker engine next to every runner (dind.security"
               f" {security}: {form}), and the job drives it. It gives each job an engine of its own: no other job's"
               " images, containers or volumes, not the host's Docker socket, not the manager's credentials. It is no"
               " boundary against a hostile job: through that engine a job can reach the host's devices and kernel"
               " (host disks, kernel modules, cgroup release agents), i.e. root on the host. Run only workflows you"
               " trust here.")
    if pool.container.get("hardened"):
        warning += (" container.hardened still holds for the runner container (read-only root, no capabilities),"
                    " but the privileged engine beside it is within the job's reach.")
    return [warning]


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

        for warning in docker_warnings(cfg):
            pulumi.log.warn(warning, resource=self)

        # Per-host caches (ghr:hosts[i].cache): before the pools that use them, which depend on them.
        self.caches: dict[str, HostCache] = {}
        for h in cfg.hosts:
            if h.cache is not None:
                cache_args: HostCacheArgs = {"stack": cfg.stack, "host_name": h.name, "host": hosts[h.name],
                                             "cache": h.cache}
                base_image = next((p.image.base for p in cfg.pools if h.name in p.hosts), None)
                if base_image:
                    cache_args["base_image"] = base_image
                self.caches[h.name] = HostCache(f"{name}-{h.name}-cache", cache_args,
                                                pulumi.ResourceOptions(parent=self))

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
                if pool.dind_sidecar:
                    image_args["dind_sidecar"] = True
                if host_name in self.caches and host_cfg.cache is not None and host_cfg.cache.host_mirror:
                    image_args["base_mirror"] = self.caches[host_name].host_mirror  # the base through the mirror
                if args.get("runner_context"):
                    image_args["runner_context"] = args["runner_context"]
                if args.get("manager_context"):
                    image_args["manager_context"] = args["manager_context"]
                image = RunnerImage(f"{base}-image", image_args, pulumi.ResourceOptions(parent=self))
                pool_args: RunnerPoolArgs = {
                    "spec": cfg.spec(pool.name, host_name),
                    "runner_image": image.runner_image_id, "manager_image": image.manager_image_id,
                    "host": hosts[host_name], "socket_path": host_cfg.socket_path,
                    "credentials_file": self.credentials.credentials_file,
                    "network_mode": cfg.manager_network_mode, "ready_timeout": pool.ready_timeout,
                }
                if image.dind_image_id is not None:
                    pool_args["dind_image"] = image.dind_image_id
                uses_cache = bool(pool_cache_kinds(pool, host_cfg)) and host_name in self.caches
                rp = RunnerPool(f"{base}-pool", pool_args, pulumi.ResourceOptions(
                    parent=self, depends_on=self.caches[host_name].resources if uses_cache else None))
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
                if pool.docker != "none":  # pools without Docker in jobs keep their outputs as they were
                    outputs[pool.name][host_name]["docker"] = pool.docker
                    if image.dind_image_id is not None:
                        outputs[pool.name][host_name]["dind_image_id"] = image.dind_image_id
        self.pools = pulumi.Output.from_input(outputs)
        self.scope_url = pulumi.Output.from_input(gh.scope_url)
        self.cache_outputs = pulumi.Output.from_input({host: {
            "network": c.network, "apt_proxy": c.apt_proxy, "registry_mirror": c.registry_mirror,
            "metrics_port": c.metrics_port, "containers": c.containers, "volumes": c.volumes,
        } for host, c in self.caches.items()})
        self.register_outputs({"pools": self.pools, "scope_url": self.scope_url, "caches": self.cache_outputs})
