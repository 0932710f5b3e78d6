"""Credentials: a personal access token, or a GitHub App (JWT -> installation token)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ._errors import InvalidInput
from ._redact import register_secret
from ._validate import check_token

# GitHub rejects a JWT whose exp is more than 10 minutes ahead of *its* clock, so stay
# under that by a margin, and backdate iat by 60 s against clock drift (GitHub's advice).
JWT_BACKDATE = 60
JWT_LIFETIME = 9 * 60
# Refresh an installation token this long before it expires: a call may spend up to
# max_wait in retries/rate-limit waits after picking the token up.
TOKEN_REFRESH_MARGIN = 5 * 60
_CLIENT_ID = re.compile(r"^(?:Iv|Iv1|Iv23)[.A-Za-z0-9]{4,}$")


class PatAuth:
    """A personal access token (classic or fine-grained)."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = check_token("token", token)
        register_secret(token)

    @property
    def token(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return "PatAuth(token=***)"


@dataclass
class _CachedToken:
    token: str
    expires_at: float  # epoch seconds


class AppAuth:
    """A GitHub App: its id (or client id), its private key, optionally the installation id.

    Without ``installation_id`` the client looks the installation up for its scope
    (one call, cached). Installation tokens are cached per installation until
    ``TOKEN_REFRESH_MARGIN`` before they expire; the cache is thread-safe and shared by
    every client that uses this ``AppAuth``.
    """

    def __init__(self, app_id: int | str, private_key_pem: str | bytes, installation_id: int | None = None) -> None:
        self.app_id = _check_app_id(app_id)
        self.installation_id = _check_installation_id(installation_id)
        self._key = _load_key(private_key_pem)
        # Re-entrant: the token mint looks the installation up while holding it.
        self._lock = threading.RLock()
        self._tokens: dict[int, _CachedToken] = {}
        self._installations: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"AppAuth(app_id={self.app_id!r}, installation_id={self.installation_id!r})"

    def __getstate__(self) -> dict[str, object]:
        # Pickling an App key into Pulumi state would leave a stale secret behind.
        raise TypeError("AppAuth holds a private key and cannot be pickled; build it where it is used")

    def jwt(self, now: float | None = None) -> str:
        """A fresh RS256 app JWT (iat 60 s in the past, exp 9 min ahead, iss = app id)."""
        issued = int(time.time() if now is None else now)
        claims = {"iat": issued - JWT_BACKDATE, "exp": issued + JWT_LIFETIME, "iss": str(self.app_id)}
        token = jwt.encode(claims, self._key, algorithm="RS256")
        register_secret(token)
        return token


def _check_app_id(app_id: object) -> int | str:
    if isinstance(app_id, bool):
        raise InvalidInput("app_id", "expected the app's numeric id or client id")
    if isinstance(app_id, int):
        if app_id <= 0:
            raise InvalidInput("app_id", f"expected a positive integer, got {app_id}")
        return app_id
    if isinstance(app_id, str):
        value = app_id.strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
        if _CLIENT_ID.match(value):
            return value
    raise InvalidInput("app_id", f"expected the app's numeric id (e.g. 123456) or client id (Iv1...), got {app_id!r}")


def _check_installation_id(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput("installation_id", f"expected a positive integer or None, got {value!r}")
    return value


def _load_key(pem: object) -> rsa.RSAPrivateKey:
    field = "private_key_pem"
    if isinstance(pem, str):
        text = pem.strip()
        # Keys passed through environment variables often arrive with literal "\n".
        if "\n" not in text and "\\n" in text:
            text = text.replace("\\n", "\n")
        data = text.encode()
    elif isinstance(pem, bytes):
        data = pem.strip()
    else:
        raise InvalidInput(field, "expected the app's private key as PEM text")
    if not data:
        raise InvalidInput(field, "is empty; download the key from the app's settings page (a .pem file)")
    register_secret(data.decode(errors="replace"))
    if b"-----BEGIN" not in data:
        raise InvalidInput(
            field, "is not PEM (no '-----BEGIN ... PRIVATE KEY-----' line); pass the .pem file's content"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # Never chain: the parser's error could quote key material.
        raise InvalidInput(field, "could not be parsed as an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InvalidInput(field, "is not an RSA key; GitHub App keys are RSA (RS256)")
    return key
