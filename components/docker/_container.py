"""DockerContainer: a dynamic resource for one long-lived container on a Docker host.

Create is transactional (create stopped, copy ``uploads`` in, start; any failure removes
the container) and safe to repeat (a leftover container of the same name that this program
created is replaced; someone else's is an error). Every settings change replaces the
container (delete first: names are unique per host), except two in-place updates: with
``reload_signal`` set, a change of only the content of uploads marked ``reloadable`` writes
the new files into the running container (same paths, modes, owners) and sends it that
signal; and ``stop_timeout`` (used at delete) is just recorded. ``read`` reports drift: a container
that is gone drops out of state, a stopped one shows ``state`` != running and is replaced by
the next ``pulumi up``, and so is one that lost an upload (``missing_uploads``: e.g. a file in a
host tmpfs folder after a reboot). Delete stops with the grace period, then removes.

An upload whose path lies in a bind mount is written through the container into that host
folder (created by the engine when the mount has ``create_source``), never into the container's
writable layer: that is how a secret stays out of the engine's storage (a folder under the host's
``/dev/shm``). Delete removes such files from the host (a short-lived helper container of the same
image, with the same mounts) after the container has stopped, then the ``create_source`` folder if empty.
"""

from __future__ import annotations

import io
import posixpath
import signal
import tarfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from .._provider import changed, host_desc, is_unknown, plain
from ._connection import client_from_props, host_props, validate_host_spec

MANAGED_LABEL = "ghr.managed-by"
MANAGED_VALUE = "pulumi"
RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
MOUNT_TYPES = ("bind", "volume", "tmpfs")
_REPLACE_KEYS = (
    "docker_host", "name", "image", "command", "entrypoint", "env", "mounts", "network_mode",
    "restart_policy", "labels", "user", "extra_hosts", "group_add", "loopback_ports",
)  # "uploads": see _uploads_change
_UPDATE_ONLY_KEYS = ("ssh_options", "tls", "startup_check", "stop_timeout", "reload_signal")
_STOPPED_STATES = ("exited", "dead", "created")
STARTUP_CHECK = 2.0  # seconds a new container must stay up (catches crash loops at `pulumi up`)


def _uploads_change(olds: Mapping[str, Any], news: Mapping[str, Any]) -> str | None:
    """None (same uploads), "reload" (only reloadable contents changed, and news has a
    reload_signal) or "replace" (anything else, including a value not known yet)."""
    old, new = plain(olds.get("uploads") or []), plain(news.get("uploads") or [])
    if old == new:
        return None
    if not news.get("reload_signal") or not isinstance(new, list) or not isinstance(old, list) \
            or len(old) != len(new):
        return "replace"
    for o, n in zip(old, new, strict=False):
        if not isinstance(o, dict) or not isinstance(n, dict):
            return "replace"
        if {k: v for k, v in o.items() if k != "content"} != {k: v for k, v in n.items() if k != "content"}:
            return "replace"  # path, mode, owner or the reloadable flag changed
        if o.get("content") != n.get("content") and not (n.get("reloadable") and o.get("reloadable")):
            return "replace"
    return "reload"


def _signal_name(value: Any) -> str | None:
    """The canonical name of a signal given as "SIGHUP", "HUP" or 1; None if it is not one."""
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return signal.Signals(value).name
        if isinstance(value, str):
            name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
            return signal.Signals[name].name
    except (KeyError, ValueError):
        return None
    return None


def _settle(container: Any, seconds: float) -> None:
    """Watch a started container for up to `seconds`; return early once it has failed."""
    deadline = time.monotonic() + seconds
    while True:
        container.reload()
        failed = container.status in ("exited", "dead", "restarting") or (container.attrs.get("RestartCount") or 0) > 0
        if failed or time.monotonic() >= deadline:
            return
        time.sleep(0.25)


class ContainerStartError(RuntimeError):
    """The container could not be created or started (the message says why)."""


class ContainerCleanupError(RuntimeError):
    """Delete could not remove the files a container's uploads left in a host folder (the message says which)."""


class Upload(TypedDict):
    """A file written into the container before it starts."""

    path: str  # absolute path inside the container
    content: pulumi.Input[str]  # usually a secret
    mode: NotRequired[int]  # default 0o400
    uid: NotRequired[int]
    gid: NotRequired[int]
    # With the container's reload_signal: a content change is written in place and signalled.
    reloadable: NotRequired[bool]


