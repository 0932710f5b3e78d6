"""The GitHub REST client for self-hosted runners."""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests

from ._auth import TOKEN_REFRESH_MARGIN, AppAuth, PatAuth, _CachedToken
from ._errors import Conflict, GitHubError, GitHubUnavailable, InvalidInput, NotFound, ServerError
from ._http import DEFAULT_USER_AGENT, Clock, Hook, Response, Sleep, Transport
from ._models import (
    Access,
    JitConfig,
    Runner,
    RunnerDeprecation,
    RunnerDownload,
    RunnerGroup,
    Token,
    parse_time,
)
from ._redact import register_secret
from ._scope import Scope
from ._validate import check_id, check_label, check_labels, check_runner_name, check_version, check_work_folder

log = logging.getLogger("github_client")

PER_PAGE = 100
# A runaway Link chain must not loop forever: 1,000 pages of 100 is far beyond any pool.
MAX_PAGES = 1000
DEFAULT_GROUP = RunnerGroup(id=1, name="Default", default=True)
_LINK_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')

_PERMISSION_HINT = {
    "repo": "the token lacks the `repo` scope (classic PAT) or `Administration: write` "
    "(fine-grained PAT / GitHub App), or the user is not an admin of the repository, "
    "needed for repository runners",
    "org": "the token lacks the `admin:org` scope (classic PAT) or `Self-hosted runners: write` "
    "organisation permission (fine-grained PAT / GitHub App), or the user is not an owner "
    "of the organisation, needed for organisation runners",
    "enterprise": "the token lacks the `manage_runners:enterprise` scope (classic PAT) needed for "
    "enterprise runners, or the user is not an enterprise admin",
}
_NOT_FOUND_HINT = (
    "check the scope URL; GitHub also answers 404 when the credentials cannot see the {label} "
    "(classic PAT without the needed scope, or an App not installed there)"
)


