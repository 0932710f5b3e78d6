"""RunnerImage: the runner image and the manager image of one pool, built on one host."""

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


class RunnerImageArgs(TypedDict):
    stack: str
    pool: str
    host_name: str
    host: Mapping[str, Any]  # {"url", "ssh_options", "tls" (secret Output)}
    build_args: Mapping[str, str]  # runner image build args (BASE_IMAGE, RUNNER_VERSION, ...)
    manager_base_image: NotRequired[str]
    runner_context: NotRequired[str]
    manager_context: NotRequired[str]


class RunnerImage(pulumi.ComponentResource):
    """``ghr-runner:<stack>-<pool>`` and ``ghr-manager:<stack>-<pool>`` on one Docker host."""

    runner_image_id: pulumi.Output[str]
    manager_image_id: pulumi.Output[str]
    runner_tag: pulumi.Output[str]
    manager_tag: pulumi.Output[str]

    def __init__(self, name: str, args: RunnerImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ghr:index:RunnerImage", name, None, opts)
        for key in ("stack", "pool", "host_name", "build_args"):
            if not args.get(key):
                raise ValueError(f"RunnerImage {name}: {key} is required")
        labels = {"ghr.stack": args["stack"], "ghr.pool": args["pool"], "ghr.host": args["host_name"]}
        runner_tag = f"ghr-runner:{args['stack']}-{args['pool']}"
        manager_tag = f"ghr-manager:{args['stack']}-{args['pool']}"
        child = pulumi.ResourceOptions(parent=self)
        runner = DockerImage(f"{name}-runner", {
            "tag": runner_tag,
            "context": args.get("runner_context") or RUNNER_CONTEXT,
            "dockerfile": RUNNER_DOCKERFILE,
            "build_args": dict(args["build_args"]),
            "host": args["host"],
            "labels": {**labels, "ghr.role": "runner-image"},
        }, child)
        manager_args = {"BASE_IMAGE": args["manager_base_image"]} if args.get("manager_base_image") else {}
        manager = DockerImage(f"{name}-manager", {
            "tag": manager_tag,
            "context": args.get("manager_context") or MANAGER_CONTEXT,
            "dockerfile": MANAGER_DOCKERFILE,
            "build_args": manager_args,
            "host": args["host"],
            "labels": {**labels, "ghr.role": "manager-image"},
        }, child)
        self.runner_image_id = runner.image_id
        self.manager_image_id = manager.image_id
        self.runner_tag = pulumi.Output.from_input(runner_tag)
        self.manager_tag = pulumi.Output.from_input(manager_tag)
        self.register_outputs({
            "runner_image_id": self.runner_image_id, "manager_image_id": self.manager_image_id,
            "runner_tag": self.runner_tag, "manager_tag": self.manager_tag,
        })
