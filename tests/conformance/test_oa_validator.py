"""The validator itself: it must catch departures, or the conformance tests prove nothing."""

from __future__ import annotations

from typing import Any

import pytest
from oa_spec import Exchange, match, validate

API = "http://127.0.0.1:1/api/v3"
RUNNER = {"id": 1, "name": "r", "os": "linux", "status": "online", "busy": False, "labels": [{"name": "x"}]}


def ex(method: str, path: str, status: int, body: Any = None, request: Any = None) -> Exchange:
    return Exchange(method, API + path, request, status, body)


def test_conforming_exchange_passes() -> None:
    """A well-formed list answer has no problems."""
    assert (
        validate(ex("GET", "/orgs/a/actions/runners?per_page=100&page=2", 200, {"total_count": 1, "runners": [RUNNER]}))
        == []
    )


@pytest.mark.parametrize(
    ("exchange", "needle"),
    [
        (ex("GET", "/orgs/a/actions/runners", 200, {"total_count": 1, "runners": [{**RUNNER, "busy": "no"}]}), "busy"),
        (ex("GET", "/orgs/a/actions/runners", 200, {"runners": []}), "total_count"),
        (ex("GET", "/orgs/a/actions/runners?per_page=x", 200, {"total_count": 0, "runners": []}), "per_page"),
        (ex("GET", "/orgs/a/actions/runners?bogus=1", 200, {"total_count": 0, "runners": []}), "bogus"),
        (ex("GET", "/orgs/a/actions/runners/abc", 200, RUNNER), "runner_id"),
        (ex("DELETE", "/orgs/a/actions/runners/1", 418), "418"),
        (ex("DELETE", "/orgs/a/actions/runners/1", 204, {"x": 1}), "without a body"),
        (
            ex(
                "POST",
                "/orgs/a/actions/runners/generate-jitconfig",
                201,
                {"runner": RUNNER, "encoded_jit_config": "e"},
                {"name": "n", "runner_group_id": 1, "labels": []},
            ),
            "non-empty",
        ),
        (ex("POST", "/orgs/a/actions/runners/generate-jitconfig", 201, {"runner": RUNNER}), "required"),
        (
            ex("POST", "/orgs/a/actions/runners/registration-token", 201, {"token": "t", "expires_at": "not a date"}),
            "date-time",
        ),
        (ex("GET", "/orgs/a/actions/nothing-here", 200, {}), "no operation"),
        (ex("GET", "/orgs/a/actions/runners/1", 404, {"message": 5}), "message"),
    ],
)
def test_departures_are_caught(exchange: Exchange, needle: str) -> None:
    """Wrong types, missing fields, bad parameters, undocumented statuses and bodies are reported."""
    problems = validate(exchange)
    assert any(needle in p for p in problems), problems


def test_literal_segment_beats_parameter() -> None:
    """/runners/downloads is its own operation, not /runners/{runner_id}."""
    assert match(ex("GET", "/repos/o/r/actions/runners/downloads", 200)).template.endswith("/runners/downloads")  # type: ignore[union-attr]


def test_enterprise_paths_use_ghec() -> None:
    """Enterprise endpoints are matched in the ghec description."""
    assert match(ex("GET", "/enterprises/e/actions/runners", 200)).spec_name == "ghec"  # type: ignore[union-attr]
