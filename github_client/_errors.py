"""Typed errors. Every message says what to do and never carries a secret."""

from __future__ import annotations

from datetime import datetime


class GitHubError(Exception):
    """Base of every error this package raises.

    ``status`` is the HTTP status (None when no response came back), ``method`` and
    ``path`` name the request (paths never contain secrets), ``github_message`` is
    GitHub's own ``message`` field, redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        github_message: str | None = None,
        documentation_url: str | None = None,
        request_id: str | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.path = path
        self.github_message = github_message
        self.documentation_url = documentation_url
        self.request_id = request_id
        self.attempts = attempts  # HTTP attempts made for this call (None: none sent)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


class InvalidInput(GitHubError, ValueError):
    """Input refused before any request was sent; ``field`` names the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class BadCredentials(GitHubError):
    """401: the token or JWT is invalid, expired or revoked."""


class PermissionDenied(GitHubError):
    """403 that is not a rate limit: the credentials lack a scope or permission."""


class NotFound(GitHubError):
    """404: unknown scope, runner or label (or invisible to these credentials)."""


class Conflict(GitHubError):
    """409, e.g. a runner with that name already exists."""


class Unprocessable(GitHubError):
    """422: GitHub refused the request's content (or the runner is busy)."""


class ServerError(GitHubError):
    """5xx after every retry."""


class GitHubUnavailable(GitHubError):
    """No response at all (connection refused, reset, timeout) after every retry."""


class RateLimited(GitHubError):
    """A primary or secondary rate limit asks for a longer wait than ``max_wait``.

    ``retry_at`` is when GitHub will take requests again (UTC, best estimate).
    """

    def __init__(self, message: str, *, retry_at: datetime | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_at = retry_at
