"""Client behaviour against a scripted HTTP session: retries, rate limits, paging, errors, App tokens.

These run without the emulator; tests/github_client/test_gh_emulator.py repeats the
important paths against the real emulator.
"""

from __future__ import annotations

import threading
from datetime import UTC
from typing import Any

import pytest
import requests
from ghc_fakes import FakeClock, ScriptedSession

from github_client import (
    AppAuth,
    BadCredentials,
    Conflict,
    GitHubClient,
    GitHubError,
    GitHubUnavailable,
    NotFound,
    PatAuth,
    PermissionDenied,
    RateLimited,
    RequestEvent,
    ServerError,
    Unprocessable,
    parse_scope,
)

PAT = "ghp_" + "S3cr3t" * 6
ORG = "https://github.com/acme"


def make(session: ScriptedSession, clock: FakeClock, url: str = ORG, **kwargs: Any) -> GitHubClient:
    kwargs.setdefault("auth", PatAuth(PAT))
    return GitHubClient(parse_scope(url), session=session, sleep=clock.sleep, clock=clock.time, **kwargs)


def runner(i: int, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": i,
        "name": name or f"r{i}",
        "os": "linux",
        "status": "online",
        "busy": False,
        "labels": [{"id": 1, "name": "self-hosted", "type": "read-only"}],
        **extra,
    }


TOKEN = (201, {"token": "AABBCCDDEEFFGG", "expires_at": "2030-01-01T00:00:00Z"}, {})


def test_request_headers(session: ScriptedSession, clock: FakeClock) -> None:
    """Every request carries the API version, JSON accept header, a UA and the bearer token."""
    session.script = [TOKEN]
    make(session, clock).registration_token()
    sent = session.sent[0]
    assert sent.method == "POST"
    assert sent.url == "https://api.github.com/orgs/acme/actions/runners/registration-token"
    assert sent.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert sent.headers["Accept"] == "application/vnd.github+json"
    assert sent.headers["User-Agent"]
    assert sent.headers["Authorization"] == f"Bearer {PAT}"


