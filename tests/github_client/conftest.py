"""Fixtures for the github_client tests: an App key, a scripted HTTP session, a fake clock."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ghc_fakes import FakeClock, ScriptedSession


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def private_key_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="session")
def public_key_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def session() -> ScriptedSession:
    return ScriptedSession()


# -- the emulator ------------------------------------------------------------------------------
# One emulator per test module keeps runs lean; tests isolate themselves by using their own
# organisation names (the emulator creates scopes on first use).

DEPRECATIONS = {"2.320.0": ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")}


@pytest.fixture(scope="module")
def emu():  # type: ignore[no-untyped-def]
    from emulator import Emulator

    emulator = Emulator(port=0, deprecations=DEPRECATIONS).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def org(request: pytest.FixtureRequest) -> str:
    """A fresh organisation name for this test."""
    import hashlib

    return "o" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
