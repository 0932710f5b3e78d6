"""Per-host cache benchmark (issue 11): a job that installs a few Debian packages and pulls one image, against a
warm host cache, as a ratio to the same job with no cache, both measured in this run.

    .venv/bin/python -m bench.bench_cache [--runs 3] [--packages "jq zstd file"]

- job: a fresh runner container made as the pool manager makes it (real runner image; `apt-get update` and
  `apt-get install` of --packages with sudo, then a pull of a small image: manifest and blobs over the registry
  API, as an engine pulls);
- no cache: the pool's default bridge network, apt straight to Debian's mirror, the image from the upstream
  registry (a Debian docker-registry the bench runs: the stand-in for Docker Hub, on the same host, so the
  pull part flatters "no cache");
- warm cache: the host cache (apt-cacher-ng and the registry mirror, components/cache.py's containers) after
  one priming job; the job's network is the cache network, apt goes through the cache, the image through the
  mirror.
Prints median seconds per job, upstream bytes per warm job from the caches' own counters, and the ratios.
Needs the local Docker engine, the base image (make setup) and http access to deb.debian.org.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import docker

from tests._support.registry import Registry, build_busybox
from tests.cache.conftest import (
    CacheUnderTest,
    ensure_cache_image,
    make_cache,
    pool_spec,
    run_job,
)
from tests.manager.mgr_helpers import ensure_runner_image

PULL = r"""
import json, sys, urllib.request
base, repo, ref = sys.argv[1:4]
accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
def get(path, accept=None):
    req = urllib.request.Request(base + path, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read()
manifest = json.loads(get(f"/v2/{repo}/manifests/{ref}", accept))
print(sum(len(get(f"/v2/{repo}/blobs/{b['digest']}")) for b in [manifest["config"], *manifest["layers"]]))
"""


def _script(packages: str, registry: str) -> str:
    pull = PULL.replace("'", "'\"'\"'")
    return (f"set -e; sudo apt-get update -q >/dev/null; sudo apt-get install -y -q --no-install-recommends {packages}"
            f" >/dev/null; python3 -c '{pull}' {registry} library/busybox latest")


def _job(client: docker.DockerClient, spec: object, script: str) -> float:
    result = run_job(client, spec, script)  # type: ignore[arg-type]
    if result.exit_code != 0:
        raise RuntimeError(f"bench job failed ({result.exit_code}):\n{result.output[-2000:]}")
    return result.seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--packages", default="jq zstd file")
    args = ap.parse_args()
    client = docker.from_env(timeout=600)
    from emulator import Emulator

    print("building the runner and cache images (cached by content) ...", flush=True)
    with Emulator() as emu:
        runner_image = ensure_runner_image(client, emu)
    cache_image = ensure_cache_image(client)
    packages = f"{args.packages} python3-minimal"  # python3 pulls the image in the job (the runner image has none)
    upstream = Registry(client)
    upstream.start()
    cache: CacheUnderTest | None = None
    try:
        upstream.push(build_busybox(client), "library/busybox")
        cache = make_cache(client, cache_image, on_network=upstream.connect, apt=True, registry=True,
                           registry_upstream=f"http://{upstream.inner}")
        warm_spec = pool_spec(cache, runner_image)
        # No cache: the pool's own bridge network, joined to the upstream registry's network for the pull.
        cold_spec = pool_spec(cache, runner_image)
        cold_spec = type(cold_spec)(**{**cold_spec.__dict__, "cache": None,
                                       "container": type(cold_spec.container)(network_mode=upstream.network)})
        cold_script = _script(packages, f"http://{upstream.inner}")
        warm_script = _script(packages, cache.names.registry_mirror)
        print("priming the cache with one job ...", flush=True)
        _job(client, warm_spec, warm_script)
        cold, warm, upstream_bytes, job_bytes = [], [], [], []
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs}: no cache, then warm cache ...", flush=True)
            cold.append(_job(client, cold_spec, cold_script))
            before = {k: cache.counts(k) for k in ("apt", "registry")}
            warm.append(_job(client, warm_spec, warm_script))
            time.sleep(2.5)  # the registry's counters are dumped every second
            after = {k: cache.counts(k) for k in ("apt", "registry")}
            upstream_bytes.append(sum(after[k]["upstream"] - before[k]["upstream"] for k in after))
            job_bytes.append(sum(after[k]["served"] - before[k]["served"] for k in after))
        apt, reg = cache.counts("apt"), cache.counts("registry")
    finally:
        upstream.close()
        if cache is not None:
            cache.close()
    c, w = statistics.median(cold), statistics.median(warm)
    print()
    print(f"job: apt-get update + install {packages} + pull library/busybox; median of {args.runs} runs each")
    print(f"{'measure':<44}{'warm cache':>12}{'no cache':>12}{'ratio':>8}")
    print(f"{'job seconds (container start to exit)':<44}{w:>12.2f}{c:>12.2f}{w / c:>8.2f}")
    # Without a cache a job fetches upstream every byte it gets: what the cache served the warm job.
    up_w, up_c = statistics.median(upstream_bytes), statistics.median(job_bytes)
    print(f"{'bytes fetched upstream per job':<44}{up_w:>12.0f}{up_c:>12.0f}{up_w / up_c:>8.3f}")
    print(f"apt: {apt['hit']} hits, {apt['miss']} misses, {apt['served']} B served, {apt['upstream']} B upstream;"
          f" registry: {reg['hit']} hits, {reg['miss']} misses, {reg['served']} B served, {reg['upstream']} B upstream")
    return 0


if __name__ == "__main__":
    sys.exit(main())
