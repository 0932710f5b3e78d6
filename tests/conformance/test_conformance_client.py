"""Every request github_client sends, and every emulator answer it relies on, against GitHub's
own OpenAPI description (pinned @octokit/openapi; enterprise paths against ghec)."""

from __future__ import annotations

from typing import Any

import pytest
from oa_spec import Recorder, match, validate

from github_client import (
    AppAuth,
    BadCredentials,
    Conflict,
    GitHubClient,
    GitHubError,
    NotFound,
    PatAuth,
    PermissionDenied,
    parse_scope,
)

PREFIXES = {
    "repo": ("acme/app", "/repos/{owner}/{repo}/actions"),
    "org": ("acme", "/orgs/{org}/actions"),
    "enterprise": ("enterprises/big", "/enterprises/{enterprise}/actions"),
}


def client(emu: Any, path: str, auth: PatAuth | AppAuth | None = None) -> GitHubClient:
    return GitHubClient(
        parse_scope(f"{emu.url}/{path}"), auth or PatAuth(emu.admin_token), sleep=emu.advance_clock, clock=emu.state.now
    )


def exercise(c: GitHubClient, tag: str) -> None:
    """Call every operation of the client once (plus a second page of runners)."""
    c.check_access()
    c.registration_token()
    c.remove_token()
    jit = c.generate_jitconfig(f"conf-{tag}", ["self-hosted", "linux"])
    for i in range(100):  # 101 runners: the list needs two pages and follows the Link header
        c.generate_jitconfig(f"conf-{tag}-{i}", ["x"])
    assert len(c.list_runners()) >= 101
    c.list_runners(name=f"conf-{tag}")
    c.get_runner(jit.runner.id)
    c.runner_labels(jit.runner.id)
    c.add_runner_labels(jit.runner.id, ["gpu", "big"])
    c.set_runner_labels(jit.runner.id, ["gpu"])
    c.remove_runner_label(jit.runner.id, "gpu")
    c.set_runner_labels(jit.runner.id, [])
    c.list_runner_groups()
    c.find_runner_group("Default")
    c.runner_deprecation("2.320.0")
    c.runner_deprecation("2.330.0")
    c.downloads()
    c.delete_runner(jit.runner.id)


def assert_conforms(rec: Recorder) -> None:
    problems = [p for ex in rec.exchanges for p in validate(ex)]
    assert rec.exchanges, "nothing was recorded"
    assert not problems, f"{len(problems)} departure(s) from the OpenAPI description:\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("kind", ["repo", "org", "enterprise"])
def test_pat_operations_conform(emu: Any, recorder: Recorder, kind: str) -> None:
    """Each operation's request and the emulator's answer match the pinned description."""
    path, prefix = PREFIXES[kind]
    exercise(client(emu, path), kind)
    assert_conforms(recorder)
    seen = {(ex.method, match(ex).template) for ex in recorder.exchanges}  # type: ignore[union-attr]
    wanted = {
        ("POST", f"{prefix}/runners/registration-token"),
        ("POST", f"{prefix}/runners/remove-token"),
        ("POST", f"{prefix}/runners/generate-jitconfig"),
        ("GET", f"{prefix}/runners"),
        ("GET", f"{prefix}/runners/{{runner_id}}"),
        ("DELETE", f"{prefix}/runners/{{runner_id}}"),
        ("GET", f"{prefix}/runners/{{runner_id}}/labels"),
        ("POST", f"{prefix}/runners/{{runner_id}}/labels"),
        ("PUT", f"{prefix}/runners/{{runner_id}}/labels"),
        ("DELETE", f"{prefix}/runners/{{runner_id}}/labels/{{name}}"),
        ("GET", f"{prefix}/runners/downloads"),
        ("GET", f"{prefix}/runners/deprecations/{{version}}"),
    }
    if kind != "repo":
        wanted.add(("GET", f"{prefix}/runner-groups"))
    assert wanted <= seen, f"not exercised: {sorted(wanted - seen)}"
    # Enterprise operations are checked against the ghec description.
    specs = {match(ex).spec_name for ex in recorder.exchanges if ex.api_path.startswith("/enterprises/")}  # type: ignore[union-attr]
    assert specs <= {"ghec"}


