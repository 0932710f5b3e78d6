"""DockerImage: a dynamic resource that builds a Dockerfile on a Docker host.

Rebuilt when the context hash, Dockerfile, build args or tag change (update in place: a new
image id, the old image removed when nothing uses it); replaced when the host changes;
the image is removed on delete. ``read`` reports an image that disappeared from the host.

``base_mirror`` (``127.0.0.1:<port>``: the host's registry cache, published on its loopback, issue 11): before the
build, a base image (``BASE_IMAGE``, the build arg or the Dockerfile's ``ARG BASE_IMAGE=`` default) that is a
Docker Hub name and not on the host yet is pulled through the mirror (``127.0.0.1:<port>/library/<name>:<tag>``)
and tagged as its own name, so the build finds it; if the mirror fails, the build pulls it as usual (logged).
A base already on the host is left alone (``pull_base`` pulls it anyway: a newer one for a moving tag).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import tarfile
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import pulumi
from docker.utils import build as docker_build
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

from .._provider import changed, host_desc
from .._provider import is_unknown as _unknown
from ._connection import HostSpecError, client_from_props, host_props, validate_host_spec

DEFAULT_EXCLUDES = [".git", ".venv", "**/__pycache__", "node_modules", ".state", ".cache", ".pytest_cache"]
BUILD_TIMEOUT = 1800
log = logging.getLogger(__name__)


class DockerBuildError(RuntimeError):
    """A docker build failed; the message carries the tail of the build log."""


def _ignore_patterns(context: str) -> list[str]:
    path = os.path.join(context, ".dockerignore")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            return [ln.strip() for ln in fh.read().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return list(DEFAULT_EXCLUDES)


def context_files(context: str, dockerfile: str) -> list[str]:
    """The files (relative paths) docker would send for this context, sorted."""
    patterns = _ignore_patterns(context)
    files = []
    for rel in docker_build.exclude_paths(context, list(patterns), dockerfile=dockerfile):
        if os.path.isfile(os.path.join(context, rel)) or os.path.islink(os.path.join(context, rel)):
            files.append(rel)
    if dockerfile not in files and os.path.isfile(os.path.join(context, dockerfile)):
        files.append(dockerfile)
    return sorted(files)


def context_hash(context: str, dockerfile: str = "Dockerfile") -> str:
    """SHA-256 over the names, modes and contents of the files in a build context."""
    digest = hashlib.sha256()
    for rel in context_files(context, dockerfile):
        full = os.path.join(context, rel)
        st = os.lstat(full)
        digest.update(rel.encode() + b"\0" + oct(stat.S_IMODE(st.st_mode)).encode() + b"\0")
        if stat.S_ISLNK(st.st_mode):
            digest.update(os.readlink(full).encode())
        else:
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def context_tar(context: str, dockerfile: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(mode="w", fileobj=buf) as tar:
        for rel in context_files(context, dockerfile):
            tar.add(os.path.join(context, rel), arcname=rel, recursive=False)
    buf.seek(0)
    return buf


_BUILD_KEYS = ("context_hash", "dockerfile", "build_args", "tag", "network_mode", "labels", "target")


def dockerfile_base(context: str, dockerfile: str, build_args: Mapping[str, Any]) -> str | None:
    """The image the build starts from, when it says so through ``BASE_IMAGE``: the build arg, else the
    Dockerfile's ``ARG BASE_IMAGE=<default>`` (None when neither: a literal FROM is left to the build)."""
    arg = build_args.get("BASE_IMAGE")
    if isinstance(arg, str) and arg:
        return arg
    try:
        with open(os.path.join(context, dockerfile), encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return None
    m = re.search(r"^\s*ARG\s+BASE_IMAGE=(\S+)\s*$", text, re.MULTILINE)
    return m.group(1).strip("\"'") if m else None


def hub_repository(ref: str) -> tuple[str, str] | None:
    """(repository as the registry API names it, tag) of a Docker Hub image name (``ubuntu:24.04`` ->
    ``library/ubuntu``, ``24.04``; ``docker.io/x/y`` -> ``x/y``, ``latest``); None for another registry's name
    (``ghcr.io/...``, ``localhost:5000/...``) or a digest reference (left to the build)."""
    if "@" in ref or not ref:
        return None
    first, _, rest = ref.partition("/")
    if rest and (first in ("docker.io", "index.docker.io", "registry-1.docker.io")):
        ref = rest
    elif rest and ("." in first or ":" in first or first == "localhost"):
        return None
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "latest")
    if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", name):
        return None
    return (name if "/" in name else f"library/{name}"), (tag or "latest")


