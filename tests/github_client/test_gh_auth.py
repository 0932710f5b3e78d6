"""PAT and GitHub App credentials: validation, JWT claims, no secrets in repr."""

from __future__ import annotations

import pickle
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from github_client import JWT_LIFETIME, AppAuth, InvalidInput, PatAuth


def test_jwt_claims(private_key_pem: str, public_key_pem: str) -> None:
    """The app JWT is RS256 with iat 60 s back, exp at most 10 min ahead, iss the app id."""
    now = 1_700_000_000
    token = AppAuth(12345, private_key_pem).jwt(now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, public_key_pem, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == "12345"
    assert claims["iat"] == now - 60
    assert claims["exp"] == now + JWT_LIFETIME
    assert claims["exp"] - now <= 600


def test_app_id_may_be_a_numeric_string_or_client_id(private_key_pem: str) -> None:
    """'123' is read as 123; a client id (Iv1.xxx) is kept as is."""
    assert AppAuth("123", private_key_pem).app_id == 123
    assert AppAuth("Iv1.0123abcd", private_key_pem).app_id == "Iv1.0123abcd"


def test_key_with_escaped_newlines_is_accepted(private_key_pem: str) -> None:
    """Keys from environment variables often carry literal \\n; they still load."""
    AppAuth(1, private_key_pem.replace("\n", "\\n"))


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("app_id", "key", "field"),
    [
        (1, "", "private_key_pem"),
        (1, "not a key", "private_key_pem"),
        (1, "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "private_key_pem"),
        (1, None, "private_key_pem"),
        (0, "KEY", "app_id"),
        ("abc", "KEY", "app_id"),
        (True, "KEY", "app_id"),
        (None, "KEY", "app_id"),
    ],
)
def test_bad_app_credentials(private_key_pem: str, app_id: Any, key: Any, field: str) -> None:
    """Bad app ids and non-PEM keys raise InvalidInput naming the field."""
    with pytest.raises(InvalidInput) as info:
        AppAuth(app_id, private_key_pem if key == "KEY" else key)
    assert info.value.field == field


def test_non_rsa_key_is_refused() -> None:
    """GitHub App keys are RSA; an EC key is refused."""
    with pytest.raises(InvalidInput, match="RSA"):
        AppAuth(1, _ec_pem())


@pytest.mark.parametrize("installation_id", [0, -3, "x", 1.5])
def test_bad_installation_id(private_key_pem: str, installation_id: Any) -> None:
    """installation_id must be a positive integer."""
    with pytest.raises(InvalidInput) as info:
        AppAuth(1, private_key_pem, installation_id=installation_id)
    assert info.value.field == "installation_id"


def test_reprs_hold_no_secret(private_key_pem: str) -> None:
    """Neither the token nor the key shows in repr."""
    pat = PatAuth("ghp_supersecretvalue1234567890")
    app = AppAuth(7, private_key_pem, installation_id=9)
    assert "supersecret" not in repr(pat)
    assert "PRIVATE" not in repr(app) and "MII" not in repr(app)


def test_app_auth_cannot_be_pickled(private_key_pem: str) -> None:
    """A private key must not end up in pickled Pulumi provider state."""
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(AppAuth(7, private_key_pem))
