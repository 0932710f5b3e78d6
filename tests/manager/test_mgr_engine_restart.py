"""Fault: the Docker engine restarts under a running manager.

The engine is a second dockerd that this test starts itself (tests/_support/second_engine.py),
so stopping it never touches the main engine. Every runner container dies with the engine;
the manager must report the outage, keep its hands off GitHub meanwhile, and afterwards
leave no registration of a dead runner behind, refill its slots with fresh containers and
run the job that was queued during the outage.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests._support.polling import wait_for
from tests._support.second_engine import SecondEngine
from tests.manager.mgr_helpers import ProcessManager, online_idle, pool_runners

pytestmark = [pytest.mark.docker, pytest.mark.slow]



def _pool_containers(engine: SecondEngine, spec: dict[str, Any]) -> set[str]:
    # The low-level list: the high-level one inspects each container and races with removals.
    return {c["Id"] for c in engine.client().api.containers(all=True, filters={"label": f"ghr.stack={spec['stack']}"})}


def _exits(metrics_text: str) -> dict[str, float]:
    found = re.findall(r'^ghr_pool_runner_exits_total\{outcome="([a-z_]+)"\} ([0-9.]+)$', metrics_text, re.M)
    return {outcome: float(value) for outcome, value in found}


def test_engine_restart_leaves_no_dead_registration_and_loses_no_job(
    restartable_engine: SecondEngine, new_spec: Any, emulator: Any, tmp_path: Path
) -> None:
    """Stop and start the engine: old registrations go, slots refill, the queued job runs."""
    engine = restartable_engine
    spec = new_spec(slots=2)
    manager = ProcessManager(spec, tmp_path, emulator.admin_token)
    manager.env["DOCKER_HOST"] = engine.unix_url
    manager.start()
    try:
        wait_for(lambda: len(online_idle(emulator, spec)) == 2, 90, "two idle runners")
        before = {r["name"] for r in pool_runners(emulator, spec)}
        old_containers = _pool_containers(engine, spec)
        assert len(old_containers) == 2

        stopped_at = time.time()
        engine.stop()
        # The lost event stream wakes the manager: the outage shows within one reconcile interval
        # (plus the scrape's own slack), not at the next full pass after it.
        outage = wait_for(lambda: (h := manager.health() or {}).get("state") == "docker" and h,
                          spec["reconcile_interval"] + 2.0, "/healthz to say docker")
        assert outage["since"] >= stopped_at - 1 and not outage["ok"]
        wait_for(lambda: (manager.health() or {}).get("last_error_kind") == "docker", 60,
                 "the manager to report the engine outage")
        job_id = emulator.enqueue_job("acme", spec["labels"], "echo ran-after-restart", timeout=300)

        engine.start()
        job = emulator.wait_job(job_id, timeout=180)
        assert job["conclusion"] == "success", job
        assert "ran-after-restart" in job["output"]
        assert job["runner_name"] not in before

        def converged() -> bool:
            names = {r["name"] for r in pool_runners(emulator, spec)}
            live = _pool_containers(engine, spec)
            return (len(online_idle(emulator, spec)) == 2 and not names & before
                    and len(live) == 2 and not live & old_containers)

        wait_for(converged, 120, "fresh runners only, and no registration or container of the dead ones")
        assert (manager.health() or {}).get("ok"), manager.log()[-3000:]
        # The two runners the engine stopped did not finish a job: interrupted, not done. One job ran.
        exits = _exits(manager.metrics())
        assert exits.get("interrupted") == 2 and exits.get("done") == 1, (exits, manager.log()[-3000:])
    finally:
        manager.terminate()
    assert pool_runners(emulator, spec) == []
    assert _pool_containers(engine, spec) == set()