def test_timeout_is_set_on_every_request(
    session: ScriptedSession, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests gets the client's timeout on each call."""
    seen: list[Any] = []
    original = ScriptedSession.send

    def send(self: ScriptedSession, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        seen.append(kwargs.get("timeout"))
        return original(self, request, **kwargs)

    monkeypatch.setattr(ScriptedSession, "send", send)
    session.script = [TOKEN, (200, {"total_count": 0, "runners": []}, {})]
    client = make(session, clock, timeout=3.5)
    client.registration_token()
    client.list_runners()
    assert seen == [3.5, 3.5]


def test_retries_5xx_with_jittered_backoff(session: ScriptedSession, clock: FakeClock) -> None:
    """5xx answers are retried with growing, jittered delays, then succeed."""
    session.script = [(502, {"message": "bad gateway"}, {}), (503, None, {}), TOKEN]
    assert make(session, clock).registration_token().token == "AABBCCDDEEFFGG"
    assert len(session.sent) == 3
    assert 0.25 <= clock.sleeps[0] <= 0.5 and 0.5 <= clock.sleeps[1] <= 1.0


def test_5xx_retries_are_bounded(session: ScriptedSession, clock: FakeClock) -> None:
    """After max_retries the ServerError surfaces."""
    session.script = [(500, {"message": "oops"}, {})] * 3
    with pytest.raises(ServerError, match="after 3 attempt"):
        make(session, clock, max_retries=2).list_runners()
    assert len(session.sent) == 3


def test_503_retry_after_is_honoured(session: ScriptedSession, clock: FakeClock) -> None:
    """A 5xx with retry-after waits that long."""
    session.script = [(503, None, {"retry-after": "7"}), (200, {"total_count": 0, "runners": []}, {})]
    make(session, clock).list_runners()
    assert clock.sleeps == [7.0]


def test_connection_errors_are_retried(session: ScriptedSession, clock: FakeClock) -> None:
    """Dropped connections are retried; then GitHubUnavailable names the API, not the token."""
    session.script = [requests.ConnectionError("reset")] * 6
    with pytest.raises(GitHubUnavailable) as info:
        make(session, clock).get_runner(5)
    assert len(session.sent) == 6
    assert "api.github.com" in str(info.value) and PAT not in str(info.value)


def test_max_wait_caps_backoff(session: ScriptedSession, clock: FakeClock) -> None:
    """Backoff stops early once the total wait would exceed max_wait."""
    session.script = [requests.Timeout("slow")] * 6
    with pytest.raises(GitHubUnavailable):
        make(session, clock, max_wait=1.0).get_runner(5)
    assert sum(clock.sleeps) <= 1.0


def test_primary_rate_limit_waits_until_reset(session: ScriptedSession, clock: FakeClock) -> None:
    """403 with remaining 0 waits until x-ratelimit-reset, then retries."""
    reset = int(clock.now) + 30
    session.script = [
        (403, {"message": "API rate limit exceeded"}, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}),
        TOKEN,
    ]
    make(session, clock).registration_token()
    assert clock.sleeps == [31.0]


def test_retry_after_is_honoured(session: ScriptedSession, clock: FakeClock) -> None:
    """429 with retry-after waits exactly that long."""
    session.script = [(429, {"message": "You have exceeded a secondary rate limit"}, {"retry-after": "5"}), TOKEN]
    make(session, clock).registration_token()
    assert clock.sleeps == [5.0]


def test_secondary_limit_without_retry_after_waits_a_minute(session: ScriptedSession, clock: FakeClock) -> None:
    """A secondary limit without retry-after waits at least 60 s."""
    session.script = [(403, {"message": "You have exceeded a secondary rate limit."}, {}), TOKEN]
    make(session, clock, max_wait=120).registration_token()
    assert clock.sleeps == [60.0]


def test_rate_limit_beyond_max_wait_raises(session: ScriptedSession, clock: FakeClock) -> None:
    """A wait longer than max_wait raises RateLimited at once, with retry_at, without sleeping."""
    reset = int(clock.now) + 3600
    session.script = [
        (429, {"message": "API rate limit exceeded"}, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    ]
    with pytest.raises(RateLimited) as info:
        make(session, clock, max_wait=60).registration_token()
    assert clock.sleeps == []
    assert info.value.retry_at is not None and int(info.value.retry_at.timestamp()) == reset + 1
    assert "max_wait" in str(info.value)


@pytest.mark.parametrize(
    ("script", "kwargs", "error", "names", "not_names"),
    [
        pytest.param(
            [(429, {"message": "You have exceeded a secondary rate limit"}, {"retry-after": "1"})] * 3,
            {"max_retries": 2, "max_wait": 30},
            RateLimited,
            "gave up after 3 attempts (max_retries=2)",
            "max_wait",
            id="rate-limit-attempts",
        ),
        pytest.param(
            [(429, {"message": "You have exceeded a secondary rate limit"}, {"retry-after": "20"})] * 3,
            {"max_retries": 5, "max_wait": 30},
            RateLimited,
            "more than this client may wait (max_wait=30 s, 20 s already waited)",
            "max_retries",
            id="rate-limit-wait",
        ),
        pytest.param(
            [(500, {"message": "oops"}, {})] * 3,
            {"max_retries": 2, "max_wait": 30},
            ServerError,
            "gave up after 3 attempts (max_retries=2)",
            "max_wait",
            id="5xx-attempts",
        ),
        pytest.param(
            [(503, None, {"retry-after": "20"})] * 3,
            {"max_retries": 5, "max_wait": 30},
            ServerError,
            "would exceed max_wait=30 s (20.0 s already waited)",
            "max_retries",
            id="5xx-wait",
        ),
        pytest.param(
            [requests.ConnectionError("reset")] * 3,
            {"max_retries": 2, "max_wait": 30},
            GitHubUnavailable,
            "gave up after 3 attempts (max_retries=2)",
            "max_wait",
            id="connection-attempts",
        ),
    ],
)
def test_give_up_message_names_the_cap_hit(
    session: ScriptedSession,
    clock: FakeClock,
    script: list[Any],
    kwargs: dict[str, Any],
    error: type[GitHubError],
    names: str,
    not_names: str,
) -> None:
    """When retries stop, the message names the bound that stopped them (attempts or wait), not the other."""
    session.script = list(script)
    with pytest.raises(error) as info:
        make(session, clock, **kwargs).list_runners()
    assert names in str(info.value)
    assert not_names not in str(info.value)


def test_spent_limit_delays_next_call(session: ScriptedSession, clock: FakeClock) -> None:
    """A success with remaining 0 makes the next call wait for the reset instead of failing."""
    reset = int(clock.now) + 10
    session.script = [
        (200, {"total_count": 0, "runners": []}, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}),
        (200, {"total_count": 0, "runners": []}, {}),
    ]
    client = make(session, clock)
    client.list_runners()
    client.list_runners()
    assert clock.sleeps == [11.0]


def test_spent_limit_beyond_max_wait_sends_nothing(session: ScriptedSession, clock: FakeClock) -> None:
    """When the spent limit resets after max_wait, the next call raises without a request."""
    reset = int(clock.now) + 3000
    session.script = [
        (200, {"total_count": 0, "runners": []}, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    ]
    client = make(session, clock)
    client.list_runners()
    with pytest.raises(RateLimited, match="was not sent"):
        client.list_runners()
    assert len(session.sent) == 1


def test_pagination_follows_link_headers(session: ScriptedSession, clock: FakeClock) -> None:
    """list_runners asks for 100 per page and follows rel=next to the end."""
    base = "https://api.github.com/orgs/acme/actions/runners"
    session.script = [
        (
            200,
            {"total_count": 3, "runners": [runner(1), runner(2)]},
            {"Link": f'<{base}?per_page=100&page=2>; rel="next", <{base}?per_page=100&page=2>; rel="last"'},
        ),
        (200, {"total_count": 3, "runners": [runner(3)]}, {"Link": f'<{base}?per_page=100&page=1>; rel="first"'}),
    ]
    assert [r.id for r in make(session, clock).list_runners()] == [1, 2, 3]
    assert "per_page=100" in (session.sent[0].url or "")
    assert session.sent[1].url == f"{base}?per_page=100&page=2"


def test_link_to_another_host_stays_on_api_host(session: ScriptedSession, clock: FakeClock) -> None:
    """A next link naming another host is followed on the client's own API host only."""
    session.script = [
        (
            200,
            {"total_count": 2, "runners": [runner(1)]},
            {"Link": '<https://other.example/orgs/acme/actions/runners?page=2>; rel="next"'},
        ),
        (200, {"total_count": 2, "runners": [runner(2)]}, {}),
    ]
    assert [r.id for r in make(session, clock).list_runners()] == [1, 2]
    assert session.sent[1].url == "https://api.github.com/orgs/acme/actions/runners?page=2"


def test_link_outside_api_root_is_refused(session: ScriptedSession, clock: FakeClock) -> None:
    """A next link outside the API root is refused; the token goes nowhere else."""
    session.script = [
        (200, {"total_count": 2, "runners": [runner(1)]}, {"Link": '<https://evil.example/x?page=2>; rel="next"'})
    ]
    with pytest.raises(GitHubError, match="outside this client's API root"):
        make(session, clock, url="https://ghe.example.com/acme").list_runners()
    assert len(session.sent) == 1


def test_redirect_is_not_followed(session: ScriptedSession, clock: FakeClock) -> None:
    """A 301 (renamed repository) says to update the scope URL instead of replaying the token."""
    session.script = [(301, {"message": "Moved Permanently"}, {"location": "https://api.github.com/repositories/9"})]
    with pytest.raises(GitHubError, match="renamed or moved"):
        make(session, clock, url="https://github.com/acme/app").get_runner(1)
    assert len(session.sent) == 1


def test_runner_name_filter(session: ScriptedSession, clock: FakeClock) -> None:
    """list_runners(name=) passes the name query parameter."""
    session.script = [(200, {"total_count": 1, "runners": [runner(4, "pool-1")]}, {})]
    assert make(session, clock).list_runners(name="pool-1")[0].name == "pool-1"
    assert "name=pool-1" in (session.sent[0].url or "")


@pytest.mark.parametrize(
    ("url", "status", "error", "needle"),
    [
        (ORG, 401, BadCredentials, "invalid, expired or revoked"),
        (ORG, 403, PermissionDenied, "admin:org"),
        ("https://github.com/acme/app", 403, PermissionDenied, "`repo` scope"),
        ("https://github.com/enterprises/e", 403, PermissionDenied, "manage_runners:enterprise"),
        (ORG, 404, NotFound, "check the scope URL"),
        (ORG, 422, Unprocessable, "422"),
    ],
)
def test_errors_are_typed_and_say_what_to_do(
    session: ScriptedSession, clock: FakeClock, url: str, status: int, error: type[GitHubError], needle: str
) -> None:
    """Each status maps to its exception, with a hint naming the needed scope."""
    session.script = [
        (status, {"message": "nope", "documentation_url": "https://docs.github.com/x"}, {"x-github-request-id": "R1"})
    ]
    with pytest.raises(error) as info:
        make(session, clock, url=url).registration_token()
    assert needle in str(info.value)
    assert info.value.status == status and info.value.request_id == "R1"
    assert PAT not in str(info.value)


def test_delete_runner_missing_ok(session: ScriptedSession, clock: FakeClock) -> None:
    """delete_runner(missing_ok=True) treats 404 as already done."""
    session.script = [(404, {"message": "Not Found"}, {}), (404, {"message": "Not Found"}, {})]
    client = make(session, clock)
    assert client.delete_runner(9, missing_ok=True) is False
    with pytest.raises(NotFound):
        client.delete_runner(9)


def test_delete_busy_runner_says_to_wait(session: ScriptedSession, clock: FakeClock) -> None:
    """A 422 on delete explains the runner is running a job."""
    session.script = [(422, {"message": "Bad request - Runner is currently running a job"}, {})]
    with pytest.raises(Unprocessable, match="wait for the job"):
        make(session, clock).delete_runner(9)


def test_secret_echoed_by_server_is_redacted(session: ScriptedSession, clock: FakeClock) -> None:
    """A server message quoting the token is redacted in the exception."""
    session.script = [(422, {"message": f"bad token {PAT}"}, {})]
    with pytest.raises(Unprocessable) as info:
        make(session, clock).registration_token()
    assert PAT not in str(info.value) and PAT not in (info.value.github_message or "")


def test_call_counter_and_hook(session: ScriptedSession, clock: FakeClock) -> None:
    """calls counts attempts by kind; on_request sees every attempt without secrets."""
    events: list[RequestEvent] = []
    session.script = [(500, None, {}), TOKEN, (200, {"total_count": 0, "runners": []}, {})]
    client = make(session, clock, on_request=events.append)
    client.registration_token()
    client.list_runners()
    assert client.calls == {"registration_token": 2, "list_runners": 1}
    assert [(e.kind, e.status, e.attempt) for e in events] == [
        ("registration_token", 500, 1),
        ("registration_token", 201, 2),
        ("list_runners", 200, 1),
    ]
    assert PAT not in repr(events)


@pytest.mark.parametrize(
    ("first", "status", "fault"),
    [
        pytest.param((500, {"message": "oops"}, {}), 500, "5xx", id="5xx"),
        pytest.param(requests.ConnectionError("reset"), None, "connection", id="connection"),
        pytest.param(
            (403, {"message": "You have exceeded a secondary rate limit."}, {"retry-after": "3"}),
            403,
            "secondary",
            id="secondary-403",
        ),
        pytest.param((429, {"message": "slow down"}, {"retry-after": "3"}), 429, "secondary", id="secondary-429"),
        pytest.param(
            (403, {"message": "API rate limit exceeded"}, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}),
            403,
            "primary",
            id="primary",
        ),
    ],
)
def test_events_show_absorbed_faults(
    session: ScriptedSession, clock: FakeClock, first: Any, status: int | None, fault: str
) -> None:
    """A fault the client retries past still yields its own event: status, fault kind, attempt, elapsed."""
    events: list[RequestEvent] = []
    session.script = [first, TOKEN]
    make(session, clock, on_request=events.append).registration_token()
    failed, ok = events
    assert (failed.status, failed.fault, failed.attempt, failed.retry) == (status, fault, 1, False)
    assert (ok.status, ok.fault, ok.attempt, ok.retry) == (201, None, 2, True)
    assert sum(clock.sleeps) > 0 and ok.elapsed == pytest.approx(sum(clock.sleeps), abs=0.01)  # the wait included
    assert failed.elapsed < ok.elapsed


def test_ordinary_4xx_event_has_no_fault(session: ScriptedSession, clock: FakeClock) -> None:
    """A 404 or a 403 that is not a rate limit is an answer, not a fault."""
    events: list[RequestEvent] = []
    session.script = [(404, {"message": "Not Found"}, {}), (403, {"message": "Must have admin rights"}, {})]
    client = make(session, clock, on_request=events.append)
    with pytest.raises(NotFound):
        client.get_runner(1)
    with pytest.raises(PermissionDenied):
        client.get_runner(1)
    assert [(e.status, e.fault, e.attempt) for e in events] == [(404, None, 1), (403, None, 1)]


def test_failing_hook_does_not_break_calls(session: ScriptedSession, clock: FakeClock) -> None:
    """An exception in on_request is logged, not raised."""

    def boom(event: RequestEvent) -> None:
        raise RuntimeError("metrics down")

    session.script = [TOKEN]
    make(session, clock, on_request=boom).registration_token()


def test_token_repr_is_redacted(session: ScriptedSession, clock: FakeClock) -> None:
    """Token and JitConfig reprs hold no secret."""
    session.script = [TOKEN, (201, {"runner": runner(1), "encoded_jit_config": "SECRETJITBLOB"}, {})]
    client = make(session, clock)
    assert "AABBCCDDEEFFGG" not in repr(client.registration_token())
    assert "SECRETJITBLOB" not in repr(client.generate_jitconfig("r1", ["x"]))
    assert PAT not in repr(client)


# -- generate-jitconfig after an ambiguous failure ------------------------------------------

JIT_OK = (
    201,
    {"runner": {**runner(7, "r1"), "status": "offline", "os": "unknown"}, "encoded_jit_config": "BLOB1234"},
    {},
)
CONFLICT = (409, {"message": "Already exists - A runner with the name r1 already exists."}, {})


def test_jit_first_conflict_is_raised(session: ScriptedSession, clock: FakeClock) -> None:
    """A 409 on the first attempt means the name is taken: Conflict, nothing deleted."""
    session.script = [CONFLICT]
    with pytest.raises(Conflict, match="already exists"):
        make(session, clock).generate_jitconfig("r1", ["x"])
    assert len(session.sent) == 1


def test_jit_conflict_after_lost_answer_reclaims_the_name(session: ScriptedSession, clock: FakeClock) -> None:
    """A 409 after a dropped connection: the never-connected runner is deleted and re-minted."""
    stale = {**runner(6, "r1"), "status": "offline", "os": "unknown"}
    session.script = [
        requests.ConnectionError("reset after send"),
        CONFLICT,
        (200, {"total_count": 1, "runners": [stale]}, {}),
        (204, None, {}),
        JIT_OK,
    ]
    jit = make(session, clock).generate_jitconfig("r1", ["x"])
    assert jit.runner.id == 7 and jit.encoded_jit_config == "BLOB1234"
    assert [r.method for r in session.sent] == ["POST", "POST", "GET", "DELETE", "POST"]
    assert (session.sent[3].url or "").endswith("/runners/6")


def test_jit_conflict_with_online_runner_is_raised(session: ScriptedSession, clock: FakeClock) -> None:
    """A live runner with the name is never deleted."""
    session.script = [(502, None, {}), CONFLICT, (200, {"total_count": 1, "runners": [runner(6, "r1")]}, {})]
    with pytest.raises(Conflict):
        make(session, clock).generate_jitconfig("r1", ["x"])
    assert "DELETE" not in [r.method for r in session.sent]


# -- GitHub App ------------------------------------------------------------------------------


def app_handler(counts: dict[str, int], expires: str = "2099-01-01T00:00:00Z", barrier: threading.Event | None = None):  # type: ignore[no-untyped-def]
    def handle(req: requests.PreparedRequest) -> tuple[int, Any, dict[str, str]]:
        url = req.url or ""
        auth = req.headers.get("Authorization", "")
        if url.endswith("/orgs/acme/installation"):
            counts["lookup"] = counts.get("lookup", 0) + 1
            assert auth.startswith("Bearer eyJ")
            return 200, {"id": 42, "account": {"login": "acme"}}, {}
        if url.endswith("/app/installations/42/access_tokens"):
            counts["mint"] = counts.get("mint", 0) + 1
            if barrier is not None:
                barrier.wait(2)
            return 201, {"token": f"ghs_installation{counts['mint']:030d}", "expires_at": expires}, {}
        counts["api"] = counts.get("api", 0) + 1
        assert auth.startswith("Bearer ghs_installation")
        return 200, {"total_count": 0, "runners": []}, {}

    return handle


def test_app_looks_up_installation_and_caches_token(
    session: ScriptedSession, clock: FakeClock, private_key_pem: str
) -> None:
    """One lookup and one token mint serve many calls."""
    counts: dict[str, int] = {}
    session.handler = app_handler(counts)
    client = make(session, clock, auth=AppAuth(1, private_key_pem))
    for _ in range(3):
        client.list_runners()
    assert counts == {"lookup": 1, "mint": 1, "api": 3}
    assert client.installation_id() == 42


def test_app_token_refreshed_before_expiry(session: ScriptedSession, clock: FakeClock, private_key_pem: str) -> None:
    """A cached installation token is replaced shortly before it expires."""
    from datetime import datetime

    counts: dict[str, int] = {}
    expires = datetime.fromtimestamp(clock.now + 3600, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    session.handler = app_handler(counts, expires=expires)
    client = make(session, clock, auth=AppAuth(1, private_key_pem, installation_id=42))
    client.list_runners()
    clock.now += 3600 - 400  # still > 5 min left: cached
    client.list_runners()
    assert counts["mint"] == 1
    clock.now += 200  # < 5 min left: refreshed
    client.list_runners()
    assert counts["mint"] == 2 and "lookup" not in counts


def test_app_token_is_minted_once_across_threads(
    session: ScriptedSession, clock: FakeClock, private_key_pem: str
) -> None:
    """Concurrent first calls share one installation token."""
    counts: dict[str, int] = {}
    session.handler = app_handler(counts)
    client = make(session, clock, auth=AppAuth(1, private_key_pem, installation_id=42))
    threads = [threading.Thread(target=client.list_runners) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert counts["mint"] == 1 and counts["api"] == 8


def test_app_401_refreshes_token_once(session: ScriptedSession, clock: FakeClock, private_key_pem: str) -> None:
    """A 401 with App auth drops the cached token and retries once with a new one."""
    session.script = [
        (201, {"token": "ghs_old" + "x" * 30, "expires_at": "2099-01-01T00:00:00Z"}, {}),
        (401, {"message": "Bad credentials"}, {}),
        (201, {"token": "ghs_new" + "x" * 30, "expires_at": "2099-01-01T00:00:00Z"}, {}),
        (200, {"total_count": 0, "runners": []}, {}),
    ]
    make(session, clock, auth=AppAuth(1, private_key_pem, installation_id=42)).list_runners()
    assert session.sent[3].headers["Authorization"] == "Bearer ghs_new" + "x" * 30


def test_app_not_installed(session: ScriptedSession, clock: FakeClock, private_key_pem: str) -> None:
    """A 404 installation lookup says to install the App."""
    session.script = [(404, {"message": "Not Found"}, {})]
    with pytest.raises(NotFound, match="not installed on the organisation acme"):
        make(session, clock, auth=AppAuth(1, private_key_pem)).list_runners()


def test_repo_groups_need_no_request(session: ScriptedSession, clock: FakeClock) -> None:
    """Repository runners only have the Default group (id 1), found without a request."""
    client = make(session, clock, url="https://github.com/acme/app")
    assert client.find_runner_group("default").id == 1
    with pytest.raises(NotFound, match="Default group"):
        client.find_runner_group("gpu")
    assert session.sent == []


def test_find_runner_group_lists_known_names(session: ScriptedSession, clock: FakeClock) -> None:
    """An unknown group name raises NotFound listing the groups that exist."""
    groups = {
        "total_count": 2,
        "runner_groups": [{"id": 1, "name": "Default", "default": True}, {"id": 3, "name": "GPU", "default": False}],
    }
    session.script = [(200, groups, {}), (200, groups, {})]
    client = make(session, clock)
    assert client.find_runner_group("gpu").id == 3
    with pytest.raises(NotFound, match="'Default', 'GPU'"):
        client.find_runner_group("cpu")
