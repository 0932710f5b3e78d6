"""Test doubles for the github_client tests (imported by conftest and test modules)."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable
from typing import Any

import requests


class FakeClock:
    """time.time and time.sleep in one: sleeping advances the clock instantly."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


Reply = tuple[int, Any, dict[str, str]] | Exception
Handler = Callable[[requests.PreparedRequest], Reply]


class ScriptedSession(requests.Session):
    """A requests.Session whose answers come from a script (a list) or a handler."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[Reply] = []
        self.handler: Handler | None = None
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        reply = self.handler(request) if self.handler else self.script.pop(0)
        if isinstance(reply, Exception):
            raise reply
        status, body, headers = reply
        resp = requests.Response()
        resp.status_code = status
        resp.headers.update(headers)
        resp._content = b"" if body is None else (body if isinstance(body, bytes) else jsonlib.dumps(body).encode())
        resp.request = request
        resp.url = request.url or ""
        return resp
