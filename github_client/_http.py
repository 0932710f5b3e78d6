"""HTTP transport: timeouts, bounded retries with jittered backoff, rate limits, hooks."""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from ._errors import (
    BadCredentials,
    Conflict,
    GitHubError,
    GitHubUnavailable,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    Unprocessable,
)
from ._models import RequestEvent
from ._redact import redact

log = logging.getLogger("github_client")

API_VERSION = "2022-11-28"
DEFAULT_USER_AGENT = "ghr-github-client/0.1"
# Backoff for 5xx and connection errors: base * 2**n with jitter, capped.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# GitHub: without retry-after, wait at least a minute after a secondary rate limit.
SECONDARY_MIN_WAIT = 60.0

Sleep = Callable[[float], None]
Clock = Callable[[], float]
Hook = Callable[[RequestEvent], None]


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: Any
    attempts: int

    @property
    def rate_limit_remaining(self) -> int | None:
        value = self.headers.get("x-ratelimit-remaining")
        return int(value) if value and value.isdigit() else None


class Transport:
    """Sends one logical call, retrying within bounds. Thread-safe."""

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float,
        max_retries: int,
        max_wait: float,
        user_agent: str,
        session: requests.Session | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        on_request: Hook | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        origin = urlsplit(self.api_url)
        self._origin = (origin.scheme, origin.netloc)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.user_agent = user_agent
        self._session = session
        self._local = threading.local()
        self.sleep = sleep
        self.clock = clock
        self.on_request = on_request
        self._rng = rng
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        # Set when a response says the primary limit is spent: later calls wait for the
        # reset instead of burning a request on a certain 403.
        self._blocked_until = 0.0

    # -- plumbing -------------------------------------------------------------------

    def session(self) -> requests.Session:
        if self._session is not None:
            return self._session
        # requests.Session is not documented as thread-safe: one per thread.
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxy/netrc surprises; tokens go only where we say
            self._local.session = session
        return session

    def same_origin(self, url: str) -> bool:
        parts = urlsplit(url)
        return (parts.scheme, parts.netloc) == self._origin

    def rebase(self, url: str) -> str:
        """A pagination link onto this client's API host (never follow it to another host).

        GHES behind a proxy, or an explicit api_url, may get links that name GitHub's own
        host; the path and query are what matter. Links outside the API root are refused.
        """
        if self.same_origin(url):
            return url
        parts = urlsplit(url)
        base_path = urlsplit(self.api_url).path
        if not parts.path.startswith(base_path + "/"):
            raise GitHubError(
                f"refusing to follow a pagination link to {parts.netloc}{parts.path}: "
                "it is outside this client's API root (check api_url)"
            )
        query = f"?{parts.query}" if parts.query else ""
        return f"{self._origin[0]}://{self._origin[1]}{parts.path}{query}"

    def _count(self, kind: str) -> None:
        with self._lock:
            self.calls[kind] += 1

    def _emit(self, event: RequestEvent) -> None:
        if self.on_request is None:
            return
        try:
            self.on_request(event)
        except Exception:  # a metrics hook must never break a call
            log.exception("event=github_hook_failed kind=%s", event.kind)

    # -- the call -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        kind: str,
        authorization: Callable[[], str],
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        on_unauthorized: Callable[[], bool] | None = None,
        hints: Mapping[int, str] | None = None,
    ) -> Response:
        """Send ``method path`` and return the decoded 2xx response, or raise a typed error.

        ``authorization`` is called per attempt so a refreshed token is picked up;
        ``on_unauthorized`` may drop a cached token and return True to retry a 401 once.
        """
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else self.api_url + path_or_url
        if not self.same_origin(url):
            # Following a Link to another host would hand it our token.
            raise GitHubError(
                f"refusing to send credentials to {urlsplit(url).netloc}: not the API host of this client"
            )
        path = urlsplit(url).path
        call_started = self.clock()
        waited = 0.0
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            waited = self._wait_for_primary_reset(waited, method, path)
            headers = {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": self.user_agent,
                "Authorization": authorization(),
            }
            self._count(kind)
            started = time.monotonic()
            try:
                resp = self.session().request(
                    method, url, headers=headers, params=params, json=json, timeout=self.timeout, allow_redirects=False
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                duration = time.monotonic() - started
                error_name = type(exc).__name__
                self._emit(
                    RequestEvent(
                        kind,
                        method,
                        path,
                        None,
                        attempt,
                        duration,
                        error_name,
                        fault="connection",
                        elapsed=self._elapsed(call_started, duration),
                    )
                )
                delay = self._backoff(attempt)
                cap = self._cap_hit(attempt, waited, delay)
                if cap is not None:
                    raise GitHubUnavailable(
                        f"GitHub API at {self.api_url} did not answer {method} {path} ({error_name}) "
                        f"after {attempt} attempt(s); check the network, the API URL and GitHub's status; {cap}",
                        method=method,
                        path=path,
                        attempts=attempt,
                    ) from None
                log.warning(
                    "event=github_retry kind=%s method=%s path=%s attempt=%d reason=%s delay=%.2f",
                    kind,
                    method,
                    path,
                    attempt,
                    error_name,
                    delay,
                )
                self.sleep(delay)
                waited += delay
                continue

            duration = time.monotonic() - started
            status = resp.status_code
            message, doc_url = _github_message(resp) if status >= 300 else (None, None)
            self._emit(
                RequestEvent(
                    kind,
                    method,
                    path,
                    status,
                    attempt,
                    duration,
                    fault=_fault_of(resp, message),
                    elapsed=self._elapsed(call_started, duration),
                )
            )
            log.debug(
                "event=github_request kind=%s method=%s path=%s status=%d attempt=%d duration_ms=%d",
                kind,
                method,
                path,
                resp.status_code,
                attempt,
                duration * 1000,
            )
            self._note_rate_limit(resp)
            if 200 <= status < 300:
                return Response(status, resp.headers, _decode(resp), attempt)

            request_id = resp.headers.get("x-github-request-id")
            meta: dict[str, Any] = dict(
                status=status,
                method=method,
                path=path,
                github_message=message,
                documentation_url=doc_url,
                request_id=request_id,
                attempts=attempt,
            )

            if status == 401 and on_unauthorized is not None and not refreshed and on_unauthorized():
                refreshed = True
                continue

            rate_wait = self._rate_limit_wait(resp, message, attempt)
            if rate_wait is not None:
                retry_at = datetime.fromtimestamp(self.clock() + rate_wait, tz=UTC)
                until = f"{retry_at:%Y-%m-%dT%H:%M:%SZ}"
                said = message or "rate limited"
                if attempt > self.max_retries:
                    raise RateLimited(
                        f"GitHub rate limit on {method} {path}: gave up after {attempt} attempts "
                        f"(max_retries={self.max_retries}); GitHub asks to wait {rate_wait:.0f} s more "
                        f"(until {until}); retry later, raise max_retries, or spread calls out ({said})",
                        retry_at=retry_at,
                        **meta,
                    )
                if waited + rate_wait > self.max_wait:
                    raise RateLimited(
                        f"GitHub rate limit on {method} {path}: GitHub asks to wait {rate_wait:.0f} s "
                        f"(until {until}), more than this client may wait "
                        f"(max_wait={self.max_wait:.0f} s, {waited:.0f} s already waited); retry later, "
                        f"raise max_wait, or spread calls out ({said})",
                        retry_at=retry_at,
                        **meta,
                    )
                log.warning(
                    "event=github_rate_limited kind=%s method=%s path=%s status=%d wait=%.1f",
                    kind,
                    method,
                    path,
                    status,
                    rate_wait,
                )
                self.sleep(rate_wait)
                waited += rate_wait
                continue

            if status >= 500:
                delay = _retry_after(resp, self.clock) or self._backoff(attempt)
                cap = self._cap_hit(attempt, waited, delay)
                if cap is not None:
                    raise ServerError(
                        f"GitHub answered {status} to {method} {path} after {attempt} attempt(s): "
                        f"{message or 'server error'}; GitHub may be degraded, retry later; {cap}",
                        **meta,
                    )
                log.warning(
                    "event=github_retry kind=%s method=%s path=%s attempt=%d reason=%d delay=%.2f",
                    kind,
                    method,
                    path,
                    attempt,
                    status,
                    delay,
                )
                self.sleep(delay)
                waited += delay
                continue

            if 300 <= status < 400:
                # Redirects are not followed: that would replay the token to wherever they point.
                raise GitHubError(
                    f"GitHub redirected {method} {path} ({status}) to {resp.headers.get('location', '?')}: "
                    "the repository or organisation was probably renamed or moved; update the scope URL",
                    **meta,
                )
            raise _error_for(status, method, path, message, meta, (hints or {}).get(status))

    # -- rate limits and backoff --------------------------------------------------------

    def _elapsed(self, call_started: float, duration: float) -> float:
        """Seconds since the call began (its waits included), at least this attempt's duration."""
        return max(self.clock() - call_started, duration)

    def _cap_hit(self, attempt: int, waited: float, delay: float) -> str | None:
        """Which retry bound stops the call before waiting ``delay`` more, or None."""
        if attempt > self.max_retries:
            return f"gave up after {attempt} attempts (max_retries={self.max_retries})"
        if waited + delay > self.max_wait:
            return (
                f"gave up: the next retry in {delay:.1f} s would exceed max_wait={self.max_wait:.0f} s "
                f"({waited:.1f} s already waited)"
            )
        return None

    def _backoff(self, attempt: int) -> float:
        ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2.0 ** (attempt - 1)))
        return ceiling * (0.5 + self._rng() / 2)

    def _note_rate_limit(self, resp: requests.Response) -> None:
        if resp.headers.get("x-ratelimit-remaining") == "0":
            reset = _int_header(resp, "x-ratelimit-reset")
            if reset is not None:
                with self._lock:
                    self._blocked_until = max(self._blocked_until, float(reset) + 1)

    def _wait_for_primary_reset(self, waited: float, method: str, path: str) -> float:
        with self._lock:
            blocked_until = self._blocked_until
        delay = blocked_until - self.clock()
        if delay <= 0:
            return waited
        retry_at = datetime.fromtimestamp(blocked_until, tz=UTC)
        if waited + delay > self.max_wait:
            raise RateLimited(
                f"GitHub's rate limit for these credentials is spent until {retry_at:%Y-%m-%dT%H:%M:%SZ} "
                f"({delay:.0f} s, more than max_wait={self.max_wait:.0f} s); {method} {path} was not sent; "
                "retry later or use credentials with a higher limit (a GitHub App installation)",
                retry_at=retry_at,
                method=method,
                path=path,
            )
        log.warning("event=github_rate_limit_wait method=%s path=%s wait=%.1f", method, path, delay)
        self.sleep(delay)
        return waited + delay

    def _rate_limit_wait(self, resp: requests.Response, message: str | None, attempt: int) -> float | None:
        """Seconds to wait if ``resp`` is a rate-limit answer, else None."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = _retry_after(resp, self.clock)
        remaining = resp.headers.get("x-ratelimit-remaining")
        secondary = bool(message and "secondary rate limit" in message.lower())
        if retry_after is not None:
            return retry_after
        if remaining == "0":
            reset = _int_header(resp, "x-ratelimit-reset")
            if reset is not None:
                return max(1.0, reset - self.clock() + 1)
            return SECONDARY_MIN_WAIT
        if secondary or resp.status_code == 429 or (message and "rate limit" in message.lower()):
            # Secondary limit without retry-after: at least a minute, doubling.
            return SECONDARY_MIN_WAIT * (2.0 ** (attempt - 1))
        return None


def _fault_of(resp: requests.Response, message: str | None) -> str | None:
    """The fault kind an answer states (see :class:`RequestEvent`), or None."""
    status = resp.status_code
    if status >= 500:
        return "5xx"
    if status not in (403, 429):
        return None
    lowered = (message or "").lower()
    if "secondary rate limit" in lowered:
        return "secondary"
    if resp.headers.get("x-ratelimit-remaining") == "0":
        return "primary"
    if status == 429 or "retry-after" in resp.headers or "rate limit" in lowered:
        return "secondary"
    return None


def _decode(resp: requests.Response) -> Any:
    if resp.status_code == 204 or not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        # Do not chain or quote the body: a token response could be in it.
        raise GitHubError(
            f"GitHub answered {resp.status_code} with a body that is not JSON; is the API URL right?",
            status=resp.status_code,
        ) from None


def _github_message(resp: requests.Response) -> tuple[str | None, str | None]:
    try:
        body = resp.json()
    except ValueError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    message = body.get("message")
    doc = body.get("documentation_url")
    errors = body.get("errors")
    if isinstance(message, str) and isinstance(errors, list) and errors:
        details = [e if isinstance(e, str) else str(e.get("message") or e.get("code") or e) for e in errors if e]
        message = f"{message} ({'; '.join(details)})"
    return (redact(message) if isinstance(message, str) else None), (doc if isinstance(doc, str) else None)


def _int_header(resp: requests.Response, name: str) -> int | None:
    value = resp.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _retry_after(resp: requests.Response, clock: Clock) -> float | None:
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:  # HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - clock())


def _error_for(
    status: int, method: str, path: str, message: str | None, meta: dict[str, Any], hint: str | None
) -> GitHubError:
    said = f" (GitHub: {message})" if message else ""
    if status == 401:
        advice = hint or (
            "the token is invalid, expired or revoked, or the App id/key do not match: "
            "create a new token or check the App settings"
        )
        return BadCredentials(f"GitHub rejected the credentials for {method} {path} (401){said}; {advice}", **meta)
    if hint:
        said = f"{said}: {hint}"
    if status == 403:
        return PermissionDenied(f"GitHub denied {method} {path} (403){said}", **meta)
    if status == 404:
        return NotFound(f"{method} {path} not found (404){said}", **meta)
    if status == 409:
        return Conflict(f"{method} {path} conflicts with the current state (409){said}", **meta)
    if status == 422:
        return Unprocessable(f"GitHub refused {method} {path} as unprocessable (422){said}", **meta)
    return GitHubError(f"GitHub answered {status} to {method} {path}{said}", **meta)
