"""Scope URLs: which scope, which API root, and what is refused."""

from __future__ import annotations

import pytest

from github_client import InvalidInput, parse_scope


@pytest.mark.parametrize(
    ("url", "kind", "owner", "repo", "enterprise", "api"),
    [
        ("https://github.com/acme", "org", "acme", None, None, "https://api.github.com"),
        ("https://github.com/acme/", "org", "acme", None, None, "https://api.github.com"),
        ("https://github.com/acme/app", "repo", "acme", "app", None, "https://api.github.com"),
        ("https://github.com/acme/app.git", "repo", "acme", "app", None, "https://api.github.com"),
        ("https://github.com/acme/my.repo_x-1", "repo", "acme", "my.repo_x-1", None, "https://api.github.com"),
        ("https://github.com/enterprises/big-co", "enterprise", None, None, "big-co", "https://api.github.com"),
        ("https://ghe.example.com/acme", "org", "acme", None, None, "https://ghe.example.com/api/v3"),
        ("https://GHE.example.com:8443/acme/app", "repo", "acme", "app", None, "https://ghe.example.com:8443/api/v3"),
        ("https://ghe.example.com/enterprises/x", "enterprise", None, None, "x", "https://ghe.example.com/api/v3"),
        ("http://127.0.0.1:8080/acme", "org", "acme", None, None, "http://127.0.0.1:8080/api/v3"),
        ("http://localhost:9/acme/app", "repo", "acme", "app", None, "http://localhost:9/api/v3"),
        ("http://[::1]:8080/acme", "org", "acme", None, None, "http://[::1]:8080/api/v3"),
        ("https://octo.ghe.com/acme", "org", "acme", None, None, "https://api.octo.ghe.com"),
    ],
)
def test_parse_scope(
    url: str, kind: str, owner: str | None, repo: str | None, enterprise: str | None, api: str
) -> None:
    """A web URL names the scope kind, its parts and the API root."""
    scope = parse_scope(url)
    assert (scope.kind, scope.owner, scope.repo, scope.enterprise, scope.api_url) == (
        kind,
        owner,
        repo,
        enterprise,
        api,
    )


def test_web_url_is_normalised() -> None:
    """Trailing slashes and .git are dropped, the host lower-cased, the port kept."""
    assert parse_scope("http://LOCALHOST:81/acme/app.git/").web_url == "http://localhost:81/acme/app"


def test_explicit_api_url_wins() -> None:
    """An explicit API root overrides the derived one (trailing slash dropped)."""
    scope = parse_scope("https://ghe.example.com/acme", api_url="https://api.ghe.example.com/v3/")
    assert scope.api_url == "https://api.ghe.example.com/v3"


@pytest.mark.parametrize(
    ("scope_path", "prefix"),
    [
        ("acme", "/orgs/acme/actions"),
        ("acme/app", "/repos/acme/app/actions"),
        ("enterprises/e", "/enterprises/e/actions"),
    ],
)
def test_actions_path(scope_path: str, prefix: str) -> None:
    """Each scope kind has its own REST prefix."""
    assert parse_scope(f"https://github.com/{scope_path}").actions_path == prefix


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "github.com/acme",
        "ftp://github.com/acme",
        "https://github.com",
        "https://github.com/",
        "https://github.com/acme/app/extra",
        "https://github.com/enterprises",
        "https://github.com/enterprises/",
        "https://github.com/-acme",
        "https://github.com/ac me",
        "https://github.com/acme/a%20b",
        "https://github.com/acme?x=1",
        "https://github.com/acme#frag",
        "https://user:pass@github.com/acme",
        "https://api.github.com/acme",
        "https://github.com:99999/acme",
        "https://github.com/acme/..",
    ],
)
def test_malformed_scope_url_is_refused(url: str) -> None:
    """Malformed scope URLs raise InvalidInput naming scope_url."""
    with pytest.raises(InvalidInput) as info:
        parse_scope(url)
    assert info.value.field == "scope_url"
    assert "scope_url" in str(info.value)


@pytest.mark.parametrize(
    "api_url", ["ghe.example.com/api/v3", "ftp://x/api", "https://u:p@x/api/v3", "https://x/api?q=1"]
)
def test_malformed_api_url_is_refused(api_url: str) -> None:
    """A malformed explicit API root raises InvalidInput naming api_url."""
    with pytest.raises(InvalidInput) as info:
        parse_scope("https://ghe.example.com/acme", api_url=api_url)
    assert info.value.field == "api_url"
