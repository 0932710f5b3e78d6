"""Runner scopes (repository, organisation, enterprise) parsed from a web URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

from ._errors import InvalidInput

ScopeKind = Literal["repo", "org", "enterprise"]

# GitHub's own rules: logins are alphanumerics and single hyphens, at most 39 chars;
# repository names alphanumerics, '.', '_', '-' up to 100. Enterprise slugs like logins.
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,38})$")
_REPO = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_SLUG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,99})$")

_DOTCOM_HOSTS = {"github.com", "www.github.com"}


@dataclass(frozen=True)
class Scope:
    """Where runners live. ``api_url`` has no trailing slash."""

    kind: ScopeKind
    owner: str | None
    repo: str | None
    enterprise: str | None
    web_url: str
    api_url: str

    @property
    def actions_path(self) -> str:
        """REST prefix of the scope's Actions endpoints, e.g. ``/orgs/acme/actions``."""
        if self.kind == "repo":
            return f"/repos/{quote(self.owner or '')}/{quote(self.repo or '')}/actions"
        if self.kind == "org":
            return f"/orgs/{quote(self.owner or '')}/actions"
        return f"/enterprises/{quote(self.enterprise or '')}/actions"

    @property
    def label(self) -> str:
        """Human name used in messages: ``repository acme/app``, ``organisation acme``."""
        if self.kind == "repo":
            return f"repository {self.owner}/{self.repo}"
        if self.kind == "org":
            return f"organisation {self.owner}"
        return f"enterprise {self.enterprise}"


def _default_api_url(scheme: str, host: str, netloc_host: str) -> str:
    if host in _DOTCOM_HOSTS:
        return "https://api.github.com"
    # GitHub Enterprise Cloud with data residency serves its API at api.<sub>.ghe.com.
    if host.endswith(".ghe.com"):
        return f"https://api.{host}"
    # GHES (and the emulator): keep scheme and port so http://127.0.0.1:PORT works.
    return f"{scheme}://{netloc_host}/api/v3"


def _check_api_url(api_url: str) -> str:
    parts = urlsplit(api_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            "api_url", f"expected an http(s) URL such as https://ghe.example.com/api/v3, got {api_url!r}"
        )
    if parts.username or parts.password:
        raise InvalidInput("api_url", "must not embed credentials; pass them as PatAuth/AppAuth")
    if parts.query or parts.fragment:
        raise InvalidInput("api_url", f"must not have a query or fragment, got {api_url!r}")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def parse_scope(url: str, api_url: str | None = None) -> Scope:
    """Parse ``https://github.com/org[/repo]``, ``.../enterprises/slug`` or a GHES URL.

    ``api_url`` overrides the derived API root (e.g. a GHES behind a proxy).
    Raises :class:`InvalidInput` (field ``scope_url``) for anything else.
    """
    field = "scope_url"
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput(
            field, "is empty; expected e.g. https://github.com/my-org or https://github.com/my-org/my-repo"
        )
    raw = url.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(field, f"expected an http(s) URL such as https://github.com/my-org, got {raw!r}")
    if parts.username or parts.password:
        raise InvalidInput(field, "must not embed credentials; pass them as PatAuth/AppAuth")
    if parts.query or parts.fragment:
        raise InvalidInput(field, f"must not have a query or fragment, got {raw!r}")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(field, f"has an invalid port: {raw!r}") from None
    host = parts.hostname.lower()
    if host == "api.github.com":
        raise InvalidInput(field, "is the API root; give the web URL, e.g. https://github.com/my-org")
    netloc_host = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc_host = f"{netloc_host}:{port}"

    segments = [s for s in parts.path.split("/") if s]
    if segments and segments[-1].endswith(".git") and len(segments) == 2:
        segments[-1] = segments[-1][: -len(".git")]

    kind: ScopeKind
    owner = repo = enterprise = None
    if len(segments) == 2 and segments[0] == "enterprises":
        kind, enterprise = "enterprise", segments[1]
        if not _SLUG.match(enterprise):
            raise InvalidInput(field, f"{enterprise!r} is not a valid enterprise slug")
    elif len(segments) == 1:
        kind, owner = "org", segments[0]
        if owner == "enterprises" or not _LOGIN.match(owner):
            raise InvalidInput(field, f"{owner!r} is not a valid organisation name")
    elif len(segments) == 2:
        kind, owner, repo = "repo", segments[0], segments[1]
        if not _LOGIN.match(owner):
            raise InvalidInput(field, f"{owner!r} is not a valid owner name")
        if not _REPO.match(repo) or repo in (".", ".."):
            raise InvalidInput(field, f"{repo!r} is not a valid repository name")
    else:
        raise InvalidInput(
            field,
            f"expected https://HOST/ORG, https://HOST/OWNER/REPO or https://HOST/enterprises/SLUG, got {raw!r}",
        )

    path = "/".join(segments)
    web_url = f"{parts.scheme}://{netloc_host}/{path}"
    api = _check_api_url(api_url) if api_url else _default_api_url(parts.scheme, host, netloc_host)
    return Scope(kind=kind, owner=owner, repo=repo, enterprise=enterprise, web_url=web_url, api_url=api)
