"""Pool manager benchmark: replacement latency, idle cost, GitHub API calls per job, recovery after a storm.

    .venv/bin/python -m bench.bench_manager [--jobs 20] [--baseline-runs 10] [--idle-slots 20]

Figures, each against a baseline measured in the same run:
- replacement latency: a runner container exits (Docker `die` event) -> its replacement is
  online in the emulator; median and p95 over --jobs jobs, as a ratio to a bare
  `docker run --rm` of the same image (JIT config handed in by a bind mount) -> online;
- the manager's RSS and CPU while it keeps --idle-slots idle runners, against a bare Python
  interpreter that imported the same libraries;
- GitHub API calls per job (emulator request log, manager endpoints only);
- recovery: a 502 storm (15+ faults) empties a 2-slot pool and pushes the backoff to 10 s or more
  (backoff_initial 2 s, backoff_max 60 s); then the seconds from the storm's end until every slot
  is online again, with the recovery probe (default interval) and without it (probe disabled:
  the manager sleeps out its backoff, as before), against the backoff cap (backoff_max).
- scale-set pools (issue 9; `--only-scale-set` runs this part and the baseline alone): queued-to-started
  latency (job enqueued -> the emulator has it in progress on a runner of the pool), median and p95 over
  --jobs jobs, cold (min_runners 0: the pool is at zero before each job) and warm (min_runners 1: an
  idle runner waits), as ratios to the bare `docker run` baseline; GitHub calls per job from the
  manager's own RequestEvent kinds, REST and Actions service (`scaleset_*`) apart; and requests per
  minute of an idle scale-set pool over --idle-window with GitHub's 50 s long poll.
- Docker in jobs (issue 10; `--only-dind` runs this part alone): on a network the bench creates (the emulator
  listens on its gateway, since a dind runner lives in its sidecar's network namespace), the replacement
  latency (exit -> replacement online) and the job start (enqueued -> in progress on an idle runner, and
  enqueued -> done for a job that asks its engine `docker version`) of a `dind` pool (sidecar `caps` form)
  against a `none` pool and a bare `docker run` on the same network; and the engine's start-up on its own
  (`docker run` of the sidecar image -> `docker version` answers in it), as ratios.
Needs the local Docker engine and base image (make setup). Talks only to loopback (and, for the dind
part, to a bridge network it creates).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker

from tests._support.polling import wait_for
from tests.manager.mgr_helpers import (
    InProcessManager,
    ProcessManager,
    fault_answers,
    make_spec,
    online_idle,
    pool_runners,
    storm_then_recover,
)

REPO = Path(__file__).resolve().parents[1]

MANAGER_ENDPOINTS = "/orgs/{org}/actions/runners"
POLL = 0.01  # seconds between emulator polls while timing (bounded by each wait's deadline)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def manager_calls(emulator: Any) -> dict[str, int]:
    return {ep: n for ep, n in emulator.request_counts().items() if MANAGER_ENDPOINTS in ep}


def online_names(emulator: Any, prefix: str) -> set[str]:
    return {r["name"] for r in emulator.runners() if r["name"].startswith(prefix) and r["status"] == "online"}


def baseline_run(client: docker.DockerClient, emulator: Any, image: str, github: Any, tmp: Path, i: int,
                 network: str = "host") -> float:
    """Seconds from a bare `docker run --rm` to the runner online; the JIT config is minted beforehand."""
    name = f"benchbase-0-{i:06d}"[:30]
    jit = github.generate_jitconfig(name, ["bench-baseline"])
    handoff = tmp / f"handoff-{i}"
    handoff.mkdir()
    (handoff / "jitconfig").write_text(jit.encoded_jit_config)
    os.chown(handoff, 1001, 1001)
    os.chown(handoff / "jitconfig", 1001, 1001)
    os.chmod(handoff / "jitconfig", 0o400)
    started = time.monotonic()
    cid = subprocess.run(["docker", "run", "-d", "--rm", "--network", network, "-v", f"{handoff}:/run/ghr",
                          "--label", "ghr.role=bench", image], check=True, capture_output=True,
                         text=True).stdout.strip()
    wait_for(lambda: name in online_names(emulator, name), 60, f"baseline runner {name} online", interval=POLL)
    elapsed = time.monotonic() - started
    client.api.remove_container(cid, force=True)
    github.delete_runner(jit.runner.id, missing_ok=True)
    shutil.rmtree(handoff, ignore_errors=True)
    return elapsed


class DieWatcher:
    """Collects `die` times (wall clock) of the pool's containers from Docker's event stream."""

    def __init__(self, client: docker.DockerClient, stack: str) -> None:
        self.times: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stream = client.api.events(decode=True, filters={"type": "container", "event": ["die"],
                                                              "label": [f"ghr.stack={stack}"]})
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for ev in self.stream:
                with self.cond:
                    self.times[ev["id"]] = ev["timeNano"] / 1e9
                    self.cond.notify_all()
        except Exception:
            pass

    def wait(self, cid: str, timeout: float) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: cid in self.times, timeout):
                raise AssertionError(f"no die event for {cid[:12]} within {timeout}s")
            return self.times[cid]


def replacement_latencies(client: docker.DockerClient, emulator: Any, image: str, tmp: Path, jobs: int,
                          ) -> tuple[list[float], dict[str, int], float]:
    spec = make_spec(emulator, image, slots=1, reconcile_interval=30.0, backoff_initial=1.0, backoff_max=60.0)
    prefix = spec["name_prefix"] + "-"
    watcher = DieWatcher(client, spec["stack"])
    manager = ProcessManager(spec, tmp, emulator.admin_token).start()
    latencies: list[float] = []
    try:
        wait_for(lambda: online_idle(emulator, spec), 60, "the first idle runner", interval=POLL)
        before = manager_calls(emulator)
        started = time.monotonic()
        for _ in range(jobs):
            old = wait_for(lambda: online_idle(emulator, spec), 60, "an idle runner", interval=POLL)[0]["name"]
            (box,) = client.api.containers(all=True, filters={"label": f"ghr.runner-name={old}"})
            job = emulator.enqueue_job("acme", spec["labels"], "true", timeout=60)
            done = emulator.wait_job(job, timeout=60)
            assert done["conclusion"] == "success" and done["runner_name"] == old, done
            exited = watcher.wait(box["Id"], 30)
            new = wait_for(lambda old=old: online_names(emulator, prefix) - {old}, 60, "the replacement online",
                           interval=POLL)
            online_at = time.time()
            assert len(new) == 1, new
            latencies.append(online_at - exited)
        wall = time.monotonic() - started
        after = manager_calls(emulator)
        calls = {ep.split(" ", 1)[0] + " " + ep.rsplit("/", 1)[-1]: after.get(ep, 0) - before.get(ep, 0)
                 for ep in after if after.get(ep, 0) - before.get(ep, 0)}
    finally:
        manager.terminate()
        watcher.stream.close()
    return latencies, calls, wall


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_cost(emulator: Any, image: str, tmp: Path, slots: int, window: float) -> dict[str, float]:
    spec = make_spec(emulator, image, slots=slots, reconcile_interval=30.0, backoff_initial=1.0, backoff_max=60.0)
    manager = ProcessManager(spec, tmp, emulator.admin_token).start()
    bare = subprocess.Popen([sys.executable, "-c", "import docker, requests, prometheus_client, jwt, "
                             "cryptography, time; time.sleep(600)"])
    try:
        wait_for(lambda: len(online_idle(emulator, spec)) == slots, 180, f"{slots} idle runners", interval=0.5)
        assert manager.proc is not None
        pid = manager.proc.pid
        before = manager_calls(emulator)
        cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
        time.sleep(window)  # the measurement window itself, not a wait for a condition
        cpu1, t1 = proc_cpu_seconds(pid), time.monotonic()
        calls = sum(manager_calls(emulator).values()) - sum(before.values())
        return {"rss_mib": proc_rss_mib(pid), "cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
                "bare_rss_mib": proc_rss_mib(bare.pid), "idle_calls_per_min": 60 * calls / (t1 - t0),
                "runners": len(pool_runners(emulator, spec))}
    finally:
        bare.kill()
        manager.terminate(timeout=120)


def recovery_after_storm(client: docker.DockerClient, emulator: Any, image: str, probe: bool,
                         backoff_max: float = 60.0) -> dict[str, float]:
    """Seconds from a storm's end to a full pool, and the backoff the manager still had then."""
    spec = make_spec(emulator, image, slots=2, reconcile_interval=5.0, backoff_initial=2.0, backoff_max=backoff_max)
    options: dict[str, Any] = {} if probe else {"probe_interval": float("inf")}
    manager = InProcessManager(spec, emulator, **options).start()
    try:
        took, left = storm_then_recover(emulator, client, manager, spec, min_backoff=10.0)
        return {"to_full_s": took, "backoff_left_s": left, "faults": fault_answers(manager)}
    finally:
        emulator.clear_faults()
        manager.stop(timeout=120)


