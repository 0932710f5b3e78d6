"""Secret redaction for messages and log lines.

Two layers: every secret this package handles (PATs, JWTs, installation tokens,
registration/remove tokens, encoded JIT configs) is registered by value, and
well-known secret shapes are masked by pattern so that secrets we never saw
(e.g. a token pasted into a config file) are caught too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict

REDACTED = "***"

# Registered values are kept in a bounded LRU: a manager mints one JIT config per job
# for months, and the newest secrets are the ones still likely to show up in output.
_MAX_REGISTERED = 2048
# Short values would mask innocent text ("a", "1"); real tokens are far longer.
_MIN_REGISTERED_LEN = 8

_lock = threading.Lock()
_registered: OrderedDict[str, None] = OrderedDict()

# (pattern, replacement): replacements keep a leading group so context stays readable.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # Classic/fine-grained PATs, OAuth, app installation and refresh tokens.
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,})"), REDACTED),
    # JWTs (three base64url parts, header starts with '{"' -> 'eyJ').
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # Authorization header values, whatever the token looks like.
    (re.compile(r"(\b(?:Bearer|RemoteAuth|[Bb]asic)\s+)[^\s'\",;]+"), r"\1" + REDACTED),
    (re.compile(r"((?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:token)\s+)?)[^\s'\",;]+"), r"\1" + REDACTED),
    # JSON fields that carry secrets in GitHub responses and JIT configs.
    (
        re.compile(r'("(?i:token|encoded_jit_config|jitconfig|access_token|private_key|jwt)"\s*:\s*")[^"]+'),
        r"\1" + REDACTED,
    ),
    # Long base64 blobs such as encoded JIT configs.
    (re.compile(r"[A-Za-z0-9+/]{200,}={0,2}"), REDACTED),
)


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it wherever it appears."""
    if not value or len(value) < _MIN_REGISTERED_LEN:
        return
    with _lock:
        _registered[value] = None
        _registered.move_to_end(value)
        while len(_registered) > _MAX_REGISTERED:
            _registered.popitem(last=False)


def redact(text: object) -> str:
    """Return ``str(text)`` with every known secret and secret-shaped value masked."""
    out = str(text)
    with _lock:
        # Longest first so a secret containing another is masked whole.
        values = sorted(_registered, key=len, reverse=True)
    for value in values:
        if value in out:
            out = out.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the formatted message (and drops args).

    Attach to a handler: ``handler.addFilter(RedactingFilter())``. It also masks
    exception text by pre-formatting it, so tracebacks cannot leak a token.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True
