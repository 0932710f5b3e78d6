"""The client against the GitHub emulator: every operation and every error path, over real HTTP.

Waits are never real: the client's sleep advances the emulator's clock, so rate-limit
resets and retry-after pauses pass instantly while the HTTP traffic stays real.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from github_client import (
    AppAuth,
    BadCredentials,
    Conflict,
    GitHubClient,
    GitHubUnavailable,
    InvalidInput,
    NotFound,
    PatAuth,
    PermissionDenied,
    RateLimited,
    ServerError,
    Unprocessable,
    parse_scope,
)


def client_for(emu: Any, path: str, auth: PatAuth | AppAuth | None = None, **kwargs: Any) -> GitHubClient:
    kwargs.setdefault("sleep", emu.advance_clock)
    kwargs.setdefault("clock", emu.state.now)
    return GitHubClient(parse_scope(f"{emu.url}/{path}"), auth or PatAuth(emu.admin_token), **kwargs)


def api_calls(emu: Any) -> dict[str, int]:
    """The emulator's request log, /api/v3 endpoints only."""
    return {k: v for k, v in emu.request_counts().items() if "/_emulator/" not in k}


@pytest.fixture(autouse=True)
def _clean(emu: Any) -> Any:
    emu.clear_faults()
    emu.reset_requests()
    yield
    emu.clear_faults()


# -- access and tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["org", "repo", "enterprise"])
def test_check_access_costs_one_call(emu: Any, org: str, kind: str) -> None:
    """check_access proves access with exactly one request."""
    path = {"org": org, "repo": f"{org}/app", "enterprise": f"enterprises/{org}"}[kind]
    access = client_for(emu, path).check_access()
    assert access.auth == "pat" and access.rate_limit_remaining is not None
    assert sum(api_calls(emu).values()) == 1


@pytest.mark.parametrize(
    ("kind", "needed"), [("org", "admin:org"), ("repo", "`repo` scope"), ("enterprise", "manage_runners:enterprise")]
)
def test_missing_scope_says_which(emu: Any, org: str, kind: str, needed: str) -> None:
    """A PAT without the scope gets PermissionDenied naming the scope to add."""
    token = emu.add_pat(f"ghp_noscope{org}{kind}", scopes=[])
    path = {"org": org, "repo": f"{org}/app", "enterprise": f"enterprises/{org}"}[kind]
    with pytest.raises(PermissionDenied) as info:
        client_for(emu, path, PatAuth(token)).check_access()
    assert needed in str(info.value) and token not in str(info.value)


def test_unknown_token_is_bad_credentials(emu: Any, org: str) -> None:
    """An unknown token raises BadCredentials without echoing it."""
    token = "ghp_" + "x" * 36
    with pytest.raises(BadCredentials) as info:
        client_for(emu, org, PatAuth(token)).registration_token()
    assert token not in str(info.value) and info.value.status == 401


def test_registration_and_remove_tokens(emu: Any, org: str) -> None:
    """Both tokens come back with a future expiry."""
    client = client_for(emu, org)
    reg, rem = client.registration_token(), client.remove_token()
    assert reg.token and rem.token and reg.token != rem.token
    assert reg.expires_at is not None and reg.expires_at.timestamp() > emu.state.now() + 3000


# -- JIT runners, list/get/delete, labels --------------------------------------------------------


def test_jit_runner_lifecycle(emu: Any, org: str) -> None:
    """A JIT runner is listed, read, relabelled and deleted; then it is gone."""
    client = client_for(emu, org)
    jit = client.generate_jitconfig("pool-0-abc123", ["self-hosted", "linux", "cpu"])
    assert jit.runner.name == "pool-0-abc123" and jit.runner.status == "offline" and not jit.runner.busy
    assert set(jit.runner.labels) >= {"self-hosted", "linux", "cpu"}
    assert [r.id for r in client.list_runners(name="pool-0-abc123")] == [jit.runner.id]
    assert client.get_runner(jit.runner.id).name == "pool-0-abc123"

    assert "gpu" in client.add_runner_labels(jit.runner.id, ["gpu"])
    assert "gpu" in client.runner_labels(jit.runner.id)
    assert "gpu" not in client.remove_runner_label(jit.runner.id, "gpu")
    assert "new" in client.set_runner_labels(jit.runner.id, ["new"])

    assert client.delete_runner(jit.runner.id) is True
    with pytest.raises(NotFound):
        client.get_runner(jit.runner.id)
    assert client.delete_runner(jit.runner.id, missing_ok=True) is False
    assert client.list_runners(name="pool-0-abc123") == []


