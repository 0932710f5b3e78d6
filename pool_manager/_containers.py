"""Pure translation from a pool spec to Docker SDK arguments, and the JIT handoff archive."""

from __future__ import annotations

import io
import tarfile
import time
from typing import Any

from docker.types import DeviceRequest, Mount

from .spec import ContainerSpec, GpuSpec, PoolSpec

JIT_DIR = "/run/ghr"
JIT_FILE = "jitconfig"
RUNNER_UID = 1001
RUNNER_GID = 1001
RUNNER_HOME = "/home/runner"  # the runner's root folder and $HOME in the runner image
RUNNER_STATE_DIR = "/run/ghr-state"  # where the image's .runner/.credentials* symlinks point
# The runner image's apt hook (runner-image/apt-cache/) reads the host apt cache's URL from `proxy` here.
APT_PROXY_DIR = "/run/ghr-apt"

# Hardened pools get a read-only root filesystem. Docker refuses put_archive on such a container
# except into a volume, so the JIT handoff folder becomes an anonymous volume (removed with the
# container: the manager removes runners with v=True). Everything the runner or a job writes gets
# a fresh tmpfs (RAM, charged to the container's memory limit): target -> (size, options).
# A pool volume with the same target replaces the default (for example a bigger _work).
HARDENED_TMPFS: dict[str, tuple[str, str]] = {
    "/tmp": ("1g", "mode=1777,exec"),
    f"{RUNNER_HOME}/_work": ("4g", "mode=0755,exec"),
    f"{RUNNER_HOME}/_diag": ("256m", "mode=0755"),
    RUNNER_STATE_DIR: ("1m", "mode=0700"),
    f"{RUNNER_HOME}/.cache": ("1g", "mode=0700,exec"),
    f"{RUNNER_HOME}/.config": ("64m", "mode=0700"),
    f"{RUNNER_HOME}/.local": ("1g", "mode=0700,exec"),
}

# Where a runner finds a Docker socket: the dind sidecar's (a volume of the pair), or, for docker "host",
# the host's socket bind-mounted here.
DOCKER_SOCKET = "/run/ghr-docker/docker.sock"

ROLE = "ghr.role"
POOL = "ghr.pool"
STACK = "ghr.stack"
HOST = "ghr.host"
SLOT = "ghr.slot"
RUNNER_ID = "ghr.runner-id"
RUNNER_NAME = "ghr.runner-name"
SPEC_HASH = "ghr.spec-hash"  # PoolSpec.runner_hash() of the spec the runner was made from


def pool_labels(spec: PoolSpec) -> dict[str, str]:
    """The labels that identify this pool's runner containers on a host."""
    return {ROLE: "runner", POOL: spec.pool, STACK: spec.stack, HOST: spec.host}


def pool_label_filter(spec: PoolSpec) -> list[str]:
    return [f"{k}={v}" for k, v in pool_labels(spec).items()]


def device_requests(gpus: GpuSpec | None) -> list[DeviceRequest]:
    """`all` -> count -1; `{"count": N}` -> count N; `{"device_ids": [...]}` -> those ids."""
    if gpus is None:
        return []
    if gpus.kind == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if gpus.kind == "count":
        return [DeviceRequest(count=gpus.count, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=list(gpus.device_ids), capabilities=[["gpu"]])]


VOLUME_FAMILY = "ghr.volume-family"  # on a per-slot volume: the spec's `source` it was made for (`<source>-<slot>`)


def cache_volume_labels(spec: PoolSpec, *, family: str | None = None, slot: int | None = None) -> dict[str, str]:
    """Labels of a volume the manager makes; a per-slot one names its family (the spec's source) and slot, so
    whoever owns the family (components.cache.CacheVolume) finds every member."""
    labels = {ROLE: "cache", STACK: spec.stack}
    if family is not None:
        labels[VOLUME_FAMILY] = family
    if slot is not None:
        labels[SLOT] = str(slot)
    return labels


def slot_volumes(spec: PoolSpec, slot: int) -> list[tuple[str, str]]:
    """The per-slot volumes the runner in `slot` mounts: (name, family) pairs."""
    out = []
    for vol in spec.container.volumes:
        if vol.per_slot and vol.source is not None:
            name = vol.source_for(slot)
            assert name is not None
            out.append((name, vol.source))
    return out


def limit_kwargs(c: ContainerSpec) -> dict[str, Any]:
    """The container's resource limits as docker create arguments (cpus, memory, pids, shm); unset ones left out."""
    kwargs: dict[str, Any] = {}
    if c.cpus:
        kwargs["nano_cpus"] = int(c.cpus * 1e9)
    if c.memory:
        kwargs["mem_limit"] = c.memory
    if c.pids_limit:
        kwargs["pids_limit"] = c.pids_limit
    if c.shm_size:
        kwargs["shm_size"] = c.shm_size
    return kwargs