def _api_calls(manager: ProcessManager) -> dict[str, float]:
    """The manager's GitHub HTTP attempts so far by RequestEvent kind (its /metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    calls: dict[str, float] = {}
    for family in text_string_to_metric_families(manager.metrics()):
        for sample in family.samples:
            if sample.name == "ghr_github_api_calls_total":
                kind = sample.labels.get("kind", "other")
                calls[kind] = calls.get(kind, 0.0) + sample.value
    return calls


def _split(before: dict[str, float], after: dict[str, float]) -> tuple[float, float, dict[str, int]]:
    """(REST calls, Actions-service calls, by kind) between two `_api_calls` readings."""
    from github_client._scaleset import SCALESET_KIND_PREFIX

    delta = {k: int(after.get(k, 0) - before.get(k, 0)) for k in after if after.get(k, 0) - before.get(k, 0)}
    service = sum(n for k, n in delta.items() if k.startswith(SCALESET_KIND_PREFIX))
    return sum(delta.values()) - service, service, delta


def _runner_box(client: docker.DockerClient, name: str) -> dict[str, Any]:
    (box,) = client.api.containers(all=True, filters={"label": [f"ghr.runner-name={name}", "ghr.role=runner"]})
    return box  # type: ignore[no-any-return]


def pool_figures(client: docker.DockerClient, emulator: Any, spec: dict[str, Any], tmp: Path, jobs: int,
                 script: str) -> dict[str, list[float]]:
    """One slot, `jobs` jobs one after another: replacement (die -> replacement online), job start (enqueued ->
    in progress on the idle runner) and job done (enqueued -> completed) seconds."""
    prefix = spec["name_prefix"] + "-"
    watcher = DieWatcher(client, spec["stack"])
    manager = ProcessManager(spec, tmp, emulator.admin_token).start()
    out: dict[str, list[float]] = {"replacement": [], "job_start": [], "job_done": []}
    try:
        wait_for(lambda: online_idle(emulator, spec), 120, "the first idle runner", interval=POLL)
        for _ in range(jobs):
            old = wait_for(lambda: online_idle(emulator, spec), 120, "an idle runner", interval=POLL)[0]["name"]
            box = _runner_box(client, old)
            queued = time.monotonic()
            job = emulator.enqueue_job("acme", spec["labels"], script, timeout=120)
            wait_for(lambda job=job: emulator.job(job)["status"] != "queued", 120, "the job started", interval=POLL)
            out["job_start"].append(time.monotonic() - queued)
            done = emulator.wait_job(job, timeout=120)
            out["job_done"].append(time.monotonic() - queued)
            assert done["conclusion"] == "success" and done["runner_name"] == old, done
            exited = watcher.wait(box["Id"], 30)
            wait_for(lambda old=old: online_names(emulator, prefix) - {old}, 120, "the replacement online", interval=POLL)
            out["replacement"].append(time.time() - exited)
    finally:
        manager.terminate(timeout=120)
        watcher.stream.close()
    return out


def engine_startups(client: docker.DockerClient, image: str, runs: int) -> list[float]:
    """Seconds from `docker run` of the sidecar image (caps form) to `docker version` answering inside it."""
    from pool_manager import _dind as D

    out = []
    for _ in range(runs):
        started = time.monotonic()
        cid = subprocess.run(["docker", "run", "-d", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
                              "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
                              "--cgroupns", "private", "-v", "/var/lib/docker", "-v", D.SOCKET_DIR,
                              "--label", "ghr.role=bench", image], check=True, capture_output=True,
                             text=True).stdout.strip()
        try:
            wait_for(lambda cid=cid: subprocess.run(["docker", "exec", cid, *D.ready_command()], capture_output=True)
                     .returncode == 0, 60, "the engine answers", interval=POLL)
            out.append(time.monotonic() - started)
        finally:
            client.api.remove_container(cid, force=True, v=True)
    return out


def dind_figures(client: docker.DockerClient, tmp: Path, jobs: int, runs: int) -> dict[str, Any]:
    """The Docker-in-jobs figures (see the module docstring), on a network and an emulator of their own."""
    import secrets

    from emulator import Emulator
    from github_client import GitHubClient, PatAuth, parse_scope
    from tests.manager.mgr_helpers import ensure_dind_image, ensure_runner_image

    network = client.networks.create(f"ghr-bench-{secrets.token_hex(3)}", driver="bridge",
                                     labels={"ghr.role": "bench"})
    try:
        network.reload()
        gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
        with Emulator(host=gateway) as emulator:
            emulator.add_scope("acme")
            print("[bench] dind: runner and sidecar images ...", flush=True)
            image = ensure_runner_image(client, emulator)
            sidecar = ensure_dind_image(client)
            github = GitHubClient(parse_scope(f"{emulator.url}/acme"), PatAuth(emulator.admin_token))
            print(f"[bench] dind: baseline, {runs} x bare docker run --rm on the network -> online ...", flush=True)
            baseline = [baseline_run(client, emulator, image, github, tmp, i, network=network.name)
                        for i in range(runs)]
            print(f"[bench] dind: engine start-up alone, {runs} runs ...", flush=True)
            engine = engine_startups(client, sidecar, runs)
            tuning = {"reconcile_interval": 30.0, "backoff_initial": 1.0, "backoff_max": 60.0}
            print(f"[bench] dind: none pool, {jobs} jobs ...", flush=True)
            none = pool_figures(client, emulator, make_spec(emulator, image, container={"network_mode": network.name},
                                                            **tuning), tmp, jobs, "true")
            print(f"[bench] dind: dind pool, {jobs} jobs ...", flush=True)
            dind_spec = make_spec(emulator, image, container={"network_mode": network.name}, docker="dind",
                                  dind={"image": sidecar, "security": "caps"}, **tuning)
            dind = pool_figures(client, emulator, dind_spec, tmp, jobs, "docker version >/dev/null")
    finally:
        network.remove()
    base = statistics.median(baseline)
    med = {k: statistics.median(v) for k, v in (("none_" + a, b) for a, b in none.items())}
    med.update({"dind_" + a: statistics.median(b) for a, b in dind.items()})
    eng = statistics.median(engine)
    return {
        "baseline_docker_run_to_online_s": round(base, 3),
        "engine_startup_s": {"median": round(eng, 3), "p95": round(p95(engine), 3), "runs": len(engine)},
        "engine_startup_ratio_to_baseline": round(eng / base, 2),
        "replacement_s": {"none": round(med["none_replacement"], 3), "dind": round(med["dind_replacement"], 3),
                          "dind_p95": round(p95(dind["replacement"]), 3)},
        "replacement_ratio": {"dind_to_none": round(med["dind_replacement"] / med["none_replacement"], 2),
                              "dind_to_baseline": round(med["dind_replacement"] / base, 2),
                              "none_to_baseline": round(med["none_replacement"] / base, 2)},
        "job_start_s": {"none": round(med["none_job_start"], 3), "dind": round(med["dind_job_start"], 3)},
        "job_start_ratio_dind_to_none": round(med["dind_job_start"] / med["none_job_start"], 2),
        "job_done_s": {"none_true": round(med["none_job_done"], 3), "dind_docker_version": round(med["dind_job_done"], 3)},
        "job_done_ratio_dind_to_none": round(med["dind_job_done"] / med["none_job_done"], 2),
        "jobs": jobs,
    }


def _print_dind(d: dict[str, Any]) -> None:
    r, s = d["replacement_ratio"], d["replacement_s"]
    print(f"dind replacement (exit -> online):               none {s['none']:.3f}s  dind {s['dind']:.3f}s "
          f"(p95 {s['dind_p95']:.3f}s); dind/none {r['dind_to_none']:.2f}x, dind/bare run {r['dind_to_baseline']:.2f}x, "
          f"none/bare run {r['none_to_baseline']:.2f}x (bare docker run -> online {d['baseline_docker_run_to_online_s']:.3f}s)")
    print(f"dind job start (enqueued -> in progress):        none {d['job_start_s']['none']:.3f}s  dind "
          f"{d['job_start_s']['dind']:.3f}s ({d['job_start_ratio_dind_to_none']:.2f}x); enqueued -> done: none "
          f"{d['job_done_s']['none_true']:.3f}s, dind with docker version {d['job_done_s']['dind_docker_version']:.3f}s "
          f"({d['job_done_ratio_dind_to_none']:.2f}x)")
    print(f"dind engine start-up alone (run -> answers):     median {d['engine_startup_s']['median']:.3f}s  p95 "
          f"{d['engine_startup_s']['p95']:.3f}s ({d['engine_startup_ratio_to_baseline']:.2f}x the bare runner's start)")


def scale_set_latencies(client: docker.DockerClient, emulator: Any, image: str, tmp: Path, jobs: int, *,
                        warm: bool) -> dict[str, Any]:
    """Queued-to-started seconds of `jobs` jobs run one after another on a scale-set pool, and calls per job."""
    from tests.manager.mgr_helpers import live_sessions, pool_containers

    spec = make_spec(emulator, image, slots=2, scaling="scale_set", min_runners=1 if warm else 0, max_runners=2,
                     reconcile_interval=30.0, backoff_initial=1.0, backoff_max=60.0)
    manager = ProcessManager(spec, tmp, emulator.admin_token).start()
    latencies: list[float] = []
    try:
        wait_for(lambda: live_sessions(emulator, spec), 60, "the scale set's session", interval=0.1)
        if warm:
            wait_for(lambda: online_idle(emulator, spec), 60, "the idle runner", interval=POLL)
        before = _api_calls(manager)
        for _ in range(jobs):
            if warm:
                wait_for(lambda: online_idle(emulator, spec), 60, "an idle runner", interval=POLL)
            else:
                wait_for(lambda: pool_containers(client, spec) == [], 60, "the pool at zero", interval=POLL)
            queued = time.monotonic()
            job = emulator.enqueue_job("acme", spec["labels"], "true", timeout=120)
            wait_for(lambda job=job: emulator.job(job)["status"] != "queued", 120, "the job started", interval=POLL)
            latencies.append(time.monotonic() - queued)
            done = emulator.wait_job(job, timeout=120)
            assert done["conclusion"] == "success", done
        wait_for(lambda: len(pool_containers(client, spec)) == (1 if warm else 0), 60, "the pool back at its floor",
                 interval=0.1)
        rest, service, by_kind = _split(before, _api_calls(manager))
    finally:
        manager.terminate(timeout=120)
    return {"latencies": latencies, "rest_per_job": rest / jobs, "service_per_job": service / jobs, "by_kind": by_kind}


def scale_set_idle(emulator: Any, image: str, tmp: Path, window: float) -> dict[str, Any]:
    """Requests per minute of an idle scale-set pool (min_runners 0) with GitHub's 50 s long poll."""
    from tests.manager.mgr_helpers import live_sessions

    spec = make_spec(emulator, image, slots=2, scaling="scale_set", min_runners=0, max_runners=2,
                     reconcile_interval=30.0, backoff_initial=1.0, backoff_max=60.0)
    manager = ProcessManager(spec, tmp, emulator.admin_token).start()
    try:
        wait_for(lambda: live_sessions(emulator, spec), 60, "the scale set's session", interval=0.1)
        time.sleep(2.0)  # past the start-up calls (connect, scale set, first full pass)
        before, t0 = _api_calls(manager), time.monotonic()
        time.sleep(window)  # the measurement window itself
        rest, service, by_kind = _split(before, _api_calls(manager))
        minutes = (time.monotonic() - t0) / 60
        return {"per_min": (rest + service) / minutes, "rest_per_min": rest / minutes,
                "service_per_min": service / minutes, "by_kind": by_kind}
    finally:
        manager.terminate(timeout=120)