def pull_base_through_mirror(client: Any, props: Mapping[str, Any]) -> str:
    """Put the build's base image on the host through ``base_mirror`` when it should (see the module doc);
    returns what happened: ``none`` (no mirror, no Hub base), ``present``, ``mirror`` or ``fallback: <why>``."""
    import docker.errors

    mirror = props.get("base_mirror")
    base = dockerfile_base(str(props.get("context")), str(props.get("dockerfile") or "Dockerfile"),
                           dict(props.get("build_args") or {}))
    hub = hub_repository(base) if base and isinstance(mirror, str) and mirror else None
    if base is None or hub is None:
        return "none"
    if not props.get("pull_base"):
        try:
            client.images.get(base)
            return "present"  # local-only bases (ghr-base:bookworm) and pulled ones: left alone
        except docker.errors.ImageNotFound:
            pass
    repository, tag = hub
    through = f"{mirror}/{repository}:{tag}"
    try:
        image = client.images.pull(f"{mirror}/{repository}", tag=tag)
        image.tag(base if ":" in base.rsplit("/", 1)[-1] else f"{base}:latest")
        try:
            client.images.remove(through, noprune=True)  # only the mirror's name: the image stays as `base`
        except docker.errors.APIError:
            pass
    except (docker.errors.DockerException, OSError) as exc:
        why = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        log.warning("pulling base image %s through the host's registry cache (%s) on %s failed (%s); the build"
                    " pulls it from its registry instead", base, through, host_desc(props), why)
        return f"fallback: {why}"
    log.info("base image %s pulled through the host's registry cache (%s) on %s", base, through, host_desc(props))
    return "mirror"


