"""Helpers shared by the docker dynamic providers (no I/O at import time)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

HOST_KEYS = ("docker_host", "ssh_options", "tls")


def plain(value: Any) -> Any:
    """Deep-copy dynamic-provider property values into plain dicts/lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def changed(olds: Mapping[str, Any], news: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
    out = []
    for key in keys:
        if plain(olds.get(key)) != plain(news.get(key)):
            out.append(key)
    return out


def host_desc(props: Mapping[str, Any]) -> str:
    return str(props.get("docker_host") or "default host")


UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN: a value not known at preview


def is_unknown(value: Any) -> bool:
    if value == UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_unknown(v) for v in value)
    return False
