"""Pool spec: the contract between the Pulumi program and each pool manager.

`PoolSpec` is the typed value; `load_spec(mapping)` validates the JSON form and returns it
(every error a `SpecError` naming the field, `container.volumes[1].source`, and what to do);
`PoolSpec.dump()` is that JSON form again, normalised (defaults left out, sizes as `"4g"`),
so that `load_spec(spec.dump()) == spec`. The Pulumi program builds each pool's spec once
with `load_spec(..., require_image=False)` at preview (the runner image id is only known at
deploy) and writes `spec.with_image(image_id).dumps()` into the manager, which loads it with
the same `load_spec` and refuses a spec without an image.

`scaling` is `"fixed"` (the default: `slots` runners always online) or `"scale_set"` (a GitHub runner
scale set follows demand between `min_runners` and `max_runners`; `slots` is then the capacity and
equals `max_runners`). docs/design.md, "Pool spec", has every key.

`docker` is what a job gets of Docker: `"none"` (the default, left out of the dump), `"dind"` (a private
engine per runner: a sidecar container of the `dind.image` made and removed with its runner, or, with
`dind.runtime` such as `sysbox-runc`, an engine inside the runner container itself) or `"host"` (the host's
own socket, only with `docker_host_unsafe: true`: every job is then root on the host). The sidecar image id
is filled in at deploy like the runner image (`with_dind_image`).

`cache` (optional) points the pool's runners at their host's caches (issue 11, components/cache.py): the runners
join `cache.network` (instead of the default bridge; the program also writes it as `container.network_mode`, so
a dind sidecar joins it too), apt in them uses `cache.apt_proxy`, and a dind engine lists
`cache.registry_mirror` among its mirrors (the program puts it into `dind.registry_mirrors` too). Left out of the
dump and of the runner hash when not set.

Pure: no Docker, no network, no file access.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "DIND_CAPS_DROP",
    "DIND_SECURITY",
    "DOCKER_MODES",
    "FIXED_KEYS",
    "MAX_SCALE_SET_NAME_LENGTH",
    "SCALE_SET_FIXED_KEYS",
    "GpuSpec",
    "CacheSpec",
    "ContainerSpec",
    "DindSpec",
    "PoolSpec",
    "SpecError",
    "VolumeSpec",
    "check_scale_set_name",
    "load_spec",
    "parse_size",
]

# Spec keys a running manager cannot take on at a reload (SIGHUP): they name the pool, its
# registrations and its metrics listener. A change of any of them needs a new manager.
FIXED_KEYS = ("pool", "stack", "host", "scope_url", "api_url", "name_prefix", "metrics_port")
# Fixed too: which scale set the manager holds a message session on. Kept apart from FIXED_KEYS because
# a fixed pool's spec has none of them (its `ghr.spec-fixed` digest stays what it was); `fixed_changes`
# compares both. `min_runners` and `max_runners` (and `slots`, which follows max) reload in place.
SCALE_SET_FIXED_KEYS = ("scaling", "scale_set_name", "scale_set_id")
# What makes a runner container of this pool what it is; `slots`, timeouts and tuning are not.
_RUNNER_KEYS = ("pool", "stack", "host", "scope_url", "api_url", "name_prefix", "labels", "runner_group",
                "image", "container")

# Label keys the manager owns; extra labels may not use this prefix.
RESERVED_LABEL_PREFIX = "ghr."
# Environment variables a pool may not hand to its runners: credentials and runner inputs.
_FORBIDDEN_ENV = re.compile(r"^(GHR_GITHUB_|ACTIONS_RUNNER_INPUT_)")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,50}$")
# A scale set's name. GitHub's Actions service does not publish its rule; its own tooling (the
# actions-runner-controller chart) refuses names over 45 characters, and the name doubles as a
# `runs-on` label, so no whitespace, commas, '/' or control characters. Unique within a runner group
# (GitHub answers 409), case-insensitively.
MAX_SCALE_SET_NAME_LENGTH = 45
_SCALE_SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SCALINGS = ("fixed", "scale_set")
_IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]+$")
_CAPABILITY = re.compile(r"^(CAP_)?[A-Z_]+$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_TUNING_KEYS = ("reconcile_interval", "backoff_initial", "backoff_max")
# Docker in jobs (issue 10). "none": no Docker (the default); "dind": a private engine per runner; "host":
# the host's engine, behind docker_host_unsafe.
DOCKER_MODES = ("none", "dind", "host")
# How the dind sidecar is allowed to run its engine. "privileged": `--privileged` (ordinary hosts).
# "caps": every capability but DIND_CAPS_DROP, seccomp/apparmor/systempaths unconfined and /sys/fs/cgroup
# mounted rw: for hosts whose capability bounding set lacks CAP_SYS_RESOURCE, where --privileged fails.
DIND_SECURITY = ("privileged", "caps")
DIND_CAPS_DROP = ("SYS_RESOURCE",)
_DIND_KEYS = ("image", "security", "registry_mirrors", "insecure_registries", "runtime")
_MIRROR = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$|^https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?/?$")
_REGISTRY_HOST = re.compile(r"^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
                            r"|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$")
_CIDR = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")
_NETWORK_MODE = re.compile(r"^(bridge|host|none|container:[A-Za-z0-9_.-]+|[A-Za-z0-9][A-Za-z0-9_.-]*)$")


class SpecError(ValueError):
    """An invalid pool spec. `field` is the dotted path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True)
