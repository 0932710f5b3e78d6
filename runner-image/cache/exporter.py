"""ghr cache exporter: Prometheus metrics and /healthz of a host's caches, from their own records.

    python3 exporter.py --stats /var/lib/ghr-stats --port 9180 --caches apt,registry
    python3 exporter.py scan-registry /var/lib/docker-registry /var/lib/ghr-stats   (in the registry container)

Reads only the stats volume (read-only), which the cache containers write (runner-image/cache/ghr-cache.sh):
- apt: apt-cacher-ng's own transfer log `apt/apt-cacher.log`, lines `time|I|bytes|client|path` (fetched from
  upstream) and `time|O|bytes|client|path` (served). A file served without an upstream transfer in the same
  record is a hit, one with it a miss. The log is on the volume, so the counts survive restarts.
- registry: the registry's own expvar counters (`registry.proxy.blobs`), dumped to `registry.vars.json` by its
  container, and its storage: Debian's docker-registry 2.8 counts every blob it copies to anyone as a "hit"
  (`Hits`, `BytesPushed`: a miss is copied twice, from upstream to the client and from upstream to its
  storage) and never counts misses (`Misses`, `BytesPulled` stay 0). So its container also records the blobs
  that appear in its storage (`registry.stored`: "<blobs> <bytes>" since the container started, written by
  `exporter.py scan-registry`), and: misses = new blobs, upstream bytes = 2 x their size, requests =
  Hits - misses, hits = requests - misses, served bytes = BytesPushed - their size. Both restart at 0 with
  the registry's container (Prometheus counter semantics).
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
    stored = (_read(os.path.join(stats, "registry.stored")) or "0 0").split()
    if not text:
        return counts
    try:
        blobs = json.loads(text).get("registry", {}).get("proxy", {}).get("blobs") or {}
        new, new_bytes = int(stored[0]), int(stored[1])
    except (ValueError, IndexError):
        return counts
    copies, pushed = int(blobs.get("Hits", 0)), int(blobs.get("BytesPushed", 0))
    requests = max(copies - new, 0)
    counts.update(miss=min(new, requests), hit=max(requests - new, 0), upstream=2 * new_bytes,
                  served=max(pushed - new_bytes, 0))
    return counts


def scan_registry(root: str, stats: str) -> None:
    """Record the blobs that appeared in the registry's storage since the last scan (a fetch from upstream;
    one evicted and fetched again counts again): `registry.stored` += their count and bytes."""
    v2 = os.path.join(root, "docker", "registry", "v2")
    layers: set[str] = set()  # layer and config blobs (manifests are blobs too, but not counted as such)
    for folder, dirs, _files in os.walk(os.path.join(v2, "repositories")):
        if os.path.basename(folder) == "sha256" and os.path.basename(os.path.dirname(folder)) == "_layers":
            layers.update(dirs)
            dirs.clear()
    blobs: dict[str, int] = {}
    for digest in layers:
        try:
            blobs[digest] = os.path.getsize(os.path.join(v2, "blobs", "sha256", digest[:2], digest, "data"))
        except OSError:
            continue
    seen_path = os.path.join(stats, "registry.seen")
    seen = set((_read(seen_path) or "").split())
    stored = (_read(os.path.join(stats, "registry.stored")) or "0 0").split()
    new = [d for d in blobs if d not in seen]
    count, size = int(stored[0]) + len(new), int(stored[1]) + sum(blobs[d] for d in new)
    for path, text in ((seen_path, "\n".join(sorted(blobs))), (os.path.join(stats, "registry.stored"),
                                                              f"{count} {size}")):
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        os.replace(path + ".tmp", path)


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
    import sys

    if sys.argv[1:2] == ["scan-registry"]:
        scan_registry(sys.argv[2], sys.argv[3])
        return
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