def test_jit_name_taken_is_conflict(emu: Any, org: str) -> None:
    """A second runner with the same name raises Conflict (the first is left alone)."""
    client = client_for(emu, org)
    client.generate_jitconfig("dup", ["x"])
    with pytest.raises(Conflict, match="already exists"):
        client.generate_jitconfig("dup", ["x"])
    assert len(client.list_runners(name="dup")) == 1


def test_jit_unknown_group_is_refused(emu: Any, org: str) -> None:
    """An unknown runner group id is refused by GitHub (422/404)."""
    with pytest.raises((Unprocessable, NotFound)):
        client_for(emu, org).generate_jitconfig("g", ["x"], runner_group_id=4242)


def test_remove_unknown_label_is_not_found(emu: Any, org: str) -> None:
    """Removing a label the runner lacks raises NotFound."""
    client = client_for(emu, org)
    jit = client.generate_jitconfig("lbl", ["x"])
    with pytest.raises(NotFound):
        client.remove_runner_label(jit.runner.id, "nope")


def test_list_runners_reads_every_page(emu: Any, org: str) -> None:
    """101 runners come back from two pages of 100."""
    client = client_for(emu, org)
    for i in range(101):
        client.generate_jitconfig(f"p-{i:03d}", ["x"])
    emu.reset_requests()
    runners = client.list_runners()
    assert sorted(r.name for r in runners) == [f"p-{i:03d}" for i in range(101)]
    assert api_calls(emu) == {"GET /orgs/{org}/actions/runners": 2}


# -- groups, deprecations, downloads ---------------------------------------------------------


def test_runner_groups(emu: Any, org: str) -> None:
    """Org groups are listed; find_runner_group is case-insensitive and usable for JIT."""
    gid = emu.add_runner_group(org, "GPU")
    client = client_for(emu, org)
    assert {g.name for g in client.list_runner_groups()} == {"Default", "GPU"}
    assert client.find_runner_group("default").default is True
    group = client.find_runner_group("gpu")
    assert group.id == gid
    assert client.generate_jitconfig("in-gpu", ["x"], runner_group_id=group.id).runner.runner_group_id == gid
    with pytest.raises(NotFound, match="known groups"):
        client.find_runner_group("tpu")


def test_enterprise_groups(emu: Any, org: str) -> None:
    """Enterprise scopes list their own groups."""
    assert client_for(emu, f"enterprises/{org}").find_runner_group("Default").id == 1


def test_repo_group_costs_nothing(emu: Any, org: str) -> None:
    """Repository runners use the Default group; no request needed."""
    assert client_for(emu, f"{org}/app").find_runner_group("Default").id == 1
    assert api_calls(emu) == {}


def test_runner_deprecation(emu: Any, org: str) -> None:
    """Scheduled deprecations are parsed; current versions have none."""
    client = client_for(emu, org)
    old = client.runner_deprecation("2.320.0")
    assert old.registration_deprecates_at is not None and old.runtime_deprecates_at is not None
    assert old.registration_deprecates_at.year == 2026
    from emulator import RUNNER_VERSION

    assert client.runner_deprecation(RUNNER_VERSION).registration_deprecates_at is None


def test_downloads(emu: Any, org: str) -> None:
    """Downloads list the linux x64 tarball with its SHA-256."""
    downloads = client_for(emu, org).downloads()
    x64 = [d for d in downloads if d.os == "linux" and d.architecture == "x64"]
    assert x64 and x64[0].sha256_checksum == emu.tarball_sha256
    assert x64[0].download_url.startswith(emu.url)


# -- GitHub App ------------------------------------------------------------------------------


@pytest.fixture
def app(emu: Any, org: str, public_key_pem: str) -> tuple[int, int]:
    app_id, installations = emu.add_app(None, public_key_pem, installations=[org])
    return app_id, installations[org]


@pytest.mark.parametrize("sub", ["", "/app"])
def test_app_auth(emu: Any, org: str, app: tuple[int, int], private_key_pem: str, sub: str) -> None:
    """The App finds its installation, mints one token and reuses it."""
    client = client_for(emu, org + sub, AppAuth(app[0], private_key_pem))
    access = client.check_access()
    assert access.auth == "app" and access.installation_id == app[1]
    client.list_runners()
    client.registration_token()
    lookup = "GET /repos/{owner}/{repo}/installation" if sub else "GET /orgs/{org}/installation"
    assert api_calls(emu)[lookup] == 1
    assert api_calls(emu)["POST /app/installations/{installation_id}/access_tokens"] == 1
    assert client.calls["installation_token"] == 1


