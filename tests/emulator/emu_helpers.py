"""Helpers for the emulator suite (a uniquely named module: every test folder has its own conftest)."""

from __future__ import annotations

import json
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


class Service:
    """The Actions service as GitHub's scale-set client reaches it: registration token -> runner-registration
    (RemoteAuth) -> service URL + admin JWT; `api-version=6.0-preview` on every admin call."""

    def __init__(self, api: Api, scope: str = "acme") -> None:
        self.api = api
        self.scope = scope
        parts = scope.split("/")
        prefix = f"/enterprises/{parts[1]}" if parts[0] == "enterprises" else (
            f"/repos/{scope}" if len(parts) == 2 else f"/orgs/{scope}")
        reg = api.post(f"{prefix}/actions/runners/registration-token").json()["token"]
        r = api.post("/actions/runner-registration", token=None, headers={"Authorization": f"RemoteAuth {reg}"},
                     json={"url": f"{api.emu.url}/{scope}", "runner_event": "register"})
        assert r.status_code == 200, r.text
        self.url: str = r.json()["url"]
        self.token: str = r.json()["token"]
        self.s = requests.Session()
        self.s.headers["User-Agent"] = "ghr-tests"

    def __call__(self, method: str, path: str, body: Any = None, *, token: str | None = None,
                 params: dict[str, Any] | None = None, version: bool = True, **kw: Any) -> requests.Response:
        q = dict(params or {})
        if version:
            q["api-version"] = "6.0-preview"
        headers = {"Authorization": f"Bearer {token or self.token}", **kw.pop("headers", {})}
        url = path if path.startswith("http") else self.url + path.lstrip("/")
        return self.s.request(method, url, params=q, json=body, headers=headers, timeout=HTTP_TIMEOUT, **kw)

    # ---- shortcuts -------------------------------------------------------------------------
    def create(self, name: str, labels: list[str] | None = None, group: int = 1) -> dict[str, Any]:
        body = {"name": name, "runnerGroupId": group, "labels": [{"type": "System", "name": lb} for lb in labels or [name]],
                "RunnerSetting": {"disableUpdate": True}}
        r = self("POST", "_apis/runtime/runnerscalesets", body)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def session(self, set_id: int, owner: str = "tests") -> dict[str, Any]:
        r = self("POST", f"_apis/runtime/runnerscalesets/{set_id}/sessions", {"ownerName": owner})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def poll(self, session: dict[str, Any], capacity: int | None = 10, last: int = 0,
             token: str | None = None) -> requests.Response:
        headers = {"Accept": "application/json; api-version=6.0-preview"}
        if capacity is not None:
            headers["X-ScaleSetMaxCapacity"] = str(capacity)
        params = {"lastMessageId": last} if last else {}
        return self("GET", session["messageQueueUrl"], token=token or session["messageQueueAccessToken"],
                    params=params, version=False, headers=headers)

    def ack(self, session: dict[str, Any], message_id: int) -> requests.Response:
        return self("DELETE", f"{session['messageQueueUrl']}/{message_id}", token=session["messageQueueAccessToken"],
                    version=False)

    def acquire(self, set_id: int, ids: list[int], token: str | None = None) -> requests.Response:
        return self("POST", f"_apis/runtime/runnerscalesets/{set_id}/acquirejobs", ids, token=token)

    def jit(self, set_id: int, name: str) -> requests.Response:
        return self("POST", f"_apis/runtime/runnerscalesets/{set_id}/generatejitconfig",
                    {"name": name, "workFolder": "_work"})


def job_messages(resp: requests.Response) -> list[dict[str, Any]]:
    """The job messages of a 200 message answer (its `body` is a JSON string)."""
    assert resp.status_code == 200, (resp.status_code, resp.text)
    body = resp.json()
    assert body["messageType"] == "RunnerScaleSetJobMessages"
    return list(json.loads(body["body"]))
