"""GitHub credentials for the manager: a JSON file, or the manager's own environment.

They stay in the manager: runner containers get only their single-use JIT config.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path

from github_client import AppAuth, PatAuth, register_secret

__all__ = ["CredentialsError", "ENV_VARS", "load_credentials"]

ENV_VARS = ("GHR_GITHUB_TOKEN", "GHR_GITHUB_APP_ID", "GHR_GITHUB_APP_PRIVATE_KEY", "GHR_GITHUB_APP_INSTALLATION_ID")


class CredentialsError(ValueError):
    """Missing or malformed credentials. The message names the field, never the secret."""


def _from_mapping(data: dict[str, object], where: str) -> PatAuth | AppAuth:
    kind = data.get("type")
    if kind == "pat":
        token = data.get("token")
        if not isinstance(token, str) or not token.strip():
            raise CredentialsError(f"{where}.token: expected a non-empty string")
        register_secret(token)
        return PatAuth(token.strip())
    if kind == "app":
        app_id, key, inst = data.get("app_id"), data.get("private_key"), data.get("installation_id")
        if not isinstance(app_id, (int, str)) or isinstance(app_id, bool) or not str(app_id).strip():
            raise CredentialsError(f"{where}.app_id: expected the GitHub App id")
        if not isinstance(key, str) or "PRIVATE KEY" not in key:
            raise CredentialsError(f"{where}.private_key: expected the App's PEM private key")
        if inst is not None and (isinstance(inst, bool) or not str(inst).strip().isdigit()):
            raise CredentialsError(f"{where}.installation_id: expected a number or null")
        register_secret(key)
        try:
            return AppAuth(str(app_id).strip(), key, int(str(inst)) if inst is not None else None)
        except Exception as exc:  # the key failed to parse: say where, not what
            raise CredentialsError(f"{where}.private_key: cannot load the App key ({type(exc).__name__})") from None
    raise CredentialsError(f"{where}.type: expected \"pat\" or \"app\", got {kind!r}")


def load_credentials(path: str | os.PathLike[str] | None = None,
                     environ: MutableMapping[str, str] | None = None, *, scrub: bool = True) -> PatAuth | AppAuth:
    """Read the credentials file if given, else `GHR_GITHUB_TOKEN` or `GHR_GITHUB_APP_*`.

    With `scrub`, the variables are removed from `environ` afterwards so no child process
    of the manager inherits them.
    """
    env = os.environ if environ is None else environ
    try:
        if path is not None:
            try:
                data = json.loads(Path(path).read_text())
            except FileNotFoundError:
                raise CredentialsError(f"credentials file {path}: not found; mount it or use GHR_GITHUB_TOKEN") from None
            except (OSError, ValueError) as exc:
                raise CredentialsError(f"credentials file {path}: unreadable or not JSON ({type(exc).__name__})") from None
            if not isinstance(data, dict):
                raise CredentialsError(f"credentials file {path}: expected a JSON object")
            return _from_mapping(data, "credentials")
        if env.get("GHR_GITHUB_TOKEN"):
            return _from_mapping({"type": "pat", "token": env["GHR_GITHUB_TOKEN"]}, "GHR_GITHUB_TOKEN")
        if env.get("GHR_GITHUB_APP_ID") or env.get("GHR_GITHUB_APP_PRIVATE_KEY"):
            return _from_mapping({"type": "app", "app_id": env.get("GHR_GITHUB_APP_ID"),
                                  "private_key": env.get("GHR_GITHUB_APP_PRIVATE_KEY"),
                                  "installation_id": env.get("GHR_GITHUB_APP_INSTALLATION_ID") or None},
                                 "GHR_GITHUB_APP")
        raise CredentialsError("no GitHub credentials: pass --credentials-file or set GHR_GITHUB_TOKEN"
                               " (or GHR_GITHUB_APP_ID and GHR_GITHUB_APP_PRIVATE_KEY)")
    finally:
        if scrub:
            for name in ENV_VARS:
                env.pop(name, None)