class GitHubClient:
    """One scope, one set of credentials. Thread-safe: share one instance between threads.

    ``sleep`` and ``clock`` are injectable so tests do not really wait; ``session`` lets
    a test wrap the HTTP layer; ``on_request`` is called once per HTTP attempt with a
    :class:`RequestEvent` and ``calls`` counts attempts by kind (e.g. for metrics).
    """

    def __init__(
        self,
        scope: Scope,
        auth: PatAuth | AppAuth,
        *,
        timeout: float = 10.0,
        max_retries: int = 5,
        max_wait: float = 60.0,
        user_agent: str = DEFAULT_USER_AGENT,
        session: requests.Session | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        on_request: Hook | None = None,
    ) -> None:
        if not isinstance(scope, Scope):
            raise InvalidInput("scope", "expected a Scope from parse_scope(url)")
        if not isinstance(auth, (PatAuth, AppAuth)):
            raise InvalidInput("auth", "expected PatAuth(token) or AppAuth(app_id, private_key_pem)")
        if isinstance(auth, AppAuth) and scope.kind == "enterprise":
            raise InvalidInput(
                "auth",
                "GitHub does not accept GitHub App tokens for enterprise runner endpoints; "
                "use a classic PAT with the manage_runners:enterprise scope",
            )
        if not (0 < timeout <= 300):
            raise InvalidInput("timeout", f"expected seconds in (0, 300], got {timeout!r}")
        if not (0 <= max_retries <= 20):
            raise InvalidInput("max_retries", f"expected 0..20, got {max_retries!r}")
        if not (0 <= max_wait <= 24 * 3600):
            raise InvalidInput("max_wait", f"expected seconds in [0, 86400], got {max_wait!r}")
        if not user_agent or not user_agent.strip():
            raise InvalidInput("user_agent", "GitHub requires a User-Agent; pass a non-empty string")
        self.scope = scope
        self.auth = auth
        self._t = Transport(
            scope.api_url,
            timeout=timeout,
            max_retries=max_retries,
            max_wait=max_wait,
            user_agent=user_agent,
            session=session,
            sleep=sleep,
            clock=clock,
            on_request=on_request,
        )

    def __repr__(self) -> str:
        return f"GitHubClient(scope={self.scope.web_url!r}, auth={self.auth!r})"

    @property
    def calls(self) -> Counter[str]:
        """HTTP attempts so far, by kind (``list_runners``, ``installation_token``, ...)."""
        with self._t._lock:
            return Counter(self._t.calls)

    # -- authentication -------------------------------------------------------------

    def _authorization(self) -> str:
        if isinstance(self.auth, PatAuth):
            return f"Bearer {self.auth.token}"
        return f"Bearer {self._installation_token()}"

    def _scope_key(self) -> str:
        return f"{self.scope.api_url}|{self.scope.kind}|{self.scope.owner}|{self.scope.repo}"

    def installation_id(self) -> int:
        """The App installation that covers this scope (given, or looked up once)."""
        auth = self.auth
        if not isinstance(auth, AppAuth):
            raise InvalidInput("auth", "installation_id() needs AppAuth")
        if auth.installation_id is not None:
            return auth.installation_id
        key = self._scope_key()
        # Held across the lookup: threads starting together make one request, not N.
        with auth._lock:
            cached = auth._installations.get(key)
            if cached is None:
                cached = auth._installations[key] = self._lookup_installation(auth)
            return cached

    def _lookup_installation(self, auth: AppAuth) -> int:
        if self.scope.kind == "repo":
            path = f"/repos/{quote(self.scope.owner or '')}/{quote(self.scope.repo or '')}/installation"
        else:
            path = f"/orgs/{quote(self.scope.owner or '')}/installation"
        jwt_token = auth.jwt(self._t.clock())
        resp = self._t.request(
            "GET",
            path,
            kind="installation_lookup",
            authorization=lambda: f"Bearer {jwt_token}",
            hints={
                404: f"the GitHub App {auth.app_id} is not installed on the {self.scope.label}; "
                "install it there, or pass installation_id",
                401: "check the App id and that the private key belongs to this App (and the machine clock)",
            },
        )
        return int(resp.body["id"])

    def _installation_token(self, force: bool = False) -> str:
        auth = self.auth
        assert isinstance(auth, AppAuth)
        # Hold the lock while minting: concurrent threads wait for one token, not mint N.
        with auth._lock:
            installation = self.installation_id()
            cached = auth._tokens.get(installation)
            now = self._t.clock()
            if cached is not None and not force and now < cached.expires_at:
                return cached.token
            jwt_token = auth.jwt(now)
            resp = self._t.request(
                "POST",
                f"/app/installations/{installation}/access_tokens",
                kind="installation_token",
                authorization=lambda: f"Bearer {jwt_token}",
                hints={
                    404: f"installation {installation} does not exist for App {auth.app_id}; check installation_id",
                    401: "check the App id and that the private key belongs to this App (and the machine clock)",
                    403: "the App installation is suspended or lacks the permission this needs",
                },
            )
            token = str(resp.body["token"])
            register_secret(token)
            expires = parse_time(resp.body.get("expires_at"))
            expires_epoch = expires.timestamp() if expires else now + 3600
            # Refresh margin: 5 minutes, or half the lifetime of a short-lived token.
            margin = min(TOKEN_REFRESH_MARGIN, max(0.0, (expires_epoch - now) / 2))
            auth._tokens[installation] = _CachedToken(token, expires_epoch - margin)
            return token

    def _drop_token(self) -> bool:
        """After a 401 with App auth: forget the cached token and retry once."""
        auth = self.auth
        if not isinstance(auth, AppAuth):
            return False
        with auth._lock:
            auth._tokens.clear()
        return True

    # -- request helper -------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        kind: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        hints: Mapping[int, str] | None = None,
    ) -> Response:
        merged = {
            403: _PERMISSION_HINT[self.scope.kind],
            404: _NOT_FOUND_HINT.format(label=self.scope.label),
        }
        merged.update(hints or {})
        return self._t.request(
            method,
            path,
            kind=kind,
            authorization=self._authorization,
            params=params,
            json=json,
            on_unauthorized=self._drop_token,
            hints=merged,
        )

    @property
    def _p(self) -> str:
        return self.scope.actions_path

    # -- access ---------------------------------------------------------------------

    def check_access(self) -> Access:
        """Prove the credentials reach the scope with runner-admin permission, in one call.

        Mints a registration token (POST needs the same write permission as everything
        the pool does; the unused token simply expires within the hour). With App auth,
        the installation lookup and token mint come first (cached afterwards).
        Raises BadCredentials, PermissionDenied or NotFound with a message saying what to fix.
        """
        resp = self._call("POST", f"{self._p}/runners/registration-token", "check_access")
        register_secret(str((resp.body or {}).get("token", "")))
        installation = self.installation_id() if isinstance(self.auth, AppAuth) else None
        return Access(
            scope=self.scope.label,
            auth="app" if isinstance(self.auth, AppAuth) else "pat",
            installation_id=installation,
            rate_limit_remaining=resp.rate_limit_remaining,
        )

    # -- tokens ---------------------------------------------------------------------

    def _token(self, which: str) -> Token:
        resp = self._call("POST", f"{self._p}/runners/{which}", which.replace("-", "_"))
        token = str(resp.body["token"])
        register_secret(token)
        return Token(token=token, expires_at=parse_time(resp.body.get("expires_at")))

    def registration_token(self) -> Token:
        """A token for ``config.sh --token`` (valid about an hour, reusable within it)."""
        return self._token("registration-token")

    def remove_token(self) -> Token:
        """A token for ``config.sh remove --token``."""
        return self._token("remove-token")

    # -- JIT ------------------------------------------------------------------------

    def generate_jitconfig(
        self,
        name: str,
        labels: Iterable[str],
        runner_group_id: int = 1,
        work_folder: str = "_work",
    ) -> JitConfig:
        """Register one just-in-time runner and return its encoded config (a secret).

        Retries after 5xx or a lost connection may find the name already taken by the
        attempt whose answer was lost (409). The config of that runner cannot be fetched
        again, so if a runner with this name exists, is offline and has never run a job
        (not busy, never connected) it is deleted and the registration repeated once.
        Any other 409 raises :class:`Conflict`.
        """
        name = check_runner_name(name)
        label_list = check_labels(labels)
        runner_group_id = check_id(runner_group_id, "runner_group_id")
        work_folder = check_work_folder(work_folder)
        body = {"name": name, "runner_group_id": runner_group_id, "labels": label_list, "work_folder": work_folder}
        hints = {
            409: f"a runner named {name!r} already exists in the {self.scope.label}; use a unique name "
            "or delete the old registration",
            422: "check the labels and runner_group_id (the group must exist and be visible to this scope)",
        }
        try:
            resp = self._call(
                "POST", f"{self._p}/runners/generate-jitconfig", "generate_jitconfig", json=body, hints=hints
            )
        except Conflict as exc:
            if (exc.attempts or 1) <= 1:
                raise  # first attempt: the name really was taken by someone else
            # An earlier attempt of ours probably created it; reclaim the name once.
            stale = [r for r in self.list_runners(name=name) if r.name == name]
            if not stale or any(r.online or r.busy or r.version for r in stale):
                raise
            for runner in stale:
                self.delete_runner(runner.id, missing_ok=True)
            log.warning("event=github_jit_reclaimed name=%s runner_id=%s", name, stale[0].id)
            resp = self._call(
                "POST", f"{self._p}/runners/generate-jitconfig", "generate_jitconfig", json=body, hints=hints
            )
        encoded = str(resp.body["encoded_jit_config"])
        register_secret(encoded)
        return JitConfig(runner=Runner.from_api(resp.body["runner"]), encoded_jit_config=encoded)

    # -- runners --------------------------------------------------------------------

    def _pages(self, path: str, kind: str, key: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        url: str | None = path
        query: dict[str, Any] | None = {**params, "per_page": PER_PAGE}
        for _ in range(MAX_PAGES):
            assert url is not None
            resp = self._call("GET", url, kind, params=query)
            body = resp.body or {}
            yield from body.get(key) or []
            url = _next_link(resp.headers.get("link"))
            if url is None:
                return
            url = self._t.rebase(url)
            query = None  # the next link carries the query
        raise GitHubError(f"GET {path} returned more than {MAX_PAGES} pages; stopping to stay bounded")

    def list_runners(self, name: str | None = None) -> list[Runner]:
        """Every runner of the scope (all pages), optionally only the one named ``name``."""
        params: dict[str, Any] = {}
        if name is not None:
            params["name"] = check_runner_name(name)
        return [Runner.from_api(item) for item in self._pages(f"{self._p}/runners", "list_runners", "runners", params)]

    def get_runner(self, runner_id: int) -> Runner:
        runner_id = check_id(runner_id, "runner_id")
        resp = self._call("GET", f"{self._p}/runners/{runner_id}", "get_runner")
        return Runner.from_api(resp.body)

    def delete_runner(self, runner_id: int, *, missing_ok: bool = False) -> bool:
        """Remove a registration. Returns False if it was already gone and ``missing_ok``.

        A runner in the middle of a job cannot be removed (422, :class:`Unprocessable`).
        """
        runner_id = check_id(runner_id, "runner_id")
        try:
            self._call(
                "DELETE",
                f"{self._p}/runners/{runner_id}",
                "delete_runner",
                hints={422: "the runner is running a job; wait for the job to end (or cancel it) and retry"},
            )
        except NotFound:
            if missing_ok:
                return False
            raise
        return True

    # -- runner groups --------------------------------------------------------------

    def list_runner_groups(self) -> list[RunnerGroup]:
        """Runner groups usable by this scope. Repository runners only have the Default group."""
        if self.scope.kind == "repo":
            return [DEFAULT_GROUP]
        prefix = self._p
        return [
            RunnerGroup.from_api(item)
            for item in self._pages(f"{prefix}/runner-groups", "list_runner_groups", "runner_groups", {})
        ]

    def find_runner_group(self, name: str) -> RunnerGroup:
        """The group named ``name`` (case-insensitive). Raises NotFound listing the known names."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("runner_group", "is empty; use 'Default' for the default group")
        groups = self.list_runner_groups()
        for group in groups:
            if group.name == name:
                return group
        for group in groups:
            if group.name.casefold() == name.casefold():
                return group
        known = ", ".join(repr(g.name) for g in groups) or "none"
        extra = " (repository runners can only join the Default group)" if self.scope.kind == "repo" else ""
        raise NotFound(
            f"runner group {name!r} not found in the {self.scope.label}{extra}; known groups: {known}; "
            "create it in the organisation's Actions settings or fix the pool's runner_group"
        )

    # -- labels ---------------------------------------------------------------------

    def _labels(self, method: str, runner_id: int, kind: str, json: Any = None, suffix: str = "") -> list[str]:
        runner_id = check_id(runner_id, "runner_id")
        resp = self._call(method, f"{self._p}/runners/{runner_id}/labels{suffix}", kind, json=json)
        return [str(label["name"]) for label in (resp.body or {}).get("labels") or []]

    def runner_labels(self, runner_id: int) -> list[str]:
        return self._labels("GET", runner_id, "runner_labels")

    def set_runner_labels(self, runner_id: int, labels: Iterable[str]) -> list[str]:
        """Replace the custom labels (an empty list removes them all); returns all labels."""
        return self._labels("PUT", runner_id, "set_runner_labels", {"labels": check_labels(labels, min_items=0)})

    def add_runner_labels(self, runner_id: int, labels: Iterable[str]) -> list[str]:
        return self._labels("POST", runner_id, "add_runner_labels", {"labels": check_labels(labels)})

    def remove_runner_label(self, runner_id: int, name: str) -> list[str]:
        label = check_label(name, "name")
        return self._labels("DELETE", runner_id, "remove_runner_label", suffix=f"/{quote(label, safe='')}")

    # -- versions and downloads -----------------------------------------------------

    def runner_deprecation(self, version: str) -> RunnerDeprecation:
        """When ``version`` stops registering / running jobs (a newer endpoint; GHES may 404)."""
        version = check_version(version)
        resp = self._call(
            "GET",
            f"{self._p}/runners/deprecations/{version}",
            "runner_deprecation",
            hints={404: "this GitHub (or GHES version) may not have the runner deprecation endpoint yet"},
        )
        return RunnerDeprecation.from_api(resp.body or {}, version)

    def downloads(self) -> list[RunnerDownload]:
        resp = self._call("GET", f"{self._p}/runners/downloads", "downloads")
        return [RunnerDownload.from_api(item) for item in resp.body or []]


def _next_link(header: str | None) -> str | None:
    if not header:
        return None
    match = _LINK_NEXT.search(header)
    return match.group(1) if match else None


# For callers that want to catch "GitHub is having trouble" as one family.
TRANSIENT_ERRORS: tuple[type[GitHubError], ...] = (ServerError, GitHubUnavailable)
