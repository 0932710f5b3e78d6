"""Ephemeral self-hosted GitHub Actions runners in Docker: the Pulumi program.

All configuration is read here, validated in one pass (errors name the key path, the bad
value and the fix; nothing is created), and handed to the Fleet component as typed Args.
"""

import json
import os
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from components import ConfigError, Fleet, parse_config
from components.image import missing_dind_dockerfile
from components.preflight import runner_version_warnings_for


def read_raw_config(namespace: str = "ghr") -> tuple[dict[str, Any], list[str]]:
    """Every ``ghr:*`` key of the stack (objects decoded) and which of them are secrets."""
    keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
    raw: dict[str, Any] = {}
    secret_keys: list[str] = []
    for full in sorted(k for k in keys if k.startswith(namespace + ":")):
        value = runtime_config.get_config(full)
        try:
            value = json.loads(value) if isinstance(value, str) else value
        except ValueError:
            pass  # a plain string
        raw[full.split(":", 1)[1]] = value
        if runtime_config.is_config_secret(full):
            secret_keys.append(full)
    return raw, secret_keys


raw, secret_keys = read_raw_config()
try:
    fleet_config = parse_config(raw, pulumi.get_stack(), secret_keys)
except ConfigError as exc:
    # pulumi.log.error + a bare exit would hide the message; raising RunError prints it alone.
    raise pulumi.RunError(str(exc)) from None

# A dind sidecar pool needs the sidecar image, built on each of its hosts from runner-image/dind.Dockerfile.
_dind_pools = [f"ghr:pools[{i}] ({p.name})" for i, p in enumerate(fleet_config.pools) if p.dind_sidecar]
if _dind_pools and (_problem := missing_dind_dockerfile()):
    raise pulumi.RunError(f"{', '.join(_dind_pools)}: docker: dind: {_problem}")

if fleet_config.runner_version_check and not os.environ.get("GHR_SKIP_VERSION_CHECK"):
    for warning in runner_version_warnings_for(fleet_config.github, (p.image.runner_version for p in fleet_config.pools)):
        pulumi.log.warn(warning)

fleet = Fleet("fleet", {"config": fleet_config})

pulumi.export("scope_url", fleet.scope_url)
pulumi.export("pools", fleet.pools)
pulumi.export("auth_type", fleet.credentials.auth_type)