class GpuSpec:
    """Which GPUs a runner container gets: every GPU, a count, or explicit device ids."""

    kind: Literal["all", "count", "device_ids"]
    count: int = 0
    device_ids: tuple[str, ...] = ()

    def devices_for_slot(self, slot: int, per_slot: bool) -> GpuSpec:
        """The GPU request for one slot: with `per_slot`, exactly one device, pinned by slot."""
        if not per_slot:
            return self
        ids = self.device_ids if self.kind == "device_ids" else tuple(str(i) for i in range(self.count))
        return GpuSpec(kind="device_ids", device_ids=(ids[slot % len(ids)],))

    def dump(self) -> str | dict[str, Any]:
        """`"all"`, `{"count": N}` or `{"device_ids": [...]}`."""
        if self.kind == "all":
            return "all"
        if self.kind == "count":
            return {"count": self.count}
        return {"device_ids": list(self.device_ids)}


@dataclass(frozen=True)
class VolumeSpec:
    """One mount. `cache` is a named volume shared across jobs on purpose (made writable for the runner).

    `per_slot` (named volumes only): the runner in slot N mounts `<source>-<N>` instead of `source`, so at most one
    job at a time (the one in that slot) writes any of these volumes, and the next job in the slot finds what the
    last one left (the tool cache: one copy per slot, never two concurrent writers)."""

    type: Literal["volume", "bind", "tmpfs", "cache"]
    target: str
    source: str | None = None
    read_only: bool = False
    size: int | None = None  # bytes, tmpfs only
    per_slot: bool = False

    def source_for(self, slot: int) -> str | None:
        """The volume the runner in `slot` mounts: `<source>-<slot>` when `per_slot`, else `source`."""
        if self.per_slot and self.source is not None:
            return f"{self.source}-{slot}"
        return self.source

    def dump(self) -> dict[str, Any]:
        """`type` and `target` always; `source`, `read_only`, `size` and `per_slot` when set."""
        out: dict[str, Any] = {"type": self.type, "target": self.target}
        if self.source is not None:
            out["source"] = self.source
        if self.read_only:
            out["read_only"] = True
        if self.size is not None:
            out["size"] = _size_text(self.size)
        if self.per_slot:
            out["per_slot"] = True
        return out


