"""Bounded waits used by scripts/demo.sh: each polls a condition until a deadline, then fails."""

from __future__ import annotations

import argparse
import sys
import time

import requests


def _poll(check, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
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


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("http")
    h.add_argument("url")
    h.add_argument("--timeout", type=float, default=30)
    r = sub.add_parser("runners")
    j = sub.add_parser("job")
    for p in (r, j):
        p.add_argument("--token", required=True)
        p.add_argument("--scope", required=True)
        p.add_argument("--timeout", type=float, default=120)
    r.add_argument("--api", required=True)
    r.add_argument("--prefix", required=True)
    r.add_argument("--count", type=int, required=True)
    j.add_argument("--url", required=True)
    j.add_argument("--labels", required=True)
    j.add_argument("--script", required=True)
    a = ap.parse_args()
    s = requests.Session()
    if a.cmd == "http":
        _poll(lambda: s.get(a.url, timeout=5).ok, a.timeout, a.url)
        return 0
    s.headers["Authorization"] = f"Bearer {a.token}"
    if a.cmd == "runners":
        def online() -> bool:
            body = s.get(f"{a.api}/orgs/{a.scope}/actions/runners", params={"per_page": 100}, timeout=5).json()
            n = sum(1 for x in body.get("runners", []) if x["name"].startswith(a.prefix) and x["status"] == "online")
            return n >= a.count
        _poll(online, a.timeout, f"{a.count} runners online")
        print(f"{a.count} runners online")
        return 0
    job = s.post(f"{a.url}/_emulator/jobs", json={"scope": a.scope, "labels": a.labels.split(","),
                                                   "script": a.script, "timeout": a.timeout}, timeout=10).json()
    done = _poll(lambda: (lambda b: b if b.get("status") == "completed" else None)(
        s.get(f"{a.url}/_emulator/jobs/{job['id']}", timeout=5).json()), a.timeout, f"job {job['id']}")
    print(f"job {done['id']} ran on {done['runner_name']}: {done['conclusion']} (exit {done['exit_code']})")
    for line in (done.get("output") or "").splitlines()[-10:]:
        print(f"  | {line}")
    return 0 if done.get("conclusion") == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
