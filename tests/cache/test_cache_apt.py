"""The host apt cache on the real engine: jobs made as the manager makes them, the cache's own counters."""

from __future__ import annotations

import time
from dataclasses import replace

import docker

from tests.cache.conftest import CacheUnderTest, make_cache, pool_spec, run_job

INSTALL = "set -e; sudo apt-get update -q; sudo apt-get install -y -q --no-install-recommends {pkgs}; {check}"


def test_second_job_is_served_from_the_cache(docker_client: docker.DockerClient, host_cache: CacheUnderTest,
                                             runner_image: str) -> None:
    """Two fresh jobs install jq: the second's index files and packages are hits by apt-cacher-ng's own log, and
    upstream bytes grow only by InRelease, which apt-cacher-ng revalidates for each update (about 150 kB)."""
    spec = pool_spec(host_cache, runner_image)
    first = run_job(docker_client, spec, INSTALL.format(pkgs="jq", check="jq --version"))
    assert first.exit_code == 0, first.output
    after_first = host_cache.counts()
    assert after_first["miss"] >= 2 and after_first["upstream"] > 100_000, after_first
    second = run_job(docker_client, spec, INSTALL.format(pkgs="jq", check="jq --version"))
    assert second.exit_code == 0, second.output
    after_second = host_cache.counts()
    assert after_second["upstream"] - after_first["upstream"] < 200_000, (after_first, after_second)
    assert after_second["miss"] - after_first["miss"] <= 1  # InRelease
    assert after_second["hit"] - after_first["hit"] >= 5  # Packages, Translation, libonig5, libjq1, jq
    assert after_second["served"] > after_first["served"]


def test_cache_settings_change_keeps_the_cached_packages(docker_client: docker.DockerClient,
                                                         host_cache: CacheUnderTest, runner_image: str) -> None:
    """A new size replaces the cache container (as `pulumi up` does); its volume, so its content, stays."""
    spec = pool_spec(host_cache, runner_image)
    assert run_job(docker_client, spec, INSTALL.format(pkgs="jq", check="true")).exit_code == 0
    before = host_cache.counts()
    old_id = host_cache.container("apt").id
    host_cache.replace_service("apt", replace(host_cache.cfg, apt_size=2 * 1024**3))
    assert host_cache.container("apt").id != old_id
    host_cache.wait_healthy()
    job = run_job(docker_client, spec, INSTALL.format(pkgs="jq", check="true"))
    assert job.exit_code == 0, job.output
    after = host_cache.counts()
    assert after["upstream"] - before["upstream"] < 200_000 and after["hit"] - before["hit"] >= 5, (before, after)
    assert after["max_bytes"] == 2 * 1024**3


def test_jobs_work_with_the_cache_down_and_it_comes_back(docker_client: docker.DockerClient,
                                                         host_cache: CacheUnderTest, runner_image: str) -> None:
    """Cache stopped: the job's apt goes straight to the mirror (slower, same result) and the cache sees nothing;
    the cache's server killed: the engine restarts the container (restart always) and it is healthy again."""
    spec = pool_spec(host_cache, runner_image)
    before = host_cache.counts()
    host_cache.container("apt").stop(timeout=5)
    job = run_job(docker_client, spec, INSTALL.format(pkgs="jq", check="jq --version"))
    assert job.exit_code == 0, job.output
    host_cache.container("apt").start()
    health = host_cache.wait_healthy()
    assert health["caches"]["apt"]["served"] == before["served"]  # the job did not go through the cache
    container = host_cache.container("apt")
    restarts = container.attrs["RestartCount"]
    crash = 'for p in /proc/[0-9]*; do [ "$(cat "$p/comm")" = apt-cacher-ng ] && kill -KILL "${p#/proc/}"; done; true'
    container.exec_run(["bash", "-c", crash], user="root")  # the server dies: the container ends, as on a crash
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        container.reload()
        if container.attrs["RestartCount"] > restarts and container.status == "running":
            break
        time.sleep(0.5)
    assert container.attrs["RestartCount"] > restarts, container.attrs["State"]
    host_cache.wait_healthy()
    job = run_job(docker_client, spec, INSTALL.format(pkgs="jq", check="true"))
    assert job.exit_code == 0, job.output
    assert host_cache.counts()["served"] > before["served"]


def test_eviction_keeps_the_cache_under_its_bound(docker_client: docker.DockerClient, cache_image: str,
                                                  runner_image: str) -> None:
    """A cache over its bound (8m here; the stack's smallest is 64m) evicts least recently used files until it
    is under 90 % of the bound; the jobs still get their packages."""
    bound = 8 * 1024**2
    cache = make_cache(docker_client, cache_image, apt_size=bound)
    try:
        spec = pool_spec(cache, runner_image)
        job = run_job(docker_client, spec, INSTALL.format(pkgs="jq libpython3.11-stdlib", check="true"))
        assert job.exit_code == 0, job.output
        deadline = time.monotonic() + 30
        counts = cache.counts()
        while time.monotonic() < deadline and not counts["evicted_bytes"]:
            time.sleep(1)
            counts = cache.counts()
        assert counts["evicted_bytes"] > 0, counts
        assert 0 < counts["disk_bytes"] <= bound, counts
    finally:
        cache.close()


def test_hardened_runner_gets_the_proxy_file(docker_client: docker.DockerClient, host_cache: CacheUnderTest,
                                             runner_image: str) -> None:
    """A hardened runner (read-only root) still gets the proxy URL (an anonymous volume at /run/ghr-apt), and
    the image's apt hook answers it while the cache is up."""
    spec = pool_spec(host_cache, runner_image, hardened=True)
    job = run_job(docker_client, spec, "cat /run/ghr-apt/proxy; /usr/local/bin/ghr-apt-proxy http://deb.debian.org/x")
    assert job.exit_code == 0, job.output
    assert job.output.split() == [host_cache.names.apt_proxy] * 2
