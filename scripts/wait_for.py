"""Bounded waits used by scripts/demo.sh: each polls a condition until a deadline, then fails.

  http URL                     until URL answers 2xx
  runners                      until COUNT runners named PREFIX* are online (REST API)
  job                          enqueue a job in the emulator (or, with --id, take a queued one) and wait for its result
  enqueue                      enqueue a job in the emulator, print its id
  containers                   until a pool has exactly COUNT runner containers (--at-least: COUNT or more)
  scaleset                     until the emulator's scale set NAME has a live message session; prints its statistics
  gone                         until the emulator holds no scale set or runner named PREFIX* and no message
                               session, and the engine no container of the stack
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import requests


def _poll(check: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except requests.RequestException as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}" + (f" ({last})" if last else ""))
        time.sleep(interval)


def _containers(stack: str, pool: str | None = None) -> list[Any]:
    import docker  # only the container waits need the engine

    labels = [f"ghr.stack={stack}"] + ([f"ghr.pool={pool}", "ghr.role=runner"] if pool else [])
    client = docker.from_env()
    try:
        return list(client.containers.list(all=True, filters={"label": labels}))
    finally:
        client.close()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("http")
    h.add_argument("url")
    h.add_argument("--timeout", type=float, default=30)
    r = sub.add_parser("runners")
    j = sub.add_parser("job")
    e = sub.add_parser("enqueue")
    ss = sub.add_parser("scaleset")
    g = sub.add_parser("gone")
    for p in (r, j, e, ss, g):
        p.add_argument("--token", required=True)
        p.add_argument("--timeout", type=float, default=120)
    for p in (r, j, e):
        p.add_argument("--scope", required=True)
    r.add_argument("--api", required=True)
    r.add_argument("--prefix", required=True)
    r.add_argument("--count", type=int, required=True)
    for p in (j, e, ss, g):
        p.add_argument("--url", required=True, help="the emulator's base URL")
    for p in (j, e):
        p.add_argument("--labels", default="")
        p.add_argument("--script", default="")
    j.add_argument("--id", type=int, help="wait for this queued job instead of enqueueing one")
    ss.add_argument("--name", required=True)
    g.add_argument("--prefix", required=True, help="scale-set name prefix")
    g.add_argument("--stack", required=True)
    c = sub.add_parser("containers")
    c.add_argument("--stack", required=True)
    c.add_argument("--pool", required=True)
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--at-least", action="store_true")
    c.add_argument("--timeout", type=float, default=120)
    return ap


def _enqueue(s: requests.Session, a: argparse.Namespace) -> int:
    if not a.labels or not a.script:
        raise SystemExit("--labels and --script are needed to enqueue a job")
    body = {"scope": a.scope, "labels": a.labels.split(","), "script": a.script, "timeout": a.timeout}
    resp = s.post(f"{a.url}/_emulator/jobs", json=body, timeout=10)
    resp.raise_for_status()
    return int(resp.json()["id"])


def main() -> int:
    a = _parser().parse_args()
    s = requests.Session()
    if a.cmd == "http":
        _poll(lambda: s.get(a.url, timeout=5).ok, a.timeout, a.url)
        return 0
    if a.cmd == "containers":
        def count() -> list[str] | None:
            names = sorted(c.name for c in _containers(a.stack, a.pool))
            ok = len(names) >= a.count if a.at_least else len(names) == a.count
            return (names or ["-"]) if ok else None
        names = _poll(count, a.timeout, f"{'at least ' if a.at_least else ''}{a.count} runner containers "
                      f"of pool {a.pool}", interval=0.25)
        shown = [] if names == ["-"] else names
        print(f"pool {a.pool}: {len(shown)} runner container{'' if len(shown) == 1 else 's'}"
              + (f" ({', '.join(shown)})" if shown else ""))
        return 0
    s.headers["Authorization"] = f"Bearer {a.token}"
    if a.cmd == "runners":
        def online() -> bool:
            body = s.get(f"{a.api}/orgs/{a.scope}/actions/runners", params={"per_page": 100}, timeout=5).json()
            n = sum(1 for x in body.get("runners", []) if x["name"].startswith(a.prefix) and x["status"] == "online")
            return bool(n >= a.count)
        _poll(online, a.timeout, f"{a.count} runners online")
        print(f"{a.count} runners online")
        return 0
    if a.cmd == "enqueue":
        print(_enqueue(s, a))
        return 0
    if a.cmd == "scaleset":
        def live() -> dict[str, Any] | None:
            sets = s.get(f"{a.url}/_emulator/scalesets", timeout=5).json()["scale_sets"]
            sessions = s.get(f"{a.url}/_emulator/scaleset-sessions", timeout=5).json()["sessions"]
            for x in sets:
                if x["name"] == a.name and any(y["scaleSetId"] == x["id"] and y["live"] for y in sessions):
                    return dict(x)
            return None
        found = _poll(live, a.timeout, f"scale set {a.name} with a live message session")
        st = found["statistics"]
        print(f"scale set {found['name']} (id {found['id']}): message session live; "
              f"{st['totalRegisteredRunners']} registered runners, {st['totalAssignedJobs']} assigned jobs, "
              f"{st['totalRunningJobs']} running")
        return 0
    if a.cmd == "gone":
        def nothing_left() -> bool:
            sets = [x["name"] for x in s.get(f"{a.url}/_emulator/scalesets", timeout=5).json()["scale_sets"]
                    if x["name"].startswith(a.prefix)]
            sessions = s.get(f"{a.url}/_emulator/scaleset-sessions", timeout=5).json()["sessions"]
            runners = [x["name"] for x in s.get(f"{a.url}/_emulator/runners", timeout=5).json()["runners"]
                       if x["name"].startswith(a.prefix)]
            return not sets and not sessions and not runners and not _containers(a.stack)
        _poll(nothing_left, a.timeout, f"no scale set or runner registration {a.prefix}*, no message session,"
              f" no container of {a.stack}")
        print(f"left behind: no scale set, no message session, no runner registration, no container of stack {a.stack}")
        return 0
    job_id = a.id if a.id is not None else _enqueue(s, a)
    done = _poll(lambda: (lambda b: b if b.get("status") == "completed" else None)(
        s.get(f"{a.url}/_emulator/jobs/{job_id}", timeout=5).json()), a.timeout, f"job {job_id}")
    print(f"job {done['id']} ran on {done['runner_name']}: {done['conclusion']} (exit {done['exit_code']})")
    for line in (done.get("output") or "").splitlines()[-10:]:
        print(f"  | {line}")
    return 0 if done.get("conclusion") == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
