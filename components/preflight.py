"""Checks run by the program before anything is deployed (warnings, never state)."""

from __future__ import annotations

from collections.abc import Iterable

from .config import GitHubConfig


def runner_version_warnings_for(github: GitHubConfig, versions: Iterable[str]) -> list[str]:
    """Ask GitHub's deprecation endpoint about each runner version (bounded: 5 s, no retries)."""
    from github_client import GitHubError

    from ._github import config_client
    from .registration import runner_version_warnings

    try:
        client = config_client(github, timeout=5.0, max_retries=0, max_wait=5.0)
    except GitHubError as exc:  # CredentialsError and InvalidInput included
        return [f"could not check runner versions ({exc})"]
    out: list[str] = []
    for v in sorted(set(versions)):
        out.extend(runner_version_warnings(client, v))
    return out
