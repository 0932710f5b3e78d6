"""Drain after SIGTERM: idle runners go at once, busy ones finish up to `drain_timeout`, then the rest are cut off.

Deleting the registration first is the race-free idle check: GitHub refuses (422) while a job
has the runner, so a runner is removed only once its registration is gone.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._backoff import Backoff
from ._box import Box
from ._errors import classify
from ._log import event

if TYPE_CHECKING:
    from .manager import PoolManager

__all__ = ["drain"]


def drain(mgr: PoolManager) -> list[Box]:
    """Drain `mgr`'s pool; returns the runners cut off at the deadline (empty when all finished)."""
    spec = mgr.spec
    mgr._draining = True
    mgr.metrics.draining.set(1)
    mgr.health.set_state("draining")
    deadline = time.monotonic() + spec.drain_timeout
    event("drain_started", pool=spec.pool, timeout=spec.drain_timeout)
    backoff = Backoff(min(1.0, spec.backoff_initial), min(10.0, spec.backoff_max))
    remaining: list[Box] = []
    while time.monotonic() < deadline:
        try:
            boxes = mgr._boxes()
            registrations = mgr._registrations()
            remaining = mgr._finish_exited(boxes, registrations)
            for box in list(remaining):
                reg = registrations.get(box.runner_name)
                if reg is None or (not reg.busy and mgr._delete_registration(reg.id, box.runner_name, "drain")):
                    mgr._remove(box, "drained")
                    remaining.remove(box)
            backoff.reset()
        except Exception as exc:
            kind, message = classify(exc)
            event("drain_pass_failed", level=40, pool=spec.pool, kind=kind, error=message)
            if kind == "docker":
                mgr._dc = None
            mgr.sleep(min(backoff.next(), max(0.0, deadline - time.monotonic())))
            continue
        if not remaining:
            break
        event("drain_waiting", pool=spec.pool, busy=len(remaining), left=f"{deadline - time.monotonic():.0f}")
        mgr.sleep(min(mgr.drain_poll, max(0.0, deadline - time.monotonic())))
    for box in remaining:  # drain timeout: jobs are cut off
        try:
            mgr._remove(box, "drain_timeout")
            mgr._delete_registration(box.runner_id, box.runner_name, "drain timeout")
        except Exception as exc:
            event("drain_cleanup_failed", level=40, pool=spec.pool, runner=box.runner_name, error=classify(exc)[1])
    mgr.metrics.draining.set(0)
    mgr.health.set_state("stopped", ok=False)
    event("drain_finished", pool=spec.pool, cut_off=len(remaining))
    return remaining