def test_app_with_installation_id_skips_lookup(emu: Any, org: str, app: tuple[int, int], private_key_pem: str) -> None:
    """A given installation id saves the lookup."""
    client_for(emu, org, AppAuth(app[0], private_key_pem, installation_id=app[1])).list_runners()
    assert "GET /orgs/{org}/installation" not in api_calls(emu)


def test_app_not_installed(emu: Any, org: str, app: tuple[int, int], private_key_pem: str) -> None:
    """An org without the App installed says to install it."""
    with pytest.raises(NotFound, match="not installed"):
        client_for(emu, org + "x", AppAuth(app[0], private_key_pem)).list_runners()


def test_app_wrong_key(emu: Any, org: str, app: tuple[int, int]) -> None:
    """A key that is not the App's gives BadCredentials."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    with pytest.raises(BadCredentials):
        client_for(emu, org, AppAuth(app[0], other)).list_runners()


def test_app_token_refreshed_near_expiry(emu: Any, org: str, app: tuple[int, int], private_key_pem: str) -> None:
    """Shortly before the installation token expires, the next call mints a new one."""
    client = client_for(emu, org, AppAuth(app[0], private_key_pem, installation_id=app[1]))
    client.list_runners()
    emu.advance_clock(3600 - 200)  # inside the 5-minute refresh margin
    client.list_runners()
    assert client.calls["installation_token"] == 2


def test_app_lacking_permission(emu: Any, org: str, public_key_pem: str, private_key_pem: str) -> None:
    """An installation without the runner permission gets PermissionDenied."""
    app_id, _ = emu.add_app(None, public_key_pem, installations={org: {"metadata": "read"}})
    with pytest.raises(PermissionDenied, match="Self-hosted runners"):
        client_for(emu, org, AppAuth(app_id, private_key_pem)).registration_token()


def test_app_refused_for_enterprise(emu: Any, private_key_pem: str) -> None:
    """Enterprise scope with App auth fails before any request."""
    with pytest.raises(InvalidInput):
        client_for(emu, "enterprises/e", AppAuth(1, private_key_pem))
    assert api_calls(emu) == {}


# -- faults and rate limits -------------------------------------------------------------------


def test_5xx_burst_is_retried(emu: Any, org: str) -> None:
    """Two 502s then success: three attempts, no error."""
    emu.set_faults(errors=2, error_status=502)
    client = client_for(emu, org)
    client.list_runners()
    assert client.calls["list_runners"] == 3


def test_persistent_5xx_is_server_error(emu: Any, org: str) -> None:
    """A 503 that does not go away ends in ServerError after max_retries."""
    emu.set_faults(errors=50, error_status=503)
    with pytest.raises(ServerError, match="503"):
        client_for(emu, org, max_retries=2).registration_token()
    assert sum(api_calls(emu).values()) == 3


def test_dropped_connection_is_retried(emu: Any, org: str) -> None:
    """A dropped connection is retried transparently."""
    emu.set_faults(drop=1)
    client = client_for(emu, org)
    client.get_runner(client.generate_jitconfig("drop", ["x"]).runner.id)


def test_dropped_connections_end_in_unavailable(emu: Any, org: str) -> None:
    """Connections that keep dropping end in GitHubUnavailable."""
    emu.set_faults(drop=50)
    with pytest.raises(GitHubUnavailable):
        client_for(emu, org, max_retries=2).list_runners()


def test_slow_answer_times_out(emu: Any, org: str) -> None:
    """An answer slower than the timeout counts as unavailable (bounded retries)."""
    emu.set_faults(latency=1.0)
    with pytest.raises(GitHubUnavailable):
        client_for(emu, org, timeout=0.2, max_retries=1).list_runners()
    # The emulator finishes (and logs) both slow requests later; wait so the next test's log is clean.
    deadline = time.monotonic() + 10
    while api_calls(emu).get("GET /orgs/{org}/actions/runners", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_secondary_limit_with_retry_after(emu: Any, org: str) -> None:
    """A secondary limit with retry-after waits that long, then succeeds."""
    emu.set_faults(secondary=1, retry_after=7)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        emu.advance_clock(seconds)

    client_for(emu, org, sleep=sleep).registration_token()
    assert waits == [7.0]


@pytest.mark.parametrize("status", [403, 429])
def test_secondary_limit_over_max_wait(emu: Any, org: str, status: int) -> None:
    """Without retry-after the wait is at least 60 s; over max_wait that is RateLimited."""
    emu.set_faults(secondary=1, retry_after=None, secondary_status=status)
    with pytest.raises(RateLimited, match="max_wait"):
        client_for(emu, org, max_wait=30).registration_token()


def test_exhausted_primary_limit(emu: Any, org: str) -> None:
    """An exhausted primary limit raises RateLimited with the reset time."""
    emu.set_faults(exhaust=True)
    with pytest.raises(RateLimited) as info:
        client_for(emu, org, max_wait=10).list_runners()
    assert info.value.retry_at is not None and info.value.retry_at.timestamp() > emu.state.now()


def test_primary_limit_waits_for_reset(public_key_pem: str) -> None:
    """With a tiny quota the client waits for the reset (emulator clock) and carries on."""
    from emulator import Emulator

    with Emulator(rate_limit=3, rate_window=30) as small:
        client = client_for(small, "acme", max_wait=60)
        for _ in range(5):
            client.list_runners()
        assert client.calls["list_runners"] == 5  # the spent limit was waited out, not hit


def test_jit_answer_lost_is_recovered(emu: Any, org: str) -> None:
    """If the answer to generate-jitconfig is lost, the retry reclaims the name and succeeds."""

    class LosesFirstJit(requests.Session):
        lost = False

        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            resp = super().send(request, **kwargs)
            if not self.lost and (request.url or "").endswith("/generate-jitconfig"):
                self.lost = True
                raise requests.ConnectionError("connection reset after the request was processed")
            return resp

    client = client_for(emu, org, session=LosesFirstJit())
    jit = client.generate_jitconfig("lost-1", ["x"])
    runners = client.list_runners(name="lost-1")
    assert [r.id for r in runners] == [jit.runner.id]
    assert client.calls["generate_jitconfig"] == 3 and client.calls["delete_runner"] == 1


# -- what each operation costs (the emulator's request log) ------------------------------------

COSTS = {
    # operation: API requests it sends with a PAT (App auth adds 2 on first use: lookup + token)
    "check_access": 1,
    "registration_token": 1,
    "remove_token": 1,
    "generate_jitconfig": 1,
    "list_runners": 1,  # per 100 runners
    "get_runner": 1,
    "delete_runner": 1,
    "runner_labels": 1,
    "set_runner_labels": 1,
    "add_runner_labels": 1,
    "remove_runner_label": 1,
    "find_runner_group": 1,  # org/enterprise; 0 for a repository
    "runner_deprecation": 1,
    "downloads": 1,
}


@pytest.mark.parametrize("operation", sorted(COSTS))
def test_operation_cost(emu: Any, org: str, operation: str) -> None:
    """Each high-level operation costs the documented number of API requests."""
    client = client_for(emu, org)
    runner_id = client.generate_jitconfig("cost", ["x"]).runner.id
    client.add_runner_labels(runner_id, ["extra"])
    emu.reset_requests()
    args: dict[str, tuple[Any, ...]] = {
        "generate_jitconfig": ("cost-2", ["x"]),
        "get_runner": (runner_id,),
        "delete_runner": (runner_id,),
        "runner_labels": (runner_id,),
        "set_runner_labels": (runner_id, ["a"]),
        "add_runner_labels": (runner_id, ["b"]),
        "remove_runner_label": (runner_id, "extra"),
        "find_runner_group": ("Default",),
        "runner_deprecation": ("2.320.0",),
    }
    getattr(client, operation)(*args.get(operation, ()))
    assert sum(api_calls(emu).values()) == COSTS[operation]


def test_app_first_use_costs_two_more(emu: Any, org: str, app: tuple[int, int], private_key_pem: str) -> None:
    """App auth: installation lookup + token mint once, then nothing extra per call."""
    client = client_for(emu, org, AppAuth(app[0], private_key_pem))
    client.registration_token()
    assert sum(api_calls(emu).values()) == 3
    client.registration_token()
    assert sum(api_calls(emu).values()) == 4


def test_one_app_client_shared_by_threads(emu: Any, org: str, app: tuple[int, int], private_key_pem: str) -> None:
    """One App client used from several threads mints one token and loses no call."""
    import threading

    client = client_for(emu, org, AppAuth(app[0], private_key_pem))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(5):
                client.generate_jitconfig(f"t{n}-{i}", ["x"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(client.list_runners()) == 30
    assert client.calls["installation_token"] == 1 and client.calls["installation_lookup"] == 1