class Mount(TypedDict):
    type: str  # bind | volume | tmpfs
    source: NotRequired[str]
    target: str
    read_only: NotRequired[bool]
    # bind only: the engine creates a missing host folder (a legacy bind, "Binds": HostConfig.Mounts
    # refuses a missing source and engines before API 1.42 have no CreateMountpoint).
    create_source: NotRequired[bool]


def _uploads_tar(uploads: Sequence[Mapping[str, Any]]) -> bytes:
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(mode="w", fileobj=buf) as tar:
        for up in uploads:
            data = str(up["content"]).encode()
            info = tarfile.TarInfo(posixpath.normpath(up["path"]).lstrip("/"))
            info.size = len(data)
            info.mode = int(up.get("mode", 0o400))
            info.uid = int(up.get("uid", 0))
            info.gid = int(up.get("gid", 0))
            info.mtime = now
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _mounts(specs: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[str]]:
    """The docker SDK's ``mounts`` (HostConfig.Mounts) and ``volumes`` (legacy Binds, for create_source)."""
    from docker.types import Mount as DockerMount

    out, binds = [], []
    for m in specs:
        kind = m.get("type", "bind")
        if kind == "bind" and m.get("create_source"):
            binds.append(f"{m['source']}:{m['target']}:{'ro' if m.get('read_only') else 'rw'}")
            continue
        out.append(DockerMount(
            target=m["target"],
            source=m.get("source") if kind != "tmpfs" else None,
            type=kind,
            read_only=bool(m.get("read_only", False)),
        ))
    return out, binds


def host_uploads(props: Mapping[str, Any]) -> list[str]:
    """The upload paths that lie in a bind mount: their bytes are in a host folder, not in the container's layer."""
    targets = [posixpath.normpath(str(m.get("target") or "/")).rstrip("/") + "/"
               for m in plain(props.get("mounts") or []) if isinstance(m, dict) and m.get("type", "bind") == "bind"]
    paths = [posixpath.normpath(up["path"]) for up in plain(props.get("uploads") or [])
             if isinstance(up, dict) and isinstance(up.get("path"), str)]
    return [p for p in paths if any(p.startswith(t) for t in targets)]


def _missing(container: Any, paths: Sequence[str]) -> list[str]:
    """The paths the container (running or not) does not have; an answer other than 404 counts as present."""
    import docker.errors

    missing = []
    for path in paths:
        try:
            bits, _stat = container.get_archive(path)
            for _chunk in bits:  # drain the response (a small file)
                pass
        except docker.errors.NotFound:
            missing.append(path)
        except docker.errors.APIError:
            continue
    return missing


def _check_props(news: Mapping[str, Any]) -> list[CheckFailure]:
    failures: list[CheckFailure] = []

    def fail(prop: str, reason: str) -> None:
        failures.append(CheckFailure(prop, reason))

    if not is_unknown(news.get("name")) and (not isinstance(news.get("name"), str) or not news.get("name")):
        fail("name", "a container name is required")
    if not news.get("image"):
        fail("image", "an image (tag or id) is required")
    cmd = news.get("command")
    if cmd is not None and not is_unknown(cmd) and not isinstance(cmd, (str, list)):
        fail("command", "command must be a string or a list of strings")
    rp = news.get("restart_policy") or "no"
    if rp not in RESTART_POLICIES:
        fail("restart_policy", f"restart policy {rp!r} is not one of {', '.join(RESTART_POLICIES)}")
    for i, m in enumerate(news.get("mounts") or []):
        if is_unknown(m):
            continue
        if m.get("type", "bind") not in MOUNT_TYPES:
            fail(f"mounts[{i}].type", f"mount type {m.get('type')!r} is not one of {', '.join(MOUNT_TYPES)}")
        if not str(m.get("target", "")).startswith("/"):
            fail(f"mounts[{i}].target", "a mount target must be an absolute path in the container")
        if m.get("type", "bind") != "tmpfs" and not m.get("source"):
            fail(f"mounts[{i}].source", "bind and volume mounts need a source")
        if not isinstance(m.get("create_source", False), bool):
            fail(f"mounts[{i}].create_source", "create_source must be true or false")
        elif m.get("create_source") and (m.get("type", "bind") != "bind" or not str(m.get("source", "")).startswith("/")
                                         or ":" in str(m.get("source", "")) + str(m.get("target", ""))):
            fail(f"mounts[{i}].create_source", "create_source is for a bind mount of an absolute host path (no ':')")
    for i, up in enumerate(news.get("uploads") or []):
        if is_unknown(up):
            continue
        if not str(up.get("path", "")).startswith("/"):
            fail(f"uploads[{i}].path", "an upload path must be an absolute path in the container")
        if not isinstance(up.get("reloadable", False), bool):
            fail(f"uploads[{i}].reloadable", "reloadable must be true or false")
    rs = news.get("reload_signal")
    if rs is not None and not is_unknown(rs) and _signal_name(rs) is None:
        fail("reload_signal", f"{rs!r} is not a signal name like SIGHUP or SIGUSR1")
    st = news.get("stop_timeout")
    if st is not None and not is_unknown(st) and (not isinstance(st, (int, float)) or st < 0):
        fail("stop_timeout", "stop_timeout must be a number of seconds >= 0")
    if not is_unknown(news.get("docker_host")):
        for problem in validate_host_spec(news.get("docker_host"), news.get("ssh_options"), news.get("tls")):
            fail("docker_host", problem)
    return failures


