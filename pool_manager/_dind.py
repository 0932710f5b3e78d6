"""Docker in jobs, `docker: "dind"` with a sidecar: each runner container gets its own engine container.

The pair is one unit (docs/design.md, "pool_manager", Docker in jobs):
- The sidecar (`ghr.role=sidecar`, the pool's labels, `ghr.pair=<runner name>`, name `<runner name>-docker`)
  is made first. It owns anonymous volumes for its image store (`/var/lib/docker`), its socket
  (`/run/ghr-docker`) and the runner's `_work` and `externals` folders; all carry the pair's labels.
- The runner joins the sidecar's network namespace (`network_mode=container:<sidecar>`: published ports of
  `services:` are at localhost, as in actions-runner-controller's dind mode), mounts the socket, `_work`
  and `externals` volumes at the same paths (so bind mounts that `container:` and `services:` ask the engine
  for resolve), and gets `DOCKER_HOST`. Docker copies the runner image's `externals` into the empty volume
  when the runner is created.
- Limits: with cgroup v1 and the cgroupfs driver (these machines), the sidecar carries the pool's cpus,
  memory and pids limits, the runner (which keeps them too) is created with `cgroup_parent` = the sidecar's cgroup, and the
  sidecar runs in a private cgroup namespace where its entrypoint mounts its own subtree: the runner and
  every container of the job's engine nest under the sidecar's cgroup, so the pool's limits bound the whole
  pair (hierarchical on v1). Elsewhere (systemd driver, cgroup v2: untested here) each container of the pair
  gets the pool's limits itself: the pair may then use up to twice them.
- Removal: the runner first, then the sidecar with its volumes (`v=True`; an anonymous volume still in use
  by the other container would survive), then any volume of the pair left over (found by label).
No credential reaches the sidecar: it gets only the engine's settings (environment `GHR_DIND_*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docker.types import Mount

from . import _containers as C
from .spec import DIND_CAPS_DROP, PoolSpec

__all__ = [
    "DOCKER_HOST",
    "PAIR",
    "SIDECAR_ROLE",
    "SOCKET_DIR",
    "Limits",
    "pair_runner_kwargs",
    "sidecar_kwargs",
    "sidecar_name",
]

SOCKET_DIR = C.DOCKER_SOCKET.rsplit("/", 1)[0]
DOCKER_HOST = f"unix://{C.DOCKER_SOCKET}"
SIDECAR_ROLE = "sidecar"
PAIR = "ghr.pair"  # on both containers of a pair and on the sidecar's volumes: the runner's name
DOCKER = "ghr.docker"  # on a paired runner: "dind"
# Folders the sidecar sees at the runner's paths (the real runner's worker mounts them into job containers).
SHARED_PATHS = (f"{C.RUNNER_HOME}/_work", f"{C.RUNNER_HOME}/externals")
# Seconds the manager waits for a sidecar's engine to answer before it fails that runner.
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Limits:
    """How the pool's limits are applied to a pair: `nested` (runner inside the sidecar's cgroup) or `each`."""

    nested: bool

    @classmethod
    def for_engine(cls, info: dict[str, Any]) -> Limits:
        """Nested where the engine is cgroup v1 with the cgroupfs driver (cgroup_parent is a plain path)."""
        version = str(info.get("CgroupVersion") or "1")
        return cls(nested=info.get("CgroupDriver") == "cgroupfs" and version == "1")


def sidecar_name(runner_name: str) -> str:
    """`<runner name>-docker`: never matches the pool's runner name pattern."""
    return f"{runner_name}-docker"


def sidecar_labels(spec: PoolSpec, *, slot: int, runner_name: str, runner_id: int | None) -> dict[str, str]:
    labels = dict(spec.container.labels)
    labels.update(C.pool_labels(spec))
    labels.update({C.ROLE: SIDECAR_ROLE, C.SLOT: str(slot), C.RUNNER_NAME: runner_name, PAIR: runner_name,
                   C.SPEC_HASH: spec.runner_hash()})
    if runner_id is not None:
        labels[C.RUNNER_ID] = str(runner_id)
    return labels


def sidecar_label_filter(spec: PoolSpec) -> list[str]:
    return [f"{k}={v}" for k, v in {**C.pool_labels(spec), C.ROLE: SIDECAR_ROLE}.items()]


def pair_label_filter(spec: PoolSpec) -> list[str]:
    """The pool's containers of every role (runners and sidecars): the event watcher's filter for dind pools."""
    return [f"{k}={v}" for k, v in C.pool_labels(spec).items() if k != C.ROLE]


