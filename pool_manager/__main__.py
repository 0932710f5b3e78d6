"""`python -m pool_manager --spec FILE [--credentials-file FILE]`.

Exit codes: 0 drained after SIGTERM/SIGINT, 2 refused input (spec or credentials).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from . import _log
from ._log import event
from .credentials import CredentialsError, load_credentials
from .spec import PoolSpec, SpecError, load_spec


def build_github_client(spec: PoolSpec, auth: object, metrics: object | None = None) -> object:
    """The manager's GitHub client: short retries inside, since the manager backs off itself."""
    from github_client import GitHubClient, RequestEvent, parse_scope

    def count(ev: RequestEvent) -> None:
        if metrics is not None:
            metrics.api_calls.labels(kind=ev.kind).inc()  # type: ignore[attr-defined]

    return GitHubClient(parse_scope(spec.scope_url, spec.api_url), auth,  # type: ignore[arg-type]
                        timeout=10.0, max_retries=2, max_wait=min(30.0, spec.backoff_max),
                        user_agent="ghr-pool-manager", on_request=count)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pool_manager", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=os.environ.get("GHR_POOL_SPEC", "/etc/ghr/pool.json"),
                        help="pool spec JSON file (default: $GHR_POOL_SPEC or /etc/ghr/pool.json)")
    parser.add_argument("--credentials-file", default=os.environ.get("GHR_CREDENTIALS_FILE"),
                        help="credentials JSON; without it GHR_GITHUB_TOKEN or GHR_GITHUB_APP_* are read")
    parser.add_argument("--metrics-port", type=int, default=None, help="override the spec's metrics_port (0: any)")
    parser.add_argument("--log-level", default=os.environ.get("GHR_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    _log.setup(args.log_level)

    try:
        raw = json.loads(Path(args.spec).read_text())
    except (OSError, ValueError) as exc:
        event("spec_refused", level=50, field="spec", error=f"cannot read {args.spec}: {type(exc).__name__}: {exc}")
        return 2
    if args.metrics_port is not None:
        raw["metrics_port"] = args.metrics_port
    try:
        spec = load_spec(raw)
    except SpecError as exc:
        event("spec_refused", level=50, field=exc.field, error=exc.reason)
        return 2
    try:
        auth = load_credentials(args.credentials_file)
    except CredentialsError as exc:
        event("credentials_refused", level=50, error=str(exc))
        return 2

    from .manager import PoolManager
    from .metrics import Health, Metrics, serve

    metrics = Metrics(spec.pool)
    health = Health(pool=spec.pool, slots=spec.slots)
    server = serve(metrics, health, spec.metrics_port)
    event("metrics_listening", pool=spec.pool, port=server.server_port)
    github = build_github_client(spec, auth, metrics)
    manager = PoolManager(spec, github, metrics=metrics, health=health)  # type: ignore[arg-type]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        event("signal", pool=spec.pool, signal=signal.Signals(signum).name)
        manager.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = manager.run()
    server.shutdown()
    event("manager_exited", pool=spec.pool, code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
