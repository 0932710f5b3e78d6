"""Client-side checks that fail before any request, naming the field."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._errors import InvalidInput

# From GitHub's OpenAPI description (generate-jitconfig, runner labels): 1..100 labels
# (0..100 when replacing). Names: the runner's own config rejects commas (labels are
# passed comma-separated) and GitHub caps label and runner names; the caps below are
# the ones the GitHub UI enforces.
MAX_LABELS = 100
MAX_LABEL_LENGTH = 256
MAX_RUNNER_NAME_LENGTH = 64
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_token(field: str, token: object) -> str:
    if not isinstance(token, str) or not token.strip():
        raise InvalidInput(field, "is empty; provide a GitHub token")
    if token != token.strip() or _CONTROL.search(token) or " " in token:
        # A stray newline from a secrets file would break (or inject) the header.
        raise InvalidInput(field, "contains whitespace or control characters; strip the value")
    return token


def check_runner_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(field, "runner name is empty")
    if len(name) > MAX_RUNNER_NAME_LENGTH:
        raise InvalidInput(
            field, f"runner name is {len(name)} characters; GitHub allows at most {MAX_RUNNER_NAME_LENGTH}"
        )
    if name != name.strip() or _CONTROL.search(name) or "/" in name:
        raise InvalidInput(field, f"runner name {name!r} has surrounding whitespace, a control character or '/'")
    return name


def check_label(label: object, field: str = "labels") -> str:
    if not isinstance(label, str) or not label.strip():
        raise InvalidInput(field, "a label is empty")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidInput(field, f"label {label[:20]!r}... is {len(label)} characters; at most {MAX_LABEL_LENGTH}")
    if label != label.strip() or "," in label or _CONTROL.search(label):
        raise InvalidInput(field, f"label {label!r} has surrounding whitespace, a comma or a control character")
    return label


def check_labels(labels: object, *, min_items: int = 1, field: str = "labels") -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Iterable):
        raise InvalidInput(field, f"expected a list of label names, got {type(labels).__name__}")
    out = [check_label(label, field) for label in labels]
    if len(out) < min_items:
        raise InvalidInput(field, f"needs at least {min_items} label(s)")
    if len(out) > MAX_LABELS:
        raise InvalidInput(field, f"has {len(out)} labels; GitHub allows at most {MAX_LABELS}")
    # GitHub treats labels case-insensitively; keep the first spelling of each.
    seen: set[str] = set()
    unique = []
    for label in out:
        if label.casefold() not in seen:
            seen.add(label.casefold())
            unique.append(label)
    return unique


def check_id(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(field, f"expected a positive integer, got {value!r}")
    return value


def check_work_folder(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
        raise InvalidInput("work_folder", f"expected a non-empty relative path, got {value!r}")
    return value


def check_version(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"\d+\.\d+\.\d+", value):
        raise InvalidInput("version", f"expected a runner version such as 2.330.0, got {value!r}")
    return value
