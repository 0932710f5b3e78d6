"""Fleet status of a stack: pools, hosts, manager containers, runners (busy or idle).

    python -m components.status --stack sandbox [--json]

Reads the stack's outputs (pools, hosts, name prefixes) and its configuration (the GitHub
credentials, decrypted by the Pulumi CLI), then asks GitHub for the live runner list and
each Docker host for the manager container. Needs the Pulumi CLI on PATH (. toolchain/env.sh).
Nothing secret is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ._github import name_pattern
from .config import ConfigError, FleetConfig, parse_config


class StatusError(RuntimeError):
    pass


def _pulumi_json(args: Sequence[str], cwd: str | None) -> Any:
    proc = subprocess.run(["pulumi", *args, "--json"], capture_output=True, text=True, cwd=cwd, timeout=120,
                          check=False)
    if proc.returncode != 0:
        raise StatusError(f"pulumi {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout or "null")


def load_stack(stack: str, cwd: str | None = None) -> tuple[dict[str, Any], FleetConfig]:
    outputs = _pulumi_json(["stack", "output", "--stack", stack], cwd) or {}
    cfg = _pulumi_json(["config", "--show-secrets", "--stack", stack], cwd) or {}
    raw: dict[str, Any] = {}
    secret_keys = []
    for key, entry in cfg.items():
        if not key.startswith("ghr:"):
            continue
        value = entry.get("objectValue", entry.get("value"))
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        raw[key.split(":", 1)[1]] = value
        if entry.get("secret"):
            secret_keys.append(key)
    return outputs, parse_config(raw, stack, secret_keys)


def collect(outputs: Mapping[str, Any], fleet: FleetConfig, *, client: Any = None,
            docker_states: bool = True) -> dict[str, Any]:
    """Live status as a dict: {scope, pools: [{pool, host, slots, manager, counts, runners}]}."""
    runners: list[Any] = []
    github_error = None
    if client is None:
        from ._github import config_client

        client = config_client(fleet.github, timeout=10.0, max_retries=2, max_wait=10.0, user_agent="ghr-status/0.1")
    try:
        runners = client.list_runners()
    except Exception as exc:  # noqa: BLE001 - report, do not crash the status view
        github_error = f"{type(exc).__name__}: {exc}"
    rows = []
    pools_out = outputs.get("pools") or {}
    for pool in fleet.pools:
        for host in pool.hosts:
            out = (pools_out.get(pool.name) or {}).get(host) or {}
            prefix = out.get("name_prefix") or pool.name_prefix(fleet.stack, host)
            pattern = name_pattern(prefix)
            mine = [r for r in runners if pattern.match(r.name)]
            manager = dict(out.get("manager_container") or {})
            if docker_states:
                manager["state"], manager["problem"] = _manager_state(
                    fleet, host, manager.get("name") or f"ghr-{fleet.stack}-{pool.name}-manager")
            rows.append({
                "pool": pool.name, "host": host, "slots": pool.slots, "deployed": bool(out),
                # A scale-set pool has no fixed size: its range, as `min..max`.
                "size": f"{pool.min_runners or 0}..{pool.max_runners}" if pool.scale_set else str(pool.slots),
                "manager": manager,
                "online": sum(r.status == "online" for r in mine),
                "busy": sum(r.status == "online" and r.busy for r in mine),
                "idle": sum(r.status == "online" and not r.busy for r in mine),
                "offline": sum(r.status != "online" for r in mine),
                "runners": [{"name": r.name, "status": r.status, "busy": r.busy, "labels": r.labels} for r in
                            sorted(mine, key=lambda r: r.name)],
            })
    caches = [cache_status(fleet, h.name) for h in fleet.hosts if h.cache is not None] if docker_states else []
    return {"stack": fleet.stack, "scope": fleet.github.scope_url, "github_error": github_error, "pools": rows,
            "caches": caches}


_HEALTH_PROBE = ("import sys, urllib.request, urllib.error\n"
                 "try:\n    print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())\n"
                 "except urllib.error.HTTPError as e:\n    print(e.read().decode())\n")


def cache_status(fleet: FleetConfig, host_name: str) -> dict[str, Any]:
    """A host's caches: each container's state, and the exporter's /healthz (counters, disk), read inside the
    exporter container through the Docker API (so a remote host's loopback-only port needs no tunnel)."""
    import docker.errors

    from .config import CacheNames
    from .docker import docker_client

    h = fleet.host(host_name)
    assert h.cache is not None
    names = CacheNames(fleet.stack)
    out: dict[str, Any] = {"host": host_name, "metrics_port": h.cache.metrics_port, "containers": {}, "caches": {},
                           "error": None}
    try:
        with docker_client(h.url, list(h.ssh_options) or None, h.tls, timeout=15) as dc:
            for role in ("apt", "registry", "metrics"):
                if (role == "apt" and not h.cache.apt) or (role == "registry" and not h.cache.registry):
                    continue
                try:
                    out["containers"][role] = str(dc.containers.get(names.container(role)).status)
                except docker.errors.NotFound:
                    out["containers"][role] = "absent"
            if out["containers"].get("metrics") == "running":
                res = dc.containers.get(names.container("metrics")).exec_run(
                    ["python3", "-c", _HEALTH_PROBE, f"http://127.0.0.1:{h.cache.metrics_port}/healthz"])
                raw = res.output if isinstance(res.output, bytes) else b"".join(res.output)
                out["caches"] = json.loads(raw.decode().strip() or "{}").get("caches", {})
    except Exception as exc:  # noqa: BLE001 - report, do not crash the status view
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def _size(n: Any) -> str:
    value = float(n or 0)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def _manager_state(fleet: FleetConfig, host_name: str, container: str) -> tuple[str, str | None]:
    """The manager container's state and, unless it is running, the last error it logged (the reason it
    stopped or restarts: a credentials file a reboot took, an engine it cannot reach)."""
    import docker.errors

    from .docker import docker_client

    h = fleet.host(host_name)
    try:
        with docker_client(h.url, list(h.ssh_options) or None, h.tls, timeout=10) as dc:
            c = dc.containers.get(container)
            if c.status == "running":
                return "running", None
            return str(c.status), _last_error(c.logs(tail=50).decode(errors="replace"))
    except docker.errors.NotFound:
        return "absent", None
    except Exception as exc:  # noqa: BLE001
        return f"unreachable ({type(exc).__name__})", None


def _last_error(log: str) -> str | None:
    """The last `level=error` or `level=critical` line of a manager's log, without its timestamp."""
    for line in reversed(log.splitlines()):
        if " level=error " in line or " level=critical " in line:
            return line.split(" ", 1)[1] if line.startswith("ts=") else line
    return None


def render(status: Mapping[str, Any]) -> str:
    lines = [f"stack {status['stack']}  scope {status['scope']}"]
    if status.get("github_error"):
        lines.append(f"  GitHub: {status['github_error']}")
    table = [("POOL", "HOST", "RUNNERS", "MANAGER", "ONLINE", "BUSY", "IDLE", "OFFLINE")]
    for row in status["pools"]:
        table.append((row["pool"], row["host"], row["size"], str(row["manager"].get("state", "-")),
                      str(row["online"]), str(row["busy"]), str(row["idle"]), str(row["offline"])))
    lines += _columns(table)
    for row in status["pools"]:
        if row["manager"].get("problem"):
            lines.append(f"  manager of {row['pool']}@{row['host']} is {row['manager']['state']}: "
                         f"{row['manager']['problem']}")
    for row in status["pools"]:
        if row["runners"]:
            lines.append(f"\n{row['pool']}@{row['host']} runners:")
            for r in row["runners"]:
                state = "busy" if r["busy"] else "idle"
                lines.append(f"  {r['name']:<36} {r['status']:<8} {state if r['status'] == 'online' else '-'}")
    if status.get("caches"):
        lines.append("")
        cache_table = [("CACHE", "HOST", "CONTAINER", "HEALTH", "HITS", "MISSES", "SERVED", "UPSTREAM", "DISK/MAX")]
        for host in status["caches"]:
            if host.get("error"):
                lines.append(f"  caches on {host['host']}: {host['error']}")
            for kind, state in host["containers"].items():
                if kind == "metrics":
                    continue
                row = host["caches"].get(kind) or {}
                cache_table.append((kind, host["host"], state, str(row.get("state", "-")), str(row.get("hit", "-")),
                                    str(row.get("miss", "-")), _size(row.get("served")), _size(row.get("upstream")),
                                    f"{_size(row.get('disk_bytes'))}/{_size(row.get('max_bytes'))}"))
        lines += _columns(cache_table)
    return "\n".join(lines)


def _columns(table: Sequence[Sequence[str]]) -> list[str]:
    """Rows (the first is the head) as lines of left-aligned columns, two spaces apart."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in table]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m components.status", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", default="sandbox")
    ap.add_argument("--cwd", default=None, help="the Pulumi project directory (default: current)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        outputs, fleet = load_stack(args.stack, args.cwd)
        status = collect(outputs, fleet)
    except (StatusError, ConfigError) as exc:
        print(f"status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
