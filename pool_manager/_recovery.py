"""Recovery probes: during a long backoff, ask a failed dependency cheaply whether it is back.

A pass that fails backs off (capped, jittered, growing with each failure). Once GitHub or the
engine answers again, sleeping out the rest of a long backoff leaves the pool empty for
nothing. So while a backoff runs, `Recovery` probes the dependency that failed every `interval`
seconds with one bounded request (GitHub: one GET of the runners list filtered by a name, no
retries, 5 s timeout; Docker: a ping). A probe that succeeds ends the backoff: the loop runs its
pass at once (a pass that then fails backs off further, as before). A probe that fails changes
nothing but the time of the next probe.

Retry-after is honoured: after a rate limit that names a time (`RateLimited.retry_at`), and after
a probe that is itself rate limited, no probe is sent before that time. A backoff no longer than
`interval` is simply slept out (no probe), so short backoffs cost no extra request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from github_client import GitHubClient, RateLimited, RequestEvent

from ._log import event
from .metrics import Metrics

__all__ = ["Recovery", "light_github_probe"]

Clock = Callable[[], float]


class Recovery:
    """Schedules and runs probes for the kinds of failure in `probes` (kind -> bounded check)."""

    def __init__(self, probes: Mapping[str, Callable[[], object]], *, interval: float, metrics: Metrics,
                 pool: str, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self._probes = probes
        self.interval = interval
        self._metrics = metrics
        self._pool = pool
        self._clock = clock
        self._wall = wall
        self._kind: str | None = None
        self._until = 0.0  # monotonic end of the backoff being probed
        self._next: float | None = None  # monotonic time of the next probe

    def arm(self, kind: str, until: float, exc: BaseException | None = None) -> None:
        """A pass failed with `kind`; its backoff ends at `until` (monotonic). Plan the first probe."""
        self._kind, self._until = kind, until
        self._next = None
        if kind in self._probes:
            self._schedule(self._clock() + self.interval, exc)

    def disarm(self) -> None:
        self._kind, self._next = None, None

    def next_at(self) -> float | None:
        """Monotonic time of the next probe, or None when none is planned."""
        return self._next

    def due(self, now: float | None = None) -> bool:
        return self._next is not None and (self._clock() if now is None else now) >= self._next

    def probe(self) -> bool:
        """Run the planned probe once: True if the dependency answered (the backoff may end now)."""
        kind = self._kind
        if kind is None or self._next is None:
            return False
        try:
            self._probes[kind]()
        except Exception as exc:
            self._metrics.recovery_probes.labels(kind=kind, result="failed").inc()
            self._schedule(self._clock() + self.interval, exc)
            return False
        self._metrics.recovery_probes.labels(kind=kind, result="ok").inc()
        event("recovery_probe_ok", pool=self._pool, kind=kind, backoff_left=f"{self._until - self._clock():.2f}")
        self.disarm()
        return True

    def _schedule(self, at: float, exc: BaseException | None) -> None:
        if isinstance(exc, RateLimited) and exc.retry_at is not None:
            at = max(at, self._clock() + (exc.retry_at.timestamp() - self._wall()))  # never before retry-after
        self._next = at if at < self._until else None  # the backoff ends first: the pass itself is the probe


def light_github_probe(github: GitHubClient, runner_name: str, on_request: Callable[[RequestEvent], None] | None = None,
                       timeout: float = 5.0) -> Callable[[], object]:
    """One GET of the scope's runners filtered by `runner_name` (a name never used): no retries, bounded.

    The same credentials (an App's installation token is cached on the auth object) and endpoint
    as the manager's own full pass, so a probe succeeds only where the pass can."""
    client = GitHubClient(github.scope, github.auth, timeout=timeout, max_retries=0, max_wait=0.0,
                          user_agent="ghr-pool-manager", on_request=on_request)
    return lambda: client.list_runners(name=runner_name)
