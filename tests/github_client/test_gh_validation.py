"""Bad input fails before any request, with InvalidInput naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from ghc_fakes import ScriptedSession

from github_client import (
    MAX_LABELS,
    MAX_RUNNER_NAME_LENGTH,
    AppAuth,
    GitHubClient,
    InvalidInput,
    PatAuth,
    parse_scope,
)


@pytest.fixture
def client(session: ScriptedSession) -> GitHubClient:
    return GitHubClient(parse_scope("https://github.com/acme"), PatAuth("ghp_" + "a" * 36), session=session)


@pytest.mark.parametrize("token", ["", "   ", None, "abc def", "abc\n", " abc", "ab\x00c"])
def test_bad_token_is_refused(token: Any) -> None:
    """Empty tokens or tokens with whitespace/control characters are refused."""
    with pytest.raises(InvalidInput) as info:
        PatAuth(token)
    assert info.value.field == "token"


@pytest.mark.parametrize(
    ("call", "args", "field"),
    [
        ("generate_jitconfig", ("", ["x"]), "name"),
        ("generate_jitconfig", ("   ", ["x"]), "name"),
        ("generate_jitconfig", ("r" * (MAX_RUNNER_NAME_LENGTH + 1), ["x"]), "name"),
        ("generate_jitconfig", ("a/b", ["x"]), "name"),
        ("generate_jitconfig", ("r1", []), "labels"),
        ("generate_jitconfig", ("r1", "self-hosted"), "labels"),
        ("generate_jitconfig", ("r1", [f"l{i}" for i in range(MAX_LABELS + 1)]), "labels"),
        ("generate_jitconfig", ("r1", ["ok", ""]), "labels"),
        ("generate_jitconfig", ("r1", ["a,b"]), "labels"),
        ("generate_jitconfig", ("r1", ["x" * 257]), "labels"),
        ("generate_jitconfig", ("r1", [" x"]), "labels"),
        ("generate_jitconfig", ("r1", ["x"], 0), "runner_group_id"),
        ("generate_jitconfig", ("r1", ["x"], "1"), "runner_group_id"),
        ("generate_jitconfig", ("r1", ["x"], 1, ""), "work_folder"),
        ("get_runner", (0,), "runner_id"),
        ("get_runner", ("5",), "runner_id"),
        ("delete_runner", (-1,), "runner_id"),
        ("delete_runner", (True,), "runner_id"),
        ("add_runner_labels", (1, []), "labels"),
        ("set_runner_labels", (1, [f"l{i}" for i in range(MAX_LABELS + 1)]), "labels"),
        ("remove_runner_label", (1, ""), "name"),
        ("runner_deprecation", ("latest",), "version"),
        ("find_runner_group", ("",), "runner_group"),
        ("list_runners", ("",), "name"),
    ],
)
def test_bad_call_input_sends_nothing(
    client: GitHubClient, session: ScriptedSession, call: str, args: tuple[Any, ...], field: str
) -> None:
    """Each operation validates its arguments before any request."""
    with pytest.raises(InvalidInput) as info:
        getattr(client, call)(*args)
    assert info.value.field == field
    assert session.sent == []


def test_set_labels_accepts_empty_list(client: GitHubClient, session: ScriptedSession) -> None:
    """Replacing labels with [] is allowed (it removes every custom label)."""
    session.script = [(200, {"total_count": 0, "labels": []}, {})]
    assert client.set_runner_labels(1, []) == []


def test_duplicate_labels_are_sent_once(client: GitHubClient, session: ScriptedSession) -> None:
    """GitHub labels are case-insensitive; duplicates are collapsed, first spelling kept."""
    session.script = [(200, {"total_count": 2, "labels": [{"name": "gpu"}, {"name": "x"}]}, {})]
    client.add_runner_labels(1, ["gpu", "GPU", "x"])
    assert b'"labels": ["gpu", "x"]' in (session.sent[0].body or b"")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timeout": 0}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_wait": -1}, "max_wait"),
        ({"user_agent": ""}, "user_agent"),
    ],
)
def test_bad_client_options(kwargs: dict[str, Any], field: str) -> None:
    """Client options are range-checked."""
    with pytest.raises(InvalidInput) as info:
        GitHubClient(parse_scope("https://github.com/acme"), PatAuth("t" * 40), **kwargs)
    assert info.value.field == field


def test_app_auth_refused_for_enterprise(private_key_pem: str) -> None:
    """GitHub does not take App tokens on enterprise endpoints; say so up front."""
    with pytest.raises(InvalidInput) as info:
        GitHubClient(parse_scope("https://github.com/enterprises/e"), AppAuth(1, private_key_pem))
    assert info.value.field == "auth"
    assert "manage_runners:enterprise" in str(info.value)
