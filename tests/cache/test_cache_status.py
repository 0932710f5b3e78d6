"""`make status` shows a host's caches: container states and the exporter's counters (real engine)."""

from __future__ import annotations

import docker

from components.config import parse_config
from components.status import cache_status, render
from tests.cache.conftest import CacheUnderTest, pool_spec, run_job


def test_status_shows_cache_rows(docker_client: docker.DockerClient, host_cache: CacheUnderTest,
                                 runner_image: str) -> None:
    """After a job, the apt row shows the container running, health ok, its misses and upstream bytes."""
    job = run_job(docker_client, pool_spec(host_cache, runner_image),
                  "set -e; sudo apt-get update -q; sudo apt-get install -y -q jq")
    assert job.exit_code == 0, job.output
    fleet = parse_config({
        "github": {"scope": "https://github.com/acme", "token": "ghp_statusTest0001"},
        "hosts": [{"name": "local", "url": "unix:///var/run/docker.sock",
                   "cache": {"metricsPort": host_cache.cfg.metrics_port}}],
        "pools": [{"name": "cpu", "slots": 1, "labels": ["self-hosted"], "cache": True}],
    }, host_cache.names.stack, ["ghr:github"])
    status = cache_status(fleet, "local")
    assert status["error"] is None and status["containers"] == {"apt": "running", "metrics": "running"}
    apt = status["caches"]["apt"]
    assert apt["state"] == "ok" and apt["miss"] >= 3 and apt["upstream"] > 0
    text = render({"stack": fleet.stack, "scope": fleet.github.scope_url, "pools": [], "caches": [status]})
    row = next(line for line in text.splitlines() if line.startswith("apt"))
    assert "running" in row and " ok " in row and str(apt["miss"]) in row
