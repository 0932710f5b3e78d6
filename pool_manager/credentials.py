"""GitHub credentials for the manager: a JSON file, or the manager's own environment.

They stay in the manager: runner containers get only their single-use JIT config. Parsing
is :mod:`github_client`'s (``auth_from_mapping``, ``auth_from_env``); this module reads the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from pathlib import Path

from github_client import ENV_VARS, Auth, CredentialsError, auth_from_env, auth_from_mapping

__all__ = ["CredentialsError", "ENV_VARS", "load_credentials"]


def load_credentials(path: str | os.PathLike[str] | None = None,
                     environ: MutableMapping[str, str] | None = None, *, scrub: bool = True) -> Auth:
    """Read the credentials file if given, else `GHR_GITHUB_TOKEN` or `GHR_GITHUB_APP_*`.

    With `scrub`, the variables are removed from `environ` afterwards so no child process
    of the manager inherits them.
    """
    env = os.environ if environ is None else environ
    if path is None:
        auth = auth_from_env(env, scrub=scrub)
        if auth is None:
            raise CredentialsError("no GitHub credentials: pass --credentials-file or set GHR_GITHUB_TOKEN"
                                   " (or GHR_GITHUB_APP_ID and GHR_GITHUB_APP_PRIVATE_KEY)")
        return auth
    try:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise CredentialsError(
                    f"credentials file {path}: not found (it lives in the host's /dev/shm, which a reboot empties);"
                    " run `pulumi up --refresh` to deliver it again, or use GHR_GITHUB_TOKEN") from None
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"credentials file {path}: unreadable or not JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise CredentialsError(f"credentials file {path}: expected a JSON object")
        return auth_from_mapping(data, where="credentials")
    finally:
        if scrub:
            for name in ENV_VARS:
                env.pop(name, None)