def create_kwargs(spec: PoolSpec, *, slot: int, runner_name: str, runner_id: int) -> dict[str, Any]:
    """Arguments for `client.containers.create(**kwargs)` for one runner of this pool."""
    c = spec.container
    labels = dict(c.labels)
    labels.update(pool_labels(spec))
    labels.update({SLOT: str(slot), RUNNER_ID: str(runner_id), RUNNER_NAME: runner_name,
                   SPEC_HASH: spec.runner_hash()})
    mounts: list[Mount] = []
    tmpfs: dict[str, str] = {}
    for vol in c.volumes:
        if vol.type == "tmpfs":
            opts = ["mode=1777"]
            if vol.size:
                opts.append(f"size={vol.size}")
            if vol.read_only:
                opts.append("ro")
            tmpfs[vol.target] = ",".join(opts)
        elif vol.type == "bind":
            mounts.append(Mount(target=vol.target, source=vol.source, type="bind", read_only=vol.read_only))
        else:  # volume, cache: named volumes
            # per_slot: `<source>-<slot>`, so no two runners (jobs) write one of these volumes at once
            mounts.append(Mount(target=vol.target, source=vol.source_for(slot), type="volume", read_only=vol.read_only))
    if c.hardened:
        taken = {vol.target.rstrip("/") for vol in c.volumes}
        for target, (size, options) in HARDENED_TMPFS.items():
            if target not in taken:
                owner = "" if target == "/tmp" else f",uid={RUNNER_UID},gid={RUNNER_GID}"
                tmpfs[target] = f"{options}{owner},size={size}"
        mounts.append(Mount(target=JIT_DIR, source=None, type="volume"))  # anonymous, see HARDENED_TMPFS
        if spec.cache is not None and spec.cache.apt_proxy:  # the apt proxy file goes there before start
            mounts.append(Mount(target=APT_PROXY_DIR, source=None, type="volume"))
    env = dict(c.env)
    if spec.docker == "host" and spec.docker_host_socket:  # unsafe by the pool's own admission (docker_host_unsafe)
        mounts.append(Mount(target=DOCKER_SOCKET, source=spec.docker_host_socket, type="bind"))
        env["DOCKER_HOST"] = f"unix://{DOCKER_SOCKET}"
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": runner_name,
        "labels": labels,
        "environment": env,
        # A pool that uses its host's cache runs on the cache network (spec.cache.network).
        "network_mode": spec.cache.network if spec.cache is not None else c.network_mode,
        "detach": True,
        "stop_signal": "SIGTERM",
        "init": False,  # the image runs tini as PID 1 itself
    }
    if c.hardened:
        kwargs["read_only"] = True
    if mounts:
        kwargs["mounts"] = mounts
    if tmpfs:
        kwargs["tmpfs"] = tmpfs
    kwargs.update(limit_kwargs(c))
    gpus = c.gpus.devices_for_slot(slot, c.gpu_per_slot) if c.gpus else None
    requests = device_requests(gpus)
    if requests:
        kwargs["device_requests"] = requests
    security_opt = []
    if c.no_new_privileges:
        security_opt.append("no-new-privileges:true")
    if security_opt:
        kwargs["security_opt"] = security_opt
    if c.cap_drop:
        kwargs["cap_drop"] = list(c.cap_drop)
    if c.cap_add:
        kwargs["cap_add"] = list(c.cap_add)
    if c.runtime:
        kwargs["runtime"] = c.runtime
    if spec.dind is not None and spec.dind.runtime:  # the engine inside the runner (sysbox-runc): untested here
        kwargs["runtime"] = spec.dind.runtime
    return kwargs


def _one_file_tar(name: str, data: bytes, mode: int, *, owner: tuple[int, int, str] | None = None) -> bytes:
    """A tar holding one file, for `put_archive`; `owner` is (uid, gid, name) of both user and group."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        if owner is not None:
            info.uid, info.gid = owner[0], owner[1]
            info.uname = info.gname = owner[2]
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def jit_archive(encoded_jit_config: str) -> bytes:
    """A tar holding `jitconfig` (mode 0400, owned by the runner user), for `put_archive(JIT_DIR, ...)`."""
    return _one_file_tar(JIT_FILE, encoded_jit_config.encode(), 0o400, owner=(RUNNER_UID, RUNNER_GID, "runner"))


def apt_proxy_archive(url: str) -> bytes:
    """A tar holding `proxy` (the host apt cache's URL, mode 0644: apt's hook runs as `_apt`), for
    `put_archive(APT_PROXY_DIR, ...)` before a runner of a pool with `cache.apt_proxy` starts."""
    return _one_file_tar("proxy", (url + "\n").encode(), 0o644)
