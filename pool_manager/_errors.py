"""What went wrong in a pass: a `kind` for metrics and health, and a message that says what to do."""

from __future__ import annotations

import requests
from docker.errors import APIError, DockerException, ImageNotFound

from github_client import GitHubError

__all__ = ["PoolError", "classify", "short", "start_error"]


class PoolError(Exception):
    """A failure of one pass, with a `kind` for metrics and a message that says what to do."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def start_error(exc: Exception, image: str) -> Exception:
    """The error to report for a runner container the engine refused to create or start."""
    text = str(exc)
    if isinstance(exc, APIError) and ("device driver" in text or "nvidia" in text.lower() or "gpu" in text.lower()):
        return PoolError("gpu", "the Docker engine refused the GPU request (" + short(exc) + "); install the NVIDIA"
                         " container toolkit on this host, or remove container.gpus from the pool")
    if isinstance(exc, ImageNotFound):
        return PoolError("image", f"image {image!r} is not on this Docker engine; build it there")
    if isinstance(exc, APIError):
        return PoolError("start", "the Docker engine refused the runner container (" + short(exc) + ")")
    return exc


def short(exc: BaseException) -> str:
    if isinstance(exc, APIError) and exc.explanation:
        text = str(exc.explanation)
    else:
        text = str(exc)
    return text.strip().replace("\n", " ")[:300]


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, message): `github`, `docker`, a PoolError's own kind, or `internal`."""
    if isinstance(exc, PoolError):
        return exc.kind, str(exc)
    if isinstance(exc, GitHubError):
        return "github", f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (DockerException, requests.exceptions.RequestException)):
        return "docker", f"Docker engine: {type(exc).__name__}: {short(exc)}; check the engine is running and" \
                         " its socket is mounted into the manager"
    return "internal", f"{type(exc).__name__}: {short(exc)}"
