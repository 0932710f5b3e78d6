"""One fresh container per job, on the real Docker engine with the emulator and the stand-in runner."""

from __future__ import annotations

import re
from typing import Any

# The container id, as seen from inside (its hostname file is bind-mounted from containers/<id>/).
from tests._support.polling import wait_for
from tests.manager.mgr_helpers import InProcessManager, online_idle, pool_containers, pool_runners

# The container id, as seen from inside (its hostname file is bind-mounted from containers/<id>/).
WHOAMI = r"""
grep -o 'containers/[0-9a-f]\{64\}' /proc/self/mountinfo | head -1 | cut -d/ -f2 | sed 's/^/container=/'
echo "uid=$(id -u)"
if [ -e /home/runner/leftover ]; then echo "leftover=yes"; else echo "leftover=no"; fi
echo dirty > /home/runner/leftover
"""


def test_each_job_runs_in_its_own_fresh_container(new_spec: Any, emulator: Any, docker_client: Any) -> None:
    """N jobs on 2 slots: N distinct containers, and no job sees a file left by an earlier one."""
    spec = new_spec(slots=2)
    manager = InProcessManager(spec, emulator).start()
    try:
        jobs = [emulator.enqueue_job("acme", spec["labels"], WHOAMI, timeout=120) for _ in range(4)]
        results = [emulator.wait_job(j, timeout=120) for j in jobs]
        assert [r["conclusion"] for r in results] == ["success"] * 4, [r["output"] for r in results]
        ids = [re.search(r"container=([0-9a-f]{64})", r["output"]).group(1) for r in results]  # type: ignore[union-attr]
        assert len(set(ids)) == 4
        assert all("leftover=no" in r["output"] for r in results)
        assert all("uid=1001" in r["output"] for r in results)
        assert len({r["runner_name"] for r in results}) == 4
        # The pool refills: two idle runners again, and no more containers than slots.
        wait_for(lambda: len(online_idle(emulator, spec)) == 2, 60, "two idle runners after the jobs")
        assert len(pool_containers(docker_client, spec)) == 2
        assert manager.metric("ghr_pool_runner_starts_total") >= 6
    finally:
        manager.stop()
    # SIGTERM-style stop drains idle runners: no container, no registration left.
    assert pool_containers(docker_client, spec) == []
    assert pool_runners(emulator, spec) == []


def test_cache_volume_is_shared_across_jobs_and_writable(new_spec: Any, emulator: Any, docker_client: Any) -> None:
    """A cache volume survives from one job to the next (on purpose) and the runner user can write it."""
    import secrets

    volume = f"ghr-test-cache-{secrets.token_hex(3)}"
    spec = new_spec(slots=1, container={"volumes": [{"type": "cache", "source": volume, "target": "/cache"},
                                                    {"type": "tmpfs", "target": "/scratch", "size": "16m"}]})
    manager = InProcessManager(spec, emulator).start()
    try:
        script = "cat /cache/count 2>/dev/null || echo none; echo seen >> /cache/count; touch /scratch/ok && echo tmpfs=ok"
        first = emulator.wait_job(emulator.enqueue_job("acme", spec["labels"], script, timeout=60), timeout=90)
        second = emulator.wait_job(emulator.enqueue_job("acme", spec["labels"], script, timeout=60), timeout=90)
        assert first["conclusion"] == second["conclusion"] == "success", (first["output"], second["output"])
        assert "none" in first["output"] and "seen" in second["output"] and "tmpfs=ok" in second["output"]
        assert first["runner_name"] != second["runner_name"]
    finally:
        manager.stop()
        docker_client.volumes.get(volume).remove(force=True)
