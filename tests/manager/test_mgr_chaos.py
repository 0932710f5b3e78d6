"""The chaos drill (tests/manager/chaos_drill.py), short and seeded: each kind of fault once.

Jobs keep running through killed runners, a SIGKILLed manager, 5xx, 429, dropped connections, latency and
an engine restart: no job lost or run twice, and nothing of the pool left once it has drained.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests._support.second_engine import SecondEngine
from tests.manager.chaos_drill import FAULTS, Drill, schedule

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_chaos_drill_loses_no_job_runs_none_twice_and_leaves_nothing(restartable_engine: SecondEngine,
                                                                     runner_image: str, tmp_path: Path) -> None:
    """Every fault kind once, in a seeded order, 16 jobs on 3 slots."""
    faults = schedule(FAULTS, len(FAULTS), seed=7)
    with Drill(restartable_engine, runner_image, tmp_path, slots=3, seed=7) as drill:
        report = drill.run(16, faults)
    assert report.faults == {kind: 1 for kind in FAULTS}, report.summary()
    assert report.clean, f"{report.summary()}\nlost={report.lost} ran_twice={report.ran_twice} " \
                         f"orphans={report.orphans}\n{report.log_tail}"
    assert report.succeeded + report.failed_by_fault == report.jobs and report.succeeded >= report.jobs // 2, \
        report.summary()
