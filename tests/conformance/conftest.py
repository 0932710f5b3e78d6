"""Fixtures for the OpenAPI conformance tests: the pinned description, an emulator, a recorder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from oa_spec import Exchange, Recorder, ensure_downloaded, load


@pytest.fixture(scope="session", autouse=True)
def openapi() -> None:
    """Download (once, cached in .cache/openapi) and parse the pinned descriptions."""
    ensure_downloaded()
    load("api.github.com")
    load("ghec")


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from emulator import Emulator

    emulator = Emulator(port=0, deprecations={"2.320.0": ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")}).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def app_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a test GitHub App."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


@pytest.fixture
def recorder(emu: Any, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder(emu.api_url)
    original = requests.Session.send

    def send(self: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        resp = original(self, request, **kwargs)
        if (request.url or "").startswith(rec.api_url + "/"):
            raw = request.body
            body = json.loads(raw) if raw else None
            try:
                answer = resp.json() if resp.content else None
            except ValueError:
                answer = resp.content
            rec.exchanges.append(
                Exchange(
                    request.method or "",
                    request.url or "",
                    body,
                    resp.status_code,
                    answer,
                    dict(resp.headers),
                    rec.client,
                )
            )
            rec.headers.append(dict(request.headers))
        return resp

    monkeypatch.setattr(requests.Session, "send", send)
    return rec