@dataclass(frozen=True)
class ContainerSpec:
    """How each runner container of the pool is made (sizes in bytes)."""

    cpus: float | None = None
    memory: int | None = None  # bytes
    pids_limit: int | None = None
    shm_size: int | None = None  # bytes
    gpus: GpuSpec | None = None
    gpu_per_slot: bool = False
    volumes: tuple[VolumeSpec, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = "bridge"
    hardened: bool = False
    no_new_privileges: bool = False
    cap_drop: tuple[str, ...] = ()
    cap_add: tuple[str, ...] = ()
    runtime: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        """The settings that differ from the defaults; what `hardened` implies is left to it."""
        out: dict[str, Any] = {}
        if self.cpus is not None:
            out["cpus"] = _number_text(self.cpus)
        if self.memory is not None:
            out["memory"] = _size_text(self.memory)
        if self.pids_limit is not None:
            out["pids_limit"] = self.pids_limit
        if self.shm_size is not None:
            out["shm_size"] = _size_text(self.shm_size)
        if self.gpus is not None:
            out["gpus"] = self.gpus.dump()
        if self.gpu_per_slot:
            out["gpu_per_slot"] = True
        if self.volumes:
            out["volumes"] = [v.dump() for v in self.volumes]
        if self.env:
            out["env"] = dict(self.env)
        if self.network_mode != "bridge":
            out["network_mode"] = self.network_mode
        if self.hardened:
            out["hardened"] = True  # implies no_new_privileges and cap_drop [ALL]
        else:
            if self.no_new_privileges:
                out["no_new_privileges"] = True
            if self.cap_drop:
                out["cap_drop"] = list(self.cap_drop)
        if self.cap_add:
            out["cap_add"] = list(self.cap_add)
        if self.runtime is not None:
            out["runtime"] = self.runtime
        if self.labels:
            out["labels"] = dict(self.labels)
        return out


@dataclass(frozen=True)
class CacheSpec:
    """The host caches a pool's runners use: the network they join, apt's proxy, the registry mirror."""

    network: str
    apt_proxy: str | None = None  # http://host:port of the host's apt-cacher-ng
    registry_mirror: str | None = None  # http(s)://host:port of the host's pull-through registry

    def dump(self) -> dict[str, Any]:
        """`network` always; `apt_proxy` and `registry_mirror` when set."""
        out: dict[str, Any] = {"network": self.network}
        if self.apt_proxy is not None:
            out["apt_proxy"] = self.apt_proxy
        if self.registry_mirror is not None:
            out["registry_mirror"] = self.registry_mirror
        return out


@dataclass(frozen=True)
class DindSpec:
    """The private Docker engine of each runner of a `docker: "dind"` pool.

    Sidecar (`runtime` None): `image` is the sidecar image id (None until deploy, `PoolSpec.with_dind_image`)
    and `security` how it runs (DIND_SECURITY). In-runner (`runtime`, e.g. `sysbox-runc`): the runner container
    runs under that runtime with its own engine inside; no sidecar, so no `image` and no `security`.
    `registry_mirrors` (http(s) URLs) and `insecure_registries` (`host[:port]` or an IPv4 CIDR) configure the
    engine either way."""

    image: str | None = None
    security: Literal["privileged", "caps"] | None = "privileged"
    registry_mirrors: tuple[str, ...] = ()
    insecure_registries: tuple[str, ...] = ()
    runtime: str | None = None

    def __post_init__(self) -> None:
        if self.runtime is None and self.security not in DIND_SECURITY:
            raise SpecError("dind.security", f"expected one of {', '.join(DIND_SECURITY)}, got {self.security!r}")
        if self.runtime is not None and (self.security is not None or self.image is not None):
            raise SpecError("dind.runtime", "an engine inside the runner container has no sidecar: no image or security")

    @property
    def sidecar(self) -> bool:
        """True when the engine runs in a sidecar container next to the runner (not inside it)."""
        return self.runtime is None

    def dump(self) -> dict[str, Any]:
        """`image` and `security` for a sidecar (image `null` until deploy), `runtime` otherwise; the
        registry lists when not empty."""
        out: dict[str, Any] = {"image": self.image, "security": self.security} if self.sidecar else {
            "runtime": self.runtime}
        if self.registry_mirrors:
            out["registry_mirrors"] = list(self.registry_mirrors)
        if self.insecure_registries:
            out["insecure_registries"] = list(self.insecure_registries)
        return out


@dataclass(frozen=True)
class PoolSpec:
    """One pool on one host. `image` is the runner image id: `None` until the Pulumi program
    knows it at deploy (`with_image`); `load_spec` refuses a spec without it unless told not to."""

    pool: str
    stack: str
    host: str
    scope_url: str
    name_prefix: str
    labels: tuple[str, ...]
    slots: int
    image: str | None = None
    api_url: str | None = None
    runner_group: str = "Default"
    container: ContainerSpec = field(default_factory=ContainerSpec)
    drain_timeout: float = 600.0
    metrics_port: int = 9101
    # Optional tuning (not in the Pulumi-written spec by default).
    reconcile_interval: float = 30.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    # Scale-set mode (all None for "fixed"): `slots` is the capacity and equals `max_runners`.
    scaling: Literal["fixed", "scale_set"] = "fixed"
    min_runners: int | None = None
    max_runners: int | None = None
    scale_set_name: str | None = None
    scale_set_id: int | None = None  # the scale set the Pulumi program made; None: look it up by name
    # Docker in jobs (all defaults for "none": such a spec dumps as it did before).
    docker: Literal["none", "dind", "host"] = "none"
    dind: DindSpec | None = None  # docker "dind" only
    docker_host_unsafe: bool = False  # docker "host" only, and then required
    docker_host_socket: str | None = None  # docker "host": the host's socket path, bind-mounted into runners
    cache: CacheSpec | None = None  # the host's caches (None: the runners use none)

    def __post_init__(self) -> None:
        if self.docker not in DOCKER_MODES:
            raise SpecError("docker", f"expected one of {', '.join(DOCKER_MODES)}, got {self.docker!r}")
        if (self.docker == "dind") != (self.dind is not None):
            raise SpecError("dind", "is set exactly when docker is \"dind\"")
        if self.docker == "host":
            if not self.docker_host_unsafe or not self.docker_host_socket:
                raise SpecError("docker_host_unsafe", "docker \"host\" needs docker_host_unsafe true and the socket")
        elif self.docker_host_unsafe or self.docker_host_socket is not None:
            raise SpecError("docker_host_unsafe", "is for docker \"host\" only")
        if self.scaling == "scale_set":
            if self.min_runners is None or self.max_runners is None or self.scale_set_name is None:
                raise SpecError("scaling", "scale_set needs min_runners, max_runners and scale_set_name")
            if self.slots != self.max_runners:
                raise SpecError("slots", f"is the capacity of a scale-set pool and must equal max_runners"
                                f" ({self.max_runners}), got {self.slots}")
        elif (self.min_runners, self.max_runners, self.scale_set_name, self.scale_set_id) != (None,) * 4:
            raise SpecError("scaling", "min_runners, max_runners, scale_set_name and scale_set_id are for"
                            " scaling \"scale_set\" only")

    @property
    def scale_set(self) -> bool:
        """True for a pool that follows demand through a GitHub runner scale set."""
        return self.scaling == "scale_set"

    def with_image(self, image: str) -> PoolSpec:
        """This spec with the runner image the manager runs (the image id built at deploy)."""
        if not isinstance(image, str) or not image.strip():
            raise SpecError("image", f"expected the runner image id or reference, got {image!r}")
        return dataclasses.replace(self, image=image)

    @property
    def dind_sidecar(self) -> bool:
        """True when each runner gets a sidecar engine container (docker "dind" without dind.runtime)."""
        return self.dind is not None and self.dind.sidecar

    def with_dind_image(self, image: str) -> PoolSpec:
        """This dind pool's spec with the sidecar image its manager runs (the image id built at deploy)."""
        if self.dind is None or not self.dind.sidecar:
            raise SpecError("dind.image", "only a pool with docker \"dind\" and no dind.runtime has a sidecar image")
        if not isinstance(image, str) or not image.strip():
            raise SpecError("dind.image", f"expected the sidecar image id or reference, got {image!r}")
        return dataclasses.replace(self, dind=dataclasses.replace(self.dind, image=image))

    def with_scale_set_id(self, scale_set_id: int) -> PoolSpec:
        """This scale-set pool's spec with the id of the scale set made for it (known at deploy)."""
        if not self.scale_set:
            raise SpecError("scale_set_id", "only a pool with scaling \"scale_set\" has a scale set")
        if isinstance(scale_set_id, bool) or not isinstance(scale_set_id, int) or scale_set_id < 1:
            raise SpecError("scale_set_id", f"expected the scale set's id (a positive integer), got {scale_set_id!r}")
        return dataclasses.replace(self, scale_set_id=scale_set_id)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready form the manager reads (docs/design.md, "Pool spec"): every key but the
        tuning ones always, `container` and the tuning keys only where they differ from the defaults;
        the scale-set keys only for a scale-set pool (a fixed pool's dump is what it was before them)."""
        out: dict[str, Any] = {
            "pool": self.pool, "stack": self.stack, "host": self.host,
            "scope_url": self.scope_url, "api_url": self.api_url, "name_prefix": self.name_prefix,
            "labels": list(self.labels), "runner_group": self.runner_group, "slots": self.slots,
            "image": self.image, "container": self.container.dump(),
            "drain_timeout": _number_text(self.drain_timeout), "metrics_port": self.metrics_port,
        }
        defaults = {f.name: f.default for f in dataclasses.fields(PoolSpec)}
        for key in _TUNING_KEYS:
            if getattr(self, key) != defaults[key]:
                out[key] = _number_text(getattr(self, key))
        if self.scale_set:
            out.update(scaling=self.scaling, min_runners=self.min_runners, max_runners=self.max_runners,
                       scale_set_name=self.scale_set_name, scale_set_id=self.scale_set_id)
        out.update(self._docker_dump())
        if self.cache is not None:
            out["cache"] = self.cache.dump()
        return out

    def _docker_dump(self) -> dict[str, Any]:
        """The Docker-in-jobs keys: none for docker "none" (such a spec dumps as it did before them)."""
        if self.docker == "dind" and self.dind is not None:
            return {"docker": "dind", "dind": self.dind.dump()}
        if self.docker == "host":
            return {"docker": "host", "docker_host_unsafe": True, "docker_host_socket": self.docker_host_socket}
        return {}

    def dumps(self) -> str:
        """The manager's spec file: `dump()` as JSON, indented, keys sorted (stable bytes, stable diffs)."""
        return json.dumps(self.dump(), indent=2, sort_keys=True)

    def runner_hash(self) -> str:
        """A digest of everything that shapes a runner (labels, group, image, container settings):
        runner containers carry it as `ghr.spec-hash`, so a manager knows which are of an older spec."""
        data = {key: _jsonable(getattr(self, key)) for key in _RUNNER_KEYS}
        data.update(self._docker_dump())  # nothing for docker "none": those runners keep their hash
        if self.cache is not None:  # nothing without a cache: those runners keep their hash
            data["cache"] = self.cache.dump()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def fixed_changes(self, new: PoolSpec) -> list[str]:
        """The FIXED_KEYS and SCALE_SET_FIXED_KEYS whose values differ in `new` (a reload must refuse those)."""
        return [key for key in (*FIXED_KEYS, *SCALE_SET_FIXED_KEYS) if getattr(self, key) != getattr(new, key)]

    def runner_name_pattern(self) -> re.Pattern[str]:
        """Names this pool mints: `<name_prefix>-<slot>-<random6>`."""
        return re.compile(rf"^{re.escape(self.name_prefix)}-(\d+)-[a-z0-9]{{6}}$")


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _size_text(size: int) -> str | int:
    """Bytes in the largest unit that holds them exactly (`4294967296` -> `"4g"`), else the number."""
    for unit in ("t", "g", "m", "k"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return size


def _number_text(value: float) -> int | float:
    """A whole number as an int (`600.0` -> `600`): the form a stack config gives."""
    return int(value) if float(value).is_integer() else value


def parse_size(value: Any, where: str) -> int:
    """`"4g"`, `"512m"`, `"1.5g"` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise SpecError(where, f"expected a size like '4g' or a number of bytes, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise SpecError(where, f"must be positive, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value.strip())
        if match:
            size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
            if size > 0:
                return size
    raise SpecError(where, f"expected a size like '4g', '512m' or a number of bytes, got {value!r}")


def _str(data: Mapping[str, Any], key: str, where: str, *, required: bool = True, default: str | None = None) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise SpecError(f"{where}{key}", "is required")
        return default
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}{key}", f"expected a non-empty string, got {value!r}")
    return value


def _bool(data: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(f"{where}{key}", f"expected true or false, got {value!r}")
    return value


def _number(data: Mapping[str, Any], key: str, where: str, default: float | None, *, minimum: float = 0.0,
            exclusive: bool = True) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where}{key}", f"expected a number, got {value!r}")
    if value < minimum or (exclusive and value == minimum):
        bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
        raise SpecError(f"{where}{key}", f"must be {bound}, got {value!r}")
    return float(value)


def _int(data: Mapping[str, Any], key: str, where: str, default: int | None, *, minimum: int) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where}{key}", f"expected an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"{where}{key}", f"must be at least {minimum}, got {value}")
    return int(value)


def _gpus(value: Any, where: str) -> GpuSpec | None:
    if value is None or value is False:
        return None
    if value == "all":
        return GpuSpec(kind="all")
    if isinstance(value, Mapping) and set(value) == {"count"}:
        count = value["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SpecError(f"{where}.count", f"expected a positive integer, got {count!r}")
        return GpuSpec(kind="count", count=count)
    if isinstance(value, Mapping) and set(value) == {"device_ids"}:
        ids = value["device_ids"]
        if not isinstance(ids, list) or not ids:
            raise SpecError(f"{where}.device_ids", f"expected a non-empty list of device ids, got {ids!r}")
        out: list[str] = []
        for i, dev in enumerate(ids):
            if isinstance(dev, bool) or not isinstance(dev, (str, int)) or not re.match(r"^[A-Za-z0-9:_.-]+$", str(dev)):
                raise SpecError(f"{where}.device_ids[{i}]", f"expected a device index or UUID, got {dev!r}")
            out.append(str(dev))
        if len(set(out)) != len(out):
            raise SpecError(f"{where}.device_ids", "lists a device twice")
        return GpuSpec(kind="device_ids", device_ids=tuple(out))
    raise SpecError(where, f"expected null, \"all\", {{\"count\": N}} or {{\"device_ids\": [...]}}, got {value!r}")


def _volume(value: Any, where: str) -> VolumeSpec:
    if not isinstance(value, Mapping):
        raise SpecError(where, f"expected an object, got {value!r}")
    kind = value.get("type", "volume")
    if kind not in ("volume", "bind", "tmpfs", "cache"):
        raise SpecError(f"{where}.type", f"expected volume, bind, tmpfs or cache, got {kind!r}")
    target = _str(value, "target", f"{where}.")
    assert target is not None
    if not target.startswith("/") or "\x00" in target or target == "/":
        raise SpecError(f"{where}.target", f"must be an absolute path inside the container (not /), got {target!r}")
    read_only = _bool(value, "read_only", f"{where}.", False)
    source: str | None = None
    size: int | None = None
    if kind == "tmpfs":
        if value.get("source"):
            raise SpecError(f"{where}.source", "a tmpfs mount takes no source")
        if value.get("size") is not None:
            size = parse_size(value["size"], f"{where}.size")
    else:
        source = _str(value, "source", f"{where}.")
        assert source is not None
        if value.get("size") is not None:
            raise SpecError(f"{where}.size", f"only tmpfs mounts take a size, not {kind}")
        if kind == "bind":
            if not source.startswith("/"):
                raise SpecError(f"{where}.source", f"a bind mount needs an absolute host path, got {source!r}")
        elif not _VOLUME_NAME.match(source):
            raise SpecError(f"{where}.source", f"expected a volume name ([A-Za-z0-9_.-], 2+ chars), got {source!r}")
        if kind == "cache" and read_only:
            raise SpecError(f"{where}.read_only", "a cache volume is for jobs to write; use type 'volume' to mount read-only")
    per_slot = _bool(value, "per_slot", f"{where}.", False)
    if per_slot and kind not in ("volume", "cache"):
        raise SpecError(f"{where}.per_slot", f"only named volumes (volume, cache) can be per slot, not {kind}")
    return VolumeSpec(type=kind, target=target, source=source, read_only=read_only, size=size, per_slot=per_slot)


def _capabilities(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError(where, f"expected a list of capability names, got {value!r}")
    out = []
    for i, cap in enumerate(value):
        if not isinstance(cap, str) or not _CAPABILITY.match(cap.upper()):
            raise SpecError(f"{where}[{i}]", f"expected a capability name like NET_RAW or ALL, got {cap!r}")
        out.append(cap.upper().removeprefix("CAP_"))
    return tuple(out)


def _container(value: Any, runtimes: Iterable[str] | None) -> ContainerSpec:
    where = "container."
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise SpecError("container", f"expected an object, got {value!r}")
    cpus = _number(value, "cpus", where, None)
    memory = parse_size(value["memory"], "container.memory") if value.get("memory") is not None else None
    shm_size = parse_size(value["shm_size"], "container.shm_size") if value.get("shm_size") is not None else None
    pids_limit = _int(value, "pids_limit", where, None, minimum=1)
    gpus = _gpus(value.get("gpus"), "container.gpus")
    gpu_per_slot = _bool(value, "gpu_per_slot", where, False)
    if gpu_per_slot and (gpus is None or gpus.kind == "all"):
        raise SpecError("container.gpu_per_slot", "needs container.gpus as {\"count\": N} or {\"device_ids\": [...]}"
                        " so each slot can be pinned to one known device")
    raw_volumes = value.get("volumes") or []
    if not isinstance(raw_volumes, list):
        raise SpecError("container.volumes", f"expected a list, got {raw_volumes!r}")
    volumes = tuple(_volume(v, f"container.volumes[{i}]") for i, v in enumerate(raw_volumes))
    targets = [v.target.rstrip("/") for v in volumes]
    for i, t in enumerate(targets):
        if t in targets[:i] or t == "/run/ghr":
            raise SpecError(f"container.volumes[{i}].target", f"{t!r} is mounted twice or hides the JIT handoff path")
    env_raw = value.get("env") or {}
    if not isinstance(env_raw, Mapping):
        raise SpecError("container.env", f"expected an object of strings, got {env_raw!r}")
    env: dict[str, str] = {}
    for key, val in env_raw.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise SpecError(f"container.env.{key}", "is not a valid environment variable name")
        if _FORBIDDEN_ENV.match(key):
            raise SpecError(f"container.env.{key}", "credentials and runner inputs never go to runner containers")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            raise SpecError(f"container.env.{key}", f"expected a string, got {val!r}")
        env[key] = str(val)
    network_mode = _str(value, "network_mode", where, required=False, default="bridge")
    assert network_mode is not None
    if not _NETWORK_MODE.match(network_mode):
        raise SpecError("container.network_mode", f"expected bridge, host, none or a network name, got {network_mode!r}")
    hardened = _bool(value, "hardened", where, False)
    no_new_privileges = _bool(value, "no_new_privileges", where, False) or hardened
    cap_drop = _capabilities(value.get("cap_drop"), "container.cap_drop")
    cap_add = _capabilities(value.get("cap_add"), "container.cap_add")
    if hardened:
        if cap_add:
            raise SpecError("container.cap_add", "a hardened pool drops every capability; remove cap_add or hardened")
        cap_drop = ("ALL",)
    runtime = _str(value, "runtime", where, required=False)
    if runtime is not None:
        if not _IDENT.match(runtime):
            raise SpecError("container.runtime", f"expected a runtime name like runc, sysbox-runc or runsc, got {runtime!r}")
        if runtimes is not None and runtime not in set(runtimes):
            known = ", ".join(sorted(runtimes)) or "none"
            raise SpecError("container.runtime", f"{runtime!r} is not a runtime of this Docker engine (it has: {known});"
                            " install it or pick one of those")
    labels_raw = value.get("labels") or {}
    if not isinstance(labels_raw, Mapping):
        raise SpecError("container.labels", f"expected an object of strings, got {labels_raw!r}")
    labels: dict[str, str] = {}
    for key, val in labels_raw.items():
        if not isinstance(key, str) or not key or key.startswith(RESERVED_LABEL_PREFIX):
            raise SpecError(f"container.labels.{key}",
                            f"label keys must be non-empty and not start with {RESERVED_LABEL_PREFIX!r}")
        if not isinstance(val, str):
            raise SpecError(f"container.labels.{key}", f"expected a string, got {val!r}")
        labels[key] = val
    return ContainerSpec(cpus=cpus, memory=memory, pids_limit=pids_limit, shm_size=shm_size, gpus=gpus,
                         gpu_per_slot=gpu_per_slot, volumes=volumes, env=env, network_mode=network_mode,
                         hardened=hardened, no_new_privileges=no_new_privileges, cap_drop=cap_drop,
                         cap_add=cap_add, runtime=runtime, labels=labels)


def load_spec(data: Mapping[str, Any], *, runtimes: Iterable[str] | None = None,
              require_image: bool = True) -> PoolSpec:
    """Validate a pool spec (the parsed JSON) and return it typed.

    `runtimes`, when given, is the list of runtimes the target engine reports (`docker info`);
    without it only the runtime's shape is checked. `require_image=False` accepts a spec whose
    `image` is not known yet (the Pulumi program at preview). Raises `SpecError` naming the field.
    """
    if not isinstance(data, Mapping):
        raise SpecError("spec", f"expected a JSON object, got {type(data).__name__}")
    pool = _str(data, "pool", "")
    stack = _str(data, "stack", "")
    host = _str(data, "host", "")
    for key, val in (("pool", pool), ("stack", stack), ("host", host)):
        if not _IDENT.match(val or ""):
            raise SpecError(key, f"expected letters, digits, '.', '_' or '-', got {val!r}")
    scope_url = _str(data, "scope_url", "")
    assert scope_url is not None
    if not re.match(r"^https?://[^/\s]+/[^\s]+$", scope_url):
        raise SpecError("scope_url", f"expected https://HOST/OWNER[/REPO] or https://HOST/enterprises/SLUG, got {scope_url!r}")
    api_url = _str(data, "api_url", "", required=False)
    if api_url is not None and not re.match(r"^https?://[^\s]+$", api_url):
        raise SpecError("api_url", f"expected an http(s) URL, got {api_url!r}")
    name_prefix = _str(data, "name_prefix", "")
    assert name_prefix is not None
    if not _NAME_PREFIX.match(name_prefix):
        raise SpecError("name_prefix", "expected 1-51 characters of letters, digits, '.', '_' or '-' starting with a"
                        f" letter or digit, got {name_prefix!r}")
    labels_raw = data.get("labels")
    if not isinstance(labels_raw, list) or not labels_raw:
        raise SpecError("labels", f"expected a non-empty list of runner labels, got {labels_raw!r}")
    if len(labels_raw) > 100:
        raise SpecError("labels", f"GitHub accepts at most 100 labels, got {len(labels_raw)}")
    for i, label in enumerate(labels_raw):
        if not isinstance(label, str) or not label.strip() or "," in label:
            raise SpecError(f"labels[{i}]", f"expected a non-empty label without commas, got {label!r}")
    runner_group = _str(data, "runner_group", "", required=False, default="Default")
    assert runner_group is not None
    scaling, min_runners, max_runners, scale_set_name, scale_set_id = _scaling(data, name_prefix)
    slots_raw = data.get("slots")
    if scaling == "scale_set" and slots_raw is None:
        slots_raw = max_runners
    if isinstance(slots_raw, bool) or not isinstance(slots_raw, int):
        raise SpecError("slots", f"expected an integer of at least 1, got {slots_raw!r}")
    if slots_raw < 1:
        raise SpecError("slots", f"must be at least 1, got {slots_raw}")
    if scaling == "scale_set" and slots_raw != max_runners:
        raise SpecError("slots", f"is the capacity of a scale-set pool and must equal max_runners ({max_runners}),"
                        f" got {slots_raw}; leave slots out")
    image = _str(data, "image", "", required=False)
    if image is None and require_image:
        raise SpecError("image", "is missing: a manager runs the runner image the Pulumi program built, and the"
                        " program writes its id into the spec at deploy (PoolSpec.with_image); run pulumi up")
    container = _container(data.get("container"), runtimes)
    gpus = container.gpus
    if container.gpu_per_slot and gpus is not None:
        available = gpus.count if gpus.kind == "count" else len(gpus.device_ids)
        if slots_raw > available:
            raise SpecError("slots", f"{slots_raw} slots but container.gpu_per_slot pins one of {available} GPUs to"
                            " each slot; lower slots or list more GPUs")
    docker, dind, host_unsafe, host_socket = _docker(data, container, runtimes, require_image)
    drain_timeout = _number(data, "drain_timeout", "", 600.0, exclusive=False)
    metrics_port = _int(data, "metrics_port", "", 9101, minimum=0)
    assert metrics_port is not None
    if metrics_port > 65535:
        raise SpecError("metrics_port", f"must be at most 65535, got {metrics_port}")
    reconcile_interval = _number(data, "reconcile_interval", "", 30.0)
    backoff_initial = _number(data, "backoff_initial", "", 1.0)
    backoff_max = _number(data, "backoff_max", "", 60.0)
    assert backoff_initial is not None and backoff_max is not None and reconcile_interval is not None
    if backoff_max < backoff_initial:
        raise SpecError("backoff_max", f"must be at least backoff_initial ({backoff_initial:g}), got {backoff_max:g}")
    return PoolSpec(pool=pool or "", stack=stack or "", host=host or "", scope_url=scope_url, api_url=api_url,
                    name_prefix=name_prefix, labels=tuple(labels_raw), runner_group=runner_group,
                    slots=slots_raw, image=image, container=container,
                    drain_timeout=drain_timeout if drain_timeout is not None else 600.0,
                    metrics_port=metrics_port, reconcile_interval=reconcile_interval,
                    backoff_initial=backoff_initial, backoff_max=backoff_max, scaling=scaling,
                    min_runners=min_runners, max_runners=max_runners, scale_set_name=scale_set_name,
                    scale_set_id=scale_set_id, docker=docker, dind=dind, docker_host_unsafe=host_unsafe,
                    docker_host_socket=host_socket, cache=_cache(data.get("cache"), container))


def check_scale_set_name(name: Any, where: str = "scale_set_name") -> str:
    """A scale-set name GitHub accepts (see MAX_SCALE_SET_NAME_LENGTH), or a SpecError saying what to change."""
    if not isinstance(name, str) or not name.strip():
        raise SpecError(where, f"expected a non-empty scale set name, got {name!r}")
    if len(name) > MAX_SCALE_SET_NAME_LENGTH:
        raise SpecError(where, f"{name!r} is {len(name)} characters; a scale set name has at most"
                        f" {MAX_SCALE_SET_NAME_LENGTH}: give a shorter one")
    if not _SCALE_SET_NAME.match(name):
        raise SpecError(where, f"{name!r}: a scale set name is letters, digits, '.', '_' or '-', starting with a"
                        " letter or digit (no spaces, commas or '/': it is also a runs-on label)")
    return name


def _scaling(data: Mapping[str, Any], name_prefix: str) -> tuple[Literal["fixed", "scale_set"], int | None,
                                                                   int | None, str | None, int | None]:
    """`scaling` and, for a scale-set pool, min/max runners, the scale set's name and (when known) its id."""
    scaling = data.get("scaling", "fixed")
    if scaling is None:
        scaling = "fixed"
    if scaling not in _SCALINGS:
        raise SpecError("scaling", f"expected \"fixed\" or \"scale_set\", got {scaling!r}")
    keys = ("min_runners", "max_runners", "scale_set_name", "scale_set_id")
    if scaling == "fixed":
        for key in keys:
            if data.get(key) is not None:
                raise SpecError(key, "is for scaling \"scale_set\" only; remove it or set scaling to \"scale_set\"")
        return "fixed", None, None, None, None
    min_runners = _int(data, "min_runners", "", 0, minimum=0)
    if data.get("max_runners") is None:
        raise SpecError("max_runners", "is required for scaling \"scale_set\" (the most runners at once, at least 1)")
    max_runners = _int(data, "max_runners", "", None, minimum=1)
    assert min_runners is not None and max_runners is not None
    if min_runners > max_runners:
        raise SpecError("min_runners", f"{min_runners} is more than max_runners ({max_runners}); lower min_runners"
                        " or raise max_runners")
    name = data.get("scale_set_name")
    if name is None and len(name_prefix) > MAX_SCALE_SET_NAME_LENGTH:
        raise SpecError("scale_set_name", f"is derived from name_prefix {name_prefix!r}, {len(name_prefix)} characters;"
                        f" a scale set name has at most {MAX_SCALE_SET_NAME_LENGTH}: give a shorter scale_set_name")
    scale_set_name = check_scale_set_name(name_prefix if name is None else name)
    scale_set_id = _int(data, "scale_set_id", "", None, minimum=1)
    return "scale_set", min_runners, max_runners, scale_set_name, scale_set_id


def _docker(data: Mapping[str, Any], container: ContainerSpec, runtimes: Iterable[str] | None, require_image: bool,
            ) -> tuple[Literal["none", "dind", "host"], DindSpec | None, bool, str | None]:
    """`docker`, its `dind` settings and the `host` mode's flag and socket, checked against the container."""
    docker = data.get("docker", "none")
    if docker is None:
        docker = "none"
    if docker not in DOCKER_MODES:
        raise SpecError("docker", f"expected \"none\", \"dind\" or \"host\", got {docker!r}")
    if docker != "dind" and data.get("dind") is not None:
        raise SpecError("dind", "is for docker \"dind\" only; remove it or set docker to \"dind\"")
    if docker != "host":
        for key in ("docker_host_unsafe", "docker_host_socket"):
            if data.get(key) is not None:
                raise SpecError(key, "is for docker \"host\" only; remove it")
    if docker != "none" and "DOCKER_HOST" in container.env:
        raise SpecError("container.env.DOCKER_HOST", f"the manager points DOCKER_HOST at the job's engine for"
                        f" docker {docker!r}; remove it from env")
    if docker == "host":
        if _bool(data, "docker_host_unsafe", "", False) is not True:
            raise SpecError("docker_host_unsafe", "docker \"host\" hands every job the host's Docker socket: root on"
                            " the host and every other job's containers; set docker_host_unsafe true to accept"
                            " that, or use docker \"dind\" (a private engine per job)")
        if container.hardened:
            raise SpecError("container.hardened", "a hardened runner cannot hold the host's Docker socket (it is root"
                            " on the host); use docker \"dind\" or drop hardened")
        socket = _str(data, "docker_host_socket", "", required=False, default="/var/run/docker.sock")
        assert socket is not None
        if not socket.startswith("/"):
            raise SpecError("docker_host_socket", f"expected the absolute path of the host's socket, got {socket!r}")
        return "host", None, True, socket
    if docker == "none":
        return "none", None, False, None
    raw = data.get("dind")
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError("dind", f"expected an object, got {raw!r}")
    for key in raw:
        if key not in _DIND_KEYS:
            raise SpecError(f"dind.{key}", f"unknown key; dind takes {', '.join(_DIND_KEYS)}")
    mirrors = _registry_list(raw.get("registry_mirrors"), "dind.registry_mirrors", _mirror)
    insecure = _registry_list(raw.get("insecure_registries"), "dind.insecure_registries", _insecure_registry)
    runtime = _str(raw, "runtime", "dind.", required=False)
    if runtime is not None:
        if not _IDENT.match(runtime):
            raise SpecError("dind.runtime", f"expected a runtime name like sysbox-runc, got {runtime!r}")
        if runtimes is not None and runtime not in set(runtimes):
            known = ", ".join(sorted(runtimes)) or "none"
            raise SpecError("dind.runtime", f"{runtime!r} is not a runtime of this Docker engine (it has: {known});"
                            " install it (sysbox-runc) or leave dind.runtime out for a sidecar engine")
        for key in ("image", "security"):
            if raw.get(key) is not None:
                raise SpecError(f"dind.{key}", "an engine inside the runner container (dind.runtime) has no sidecar;"
                                f" remove {key} or dind.runtime")
        if container.runtime is not None and container.runtime != runtime:
            raise SpecError("container.runtime", f"is {container.runtime!r} but dind.runtime runs the runner under"
                            f" {runtime!r}; remove one")
        if container.hardened:
            raise SpecError("container.hardened", "an engine inside the runner container needs the capabilities and"
                            " writable root a hardened runner drops; leave dind.runtime out (a sidecar engine keeps"
                            " the runner hardened) or drop hardened")
        return "dind", DindSpec(image=None, security=None, registry_mirrors=mirrors, insecure_registries=insecure,
                                runtime=runtime), False, None
    security = raw.get("security", "privileged")
    if security is None:
        security = "privileged"
    if security not in DIND_SECURITY:
        raise SpecError("dind.security", f"expected \"privileged\" (ordinary hosts) or \"caps\" (hosts where"
                        f" --privileged fails: every capability but SYS_RESOURCE), got {security!r}")
    image = _str(raw, "image", "dind.", required=False)
    if image is None and require_image:
        raise SpecError("dind.image", "is missing: a dind pool's manager runs the sidecar image the Pulumi program"
                        " built, and the program writes its id into the spec at deploy (PoolSpec.with_dind_image);"
                        " run pulumi up")
    mode = container.network_mode
    if mode == "host" or mode.startswith("container:"):
        raise SpecError("container.network_mode", f"{mode!r}: a dind runner and its engine share a network namespace of"
                        " their own (the engine makes bridges and firewall rules in it); use bridge, none or a"
                        " network name")
    return "dind", DindSpec(image=image, security=security, registry_mirrors=mirrors,
                            insecure_registries=insecure), False, None


def _registry_list(value: Any, where: str, check: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError(where, f"expected a list, got {value!r}")
    out: list[str] = []
    for i, item in enumerate(value):
        normal = check(item, f"{where}[{i}]")
        if normal in out:
            raise SpecError(f"{where}[{i}]", f"{item!r} is listed twice")
        out.append(normal)
    return tuple(out)


def _mirror(value: Any, where: str) -> str:
    """A registry mirror as dockerd takes it: http(s)://host[:port], no path, query or credentials."""
    if not isinstance(value, str) or not _MIRROR.match(value.strip()):
        raise SpecError(where, f"expected a registry mirror URL like https://mirror.example:5000 (http or https, no"
                        f" path, no user:password), got {value!r}")
    return value.strip().rstrip("/")


def _insecure_registry(value: Any, where: str) -> str:
    """An insecure registry as dockerd takes it: host[:port] or an IPv4 CIDR, no scheme."""
    if isinstance(value, str) and (_REGISTRY_HOST.match(value.strip()) or _CIDR.match(value.strip())):
        return value.strip()
    raise SpecError(where, f"expected host[:port] (like registry.local:5000) or a CIDR (10.0.0.0/8), without"
                    f" http://, got {value!r}")


_CACHE_KEYS = ("network", "apt_proxy", "registry_mirror")
_APT_PROXY = re.compile(r"^http://[A-Za-z0-9.-]+(:\d{1,5})?/?$")


def _cache(value: Any, container: ContainerSpec) -> CacheSpec | None:
    """The `cache` block: the network the runners join and the URLs of the host's caches on it."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError("cache", f"expected an object with network, apt_proxy and registry_mirror, got {value!r}")
    for key in value:
        if key not in _CACHE_KEYS:
            raise SpecError(f"cache.{key}", f"unknown key; cache takes {', '.join(_CACHE_KEYS)}")
    network = _str(value, "network", "cache.")
    assert network is not None
    if not _IDENT.match(network) or network in ("bridge", "host", "none"):
        raise SpecError("cache.network", f"expected the name of the host's cache network, got {network!r}")
    if container.network_mode not in ("bridge", network):
        raise SpecError("container.network_mode", f"runners that use the host's cache join its network"
                        f" {network!r} instead of the default bridge; network mode {container.network_mode!r}"
                        " cannot: remove network_mode or the cache")
    apt_proxy = _str(value, "apt_proxy", "cache.", required=False)
    if apt_proxy is not None and not _APT_PROXY.match(apt_proxy):
        raise SpecError("cache.apt_proxy", f"expected http://host:port of the apt cache, got {apt_proxy!r}")
    mirror = value.get("registry_mirror")
    registry_mirror = _mirror(mirror, "cache.registry_mirror") if mirror is not None else None
    return CacheSpec(network=network, apt_proxy=apt_proxy.rstrip("/") if apt_proxy else None,
                     registry_mirror=registry_mirror)