@pytest.mark.parametrize("kind", ["repo", "org"])
def test_app_operations_conform(emu: Any, recorder: Recorder, app_key: tuple[str, str], kind: str) -> None:
    """The App flow (installation lookup, token mint) and App-authenticated calls conform."""
    private, public = app_key
    account = f"app{kind}"
    app_id, _ = emu.add_app(None, public, installations=[account])
    path = f"{account}/app" if kind == "repo" else account
    c = client(emu, path, AppAuth(app_id, private))
    c.check_access()
    jit = c.generate_jitconfig(f"app-{kind}", ["x"])
    c.list_runners()
    c.delete_runner(jit.runner.id)
    assert_conforms(recorder)
    templates = {match(ex).template for ex in recorder.exchanges}  # type: ignore[union-attr]
    lookup = "/repos/{owner}/{repo}/installation" if kind == "repo" else "/orgs/{org}/installation"
    assert {lookup, "/app/installations/{installation_id}/access_tokens"} <= templates


def test_error_answers_conform(emu: Any, recorder: Recorder, app_key: tuple[str, str]) -> None:
    """401, 403, 404, 409 and 422 answers have GitHub's documented error shape."""
    c = client(emu, "errs")
    jit = c.generate_jitconfig("errs-1", ["x"])
    with pytest.raises(Conflict):
        c.generate_jitconfig("errs-1", ["x"])
    with pytest.raises(GitHubError):
        c.generate_jitconfig("errs-2", ["x"], runner_group_id=999)
    c.delete_runner(jit.runner.id)
    with pytest.raises(NotFound):
        c.get_runner(jit.runner.id)
    with pytest.raises(NotFound):
        c.remove_runner_label(c.generate_jitconfig("errs-3", ["x"]).runner.id, "absent")
    with pytest.raises(BadCredentials):
        client(emu, "errs", PatAuth("ghp_" + "0" * 36)).list_runners()
    with pytest.raises(PermissionDenied):
        client(emu, "errs", PatAuth(emu.add_pat("ghp_conformance_noscope", scopes=[]))).list_runners()
    private, public = app_key
    app_id, _ = emu.add_app(None, public, installations=["elsewhere"])
    with pytest.raises(NotFound):
        client(emu, "errs", AppAuth(app_id, private)).list_runners()
    statuses = {ex.status for ex in recorder.exchanges}
    assert {401, 403, 404, 409} <= statuses
    assert_conforms(recorder)


def test_client_sends_github_headers(emu: Any, recorder: Recorder) -> None:
    """Every request carries a supported API version, GitHub's media type and a User-Agent."""
    client(emu, "hdrs").list_runners()
    for headers in recorder.headers:
        assert headers["X-GitHub-Api-Version"] in {"2022-11-28", "2026-03-10"}
        assert headers["Accept"] == "application/vnd.github+json"
        assert headers["User-Agent"]
        assert headers["Authorization"].startswith("Bearer ")


def test_other_emulator_endpoints_conform(emu: Any, recorder: Recorder, app_key: tuple[str, str]) -> None:
    """Emulator endpoints outside the client (App installations, rate limit, enterprise install) conform."""
    import requests

    private, public = app_key
    app_id, _ = emu.add_app(None, public, installations=["extras", "enterprises/extras"])
    jwt_token = AppAuth(app_id, private).jwt(emu.state.now())
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "t"}
    with requests.Session() as s:
        app_h = {**headers, "Authorization": f"Bearer {jwt_token}"}
        assert s.get(f"{emu.api_url}/app/installations", headers=app_h, timeout=10).status_code == 200
        assert s.get(f"{emu.api_url}/orgs/extras/installation", headers=app_h, timeout=10).status_code == 200
        ent = s.get(f"{emu.api_url}/enterprises/extras/installation", headers=app_h, timeout=10)
        assert ent.status_code == 200
        pat_h = {**headers, "Authorization": f"Bearer {emu.admin_token}"}
        assert s.get(f"{emu.api_url}/rate_limit", headers=pat_h, timeout=10).status_code == 200
    assert len(recorder.exchanges) == 4
    assert_conforms(recorder)
