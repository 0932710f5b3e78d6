"""RunnerImage: the runner image and the manager image of one pool, built on one host, and for a pool with
``docker: dind`` (a sidecar engine per runner) the sidecar image, on the same base as the runner image."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

import pulumi

from .docker import DockerImage

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER_CONTEXT = os.path.join(REPO_ROOT, "runner-image")
RUNNER_DOCKERFILE = "Dockerfile"
MANAGER_CONTEXT = REPO_ROOT
MANAGER_DOCKERFILE = "runner-image/manager.Dockerfile"
DIND_DOCKERFILE = "dind.Dockerfile"  # in the runner image's context (runner-image/)


def missing_dind_dockerfile(context: str | None = None) -> str | None:
    """Why the sidecar image cannot be built from ``context`` (default runner-image/), with the fix; None if it can."""
    context = context or RUNNER_CONTEXT
    path = os.path.join(context, DIND_DOCKERFILE)
    if os.path.isfile(path):
        return None
    return (f"the dind sidecar image's Dockerfile {path} is missing, so the sidecar image (a private Docker engine"
            " per runner, for pools with docker: dind) cannot be built; restore it (git checkout -- runner-image/"
            f"{DIND_DOCKERFILE}) or set those pools' docker to none")


class RunnerImageArgs(TypedDict):
    stack: str
    pool: str
    host_name: str
    host: Mapping[str, Any]  # {"url", "ssh_options", "tls" (secret Output)}
    build_args: Mapping[str, str]  # runner image build args (BASE_IMAGE, RUNNER_VERSION, ...)
    manager_base_image: NotRequired[str]
    runner_context: NotRequired[str]
    manager_context: NotRequired[str]
    dind_sidecar: NotRequired[bool]  # also build the dind sidecar image (pools with docker: dind, no dind.runtime)
    base_mirror: NotRequired[pulumi.Input[str | None]]  # the host's registry cache on its loopback (HostCache.host_mirror)


class RunnerImage(pulumi.ComponentResource):
    """``ghr-runner:<stack>-<pool>`` and ``ghr-manager:<stack>-<pool>`` on one Docker host."""

    runner_image_id: pulumi.Output[str]
    manager_image_id: pulumi.Output[str]
    runner_tag: pulumi.Output[str]
    manager_tag: pulumi.Output[str]
    dind_image_id: pulumi.Output[str] | None  # the sidecar image's id: set only with args["dind_sidecar"]
    dind_tag: pulumi.Output[str] | None

    def __init__(self, name: str, args: RunnerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ghr:index:RunnerImage", name, None, opts)
        for key in ("stack", "pool", "host_name", "build_args"):
            if not args.get(key):
                raise ValueError(f"RunnerImage {name}: {key} is required")
        labels = {"ghr.stack": args["stack"], "ghr.pool": args["pool"], "ghr.host": args["host_name"]}
        runner_tag = f"ghr-runner:{args['stack']}-{args['pool']}"
        manager_tag = f"ghr-manager:{args['stack']}-{args['pool']}"
        child = pulumi.ResourceOptions(parent=self)
        runner_context = args.get("runner_context") or RUNNER_CONTEXT
        if args.get("dind_sidecar"):
            problem = missing_dind_dockerfile(runner_context)
            if problem:  # at preview, before anything is built
                raise ValueError(f"RunnerImage {name} (pool {args['pool']!r} on host {args['host_name']!r}): {problem}")
        runner = DockerImage(f"{name}-runner", {
            "tag": runner_tag,
            "context": runner_context,
            "dockerfile": RUNNER_DOCKERFILE,
            "build_args": dict(args["build_args"]),
            "host": args["host"],
            "labels": {**labels, "ghr.role": "runner-image"}, "base_mirror": args.get("base_mirror"),
        }, child)
        manager_args = {"BASE_IMAGE": args["manager_base_image"]} if args.get("manager_base_image") else {}
        manager = DockerImage(f"{name}-manager", {
            "tag": manager_tag,
            "context": args.get("manager_context") or MANAGER_CONTEXT,
            "dockerfile": MANAGER_DOCKERFILE,
            "build_args": manager_args,
            "host": args["host"],
            "labels": {**labels, "ghr.role": "manager-image"}, "base_mirror": args.get("base_mirror"),
        }, child)
        self.runner_image_id = runner.image_id
        self.manager_image_id = manager.image_id
        self.runner_tag = pulumi.Output.from_input(runner_tag)
        self.manager_tag = pulumi.Output.from_input(manager_tag)
        outputs: dict[str, Any] = {
            "runner_image_id": self.runner_image_id, "manager_image_id": self.manager_image_id,
            "runner_tag": self.runner_tag, "manager_tag": self.manager_tag,
        }
        self.dind_image_id = None
        self.dind_tag = None
        if args.get("dind_sidecar"):
            # Same base as the runner image; not the pool's extraPackages (those are for jobs, not the engine).
            dind_tag = f"ghr-dind:{args['stack']}-{args['pool']}"
            base = args["build_args"].get("BASE_IMAGE")
            dind = DockerImage(f"{name}-dind", {
                "tag": dind_tag,
                "context": runner_context,
                "dockerfile": DIND_DOCKERFILE,
                "build_args": {"BASE_IMAGE": base} if base else {},
                "host": args["host"],
                "labels": {**labels, "ghr.role": "dind-image"}, "base_mirror": args.get("base_mirror"),
            }, child)
            self.dind_image_id = dind.image_id
            self.dind_tag = pulumi.Output.from_input(dind_tag)
            outputs.update(dind_image_id=self.dind_image_id, dind_tag=self.dind_tag)
        self.register_outputs(outputs)
