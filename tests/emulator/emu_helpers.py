"""Helpers for the emulator suite (a uniquely named module: every test folder has its own conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator import Emulator

HTTP_TIMEOUT = 10.0


class Api:
    """Loopback-only HTTP helper: every call has a timeout; no retries."""

    def __init__(self, emu: Emulator, token: str | None) -> None:
        self.emu = emu
        self.token = token
        self.s = requests.Session()
        self.s.headers.update({"User-Agent": "ghr-tests", "Accept": "application/vnd.github+json",
                               "X-GitHub-Api-Version": "2022-11-28"})

    def __call__(self, method: str, path: str, *, token: str | None = "default", **kw: Any) -> requests.Response:
        tok = self.token if token == "default" else token
        headers = dict(kw.pop("headers", {}))
        if tok:
            headers.setdefault("Authorization", f"Bearer {tok}")
        url = path if path.startswith("http") else self.emu.api_url + path
        return self.s.request(method, url, headers=headers, timeout=HTTP_TIMEOUT, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self("DELETE", path, **kw)

    def control(self, method: str, path: str, **kw: Any) -> requests.Response:
        return self(method, self.emu.url + "/_emulator" + path, token=self.emu.admin_token, **kw)

    def jit(self, prefix: str, name: str, labels: list[str] | None = None, **extra: Any) -> requests.Response:
        body = {"name": name, "runner_group_id": 1, "labels": labels or ["self-hosted", "cpu"], **extra}
        return self.post(f"{prefix}/runners/generate-jitconfig", json=body)


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll `cond` until truthy, with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def app_jwt(key: rsa.RSAPrivateKey, app_id: int, *, iat_offset: float = -60, exp_offset: float = 540) -> str:
    now = int(time.time())
    return jwt.encode({"iat": now + int(iat_offset), "exp": now + int(exp_offset), "iss": str(app_id)},
                      key, algorithm="RS256")