class DockerImageProvider(ResourceProvider):
    """CRUD for one image on one host. Stateless: clients are built inside each method."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        if not news.get("tag") or not isinstance(news.get("tag"), str):
            failures.append(CheckFailure("tag", "an image tag is required, e.g. ghr-runner:sandbox"))
        if not news.get("context"):
            failures.append(CheckFailure("context", "a build context directory is required"))
        if not news.get("dockerfile"):
            failures.append(CheckFailure("dockerfile", "a Dockerfile path (relative to the context) is required"))
        ba = news.get("build_args") or {}
        if not isinstance(ba, Mapping) or not all(isinstance(v, str) for v in ba.values() if not _unknown(v)):
            failures.append(CheckFailure("build_args", "build args must be a map of string to string"))
        if not _unknown(news.get("docker_host")):
            for problem in validate_host_spec(news.get("docker_host"), news.get("ssh_options"), news.get("tls")):
                failures.append(CheckFailure("docker_host", problem))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = changed(olds, news, ("docker_host", "context"))
        updates = changed(olds, news, _BUILD_KEYS + ("ssh_options", "tls"))
        return DiffResult(changes=bool(replaces or updates), replaces=replaces, delete_before_replace=False)

    def _build(self, props: Mapping[str, Any]) -> tuple[str, str]:
        context = props["context"]
        dockerfile = props.get("dockerfile") or "Dockerfile"
        if not os.path.isdir(context):
            raise DockerBuildError(f"build context {context!r} is not a directory")
        tar = context_tar(context, dockerfile)
        log_tail: list[str] = []
        image_id: str | None = None
        with client_from_props(props, timeout=BUILD_TIMEOUT) as client:
            base_pull = pull_base_through_mirror(client, props)
            stream = client.api.build(
                fileobj=tar,
                custom_context=True,
                dockerfile=dockerfile,
                tag=props["tag"],
                buildargs=dict(props.get("build_args") or {}),
                network_mode=props.get("network_mode") or "host",
                labels=dict(props.get("labels") or {}),
                target=props.get("target") or None,
                rm=True,
                forcerm=True,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    log_tail.extend(chunk["stream"].splitlines())
                    log_tail = log_tail[-40:]
                if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                    image_id = chunk["aux"]["ID"]
                if "error" in chunk:
                    log_tail.append(str(chunk["error"]))
                    raise DockerBuildError(
                        f"docker build of {props['tag']} on {host_desc(props)} failed:\n" + "\n".join(log_tail[-40:])
                    )
            if image_id is None:
                image_id = client.images.get(props["tag"]).id
        if not image_id:
            raise DockerBuildError(f"docker build of {props['tag']} on {host_desc(props)} reported no image id")
        return image_id, base_pull

    def create(self, props: dict[str, Any]) -> CreateResult:
        image_id, base_pull = self._build(props)
        outs = dict(props)
        outs["image_id"] = image_id
        outs["base_pull"] = base_pull  # none | present | mirror | fallback: <why>
        return CreateResult(id_=f"{props['tag']}@{image_id}", outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        image_id, base_pull = self._build(news)
        old_id = olds.get("image_id")
        if old_id and old_id != image_id:
            _remove_quietly(olds, old_id)
        outs = dict(news)
        outs["image_id"] = image_id
        outs["base_pull"] = base_pull
        return UpdateResult(outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        import docker.errors

        image_id = props.get("image_id")
        try:
            with client_from_props(props, timeout=30) as client:
                img = client.images.get(str(image_id))
        except docker.errors.ImageNotFound:
            return ReadResult(id_=None, outs={})  # gone from the host: refresh drops it, up rebuilds it
        outs = dict(props)
        outs["image_id"] = img.id
        return ReadResult(id_=id_, outs=outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        import docker.errors

        try:
            with client_from_props(props, timeout=60) as client:
                try:
                    img = client.images.get(props["tag"])
                    if img.id == props.get("image_id"):
                        client.images.remove(props["tag"], noprune=False)
                except docker.errors.ImageNotFound:
                    pass
                except docker.errors.APIError:
                    pass
        except HostSpecError:
            raise
        if props.get("image_id"):
            _remove_quietly(props, props["image_id"])


def _remove_quietly(props: Mapping[str, Any], image_id: str) -> None:
    """Remove an image by id unless something still uses it (a 409 leaves it in place)."""
    import docker.errors

    with client_from_props(props, timeout=60) as client:
        try:
            client.images.remove(image_id, noprune=False)
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            if getattr(exc, "status_code", None) != 409:
                raise


class DockerImageArgs(TypedDict):
    """Inputs of a DockerImage."""

    tag: pulumi.Input[str]
    context: str
    dockerfile: NotRequired[str]
    build_args: NotRequired[pulumi.Input[Mapping[str, pulumi.Input[str]]]]
    host: NotRequired[Any]  # URL string or HostConnection dict
    network_mode: NotRequired[str]
    labels: NotRequired[Mapping[str, str]]
    target: NotRequired[str]
    base_mirror: NotRequired[pulumi.Input[str | None]]  # 127.0.0.1:<port>: the host's registry cache (loopback)
    pull_base: NotRequired[bool]  # with base_mirror: pull the base through it even when the host has it


class DockerImage(Resource, module="docker", name="Image"):
    """An image built from a Dockerfile on a Docker host (``ghr:docker:Image`` in spirit)."""

    image_id: pulumi.Output[str]
    tag: pulumi.Output[str]
    context_hash: pulumi.Output[str]
    docker_host: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: DockerImageArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **kwargs: Any,
    ) -> None:
        a: dict[str, Any] = dict(args or {})
        a.update(kwargs)
        context = os.path.abspath(a["context"])
        dockerfile = a.get("dockerfile") or "Dockerfile"
        props: dict[str, Any] = {
            **host_props(a.get("host")),
            "tag": a["tag"],
            "context": context,
            "dockerfile": dockerfile,
            "build_args": a.get("build_args") or {},
            "network_mode": a.get("network_mode") or "host",
            "labels": a.get("labels") or {},
            "target": a.get("target"),
            "base_mirror": a.get("base_mirror"),
            "pull_base": bool(a.get("pull_base", False)),
            "context_hash": context_hash(context, dockerfile) if os.path.isdir(context) else "missing",
            "image_id": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["tls"])
        )
        super().__init__(DockerImageProvider(), resource_name, props, opts)


__all__ = ["DockerBuildError", "DockerImage", "DockerImageArgs", "DockerImageProvider", "context_hash", "dockerfile_base",
           "hub_repository", "pull_base_through_mirror"]
