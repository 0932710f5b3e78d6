"""`python -m pool_manager --spec FILE [--credentials-file FILE]`.

Exit codes: 0 drained after SIGTERM/SIGINT, 2 refused input (spec or credentials).
SIGHUP re-reads the spec file and the credentials file and applies them without a drain
(see `PoolManager.reload`); a spec it refuses is logged and reported, the old one runs on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from github_client import Auth, GitHubClient, RequestEvent, client_from_credentials

from . import _log
from ._log import event
from .credentials import CredentialsError, load_credentials
from .spec import PoolSpec, SpecError, load_spec

if TYPE_CHECKING:
    from .metrics import Metrics


def read_spec_file(path: str, metrics_port: int | None = None) -> dict[str, object]:
    """The spec file as parsed JSON (with the --metrics-port override); SpecError if unreadable."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SpecError("spec", f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError("spec", f"{path}: expected a JSON object, got {type(raw).__name__}")
    if metrics_port is not None:
        raw["metrics_port"] = metrics_port
    return raw


def _digest(path: str | None) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def build_github_client(spec: PoolSpec, auth: Auth, metrics: Metrics | None = None) -> GitHubClient:
    """The manager's GitHub client: short retries inside, since the manager backs off itself."""

    def count(ev: RequestEvent) -> None:
        if metrics is not None:
            metrics.observe_request(ev)  # by kind, status class and fault; retries; slow answers

    return client_from_credentials(auth, spec.scope_url, spec.api_url, timeout=10.0, max_retries=2,
                                   max_wait=min(30.0, spec.backoff_max), user_agent="ghr-pool-manager",
                                   on_request=count)


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
        spec = load_spec(read_spec_file(args.spec, args.metrics_port))
    except SpecError as exc:
        event("spec_refused", level=50, field=exc.field, error=exc.reason)
        return 2
    credentials_digest = _digest(args.credentials_file)
    try:
        auth = load_credentials(args.credentials_file)
    except CredentialsError as exc:
        event("credentials_refused", level=50, error=str(exc))
        return 2

    from .manager import make_manager
    from .metrics import Health, Metrics, serve

    metrics = Metrics(spec.pool)
    health = Health(pool=spec.pool, slots=spec.slots)
    server = serve(metrics, health, spec.metrics_port)
    event("metrics_listening", pool=spec.pool, port=server.server_port)
    github = build_github_client(spec, auth, metrics)

    def github_source(new_spec: PoolSpec) -> GitHubClient | None:
        """A new client when the credentials file changed (env credentials were scrubbed: kept)."""
        nonlocal credentials_digest
        digest = _digest(args.credentials_file)
        if args.credentials_file is None or digest == credentials_digest:
            return None
        client = build_github_client(new_spec, load_credentials(args.credentials_file), metrics)
        credentials_digest = digest
        return client

    manager = make_manager(spec, github, metrics=metrics, health=health,
                           spec_source=lambda: read_spec_file(args.spec, args.metrics_port),
                           github_source=github_source)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        event("signal", pool=spec.pool, signal=signal.Signals(signum).name)
        manager.request_stop()

    def on_reload(signum: int, frame: FrameType | None) -> None:
        event("signal", pool=spec.pool, signal="SIGHUP")
        manager.request_reload()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_reload)
    code = manager.run()
    server.shutdown()
    event("manager_exited", pool=spec.pool, code=code)
    return code


if __name__ == "__main__":
    sys.exit(main())
