"""`container:` and `services:` of a queued job, in the shapes a workflow file gives them.

    container: "image"                       # or
    container: {image, env?, ports?, volumes?, options?}
    services:  {<service id>: {image, env?, ports?, volumes?, options?}, ...}

Normalised to mappings with every key present (`env` {str: str}, `ports`/`volumes` [str], `options` str).
An empty `image` means "none" (no job container / that service is not started), as on GitHub.
`credentials` is refused: the emulator's registries take no login, and a job never carries a secret here.
"""

from __future__ import annotations

import re
from typing import Any

KEYS = ("image", "env", "ports", "volumes", "options")
SERVICE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_PORT = re.compile(r"^[0-9A-Za-z.:\[\]/-]+$")


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ValueError(f"{where} must be a string, number or boolean")


def _entry(value: Any, where: str) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = {"image": value}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be an image name or a mapping with an image")
    if "credentials" in value:
        raise ValueError(f"{where}.credentials is not supported by the emulator: push the image to a registry "
                         "that needs no login")
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown} (known: {', '.join(KEYS)})")
    image = value.get("image")
    if not isinstance(image, str):
        raise ValueError(f"{where}.image must be a string")
    if not image.strip():
        return None
    env = value.get("env") or {}
    if not isinstance(env, dict) or any(not isinstance(k, str) or not k for k in env):
        raise ValueError(f"{where}.env must be a mapping of variable names to values")
    out: dict[str, Any] = {"image": image.strip(),
                           "env": {k: "" if v is None else _scalar(v, f"{where}.env.{k}") for k, v in env.items()}}
    for key in ("ports", "volumes"):
        items = value.get(key) or []
        if not isinstance(items, list):
            raise ValueError(f"{where}.{key} must be a list")
        out[key] = [_scalar(x, f"{where}.{key}[{i}]") for i, x in enumerate(items)]
        if any(not s for s in out[key]):
            raise ValueError(f"{where}.{key} has an empty entry")
    bad = [p for p in out["ports"] if not _PORT.match(p)]
    if bad:
        raise ValueError(f"{where}.ports has invalid entries {bad} (e.g. 80, '8080:80', '5432/tcp')")
    options = value.get("options") or ""
    if not isinstance(options, str):
        raise ValueError(f"{where}.options must be a string of docker create options")
    out["options"] = options
    return out


def normalize_container(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    return _entry(value, "container")


def normalize_services(value: Any) -> dict[str, dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("services must be a mapping of service ids to services")
    out: dict[str, dict[str, Any]] = {}
    for sid, spec in value.items():
        if not isinstance(sid, str) or not SERVICE_ID.match(sid):
            raise ValueError(f"services: {sid!r} is not a valid service id (a letter or _, then letters, digits, - or _)")
        if not isinstance(spec, dict):
            raise ValueError(f"services.{sid} must be a mapping with an image")
        entry = _entry(spec, f"services.{sid}")
        if entry is not None:
            out[sid] = entry
    return out
