"""The redaction helper masks every secret shape the project handles."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from github_client import REDACTED, RedactingFilter, redact, register_secret


@pytest.mark.parametrize(
    "secret",
    [
        "ghp_" + "A1b2" * 9,
        "ghs_" + "z" * 36,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxIn0.c2lnbmF0dXJl",
        base64.b64encode(json.dumps({".runner": "x" * 300}).encode()).decode(),
    ],
)
def test_secret_shapes_are_masked(secret: str) -> None:
    """Tokens, JWTs and JIT configs are masked even if never registered."""
    out = redact(f"before {secret} after")
    assert secret not in out
    assert out.startswith("before ") and out.endswith(" after")


def test_private_key_is_masked(private_key_pem: str) -> None:
    """A PEM private key block is masked whole."""
    out = redact(f"key={private_key_pem}")
    assert "PRIVATE KEY" not in out and REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer AABBCCDD",
        "authorization: token AABBCCDD",
        "Authorization: RemoteAuth AABBCCDD",
        "{'Authorization': 'Bearer AABBCCDD'}",
        '{"token": "AABBCCDD", "expires_at": "2030-01-01T00:00:00Z"}',
        '{"encoded_jit_config": "AABBCCDD"}',
    ],
)
def test_header_and_field_values_are_masked(text: str) -> None:
    """Values after auth schemes and in token fields are masked, context kept."""
    out = redact(text)
    assert "AABBCCDD" not in out
    assert REDACTED in out


def test_registered_secret_is_masked() -> None:
    """A registered value of any shape (e.g. a registration token) is masked."""
    register_secret("AABF3JGZDX3P5PMEXLND6TS6FCWO6")
    assert redact("use AABF3JGZDX3P5PMEXLND6TS6FCWO6 now") == f"use {REDACTED} now"


def test_prose_is_left_alone() -> None:
    """Ordinary messages that mention tokens are not mangled."""
    text = "the token lacks the admin:org scope needed for organisation runners"
    assert redact(text) == text


def test_logging_filter_masks_messages_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """RedactingFilter masks formatted messages, args and exception text."""
    logger = logging.getLogger("test_redact_filter")
    secret = "ghp_" + "Q" * 36
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    caplog.handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"boom {secret}")
        except RuntimeError:
            logger.exception("call failed token=%s", secret)
    finally:
        logger.removeHandler(handler)
    assert secret not in caplog.text
    assert REDACTED in caplog.text
