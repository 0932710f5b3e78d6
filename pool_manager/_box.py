"""One runner container as the engine lists it, and the outcome it is counted under when removed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import _containers as C

__all__ = ["Box", "outcome"]

_EXIT_CODE = re.compile(r"Exited \((-?\d+)\)")


@dataclass(frozen=True)
class Box:
    """One runner container as `docker ps -a` lists it."""

    id: str
    name: str
    slot: int
    runner_id: int | None
    runner_name: str
    state: str  # created | running | exited | dead | removing | paused | restarting
    exit_code: int | None
    created: float
    spec_hash: str = ""  # "" for a container made before runners carried the label
    interrupted: bool = False  # stopped by an engine outage, not by its runner (see PoolManager._boxes)
    paired: bool = False  # docker "dind": made with a sidecar engine container (label ghr.docker=dind)
    engine_lost: bool = False  # docker "dind": its sidecar is gone or exited; the runner's job cannot go on

    @property
    def live(self) -> bool:
        return self.state in ("running", "restarting", "paused", "removing")

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Box:
        labels = item.get("Labels") or {}
        match = _EXIT_CODE.search(item.get("Status") or "")
        rid = labels.get(C.RUNNER_ID, "")
        slot = labels.get(C.SLOT, "")
        return cls(
            id=item["Id"],
            name=(item.get("Names") or ["/?"])[0].lstrip("/"),
            slot=int(slot) if slot.isdigit() else -1,
            runner_id=int(rid) if rid.isdigit() else None,
            runner_name=labels.get(C.RUNNER_NAME, ""),
            state=item.get("State") or "unknown",
            exit_code=int(match.group(1)) if match else None,
            created=float(item.get("Created") or 0),
            spec_hash=labels.get(C.SPEC_HASH, ""),
            paired=labels.get("ghr.docker") == "dind",
        )


def outcome(box: Box) -> str:
    """`interrupted` (engine outage), `engine_lost` (a dind runner's sidecar ended), `done` (exit 0),
    `unstarted` (never started) or `failed`."""
    if box.interrupted:
        return "interrupted"
    if box.engine_lost:
        return "engine_lost"
    return "done" if box.exit_code == 0 else ("unstarted" if box.state == "created" else "failed")
