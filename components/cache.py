"""HostCache: the per-host caches a stack declares for its pools (``ghr:hosts[i].cache``, issue 11).

On one Docker host, for one stack (names from :class:`components.config.CacheNames`):

- the image ``ghr-cache:<stack>`` (``runner-image/cache/cache.Dockerfile`` on the pools' base image: Debian's
  ``apt-cacher-ng`` and ``docker-registry``, and the exporter);
- the network ``ghr-<stack>-cache``: a user-defined bridge the pools' runners (and dind sidecars) join; the caches
  are on it only and publish no port, so nothing but the containers on it reaches them;
- the volumes ``ghr-<stack>-cache-{apt,registry,tools,stats}`` (:class:`CacheVolume`): created or adopted, kept by
  ``pulumi destroy`` unless the stack says ``keepVolumes: false``;
- the containers ``ghr-<stack>-cache-apt`` (:3142), ``ghr-<stack>-cache-registry`` (:5000, a pull-through mirror
  of ``registry.upstream``, read-only to clients; also published on the host's loopback only, ``127.0.0.1:<hostPort>``,
  for the host's own image builds) and ``ghr-<stack>-cache-metrics`` (host network,
  ``metricsPort``: ``/metrics``, ``/healthz``), restart ``always``; each cache bounds its volume to its size
  (least recently used files evicted, ``runner-image/cache/ghr-cache.sh``).

A change of size, upstream or image replaces the containers; the volumes, and so the cached data, stay.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, ResourceProvider

from pool_manager._containers import VOLUME_FAMILY

from ._provider import changed, host_desc, is_unknown
from .config import REGISTRY_CACHE_PORT, CacheNames, HostCacheConfig
from .docker import MANAGED_LABEL, DockerContainer, DockerImage, client_from_props, host_props

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_CONTEXT = os.path.join(REPO_ROOT, "runner-image")
CACHE_DOCKERFILE = "cache/cache.Dockerfile"
STATS_DIR = "/var/lib/ghr-stats"
APT_DIR = "/var/cache/apt-cacher-ng"
REGISTRY_DIR = "/var/lib/docker-registry"
RUNNER_OWNER = "1001:1001"  # the runner user of runner-image/Dockerfile: the tool cache is its to write
DELETE_WAIT = 120.0  # seconds delete waits for containers still using a network or volume


class CacheResourceError(RuntimeError):
    """A cache network or volume could not be created or removed (the message says why and what to do)."""


def _labels(props: Mapping[str, Any], kind: str) -> dict[str, str]:
    return {"ghr.role": "cache", "ghr.stack": str(props.get("stack")), "ghr.cache": kind, MANAGED_LABEL: "pulumi"}


def _check(news: Mapping[str, Any]) -> list[CheckFailure]:
    failures = []
    for key in ("name", "stack"):
        value = news.get(key)
        if not is_unknown(value) and (not isinstance(value, str) or not value):
            failures.append(CheckFailure(key, f"{key} is required"))
    return failures


def _users(client: Any, *, network: str | None = None, volume: str | None = None) -> list[str]:
    filters = {"network": network or ""} if network else {"volume": volume or ""}
    return sorted(c.name for c in client.containers.list(all=True, filters=filters))


class CacheNetworkProvider(ResourceProvider):
    """A user-defined bridge network on one host. Create adopts one of the same name this program made."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, _check(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = changed(olds, news, ("docker_host", "name", "stack"))
        return DiffResult(changes=bool(replaces or changed(olds, news, ("ssh_options", "tls"))), replaces=replaces,
                          delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        import docker.errors

        name = props["name"]
        with client_from_props(props) as client:
            try:
                net = client.networks.get(name)
                if (net.attrs.get("Labels") or {}).get(MANAGED_LABEL) != "pulumi":
                    raise CacheResourceError(f"a network named {name!r} exists on {host_desc(props)} and was not made"
                                             f" by this program; remove it (docker network rm {name}) or rename the stack")
            except docker.errors.NotFound:
                # icc on: the runners reach the caches; no published ports, so nothing outside the network does.
                net = client.networks.create(name, driver="bridge", labels=_labels(props, "network"),
                                             options={"com.docker.network.bridge.enable_icc": "true"})
            return CreateResult(id_=str(net.id), outs={**props, "network_id": net.id})

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> Any:
        from pulumi.dynamic import UpdateResult

        return UpdateResult(outs={**news, "network_id": _olds.get("network_id")})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        import docker.errors

        with client_from_props(props) as client:
            try:
                net = client.networks.get(id_)
            except docker.errors.NotFound:
                return ReadResult(id_=None, outs={})
            return ReadResult(id_=id_, outs={**props, "network_id": net.id})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Remove the network once no container uses it (runners of draining managers go first: wait for them)."""
        import docker.errors

        with client_from_props(props, timeout=60) as client:
            deadline = time.monotonic() + DELETE_WAIT
            while True:
                try:
                    client.networks.get(id_).remove()
                    return
                except docker.errors.NotFound:
                    return
                except docker.errors.APIError as exc:
                    if exc.status_code != 403 and "active endpoints" not in str(exc):
                        raise
                    if time.monotonic() >= deadline:
                        users = _users(client, network=id_)
                        raise CacheResourceError(
                            f"cache network {props.get('name')!r} on {host_desc(props)} is still used by"
                            f" {', '.join(users) or 'containers'} after {DELETE_WAIT:.0f} s; stop them, then run"
                            " pulumi destroy again") from None
                    time.sleep(2)


class CacheVolumeProvider(ResourceProvider):
    """A named volume of a cache. Create adopts an existing one (kept by an earlier destroy: the cache is warm);
    delete removes it only when ``keep`` is false. ``keep`` changes in place (``pulumi up`` before ``destroy``)."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, _check(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = changed(olds, news, ("docker_host", "name"))
        updates = changed(olds, news, ("keep", "ssh_options", "tls", "stack", "kind", "owner", "helper_image"))
        return DiffResult(changes=bool(replaces or updates), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        import docker.errors

        name = props["name"]
        with client_from_props(props, timeout=120) as client:
            try:
                vol = client.volumes.get(name)
                adopted = True
            except docker.errors.NotFound:
                vol = client.volumes.create(name, driver="local", labels=_labels(props, str(props.get("kind"))))
                adopted = False
                if props.get("owner") and props.get("helper_image"):
                    try:  # e.g. the tool cache: the runner user writes it
                        client.containers.run(
                            props["helper_image"], entrypoint=["chown", str(props["owner"]), "/volume"], user="0",
                            network_mode="none", remove=True, labels={"ghr.role": "init", "ghr.stack": props["stack"]},
                            volumes=[f"{name}:/volume:rw"])
                    except docker.errors.DockerException as exc:
                        vol.remove(force=True)
                        raise CacheResourceError(f"could not prepare volume {name!r} on {host_desc(props)}: {exc}") from None
            return CreateResult(id_=name, outs={**props, "adopted": adopted, "volume_name": vol.name})

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> Any:
        from pulumi.dynamic import UpdateResult

        return UpdateResult(outs={**news, "adopted": olds.get("adopted", False), "volume_name": olds.get("volume_name")})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        import docker.errors

        with client_from_props(props) as client:
            try:
                client.volumes.get(id_)
            except docker.errors.NotFound:
                return ReadResult(id_=None, outs={})
        return ReadResult(id_=id_, outs=dict(props))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Remove the volume and its per-slot family (``<name>-<slot>``, made by the pool managers for a
        ``per_slot`` mount: the tool cache), unless ``keep``."""
        if props.get("keep", True):
            return  # kept on purpose: the next `up` of this stack adopts it (and its family), warm
        with client_from_props(props, timeout=60) as client:
            for name in [id_, *family_volumes(client, id_, str(props.get("stack")))]:
                _remove_volume(client, name, props)


def family_volumes(client: Any, name: str, stack: str) -> list[str]:
    """The per-slot volumes of ``name`` on a host: labelled with it as their family (pool_manager._containers
    ``VOLUME_FAMILY``) and this stack, or, whoever made them, named ``<name>-<digits>``."""
    found = {v["Name"] for v in client.api.volumes(
        filters={"label": [f"{VOLUME_FAMILY}={name}", f"ghr.stack={stack}"]}).get("Volumes") or []}
    pattern = re.compile(re.escape(name) + r"-[0-9]+")
    found |= {v["Name"] for v in client.api.volumes().get("Volumes") or [] if pattern.fullmatch(v["Name"])}
    found.discard(name)
    return sorted(found)


def _remove_volume(client: Any, name: str, props: Mapping[str, Any]) -> None:
    """Remove one volume, waiting up to DELETE_WAIT for the containers still using it to go."""
    import docker.errors

    deadline = time.monotonic() + DELETE_WAIT
    while True:
        try:
            client.volumes.get(name).remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409:
                raise
            if time.monotonic() >= deadline:
                raise CacheResourceError(
                    f"cache volume {name!r} on {host_desc(props)} is still used by"
                    f" {', '.join(_users(client, volume=name)) or 'containers'}; remove them, then run pulumi"
                    " destroy again") from None
            time.sleep(2)


class CacheNetwork(Resource, module="ghr", name="CacheNetwork"):
    """The cache network of one stack on one host."""

    network_id: pulumi.Output[str]
    name: pulumi.Output[str]

    def __init__(self, resource_name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(CacheNetworkProvider(), resource_name, {**props, "network_id": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["tls"])))


class CacheVolume(Resource, module="ghr", name="CacheVolume"):
    """One cache volume (kept at destroy unless ``keep`` is false)."""

    volume_name: pulumi.Output[str]
    adopted: pulumi.Output[bool]
    keep: pulumi.Output[bool]

    def __init__(self, resource_name: str, props: Mapping[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(CacheVolumeProvider(), resource_name, {**props, "volume_name": None, "adopted": None},
                         pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["tls"])))


def cache_services(names: CacheNames, cfg: HostCacheConfig) -> dict[str, dict[str, Any]]:
    """The cache containers of a host (role -> name, command, mounts, env, network_mode), as HostCache makes
    them (the tests start the same ones). The caches are on the cache network; the registry's port is also published
    on the host's loopback only (``loopback_ports``, ``registry.hostPort``: the host's own image builds), nothing
    else; the exporter is on the host network (``metricsPort``) and reads the stats volume only, read-only."""
    stats = {"type": "volume", "source": names.volume("stats"), "target": STATS_DIR}
    out: dict[str, dict[str, Any]] = {}
    if cfg.apt:
        out["apt"] = {"command": ["apt"], "network_mode": names.network,
                      "mounts": [{"type": "volume", "source": names.volume("apt"), "target": APT_DIR}, stats],
                      "env": {"GHR_CACHE_MAX_BYTES": str(cfg.apt_size)}}
    if cfg.registry:
        out["registry"] = {"command": ["registry"], "network_mode": names.network,
                           "mounts": [{"type": "volume", "source": names.volume("registry"), "target": REGISTRY_DIR},
                                      stats],
                           "env": {"GHR_CACHE_MAX_BYTES": str(cfg.registry_size),
                                   "GHR_REGISTRY_UPSTREAM": cfg.registry_upstream}}
        if cfg.host_mirror:  # the host's own image builds pull their base through it: 127.0.0.1 only
            out["registry"]["loopback_ports"] = {str(REGISTRY_CACHE_PORT): cfg.registry_host_port}
    if out:
        out["metrics"] = {"command": ["exporter"], "network_mode": "host", "mounts": [{**stats, "read_only": True}],
                          "env": {"GHR_METRICS_PORT": str(cfg.metrics_port), "GHR_CACHES": ",".join(out)}}
    for role, svc in out.items():
        svc["name"] = names.container(role)
    return out


class HostCacheArgs(TypedDict):
    stack: str
    host_name: str
    host: Mapping[str, Any]  # {"url", "ssh_options", "tls" (secret Output)}
    cache: HostCacheConfig
    base_image: NotRequired[str]  # default ghr-base:bookworm (the pools' base)
    context: NotRequired[str]  # default runner-image/


class HostCache(pulumi.ComponentResource):
    """The caches of one stack on one host: image, network, volumes, cache containers and their exporter."""

    network: pulumi.Output[str]
    apt_proxy: pulumi.Output[str | None]
    registry_mirror: pulumi.Output[str | None]
    host_mirror: pulumi.Output[str | None]  # 127.0.0.1:<hostPort>: the mirror for the host's own image builds
    metrics_port: pulumi.Output[int]
    containers: pulumi.Output[dict[str, Any]]
    volumes: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: HostCacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ghr:index:HostCache", name, None, opts)
        cfg = args.get("cache")
        if not isinstance(cfg, HostCacheConfig):
            raise TypeError(f"HostCache {name}: args['cache'] must be a components.config.HostCacheConfig")
        stack, host_name = args["stack"], args["host_name"]
        names = CacheNames(stack)
        child = pulumi.ResourceOptions(parent=self)
        conn = host_props(args["host"])
        labels = {"ghr.stack": stack, "ghr.host": host_name, "ghr.role": "cache"}
        image = DockerImage(f"{name}-image", {
            "tag": f"ghr-cache:{stack}", "context": args.get("context") or CACHE_CONTEXT,
            "dockerfile": CACHE_DOCKERFILE, "build_args": {"BASE_IMAGE": args.get("base_image") or "ghr-base:bookworm"},
            "host": args["host"], "labels": {**labels, "ghr.role": "cache-image"},
        }, child)
        network = CacheNetwork(f"{name}-network", {**conn, "name": names.network, "stack": stack}, child)
        kinds = [k for k, on in (("stats", cfg.apt or cfg.registry), ("apt", cfg.apt), ("registry", cfg.registry),
                                 ("tools", cfg.tool_cache)) if on]
        volumes: dict[str, CacheVolume] = {}
        for kind in kinds:
            props: dict[str, Any] = {**conn, "name": names.volume(kind), "stack": stack, "kind": kind,
                                     "keep": cfg.keep_volumes}
            if kind == "tools":
                props.update(owner=RUNNER_OWNER, helper_image=image.image_id)
            volumes[kind] = CacheVolume(f"{name}-{kind}-volume", props, child)
        containers: dict[str, DockerContainer] = {}
        for role, svc in cache_services(names, cfg).items():
            container_args: dict[str, Any] = {
                "name": svc["name"], "image": image.image_id, "command": svc["command"], "host": args["host"],
                "mounts": svc["mounts"], "env": svc["env"],
                "network_mode": network.name if svc["network_mode"] == names.network else svc["network_mode"],
                "restart_policy": "always", "labels": {**labels, "ghr.cache": role}, "stop_timeout": 10,
            }
            if svc.get("loopback_ports"):
                container_args["loopback_ports"] = svc["loopback_ports"]
            deps = [volumes[m["source"].rsplit("-", 1)[1]] for m in svc["mounts"]]
            containers[role] = DockerContainer(f"{name}-{role}", None,
                                               pulumi.ResourceOptions(parent=self, depends_on=deps), **container_args)
        self.network = network.name
        self.apt_proxy = pulumi.Output.from_input(names.apt_proxy if cfg.apt else None)
        self.registry_mirror = pulumi.Output.from_input(names.registry_mirror if cfg.registry else None)
        # 127.0.0.1:<hostPort> once the registry container runs (so an image that pulls through it waits for it)
        self.host_mirror = (containers["registry"].container_id.apply(lambda _id: cfg.host_mirror)
                            if cfg.host_mirror and "registry" in containers else pulumi.Output.from_input(None))
        self.metrics_port = pulumi.Output.from_input(cfg.metrics_port)
        self.containers = pulumi.Output.from_input(
            {role: {"name": c.name, "id": c.container_id, "state": c.state} for role, c in containers.items()})
        self.volumes = pulumi.Output.from_input(
            {kind: {"name": v.volume_name, "keep": cfg.keep_volumes} for kind, v in volumes.items()})
        self.resources: list[pulumi.Resource] = [network, *volumes.values(), *containers.values()]
        self.register_outputs({
            "network": self.network, "apt_proxy": self.apt_proxy, "registry_mirror": self.registry_mirror,
            "metrics_port": self.metrics_port, "containers": self.containers, "volumes": self.volumes,
            "host_mirror": self.host_mirror,
        })


__all__ = ["cache_services", "CacheNetwork", "CacheNetworkProvider", "CacheResourceError", "CacheVolume", "CacheVolumeProvider",
           "HostCache", "HostCacheArgs"]
