"""Docker images and containers as Pulumi dynamic resources (the docker SDK, no plugin).

A host is a URL string (``unix:///var/run/docker.sock``, ``ssh://user@host[:port]``,
``tcp://host:2376``) or a :class:`HostConnection` dict with ``ssh_options`` and TLS material
(secrets). Importing this package does nothing but define classes.

The rest of ``components`` imports this package's public names only; helpers every provider
shares (unknown values, diffs, host descriptions) are in :mod:`components._provider`.
"""

from typing import Any, NotRequired, TypedDict

import pulumi

from ._connection import (
    HostSpecError,
    client_from_props,
    default_host_url,
    docker_client,
    host_props,
    validate_host_spec,
)
from ._container import (
    MANAGED_LABEL,
    ContainerStartError,
    DockerContainer,
    DockerContainerArgs,
    DockerContainerProvider,
    Mount,
    Upload,
)
from ._image import (
    DockerBuildError,
    DockerImage,
    DockerImageArgs,
    DockerImageProvider,
    context_hash,
    context_tar,
    dockerfile_base,
    hub_repository,
    pull_base_through_mirror,
)


class HostConnection(TypedDict):
    """How to reach a Docker engine."""

    url: str
    ssh_options: NotRequired[list[str]]
    tls: NotRequired[pulumi.Input[dict[str, Any]]]  # {"ca", "cert", "key"}: PEM strings, secrets


__all__ = [
    "MANAGED_LABEL",
    "ContainerStartError",
    "DockerBuildError",
    "DockerContainer",
    "DockerContainerArgs",
    "DockerContainerProvider",
    "DockerImage",
    "DockerImageArgs",
    "DockerImageProvider",
    "HostConnection",
    "HostSpecError",
    "Mount",
    "Upload",
    "client_from_props",
    "context_hash",
    "context_tar",
    "dockerfile_base",
    "hub_repository",
    "pull_base_through_mirror",
    "default_host_url",
    "docker_client",
    "host_props",
    "validate_host_spec",
]
