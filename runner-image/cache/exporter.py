"""ghr cache exporter: Prometheus metrics and /healthz of a host's caches, from their own records.

    python3 exporter.py --stats /var/lib/ghr-stats --port 9180 --caches apt,registry

Reads only the stats volume (read-only), which the cache containers write (runner-image/cache/ghr-cache.sh):
- apt: apt-cacher-ng's own transfer log `apt/apt-cacher.log`, lines `time|I|bytes|client|path` (fetched from
  upstream) and `time|O|bytes|client|path` (served). A file served without an upstream transfer in the same
  record is a hit, one with it a miss. The log is on the volume, so the counts survive restarts.
- registry: the registry's own expvar counters (`registry.proxy.{blobs,manifests}`: Requests, Hits, Misses,
  BytesPushed = served, BytesPulled = fetched upstream), dumped to `registry.vars.json` by its container;
  they restart at 0 with the registry (Prometheus counter semantics).
- `<cache>.health` ("ok|fail <unix time>"), `<cache>.size` ("<used bytes> <max bytes>"), `<cache>.evicted`.
Standard library only; no network access but its own listener.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STALE_AFTER = 30.0  # seconds without a fresh health record: the cache counts as down


class AptLog:
    """Incremental reader of apt-cacher-ng's transfer log."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0
        self.inode = -1
        self.counts = {"hit": 0, "miss": 0, "served": 0, "upstream": 0}
        self._pending_in: dict[str, int] = {}

    def update(self) -> dict[str, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return self.counts
        if st.st_ino != self.inode or st.st_size < self.offset:  # a new or truncated log: count it from the start
            self.inode, self.offset = st.st_ino, 0
            self.counts = {"hit": 0, "miss": 0, "served": 0, "upstream": 0}
            self._pending_in = {}
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1  # whole lines only
        self.offset += end
        for raw in data[:end].splitlines():
            parts = raw.decode(errors="replace").split("|")
            if len(parts) < 5 or not parts[2].isdigit():
                continue
            kind, size, path = parts[1], int(parts[2]), parts[4]
            if kind == "I":
                self.counts["upstream"] += size
                self._pending_in[path] = size
            elif kind == "O":
                self.counts["served"] += size
                self.counts["miss" if self._pending_in.pop(path, None) is not None else "hit"] += 1
        return self.counts


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _registry_counts(stats: str) -> dict[str, int]:
    counts = {"hit": 0, "miss": 0, "served": 0, "upstream": 0}
    text = _read(os.path.join(stats, "registry.vars.json"))
    if not text:
        return counts
    try:
        proxy = json.loads(text).get("registry", {}).get("proxy", {})
    except ValueError:
        return counts
    for kind in ("blobs", "manifests"):
        m = proxy.get(kind) or {}
        counts["hit"] += int(m.get("Hits", 0))
        counts["miss"] += int(m.get("Misses", 0))
        counts["served"] += int(m.get("BytesPushed", 0))
        counts["upstream"] += int(m.get("BytesPulled", 0))
    return counts


class Exporter:
    def __init__(self, stats: str, caches: list[str]) -> None:
        self.stats = stats
        self.caches = caches
        self.apt = AptLog(os.path.join(stats, "apt", "apt-cacher.log"))
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        out: dict[str, Any] = {}
        with self.lock:
            for cache in self.caches:
                counts = self.apt.update() if cache == "apt" else _registry_counts(self.stats)
                health = (_read(os.path.join(self.stats, f"{cache}.health")) or "none 0").split()
                size = (_read(os.path.join(self.stats, f"{cache}.size")) or "0 0").split()
                evicted = _read(os.path.join(self.stats, f"{cache}.evicted")) or "0"
                age = now - float(health[1]) if len(health) > 1 else float("inf")
                up = health[0] == "ok" and age <= STALE_AFTER
                out[cache] = {
                    "up": up, "state": "ok" if up else ("stale" if health[0] == "ok" else health[0]),
                    "checked_ago": None if age == float("inf") else round(age, 1),
                    **counts, "disk_bytes": int(size[0]), "max_bytes": int(size[1]) if len(size) > 1 else 0,
                    "evicted_bytes": int(evicted) if evicted.isdigit() else 0,
                }
        return out

    def metrics(self) -> str:
        snap = self.snapshot()
        families = [
            ("ghr_cache_up", "gauge", "1 when the cache answered its last probe (within 30 s)", "up", None),
            ("ghr_cache_requests_total", "counter", "files/blobs served, by whether the cache had them", None, None),
            ("ghr_cache_served_bytes_total", "counter", "bytes served to clients", "served", None),
            ("ghr_cache_upstream_bytes_total", "counter", "bytes fetched from upstream", "upstream", None),
            ("ghr_cache_disk_bytes", "gauge", "bytes the cache stores", "disk_bytes", None),
            ("ghr_cache_max_bytes", "gauge", "the size bound (eviction above it)", "max_bytes", None),
            ("ghr_cache_evicted_bytes_total", "counter", "bytes evicted to stay under the bound", "evicted_bytes", None),
        ]
        lines: list[str] = []
        for name, kind, help_, key, _ in families:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
            for cache, row in snap.items():
                if key is None:
                    lines.append(f'{name}{{cache="{cache}",result="hit"}} {row["hit"]}')
                    lines.append(f'{name}{{cache="{cache}",result="miss"}} {row["miss"]}')
                else:
                    lines.append(f'{name}{{cache="{cache}"}} {int(row[key])}')
        return "\n".join(lines) + "\n"


def serve(exporter: Exporter, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path.startswith("/metrics"):
                body, status, ctype = exporter.metrics().encode(), 200, "text/plain; version=0.0.4"
            elif self.path.startswith("/healthz"):
                snap = exporter.snapshot()
                ok = all(row["up"] for row in snap.values())
                body = json.dumps({"ok": ok, "caches": snap}, sort_keys=True).encode()
                status, ctype = (200 if ok else 503), "application/json"
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass

    return ThreadingHTTPServer((host, port), Handler)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stats", default="/var/lib/ghr-stats")
    ap.add_argument("--port", type=int, default=9180)
    ap.add_argument("--caches", default="apt,registry")
    args = ap.parse_args()
    exporter = Exporter(args.stats, [c for c in args.caches.split(",") if c])
    server = serve(exporter, args.port)
    print(f"ts={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} role=exporter event=listening port={args.port}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