def engine_env(spec: PoolSpec) -> dict[str, str]:
    """The sidecar's whole environment: the engine's settings, nothing else."""
    assert spec.dind is not None
    env = {"GHR_DIND_SOCKET_DIR": SOCKET_DIR}
    if spec.dind.registry_mirrors:
        env["GHR_DIND_REGISTRY_MIRRORS"] = " ".join(spec.dind.registry_mirrors)
    if spec.dind.insecure_registries:
        env["GHR_DIND_INSECURE_REGISTRIES"] = " ".join(spec.dind.insecure_registries)
    return env


def sidecar_kwargs(spec: PoolSpec, *, slot: int, runner_name: str, limits: Limits) -> dict[str, Any]:
    """Arguments for `containers.create(**kwargs)` of the sidecar of one runner (made before the runner)."""
    assert spec.dind is not None and spec.dind.image is not None
    c = spec.container
    labels = sidecar_labels(spec, slot=slot, runner_name=runner_name, runner_id=None)
    volume_labels = {**C.pool_labels(spec), C.ROLE: SIDECAR_ROLE, PAIR: runner_name}
    mounts = [Mount(target=target, source=None, type="volume", labels=volume_labels)
              for target in ("/var/lib/docker", SOCKET_DIR, *SHARED_PATHS)]
    kwargs: dict[str, Any] = {
        "image": spec.dind.image,
        "name": sidecar_name(runner_name),
        "labels": labels,
        "environment": engine_env(spec),
        "network_mode": c.network_mode,
        "detach": True,
        "stop_signal": "SIGTERM",
        "init": False,  # the image runs tini itself
        "mounts": mounts,
        "cgroupns": "private",  # the entrypoint mounts its own cgroup subtree: inner containers nest under it
    }
    if spec.dind.security == "privileged":
        kwargs["privileged"] = True
    else:  # "caps": hosts where --privileged fails (../shared/notes/docker-in-jobs.md)
        kwargs["cap_add"] = ["ALL"]
        kwargs["cap_drop"] = list(DIND_CAPS_DROP)
        kwargs["security_opt"] = ["seccomp=unconfined", "apparmor=unconfined"]
    kwargs.update(C.limit_kwargs(c))
    return kwargs


def pair_runner_kwargs(kwargs: dict[str, Any], spec: PoolSpec, *, sidecar_id: str, volumes: dict[str, str],
                       limits: Limits) -> dict[str, Any]:
    """The runner's `create_kwargs` turned into the pair's runner: the sidecar's network namespace, its socket,
    `_work` and `externals` (`volumes`: the sidecar's mount target -> volume name), DOCKER_HOST, and the
    limits nested under the sidecar's cgroup where the engine allows it."""
    out = dict(kwargs)
    out["network_mode"] = f"container:{sidecar_id}"
    # The runner's worker refuses `container:`/`services:` when its PID 1 sits in a `/docker/` cgroup (cgroup v1,
    # host cgroup namespace): a private one shows `/`.
    out["cgroupns"] = "private"
    out["environment"] = {**kwargs.get("environment", {}), "DOCKER_HOST": DOCKER_HOST}
    out["labels"] = {**kwargs["labels"], PAIR: kwargs["name"], DOCKER: "dind"}
    # A pool volume on one of these paths stays (the sidecar then does not see it); a hardened runner's
    # default tmpfs there gives way to the shared volume.
    taken = {m["Target"] for m in kwargs.get("mounts", [])}
    shared = [Mount(target=target, source=volumes[target], type="volume")
              for target in (SOCKET_DIR, *SHARED_PATHS) if target not in taken]
    out["mounts"] = [*kwargs.get("mounts", []), *shared]
    tmpfs = {t: o for t, o in kwargs.get("tmpfs", {}).items() if t not in SHARED_PATHS}
    if tmpfs:
        out["tmpfs"] = tmpfs
    else:
        out.pop("tmpfs", None)
    if limits.nested:
        # The runner keeps the pool's limits too: redundant under the sidecar's cgroup, a safety net should the
        # engine's cgroup parent not be the default /docker (this path would then be a new, unlimited one).
        out["cgroup_parent"] = f"/docker/{sidecar_id}"
    return out


def ready_command() -> list[str]:
    """What the manager runs in the sidecar (exec) to know its engine answers on the pair's socket; each try
    is bounded (a socket that accepts but never answers must not hold the manager's loop)."""
    return ["timeout", "5", "docker", "-H", DOCKER_HOST, "version", "--format", "{{.Server.Version}}"]
