"""A widely used third-party client (PyGithub) works against the emulator, and what it
exchanges with it conforms to the pinned OpenAPI description too."""

from __future__ import annotations

from typing import Any

import github
import pytest
from oa_spec import Recorder, validate

# PyGithub treats every list endpoint as paginated and sends per_page even where GitHub
# documents none (runners/downloads). GitHub ignores unknown query parameters.
PYGITHUB_EXTRA_QUERY = frozenset({"per_page", "page"})


@pytest.fixture
def gh(emu: Any) -> github.Github:
    # retry=None: a failure must show, not be papered over. No write throttling on loopback
    # (PyGithub waits 1 s between writes by default, meant for GitHub's secondary limits).
    return github.Github(
        base_url=emu.api_url,
        auth=github.Auth.Token(emu.admin_token),
        lazy=True,
        retry=None,
        timeout=10,
        per_page=100,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )


def lazy_org(gh: github.Github, login: str) -> github.Organization.Organization:
    """An Organization object without fetching GET /orgs/{org}: the runner API is all we need
    (and all the emulator serves); PyGithub's get_organization has no lazy mode."""
    return github.Organization.Organization(
        gh.requester, {}, {"url": f"{gh.requester.base_url}/orgs/{login}", "login": login}, completed=False
    )


def test_org_runners_with_pygithub(emu: Any, gh: github.Github, recorder: Recorder) -> None:
    """PyGithub mints tokens and a JIT config, lists (two pages), gets and deletes org runners."""
    recorder.client = "PyGithub"
    org = lazy_org(gh, "pyg")
    reg = org.create_self_hosted_runner_registration_token()
    assert reg.token and reg.expires_at is not None
    assert org.create_self_hosted_runner_remove_token().token
    jit = org.create_self_hosted_runner_jitconfig("pyg-1", 1, ["self-hosted", "linux"])
    assert jit.encoded_jit_config and jit.runner.name == "pyg-1"
    for i in range(100):
        org.create_self_hosted_runner_jitconfig(f"pyg-page-{i}", 1, ["x"])

    runners = list(org.get_self_hosted_runners())
    assert len(runners) == 101
    got = org.get_self_hosted_runner(jit.runner.id)
    assert (got.name, got.status, got.busy) == ("pyg-1", "offline", False)
    assert [label["name"] for label in got.labels] == ["self-hosted", "linux"]
    downloads = list(org.get_self_hosted_runner_applications())
    assert any(d.os == "linux" and d.architecture == "x64" for d in downloads)

    org.delete_self_hosted_runner(jit.runner.id)
    with pytest.raises(github.UnknownObjectException):
        org.get_self_hosted_runner(jit.runner.id)
    assert len(list(org.get_self_hosted_runners())) == 100

    problems = [p for ex in recorder.exchanges for p in validate(ex, PYGITHUB_EXTRA_QUERY)]
    assert not problems, "\n".join(problems[:40])


def test_repo_runners_with_pygithub(emu: Any, gh: github.Github, recorder: Recorder) -> None:
    """PyGithub lists, gets and removes repository runners."""
    from github_client import GitHubClient, PatAuth, parse_scope

    ours = GitHubClient(parse_scope(f"{emu.url}/pyg/app"), PatAuth(emu.admin_token))
    made = ours.generate_jitconfig("pyg-repo-1", ["x"]).runner
    recorder.exchanges.clear()

    repo = gh.get_repo("pyg/app", lazy=True)
    assert [r.id for r in repo.get_self_hosted_runners()] == [made.id]
    assert repo.get_self_hosted_runner(made.id).name == "pyg-repo-1"
    assert repo.remove_self_hosted_runner(made.id) is True
    assert list(repo.get_self_hosted_runners()) == []

    problems = [p for ex in recorder.exchanges for p in validate(ex, PYGITHUB_EXTRA_QUERY)]
    assert not problems, "\n".join(problems[:40])


def test_pygithub_error_mapping(emu: Any, recorder: Recorder) -> None:
    """Bad credentials reach PyGithub as its BadCredentialsException (emulator error shape is GitHub's)."""
    bad = github.Github(
        base_url=emu.api_url,
        auth=github.Auth.Token("ghp_" + "9" * 36),
        lazy=True,
        retry=None,
        seconds_between_requests=None,
        seconds_between_writes=None,
    )
    with pytest.raises(github.BadCredentialsException):
        list(lazy_org(bad, "pyg").get_self_hosted_runners())
