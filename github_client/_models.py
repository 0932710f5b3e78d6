"""Value objects returned by the client. Secret fields are left out of ``repr``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def parse_time(value: object) -> datetime | None:
    """GitHub timestamps (``2024-01-01T00:00:00Z`` or with an offset) as aware UTC datetimes."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class Token:
    """A registration or remove token; valid for about an hour and reusable within it."""

    token: str = field(repr=False)
    expires_at: datetime | None


@dataclass(frozen=True)
class Runner:
    """A self-hosted runner as GitHub reports it (``busy`` can lag behind reality)."""

    id: int
    name: str
    os: str
    status: str
    busy: bool
    labels: list[str]
    runner_group_id: int | None
    ephemeral: bool | None
    version: str | None = None

    @property
    def online(self) -> bool:
        return self.status == "online"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Runner:
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            os=str(data.get("os", "unknown")),
            status=str(data.get("status", "offline")),
            busy=bool(data.get("busy", False)),
            labels=[str(label["name"]) for label in data.get("labels") or []],
            runner_group_id=data.get("runner_group_id"),
            ephemeral=data.get("ephemeral"),
            version=data.get("version"),
        )


@dataclass(frozen=True)
class JitConfig:
    """A just-in-time runner registration; the config is a secret for one runner, one job."""

    runner: Runner
    encoded_jit_config: str = field(repr=False)


@dataclass(frozen=True)
class RunnerGroup:
    id: int
    name: str
    default: bool
    visibility: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RunnerGroup:
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            default=bool(data.get("default", False)),
            visibility=data.get("visibility"),
        )


@dataclass(frozen=True)
class RunnerDownload:
    os: str
    architecture: str
    download_url: str
    filename: str
    sha256_checksum: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RunnerDownload:
        return cls(
            os=str(data["os"]),
            architecture=str(data["architecture"]),
            download_url=str(data["download_url"]),
            filename=str(data["filename"]),
            sha256_checksum=data.get("sha256_checksum"),
        )


@dataclass(frozen=True)
class RunnerDeprecation:
    """When a runner version stops being able to register / to run jobs (None: not scheduled)."""

    runner_version: str
    registration_deprecates_at: datetime | None
    runtime_deprecates_at: datetime | None

    @classmethod
    def from_api(cls, data: dict[str, Any], version: str) -> RunnerDeprecation:
        return cls(
            runner_version=str(data.get("runner_version") or version),
            registration_deprecates_at=parse_time(data.get("registration_deprecates_at")),
            runtime_deprecates_at=parse_time(data.get("runtime_deprecates_at")),
        )


@dataclass(frozen=True)
class Access:
    """What :meth:`GitHubClient.check_access` proved."""

    scope: str
    auth: str
    installation_id: int | None = None
    rate_limit_remaining: int | None = None


#: Fault kinds a :class:`RequestEvent` may carry, as the answer itself says them.
FAULT_KINDS = ("secondary", "primary", "5xx", "connection")


@dataclass(frozen=True)
class RequestEvent:
    """One HTTP attempt, handed to the ``on_request`` hook (no secrets in it).

    One event per attempt, so retries the client absorbs are visible to the hook.

    ``kind``: the client call (``registration_token``, ``list_runners`` ...).
    ``method``, ``path``: the request (paths carry no secret).
    ``status``: the HTTP status, None when no answer came back (connection failure).
    ``attempt``: 1 for the first attempt of a call, 2 for its first retry, and so on;
    ``retry`` is ``attempt > 1``.
    ``duration``: seconds this attempt took (request sent to answer or failure).
    ``error``: the exception class name of a connection failure, else None.
    ``fault``: what went wrong, where the answer says it: ``"secondary"`` (a secondary
    rate limit: 403/429 with retry-after or GitHub's secondary-limit message),
    ``"primary"`` (the primary rate limit, ``x-ratelimit-remaining: 0``), ``"5xx"``,
    ``"connection"`` (no answer: refused, reset, timeout); None otherwise (success or
    an ordinary 4xx).
    ``elapsed``: seconds since the call began, this attempt and earlier waits included.
    """

    kind: str
    method: str
    path: str
    status: int | None
    attempt: int
    duration: float
    error: str | None = None
    fault: str | None = None
    elapsed: float = 0.0

    @property
    def retry(self) -> bool:
        """True when this attempt repeats an earlier one of the same call."""
        return self.attempt > 1