def scale_set_results(cold: dict[str, Any], warm: dict[str, Any], idle: dict[str, Any], base_med: float,
                      ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, run in (("cold_min0", cold), ("warm_min1", warm)):
        lat = run["latencies"]
        med, p = statistics.median(lat), p95(lat)
        out[name] = {"queued_to_started_s": {"median": round(med, 3), "p95": round(p, 3), "jobs": len(lat)},
                     "ratio_to_baseline": {"median": round(med / base_med, 2), "p95": round(p / base_med, 2)},
                     "rest_calls_per_job": round(run["rest_per_job"], 2),
                     "actions_service_calls_per_job": round(run["service_per_job"], 2),
                     "calls_by_kind": run["by_kind"]}
    out["idle_requests_per_min"] = {"total": round(idle["per_min"], 2), "rest": round(idle["rest_per_min"], 2),
                                    "actions_service": round(idle["service_per_min"], 2), "by_kind": idle["by_kind"]}
    return out


def _print_scale_set(results: dict[str, Any], base_med: float) -> None:
    for name in ("cold_min0", "warm_min1"):
        r = results[name]
        lat, ratio = r["queued_to_started_s"], r["ratio_to_baseline"]
        print(f"scale set {name}: queued -> started median {lat['median']:.3f}s p95 {lat['p95']:.3f}s over "
              f"{lat['jobs']} jobs ({ratio['median']:.2f}x / {ratio['p95']:.2f}x the bare docker run "
              f"{base_med:.3f}s); calls per job: REST {r['rest_calls_per_job']:.2f}, Actions service "
              f"{r['actions_service_calls_per_job']:.2f}  {r['calls_by_kind']}")
    idle = results["idle_requests_per_min"]
    print(f"scale set idle: {idle['total']:.2f} requests/min (REST {idle['rest']:.2f}, Actions service "
          f"{idle['actions_service']:.2f})  {idle['by_kind']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--baseline-runs", type=int, default=10)
    parser.add_argument("--idle-slots", type=int, default=20)
    parser.add_argument("--idle-window", type=float, default=60.0, help="seconds to measure idle cost over")
    parser.add_argument("--only-recovery", action="store_true", help="measure the recovery figure only")
    parser.add_argument("--only-scale-set", action="store_true",
                        help="measure the scale-set figures only (with the docker run baseline)")
    parser.add_argument("--only-dind", action="store_true",
                        help="measure the Docker-in-jobs figures only (dind vs none pool vs bare docker run)")
    args = parser.parse_args()

    from emulator import Emulator
    from github_client import GitHubClient, PatAuth, parse_scope
    from tests.manager.mgr_helpers import ensure_runner_image

    client = docker.from_env(timeout=120)
    tmp = Path(tempfile.mkdtemp(prefix="ghr-bench-"))
    if args.only_dind:
        dind = dind_figures(client, tmp, args.jobs, args.baseline_runs)
        shutil.rmtree(tmp, ignore_errors=True)
        _print_dind(dind)
        print("RESULTS " + json.dumps({"dind": dind}, sort_keys=True))
        return 0
    with Emulator() as emulator:
        emulator.add_scope("acme")
        print("[bench] runner image ...", flush=True)
        image = ensure_runner_image(client, emulator)
        github = GitHubClient(parse_scope(f"{emulator.url}/acme"), PatAuth(emulator.admin_token))

        if args.only_scale_set:
            print(f"[bench] baseline: {args.baseline_runs} x bare docker run --rm -> online ...", flush=True)
            baseline = [baseline_run(client, emulator, image, github, tmp, i) for i in range(args.baseline_runs)]
            base_med = statistics.median(baseline)
            ss = _scale_set_run(client, emulator, image, tmp, args.jobs, args.idle_window, base_med)
            _print_scale_set(ss, base_med)
            print("RESULTS " + json.dumps({"baseline_docker_run_to_online_s": round(base_med, 3), "scale_set": ss},
                                          sort_keys=True))
            return 0
        print("[bench] recovery after a 502 storm, with and without the recovery probe ...", flush=True)
        recovery = {"probe": recovery_after_storm(client, emulator, image, probe=True),
                    "no_probe": recovery_after_storm(client, emulator, image, probe=False)}
        if args.only_recovery:
            _print_recovery(recovery, 60.0)
            print("RESULTS " + json.dumps({"recovery": _recovery_results(recovery, 60.0)}, sort_keys=True))
            return 0
        print(f"[bench] baseline: {args.baseline_runs} x bare docker run --rm -> online ...", flush=True)
        baseline = [baseline_run(client, emulator, image, github, tmp, i) for i in range(args.baseline_runs)]
        print(f"[bench] replacement latency over {args.jobs} jobs ...", flush=True)
        latencies, calls, wall = replacement_latencies(client, emulator, image, tmp, args.jobs)
        print(f"[bench] idle cost: {args.idle_slots} idle slots over {args.idle_window:.0f}s ...", flush=True)
        idle = idle_cost(emulator, image, tmp, args.idle_slots, args.idle_window)
        base_med = statistics.median(baseline)
        ss = _scale_set_run(client, emulator, image, tmp, args.jobs, args.idle_window, base_med)
    dind = dind_figures(client, tmp, args.jobs, args.baseline_runs)
    shutil.rmtree(tmp, ignore_errors=True)

    med, p = statistics.median(latencies), p95(latencies)
    total_calls = sum(calls.values())
    results = {
        "baseline_docker_run_to_online_s": {"median": round(base_med, 3), "p95": round(p95(baseline), 3),
                                            "runs": len(baseline)},
        "replacement_exit_to_online_s": {"median": round(med, 3), "p95": round(p, 3), "jobs": len(latencies)},
        "replacement_ratio_to_baseline": {"median": round(med / base_med, 2), "p95": round(p / base_med, 2)},
        "github_calls_per_job": round(total_calls / len(latencies), 2),
        "github_calls_by_kind": calls,
        "jobs_per_minute_one_slot": round(60 * len(latencies) / wall, 1),
        "idle": {"slots": args.idle_slots, "manager_rss_mib": round(idle["rss_mib"], 1),
                 "bare_python_same_imports_rss_mib": round(idle["bare_rss_mib"], 1),
                 "rss_ratio_to_bare": round(idle["rss_mib"] / idle["bare_rss_mib"], 2),
                 "manager_cpu_percent_of_one_core": round(idle["cpu_pct"], 2),
                 "github_calls_per_minute": round(idle["idle_calls_per_min"], 2)},
        "recovery": _recovery_results(recovery, 60.0),
        "scale_set": ss,
        "dind": dind,
    }
    print(f"replacement latency (exit -> replacement online): median {med:.3f}s  p95 {p:.3f}s  "
          f"over {len(latencies)} jobs")
    print(f"baseline (bare docker run --rm -> online):       median {base_med:.3f}s  p95 {p95(baseline):.3f}s  "
          f"over {len(baseline)} runs")
    print(f"ratio to baseline:                               median {med / base_med:.2f}x  p95 {p / base_med:.2f}x")
    print(f"GitHub API calls per job:                        {total_calls / len(latencies):.2f}  {calls}")
    print(f"idle, {args.idle_slots} slots: manager RSS {idle['rss_mib']:.1f} MiB "
          f"(bare python with the same imports {idle['bare_rss_mib']:.1f} MiB, "
          f"{idle['rss_mib'] / idle['bare_rss_mib']:.2f}x), CPU {idle['cpu_pct']:.2f}% of one core, "
          f"{idle['idle_calls_per_min']:.2f} GitHub calls/min")
    _print_recovery(recovery, 60.0)
    _print_scale_set(ss, base_med)
    _print_dind(dind)
    print("RESULTS " + json.dumps(results, sort_keys=True))
    return 0


def _scale_set_run(client: docker.DockerClient, emulator: Any, image: str, tmp: Path, jobs: int, window: float,
                   base_med: float) -> dict[str, Any]:
    emulator.set_message_poll_wait(50.0)  # GitHub's hold of an empty long poll
    print(f"[bench] scale set, cold (min_runners 0): {jobs} jobs ...", flush=True)
    cold = scale_set_latencies(client, emulator, image, tmp, jobs, warm=False)
    print(f"[bench] scale set, warm (min_runners 1): {jobs} jobs ...", flush=True)
    warm = scale_set_latencies(client, emulator, image, tmp, jobs, warm=True)
    print(f"[bench] scale set, idle requests over {window:.0f}s ...", flush=True)
    idle = scale_set_idle(emulator, image, tmp, window)
    return scale_set_results(cold, warm, idle, base_med)


def _recovery_results(recovery: dict[str, dict[str, float]], cap: float) -> dict[str, Any]:
    probe, before = recovery["probe"], recovery["no_probe"]
    return {"backoff_max_s": cap,
            "to_full_after_storm_s": round(probe["to_full_s"], 2),
            "ratio_to_backoff_max": round(probe["to_full_s"] / cap, 3),
            "backoff_left_at_storm_end_s": round(probe["backoff_left_s"], 2),
            "faults": int(probe["faults"]),
            "without_probe_to_full_s": round(before["to_full_s"], 2),
            "without_probe_backoff_left_s": round(before["backoff_left_s"], 2),
            "without_probe_ratio_to_backoff_max": round(before["to_full_s"] / cap, 3)}


def _print_recovery(recovery: dict[str, dict[str, float]], cap: float) -> None:
    probe, before = recovery["probe"], recovery["no_probe"]
    print(f"recovery (storm end -> pool full):               {probe['to_full_s']:.2f}s with the probe "
          f"({probe['to_full_s'] / cap:.3f}x backoff_max={cap:.0f}s; {probe['backoff_left_s']:.1f}s of backoff were left, "
          f"{probe['faults']:.0f} faults); without the probe {before['to_full_s']:.2f}s "
          f"({before['to_full_s'] / cap:.3f}x; {before['backoff_left_s']:.1f}s of backoff left)")


if __name__ == "__main__":
    sys.exit(main())
