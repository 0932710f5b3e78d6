"""Structured logs: one `key=value` event per line. Values pass through github_client's redaction."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

from github_client import RedactingFilter, redact

_BARE = re.compile(r"^[A-Za-z0-9_./:@+,-]*$")

logger = logging.getLogger("pool_manager")


def _fmt(value: Any) -> str:
    text = redact(str(value))
    if text and _BARE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event: `ts=... level=... event=NAME k=v ...` (None values are left out)."""
    if not logger.isEnabledFor(level):
        return
    parts = [f"event={name}"]
    parts += [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
    logger.log(level, " ".join(parts))


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        msg = record.getMessage()
        if not msg.startswith("event="):
            msg = f"event=log logger={record.name} msg={_fmt(msg)}"
        return f"ts={ts} level={record.levelname.lower()} {msg}"


def setup(level: str = "INFO") -> None:
    """Send every log line (ours and github_client's) to stderr, formatted and redacted."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("docker").setLevel(logging.WARNING)
