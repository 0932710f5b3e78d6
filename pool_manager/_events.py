"""The event watcher: a thread that follows the engine's `die` events for one pool's containers.

It never decides anything: it records each death (container id -> exit code) and each stop
signal the engine sent (`kill` events: `docker stop`, and dockerd stopping every container when it
shuts down), wakes the manager's loop on deaths, and says whether it currently sees the engine's
events (`connected`). When the
stream is lost (engine stopped or restarted) it tells the manager at once (`on_lost`), so an
outage is noticed without waiting for the next full pass, and reconnects with backoff. Once
subscribed again it lists the pool's containers and hands the manager those that ended while
it was not listening (`on_back`): exited or dead, with no `die` event seen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ._backoff import Backoff
from ._log import event

__all__ = ["EventWatcher"]


class _Stream(Protocol):
    def __iter__(self) -> Any: ...
    def close(self) -> None: ...


class EventWatcher:
    """Follows `die` events of containers matching `labels`; thread-safe accessors for the loop."""

    def __init__(self, docker_factory: Callable[[], Any], labels: list[str], *, pool: str,
                 stop: threading.Event, on_event: Callable[[], None],
                 on_lost: Callable[[], None] | None = None,
                 on_back: Callable[[set[str]], None] | None = None) -> None:
        self._factory = docker_factory
        self._filters = {"type": "container", "event": ["die", "kill"], "label": labels}
        self._pool = pool
        self._stop = stop
        self._on_event = on_event
        self._on_lost = on_lost
        self._on_back = on_back
        self._lock = threading.Lock()
        self._died: dict[str, int] = {}  # container id -> exit code (-1: not given)
        self._signals: dict[str, int] = {}  # container id -> the last signal a `kill` event named
        self._stream: _Stream | None = None
        self.connected = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the loop's side ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="ghr-events", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """End the stream (the thread then sees `stop` and returns)."""
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    def died(self, listed: Iterable[str]) -> dict[str, int]:
        """Deaths seen for the containers in `listed`; forgets the others (they are gone)."""
        keep = set(listed)
        with self._lock:
            for cid in [c for c in self._died if c not in keep]:
                del self._died[cid]
            for cid in [c for c in self._signals if c not in keep]:
                del self._signals[cid]
            return dict(self._died)

    def signals(self) -> dict[str, int]:
        """Container id -> the signal the engine last sent it (`kill` events), for listed containers."""
        with self._lock:
            return dict(self._signals)

    def record(self, container_id: str, exit_code: int) -> None:
        with self._lock:
            self._died[container_id] = exit_code

    def record_signal(self, container_id: str, signal: int) -> None:
        with self._lock:
            self._signals[container_id] = signal

    # -- the thread -----------------------------------------------------------------------

    def run(self) -> None:
        """Wake the loop on every `die` of one of the pool's containers; reconnect with backoff."""
        backoff = Backoff(0.5, 30.0)
        lost = False
        while not self._stop.is_set():
            stream: _Stream | None = None
            try:
                client = self._factory()
                stream = client.api.events(decode=True, filters=self._filters)
                self._stream = stream
                if lost:  # subscribed first: whatever ends from now on sends its event
                    items = client.api.containers(all=True, filters={"label": self._filters["label"]})
                    with self._lock:
                        unseen = {i["Id"] for i in items if i.get("State") in ("exited", "dead")
                                  and i["Id"] not in self._died}
                    event("events_stream_back", pool=self._pool, ended_unseen=len(unseen))
                    if self._on_back is not None:
                        self._on_back(unseen)
                    lost = False
                self.connected.set()
                backoff.reset()
                for item in stream:
                    actor = item.get("Actor") or {}
                    attributes = actor.get("Attributes") or {}
                    cid = item.get("id") or actor.get("ID")
                    if (item.get("Action") or item.get("status")) == "kill":
                        signal = str(attributes.get("signal", ""))
                        if cid and signal.isdigit():
                            self.record_signal(cid, int(signal))
                        continue
                    code = str(attributes.get("exitCode", ""))
                    if cid:
                        self.record(cid, int(code) if code.lstrip("-").isdigit() else -1)
                    self._on_event()
                    if self._stop.is_set():
                        break
                if not self._stop.is_set():
                    raise ConnectionError("the engine ended the event stream")
            except Exception as exc:  # engine gone: the main loop reports it; just retry quietly
                self.connected.clear()
                if not self._stop.is_set() and not lost:
                    lost = True
                    event("events_stream_lost", level=30, pool=self._pool, error=type(exc).__name__)
                    if self._on_lost is not None:
                        self._on_lost()
            finally:
                self.connected.clear()
                self._stream = None
                if stream is not None:
                    try:
                        stream.close()
                    except Exception:
                        pass
            self._stop.wait(backoff.next())
