"""The chaos drill: jobs run through a pool while its manager, its runners, GitHub and the Docker engine fail.

Faults, one per step, between batches of queued jobs:
- `kill_busy`: `docker kill` of a runner in the middle of its job;
- `kill_manager`: SIGKILL of the manager process, and a new one started on the same spec;
- `api_5xx`, `api_429`, `api_drop`, `api_latency`: the manager's GitHub endpoints answer 502, hit a
  secondary rate limit (429 with retry-after 1 s), drop the connection, or answer 0.5 s late;
- `engine_restart`: the Docker engine stops (every runner dies with it) and starts again.

What must hold, whatever the faults: every job completes; a job succeeds unless a fault killed the runner
that had it; no job runs twice (each job appends its tag to a ledger file that the runners share through a
bind mount, so a second run shows as a second line); once the manager has drained, no registration,
container or volume of the pool is left. The manager runs as a process against a second Docker engine
that the caller starts (tests/_support/second_engine.py), so an engine restart touches nothing else.

Used by tests/manager/test_mgr_chaos.py (a short, seeded drill in `make test`) and bench/bench_chaos.py
(the long drill, against the same jobs without faults).
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from emulator import Emulator
from tests._support.polling import wait_for
from tests._support.second_engine import SecondEngine
from tests.manager.mgr_helpers import ProcessManager, make_spec, pool_runners

FAULTS = ("kill_busy", "kill_manager", "api_5xx", "api_429", "api_drop", "api_latency", "engine_restart")
MANAGER_ENDPOINTS = "/actions/runners"  # the REST calls of the manager; the runners' own protocol is left alone
LEDGER = "/ledger"


@dataclass
class DrillReport:
    jobs: int
    succeeded: int = 0
    failed_by_fault: int = 0  # jobs whose runner a fault killed (as on GitHub: the job fails, or is cancelled)
    lost: list[int] = field(default_factory=list)  # never completed, or failed with no fault to explain it
    ran_twice: list[int] = field(default_factory=list)
    orphans: dict[str, list[str]] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0  # first job queued -> last job completed
    manager_exit: int | None = None
    log_tail: str = ""

    @property
    def clean(self) -> bool:
        return not self.lost and not self.ran_twice and not any(self.orphans.values()) and self.manager_exit == 0

    def summary(self) -> str:
        orphans = {k: len(v) for k, v in self.orphans.items()}
        return (f"jobs={self.jobs} succeeded={self.succeeded} failed_by_fault={self.failed_by_fault} "
                f"lost={len(self.lost)} ran_twice={len(self.ran_twice)} orphans={orphans} "
                f"faults={dict(sorted(self.faults.items()))} manager_exit={self.manager_exit} seconds={self.seconds:.1f}")


def schedule(kinds: Sequence[str], count: int, seed: int) -> list[str]:
    """`count` faults drawn from `kinds` with a seeded generator; each kind at least once when count allows."""
    rng = random.Random(seed)
    out = list(kinds)[:count]
    out += [rng.choice(list(kinds)) for _ in range(count - len(out))]
    rng.shuffle(out)
    return out


class Drill:
    """One pool (a manager process on `engine`), the drill's own emulator, a ledger folder."""

    def __init__(self, engine: SecondEngine, image: str, work: Path, *, slots: int, job_seconds: float = 1.0,
                 seed: int = 0) -> None:
        self.engine, self.work, self.job_seconds = engine, work, job_seconds
        self.rng = random.Random(seed)
        # Runners silent for 10 s lose their job (GitHub waits longer): a killed runner's job fails soon.
        self.emulator = Emulator(session_timeout=10.0).start()
        self.emulator.add_scope("acme")
        self.ledger = work / "ledger"
        self.ledger.mkdir(parents=True, exist_ok=True)
        self.ledger.chmod(0o777)
        (self.ledger / "runs").touch(mode=0o666)
        (self.ledger / "runs").chmod(0o666)
        self.spec = make_spec(self.emulator, image, slots=slots, backoff_max=5.0, container={
            "volumes": [{"type": "bind", "source": str(self.ledger), "target": LEDGER}]})
        self.manager: ProcessManager | None = None
        self.job_tags: dict[int, str] = {}
        self.killed_runners: set[str] = set()  # names of runners a fault killed mid-job
        self.faults: Counter[str] = Counter()

    # -- set-up ---------------------------------------------------------------------------------

    def __enter__(self) -> Drill:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.manager is not None and self.manager.proc is not None and self.manager.proc.poll() is None:
            self.manager.proc.kill()
            self.manager.proc.wait(10)
        self.emulator.stop()

    def start_manager(self) -> None:
        self.manager = ProcessManager(self.spec, self.work, self.emulator.admin_token)
        self.manager.env["DOCKER_HOST"] = self.engine.unix_url
        self.manager.start()

    # -- jobs -----------------------------------------------------------------------------------

    def enqueue(self, n: int) -> list[int]:
        ids = []
        for _ in range(n):
            tag = secrets.token_hex(6)
            script = f"echo {tag} >> {LEDGER}/runs && sleep {self.job_seconds} && echo ok-{tag}"
            job = self.emulator.enqueue_job("acme", self.spec["labels"], script, timeout=300)
            self.job_tags[job] = tag
            ids.append(job)
        return ids

    def _status(self, job: int) -> str:
        return str(self.emulator.job(job)["status"])

    def _pool_containers(self) -> list[dict[str, Any]]:
        return self.engine.client(timeout=30).api.containers(
            all=True, filters={"label": [f"ghr.stack={self.spec['stack']}", "ghr.role=runner"]})

    # -- faults ---------------------------------------------------------------------------------

    def apply(self, kind: str, batch: list[int]) -> None:
        """One fault; returns once the pool works again (a job of `batch` started or every one of them done)."""
        assert self.manager is not None
        em = self.emulator
        if kind == "kill_busy":
            wait_for(lambda: any(self._status(j) == "in_progress" for j in batch) or all(
                self._status(j) == "completed" for j in batch), 120, "a job of the batch to start")
            busy = [r for r in pool_runners(em, self.spec) if r["busy"]]
            if busy:
                victim = self.rng.choice(busy)["name"]
                for c in self._pool_containers():
                    if (c.get("Labels") or {}).get("ghr.runner-name") == victim and c.get("State") == "running":
                        self.killed_runners.add(victim)
                        try:
                            self.engine.client(timeout=30).api.kill(c["Id"])
                        except docker.errors.APIError:
                            pass  # it ended between the list and the kill: its job is done, nothing to explain
        elif kind == "kill_manager":
            self.manager.kill9()
            self.start_manager()
        elif kind == "api_5xx":
            em.set_faults(errors=8, error_status=502, match=MANAGER_ENDPOINTS)
        elif kind == "api_429":
            em.set_faults(secondary=4, secondary_status=429, retry_after=1, match=MANAGER_ENDPOINTS)
        elif kind == "api_drop":
            em.set_faults(drop=4, match=MANAGER_ENDPOINTS)
        elif kind == "api_latency":
            em.set_faults(latency=0.5, match=MANAGER_ENDPOINTS)
        elif kind == "engine_restart":
            # Every runner dies with the engine: the jobs they had fail, as on GitHub.
            self.killed_runners |= {(c.get("Labels") or {}).get("ghr.runner-name", "") for c in self._pool_containers()}
            self.engine.restart()
        else:
            raise ValueError(f"unknown fault {kind!r} (known: {', '.join(FAULTS)})")
        self.faults[kind] += 1
        # The pool works again: one more job of the batch started (or all done), then the API is healthy again.
        wait_for(lambda: all(self._status(j) != "queued" for j in batch), 180, f"the batch to start after {kind}")
        em.set_faults()

    # -- the run --------------------------------------------------------------------------------

    def run(self, jobs: int, faults: Sequence[str]) -> DrillReport:
        """Queue `jobs` jobs in len(faults)+1 batches, one fault after each batch but the last; check the outcome."""
        self.start_manager()
        assert self.manager is not None
        wait_for(lambda: len([r for r in pool_runners(self.emulator, self.spec) if r["status"] == "online"])
                 == self.spec["slots"], 120, "a full pool before the drill")
        began = time.monotonic()
        batches = len(faults) + 1
        sizes = [jobs // batches + (1 if i < jobs % batches else 0) for i in range(batches)]
        for i, size in enumerate(sizes):
            batch = self.enqueue(size)
            if i < len(faults):
                self.apply(faults[i], batch)
        report = DrillReport(jobs=jobs, faults=Counter(self.faults))
        deadline = time.monotonic() + 300
        for job in self.job_tags:
            try:
                self.emulator.wait_job(job, timeout=max(1.0, deadline - time.monotonic()))
            except TimeoutError:
                pass
        report.seconds = time.monotonic() - began
        self._judge(report)
        report.manager_exit = self.manager.terminate()
        report.log_tail = self.manager.log()[-4000:]
        self._orphans(report)
        return report

    def _judge(self, report: DrillReport) -> None:
        runs = Counter((self.ledger / "runs").read_text().split())
        for job, tag in self.job_tags.items():
            j = self.emulator.job(job)
            if runs[tag] > 1:
                report.ran_twice.append(job)
            if j["status"] != "completed":
                report.lost.append(job)
            elif j["conclusion"] == "success" and runs[tag] == 1 and f"ok-{tag}" in j["output"]:
                report.succeeded += 1
            elif j.get("runner_name") in self.killed_runners:  # failed or cancelled: its runner was killed
                report.failed_by_fault += 1
            else:
                report.lost.append(job)

    def _orphans(self, report: DrillReport) -> None:
        client = self.engine.client(timeout=30)
        stack = f"ghr.stack={self.spec['stack']}"
        report.orphans = {
            "registrations": [r["name"] for r in pool_runners(self.emulator, self.spec)],
            "containers": [c["Id"][:12] for c in client.api.containers(all=True, filters={"label": stack})],
            "volumes": [v["Name"] for v in (client.api.volumes(filters={"label": stack}) or {}).get("Volumes") or []],
        }
