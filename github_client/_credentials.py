"""Credentials into a client: a mapping (a credentials file, the stack's ``ghr:github``) or the environment.

Two mapping forms are accepted:

- the pool manager's credentials file: ``{"type": "pat", "token": ...}`` or
  ``{"type": "app", "app_id": ..., "private_key": ..., "installation_id": ...}``;
- the stack configuration (``ghr:github``, as a provider's ``configure()`` sees it):
  ``{"token": ...}`` or ``{"appId": ..., "privateKey": ..., "installationId": ...}``
  (snake_case keys work too; other keys such as ``scope`` are ignored).

The environment: ``GHR_GITHUB_TOKEN``, or ``GHR_GITHUB_APP_ID`` + ``GHR_GITHUB_APP_PRIVATE_KEY``
[+ ``GHR_GITHUB_APP_INSTALLATION_ID``]. Every error is a :class:`CredentialsError` whose message
names the field (or variable) and never the secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, MutableMapping

from ._auth import AppAuth, PatAuth
from ._client import GitHubClient
from ._errors import GitHubError, InvalidInput
from ._http import DEFAULT_USER_AGENT, Hook
from ._redact import register_secret
from ._scope import parse_scope

__all__ = [
    "ENV_VARS",
    "Auth",
    "CredentialsError",
    "CredentialsMissing",
    "auth_from_env",
    "auth_from_mapping",
    "client_from_credentials",
    "credentials_from_env",
]

Auth = PatAuth | AppAuth

ENV_VARS = ("GHR_GITHUB_TOKEN", "GHR_GITHUB_APP_ID", "GHR_GITHUB_APP_PRIVATE_KEY", "GHR_GITHUB_APP_INSTALLATION_ID")
_FIELDS = ("type", "token", "app_id", "private_key", "installation_id")
_CAMEL = {"app_id": "appId", "private_key": "privateKey", "installation_id": "installationId"}
_SNAKE = {camel: snake for snake, camel in _CAMEL.items()}
_ENV_NAMES = dict(zip(_FIELDS[1:], ENV_VARS, strict=True))


class CredentialsError(GitHubError, ValueError):
    """Missing or malformed credentials. The message names the field, never the secret."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class CredentialsMissing(CredentialsError):
    """No credentials at all: neither a mapping nor the environment held any."""


def _fail(field: str, problem: str) -> CredentialsError:
    return CredentialsError(f"{field}: {problem}", field=field)


def auth_from_mapping(data: object, *, where: str = "credentials",
                      names: Mapping[str, str] | None = None) -> Auth:
    """A :class:`PatAuth` or :class:`AppAuth` from either mapping form (see the module docstring).

    ``where`` prefixes field names in messages (``credentials.token``, ``ghr:github.appId``);
    ``names`` overrides the name shown for a field (``{"token": "GHR_GITHUB_TOKEN"}``).
    """
    if not isinstance(data, Mapping):
        raise CredentialsError(f"{where}: expected an object with the credentials", field=where)
    file_form = "type" in data
    used: dict[str, str] = {}  # field -> the key the caller used
    values: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(key, str) and _SNAKE.get(key, key) in _FIELDS:
            used[_SNAKE.get(key, key)] = key
            values[_SNAKE.get(key, key)] = value

    def name(field: str) -> str:
        if names and field in names:
            return names[field]
        return f"{where}.{used.get(field) or (field if file_form else _CAMEL.get(field, field))}"

    if file_form:
        kind = values.get("type")
    elif values.get("token") not in (None, ""):
        kind = "pat"
    elif values.get("app_id") not in (None, "") or values.get("private_key") not in (None, ""):
        kind = "app"
    else:
        raise CredentialsMissing(f"{where}: no token and no GitHub App (appId + privateKey)", field=where)
    if kind == "pat":
        return _pat(values.get("token"), name("token"))
    if kind == "app":
        return _app(values.get("app_id"), values.get("private_key"), values.get("installation_id"), name)
    raise _fail(name("type"), f"expected \"pat\" or \"app\", got {kind!r}")


def _pat(token: object, field: str) -> PatAuth:
    if not isinstance(token, str) or not token.strip():
        raise _fail(field, "expected a non-empty string")
    register_secret(token)
    try:
        return PatAuth(token.strip())
    except InvalidInput as exc:  # control characters inside: say where, not what
        raise _fail(field, exc.message.split(": ", 1)[-1]) from None


def _app(app_id: object, key: object, inst: object, name: Callable[[str], str]) -> AppAuth:
    if not isinstance(app_id, (int, str)) or isinstance(app_id, bool) or not str(app_id).strip():
        raise _fail(name("app_id"), "expected the GitHub App id")
    if not isinstance(key, str) or "PRIVATE KEY" not in key:
        raise _fail(name("private_key"), "expected the App's PEM private key")
    if inst == "":
        inst = None
    if inst is not None and (isinstance(inst, bool) or not str(inst).strip().isdigit()):
        raise _fail(name("installation_id"), "expected a number or null")
    register_secret(key)
    try:
        return AppAuth(str(app_id).strip(), key, int(str(inst)) if inst is not None else None)
    except InvalidInput as exc:
        if exc.field == "app_id":
            raise _fail(name("app_id"), "expected the App's numeric id or client id (Iv1...)") from None
        raise _fail(name("private_key"), f"cannot load the App key ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - the key failed to parse: say where, not what
        raise _fail(name("private_key"), f"cannot load the App key ({type(exc).__name__})") from None


def credentials_from_env(environ: Mapping[str, str] | None = None) -> dict[str, object] | None:
    """The ``GHR_GITHUB_*`` variables in the stack-config form (``{"token"}`` or ``{"appId", ...}``), or None."""
    env = os.environ if environ is None else environ
    if env.get("GHR_GITHUB_TOKEN"):
        return {"token": env["GHR_GITHUB_TOKEN"]}
    if env.get("GHR_GITHUB_APP_ID") or env.get("GHR_GITHUB_APP_PRIVATE_KEY"):
        return {"appId": env.get("GHR_GITHUB_APP_ID"), "privateKey": env.get("GHR_GITHUB_APP_PRIVATE_KEY"),
                "installationId": env.get("GHR_GITHUB_APP_INSTALLATION_ID") or None}
    return None


def auth_from_env(environ: MutableMapping[str, str] | None = None, *, scrub: bool = False) -> Auth | None:
    """Credentials from ``GHR_GITHUB_*`` (None when none is set); errors name the variable.

    With ``scrub``, the variables are removed from ``environ`` afterwards (even on error),
    so no child process inherits them.
    """
    env = os.environ if environ is None else environ
    try:
        creds = credentials_from_env(env)
        return None if creds is None else auth_from_mapping(creds, where="environment", names=_ENV_NAMES)
    finally:
        if scrub:
            for var in ENV_VARS:
                env.pop(var, None)


def client_from_credentials(
    credentials: Mapping[str, object] | Auth,
    scope_url: str,
    api_url: str | None = None,
    *,
    where: str = "credentials",
    timeout: float = 10.0,
    max_retries: int = 5,
    max_wait: float = 60.0,
    user_agent: str = DEFAULT_USER_AGENT,
    on_request: Hook | None = None,
) -> GitHubClient:
    """A :class:`GitHubClient` for ``scope_url`` from an auth object or a credentials mapping."""
    auth = credentials if isinstance(credentials, (PatAuth, AppAuth)) else auth_from_mapping(credentials, where=where)
    return GitHubClient(parse_scope(scope_url, api_url or None), auth, timeout=timeout, max_retries=max_retries,
                        max_wait=max_wait, user_agent=user_agent, on_request=on_request)