class DockerContainerProvider(ResourceProvider):
    """CRUD for one container on one host. Stateless: clients are built inside each method."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, _check_props(news))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = changed(olds, news, _REPLACE_KEYS)
        updates = changed(olds, news, _UPDATE_ONLY_KEYS)
        uploads = _uploads_change(olds, news)
        if uploads == "replace":
            replaces.append("uploads")
        elif uploads == "reload":
            updates.append("uploads")
        if olds.get("state") in _STOPPED_STATES:
            replaces.append("state")
        if olds.get("missing_uploads"):  # found missing by the last read (refresh): deliver them again
            replaces.append("missing_uploads")
        return DiffResult(changes=bool(replaces or updates), replaces=replaces, delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        import docker.errors

        labels = {**(props.get("labels") or {}), MANAGED_LABEL: MANAGED_VALUE}
        name = props["name"]
        command = props.get("command")
        mounts, binds = _mounts(props.get("mounts") or [])
        with client_from_props(props) as client:
            try:
                old = client.containers.get(name)
            except docker.errors.NotFound:
                old = None
            if old is not None:
                if (old.labels or {}).get(MANAGED_LABEL) != MANAGED_VALUE:
                    raise ContainerStartError(
                        f"a container named {name!r} already exists on {host_desc(props)} and was not created "
                        f"by this program; remove it (docker rm -f {name}) or choose another name"
                    )
                old.remove(force=True)  # a leftover of an interrupted create: safe to repeat
            container = client.containers.create(
                image=props["image"],
                name=name,
                command=command,
                entrypoint=props.get("entrypoint") or None,
                environment=dict(props.get("env") or {}),
                mounts=mounts,
                volumes=binds or None,
                network_mode=props.get("network_mode") or None,
                # docker's stubs know only "always" and "on-failure"; the engine takes "no" and "unless-stopped" too
                restart_policy={"Name": props.get("restart_policy") or "no"},  # type: ignore[arg-type]
                labels=labels,
                stop_signal="SIGTERM",
                user=props.get("user") or None,
                extra_hosts=dict(props.get("extra_hosts") or {}) or None,
                group_add=list(props.get("group_add") or []) or None,
                # container port -> host port, on the host's 127.0.0.1 only: never another interface
                ports={f"{int(c)}/tcp": ("127.0.0.1", int(h)) for c, h in (props.get("loopback_ports") or {}).items()}
                or None,
            )
            try:
                uploads = props.get("uploads") or []
                if uploads and not container.put_archive("/", _uploads_tar(uploads)):
                    raise ContainerStartError(f"could not copy files into container {name!r}")
                container.start()
                _settle(container, float(props.get("startup_check", STARTUP_CHECK)))
                if container.status in ("exited", "dead", "restarting") or (
                        container.attrs.get("RestartCount") or 0) > 0:
                    logs = container.logs(tail=30).decode(errors="replace")
                    code = container.attrs.get("State", {}).get("ExitCode")
                    raise ContainerStartError(
                        f"container {name!r} on {host_desc(props)} failed at start (exit code {code}); "
                        f"last log lines:\n{logs}"
                    )
            except BaseException:
                try:
                    container.remove(force=True)
                except docker.errors.APIError:
                    pass
                raise
            outs = dict(props)
            outs.update(container_id=container.id, state=container.status or "running")
            return CreateResult(id_=str(container.id), outs=outs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        outs = dict(news)
        outs.update(container_id=olds.get("container_id"), state=olds.get("state"))
        if _uploads_change(olds, news) == "reload":
            outs["state"] = self._reload(id_, olds, news)
        return UpdateResult(outs=outs)

    def _reload(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> str:
        """Write the changed reloadable uploads into the container and signal it; return its state."""
        import docker.errors

        name = news.get("name") or id_[:12]
        files = [n for o, n in zip(plain(olds.get("uploads") or []), plain(news.get("uploads") or []), strict=False) if o != n]
        sig = _signal_name(news.get("reload_signal")) or "SIGHUP"
        with client_from_props(news, timeout=60) as client:
            try:
                container = client.containers.get(id_)
            except docker.errors.NotFound:
                raise ContainerStartError(
                    f"container {name!r} is gone from {host_desc(news)}; run `pulumi refresh`, then `pulumi up`"
                    " recreates it") from None
            if not container.put_archive("/", _uploads_tar(files)):
                raise ContainerStartError(f"could not copy the new files into container {name!r}")
            restarts = container.attrs.get("RestartCount") or 0
            try:
                container.kill(signal=sig)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:  # 409: not running; it reads the new files when it starts
                    raise
                return str(container.status)
            # Watch it as at create: a container that dies of the reload fails `pulumi up` with its logs.
            deadline = time.monotonic() + float(news.get("startup_check", STARTUP_CHECK))
            while True:
                container.reload()
                failed = container.status in ("exited", "dead", "restarting") or (
                    container.attrs.get("RestartCount") or 0) > restarts
                if failed:
                    logs = container.logs(tail=30).decode(errors="replace")
                    raise ContainerStartError(
                        f"container {name!r} on {host_desc(news)} stopped after {sig} (new files: "
                        f"{', '.join(str(f['path']) for f in files)}); last log lines:\n{logs}")
                if time.monotonic() >= deadline:
                    return str(container.status)
                time.sleep(0.25)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        import docker.errors

        with client_from_props(props, timeout=30) as client:
            try:
                c = client.containers.get(id_)
            except docker.errors.NotFound:
                return ReadResult(id_=None, outs={})  # gone: refresh drops it, the next up recreates it
            paths = [str(up["path"]) for up in plain(props.get("uploads") or []) if isinstance(up, dict) and up.get("path")]
            outs = dict(props)
            outs.update(container_id=c.id, state=c.status, missing_uploads=_missing(c, paths))
        return ReadResult(id_=id_, outs=outs)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        import docker.errors

        timeout = int(props.get("stop_timeout") or 10)
        with client_from_props(props, timeout=timeout + 60) as client:
            try:
                c = client.containers.get(id_)
            except docker.errors.NotFound:
                return
            try:
                if c.status in ("running", "restarting", "paused"):
                    c.stop(timeout=timeout)
                _remove_host_uploads(client, c, props)
                c.remove(force=True)
            except docker.errors.NotFound:
                return


def _remove_host_uploads(client: Any, container: Any, props: Mapping[str, Any]) -> None:
    """Delete the uploads that live in the (stopped) container's bind mounts from the host.

    A helper container of the same image, with the same mounts (``volumes_from``), runs ``rm -f``:
    the engine may be remote, so its host's files are reached through it. Files already gone need
    no helper, so a delete that failed here succeeds once they have been removed by hand. Then the
    ``create_source`` folders that held them are removed if empty (``rmdir``, through a mount of
    their parent; best effort: a folder something else wrote into stays).
    """
    import docker.errors

    paths = host_uploads(props)
    gone = _missing(container, paths)
    present = [p for p in paths if p not in gone]
    if not present:
        return
    name = props.get("name") or container.id[:12]
    helper = {"image": container.attrs.get("Image") or props["image"], "command": [], "network_mode": "none",
              "user": "0:0", "remove": True,
              "labels": {MANAGED_LABEL: MANAGED_VALUE, "ghr.role": "cleanup", "ghr.cleanup-of": str(name)}}
    try:
        client.containers.run(entrypoint=["rm", "-f", "--", *present], volumes_from=[container.id], **helper)
    except docker.errors.DockerException as exc:
        raise ContainerCleanupError(
            f"container {name!r} on {host_desc(props)} is stopped, but its files {', '.join(present)} (in a host "
            f"folder it mounts) could not be removed: {exc}. Remove them on the host, then run the delete again"
        ) from None
    parents: dict[str, str] = {}
    folders: list[str] = []
    for m in plain(props.get("mounts") or []):
        if not (isinstance(m, dict) and m.get("type", "bind") == "bind" and m.get("create_source")):
            continue
        target = posixpath.normpath(str(m.get("target") or "/")).rstrip("/") + "/"
        parent, base = posixpath.split(posixpath.normpath(str(m["source"])))
        if base and any(p.startswith(target) for p in present):
            where = parents.setdefault(parent, f"/ghr-cleanup/{len(parents)}")
            folders.append(f"{where}/{base}")
    if folders:
        try:
            client.containers.run(entrypoint=["rmdir", "--", *folders],
                                  volumes=[f"{parent}:{where}:rw" for parent, where in parents.items()], **helper)
        except docker.errors.DockerException:
            pass  # not empty (or gone): it stays, harmless


class DockerContainerArgs(TypedDict):
    """Inputs of a DockerContainer."""

    name: pulumi.Input[str]
    image: pulumi.Input[str]
    command: NotRequired[pulumi.Input[Sequence[str] | str]]
    entrypoint: NotRequired[pulumi.Input[Sequence[str]]]
    host: NotRequired[Any]  # URL string or HostConnection dict
    env: NotRequired[pulumi.Input[Mapping[str, pulumi.Input[str]]]]
    mounts: NotRequired[Sequence[Mount]]
    network_mode: NotRequired[str]
    restart_policy: NotRequired[str]
    labels: NotRequired[pulumi.Input[Mapping[str, pulumi.Input[str]]]]
    uploads: NotRequired[pulumi.Input[Sequence[Upload]]]
    stop_timeout: NotRequired[int]
    user: NotRequired[str]
    extra_hosts: NotRequired[Mapping[str, str]]
    group_add: NotRequired[Sequence[str]]
    loopback_ports: NotRequired[Mapping[str, int]]  # {"<container port>": <host port>}, published on 127.0.0.1 only
    startup_check: NotRequired[float]  # seconds the container must stay up after start (default 2)
    # Signal (e.g. "SIGHUP") sent after writing changed `reloadable` uploads in place; without it they replace.
    reload_signal: NotRequired[str]


class DockerContainer(Resource, module="docker", name="Container"):
    """A container on a Docker host, created from an image, started, and watched for drift."""

    container_id: pulumi.Output[str]
    state: pulumi.Output[str]
    name: pulumi.Output[str]
    docker_host: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: DockerContainerArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **kwargs: Any,
    ) -> None:
        a: dict[str, Any] = dict(args or {})
        a.update(kwargs)
        props: dict[str, Any] = {
            **host_props(a.get("host")),
            "name": a.get("name") or resource_name,
            "image": a["image"],
            "command": a.get("command"),
            "entrypoint": a.get("entrypoint"),
            "env": a.get("env") or {},
            "mounts": plain(a.get("mounts") or []),
            "network_mode": a.get("network_mode"),
            "restart_policy": a.get("restart_policy") or "no",
            "labels": a.get("labels") or {},
            "uploads": a.get("uploads") or [],
            "stop_timeout": a.get("stop_timeout", 10),
            "user": a.get("user"),
            "extra_hosts": a.get("extra_hosts") or {},
            "group_add": a.get("group_add") or [],
            "loopback_ports": {str(k): int(v) for k, v in (a.get("loopback_ports") or {}).items()} or None,
            "startup_check": a.get("startup_check", STARTUP_CHECK),
            "reload_signal": a.get("reload_signal"),
            "container_id": None,
            "state": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["tls", "uploads"])
        )
        super().__init__(DockerContainerProvider(), resource_name, props, opts)


__all__ = [
    "ContainerCleanupError", "ContainerStartError", "DockerContainer", "DockerContainerArgs", "DockerContainerProvider",
    "MANAGED_LABEL", "Mount", "Upload", "host_uploads",
]
