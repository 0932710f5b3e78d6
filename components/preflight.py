"""Checks run by the program before anything is deployed (warnings, never state)."""

from __future__ import annotations

from collections.abc import Iterable

from .config import GitHubConfig


def runner_version_warnings_for(github: GitHubConfig, versions: Iterable[str]) -> list[str]:
    """Ask GitHub's deprecation endpoint about each runner version (bounded: 5 s, no retries)."""
    try:
        from github_client import AppAuth, GitHubClient, GitHubError, PatAuth, parse_scope
    except ImportError:  # pragma: no cover
        return []
    from .registration import runner_version_warnings

    try:
        auth = PatAuth(github.token) if github.auth == "pat" else AppAuth(
            github.app_id, github.private_key, github.installation_id)
        client = GitHubClient(parse_scope(github.scope_url, github.api_url), auth, timeout=5.0, max_retries=0,
                              max_wait=5.0, user_agent="ghr-pulumi/0.1")
    except GitHubError as exc:
        return [f"could not check runner versions ({exc})"]
    out: list[str] = []
    for v in sorted(set(versions)):
        out.extend(runner_version_warnings(client, v))
    return out
