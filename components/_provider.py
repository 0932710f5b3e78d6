"""Helpers every dynamic provider of this package shares: the Docker ones and the GitHub-side ones.

Unknown values (not known at preview), deep-plain copies of property values, which keys
changed, the diff they make, the check every pool-level resource runs on its identity
strings and Docker host spec, and the checks of runner labels and of a timeout in seconds.
No I/O, nothing done at import time: providers are pickled by reference and this module is
re-imported in the provider process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi.dynamic import CheckFailure, DiffResult

__all__ = [
    "HOST_KEYS", "POOL_IDENTITY_KEYS", "UNKNOWN", "changed", "diff_result", "host_desc", "is_unknown", "labels_check",
    "plain", "pool_check", "seconds_check",
]

HOST_KEYS = ("docker_host", "ssh_options", "tls")
POOL_IDENTITY_KEYS = ("scope_url", "name_prefix", "pool", "host", "stack")
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN: a value not known at preview


def is_unknown(value: Any) -> bool:
    """True when the value, or anything inside it, is not known yet (a preview of a new resource)."""
    if value == UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_unknown(v) for v in value)
    return False


def plain(value: Any) -> Any:
    """Deep-copy dynamic-provider property values into plain dicts/lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def changed(olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    """The keys whose (plain) values differ between the old outputs and the new inputs."""
    return [key for key in keys if plain(olds.get(key)) != plain(news.get(key))]


def diff_result(olds: Mapping[str, Any], news: Mapping[str, Any], input_keys: Iterable[str],
         replace_keys: Iterable[str], *, delete_before_replace: bool = False) -> DiffResult:
    """Any change of ``input_keys`` is an update, one of ``replace_keys`` a replacement."""
    return DiffResult(changes=bool(changed(olds, news, input_keys)), replaces=changed(olds, news, replace_keys),
                      delete_before_replace=delete_before_replace)


def host_desc(props: Mapping[str, Any]) -> str:
    """The Docker host a resource's properties point at, for messages."""
    return str(props.get("docker_host") or "default host")


def pool_check(news: Mapping[str, Any]) -> list[CheckFailure]:
    """The checks every pool-level resource shares: identity strings and the Docker host spec."""
    from .docker import validate_host_spec  # the docker package imports this module

    failures: list[CheckFailure] = []
    for key in POOL_IDENTITY_KEYS:
        v = news.get(key)
        if not is_unknown(v) and (not isinstance(v, str) or not v):
            failures.append(CheckFailure(key, f"{key} is required"))
    if news.get("docker_host") and not is_unknown(news.get("docker_host")):
        for problem in validate_host_spec(news["docker_host"], news.get("ssh_options"), news.get("tls")):
            failures.append(CheckFailure("docker_host", problem))
    return failures


def labels_check(news: Mapping[str, Any], *, blank_ok: bool = False) -> list[CheckFailure]:
    """``labels``: 1 to 100 non-empty strings without commas (``blank_ok``: a label of spaces passes)."""
    labels = news.get("labels")
    if is_unknown(labels):
        return []
    if not isinstance(labels, list) or not labels or len(labels) > 100:
        return [CheckFailure("labels", "expected 1 to 100 runner labels")]
    if any(not isinstance(x, str) or not (x if blank_ok else x.strip()) or "," in x for x in labels):
        return [CheckFailure("labels", "labels must be non-empty strings without commas")]
    return []


def seconds_check(news: Mapping[str, Any], key: str) -> list[CheckFailure]:
    """``key`` is a number of seconds >= 0 (a timeout), or not known yet."""
    v = news.get(key)
    if not is_unknown(v) and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
        return [CheckFailure(key, f"{key} must be a number of seconds >= 0")]
    return []
