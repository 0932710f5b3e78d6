"""Credentials the emulator accepts: classic PATs, GitHub Apps (RS256 JWT) and their installation tokens,
plus the per-principal primary rate limit. Raw tokens are keys here and never leave this module
except in the answers that mint them."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ._errors import APP_DOCS, DOCS, ApiError
from ._state import iso

ALL_PAT_SCOPES = frozenset({"repo", "admin:org", "manage_runners:enterprise", "admin:enterprise", "workflow"})
# What the runner endpoints ask of each principal, by scope kind.
PAT_SCOPE_FOR = {"repo": "repo", "org": "admin:org", "enterprise": "manage_runners:enterprise"}
APP_PERMISSION_FOR = {"repo": "administration", "org": "organization_self_hosted_runners"}
DEFAULT_APP_PERMISSIONS = {"administration": "write", "organization_self_hosted_runners": "write", "metadata": "read"}
# Scopes that imply another (GitHub's classic scope hierarchy, the part that matters here).
_IMPLIED = {"admin:enterprise": {"manage_runners:enterprise"}}


def bad_credentials() -> ApiError:
    return ApiError(401, "Bad credentials", DOCS)


def fingerprint(token: str) -> str:
    """A stable, non-reversible name for a token: used for rate-limit buckets and logs."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass
class Installation:
    id: int
    app_id: int
    account: str  # org login, or `enterprises/<slug>`
    permissions: dict[str, str]

    def as_json(self, base_url: str, app_slug: str) -> dict[str, Any]:
        target_type = "Enterprise" if self.account.startswith("enterprises/") else "Organization"
        login = self.account.split("/")[-1]
        api = f"{base_url}/api/v3"
        return {
            "id": self.id, "app_id": self.app_id, "app_slug": app_slug, "client_id": f"Iv1.{self.app_id:016x}",
            "target_id": int(hashlib.sha256(login.encode()).hexdigest()[:8], 16), "target_type": target_type,
            "account": {"login": login, "id": int(hashlib.sha256(login.encode()).hexdigest()[:8], 16),
                        "node_id": f"O_{login}", "avatar_url": f"{base_url}/avatars/{login}", "gravatar_id": "",
                        "url": f"{api}/users/{login}", "html_url": f"{base_url}/{login}",
                        "followers_url": f"{api}/users/{login}/followers",
                        "following_url": f"{api}/users/{login}/following{{/other_user}}",
                        "gists_url": f"{api}/users/{login}/gists{{/gist_id}}",
                        "starred_url": f"{api}/users/{login}/starred{{/owner}}{{/repo}}",
                        "subscriptions_url": f"{api}/users/{login}/subscriptions",
                        "organizations_url": f"{api}/users/{login}/orgs", "repos_url": f"{api}/users/{login}/repos",
                        "events_url": f"{api}/users/{login}/events{{/privacy}}",
                        "received_events_url": f"{api}/users/{login}/received_events",
                        "type": target_type, "site_admin": False,
                        # GET /app/installations describes account as allOf(simple-user, enterprise).
                        "name": login, "slug": login, "created_at": "2026-01-01T00:00:00Z",
                        "updated_at": "2026-01-01T00:00:00Z"},
            "repository_selection": "all", "access_tokens_url": f"{api}/app/installations/{self.id}/access_tokens",
            "repositories_url": f"{api}/installation/repositories",
            "html_url": f"{base_url}/organizations/{login}/settings/installations/{self.id}",
            "events": [], "permissions": dict(self.permissions), "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "single_file_name": None, "suspended_by": None,
            "suspended_at": None,
        }


@dataclass
class App:
    id: int
    public_key: Any
    slug: str
    installations: dict[int, Installation] = field(default_factory=dict)


@dataclass
class Principal:
    """Who made a request. `key` names the rate-limit bucket; it is a fingerprint, never the token."""

    kind: str  # pat | jwt | installation | runner_admin | anonymous
    key: str
    scopes: frozenset[str] = frozenset()
    app: App | None = None
    installation: Installation | None = None
    scope: str | None = None  # runner_admin tokens: the one scope they serve
    limit: int = 5000


@dataclass
class _InstallToken:
    installation_id: int
    expires_at: float
    permissions: dict[str, str]


class Credentials:
    def __init__(self, now: Callable[[], float], *, installation_token_ttl: float = 3600.0,
                 rate_limit: int = 5000, installation_rate_limit: int = 5000, rate_window: float = 3600.0) -> None:
        self.now = now
        self.lock = threading.Lock()
        self.installation_token_ttl = installation_token_ttl
        self.rate_limit = rate_limit
        self.installation_rate_limit = installation_rate_limit
        self.rate_window = rate_window
        self.pats: dict[str, frozenset[str]] = {}
        self.apps: dict[int, App] = {}
        self.install_tokens: dict[str, _InstallToken] = {}
        self._next_install = 1000
        self._next_app = 100
        # bucket key -> (window start, used)
        self.buckets: dict[str, tuple[float, int]] = {}
        self.exhausted = False  # fault: every bucket reads as empty
        self.limit_status = 403  # GitHub answers an exhausted primary limit with 403 or 429

    # ---- registration of credentials ----------------------------------------------------
    def add_pat(self, token: str | None = None, scopes: Iterable[str] = ALL_PAT_SCOPES) -> str:
        token = token or "ghp_" + secrets.token_urlsafe(27).replace("-", "a").replace("_", "b")[:36]
        scopes = frozenset(scopes)
        for s in list(scopes):
            scopes |= _IMPLIED.get(s, set())
        with self.lock:
            self.pats[token] = scopes
        return token

    def remove_pat(self, token: str) -> None:
        with self.lock:
            self.pats.pop(token, None)

    def add_app(self, app_id: int | None, public_key_pem: str | bytes,
                installations: Iterable[str] | Mapping[str, Mapping[str, str] | None] = ()) -> tuple[int, dict[str, int]]:
        pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
        if b"PRIVATE KEY" in pem:
            raise ValueError("add_app wants the app's public key, not its private key")
        key = load_pem_public_key(pem)
        with self.lock:
            if app_id is None:
                self._next_app += 1
                app_id = self._next_app
            app = self.apps.get(app_id) or App(app_id, key, f"emulated-app-{app_id}")
            app.public_key = key
            self.apps[app_id] = app
            ids: dict[str, int] = {}
            items = installations.items() if isinstance(installations, Mapping) else ((a, None) for a in installations)
            for account, perms in items:
                acct = account.lower()
                existing = [i for i in app.installations.values() if i.account == acct]
                if existing:
                    inst = existing[0]
                else:
                    self._next_install += 1
                    inst = Installation(self._next_install, app_id, acct, dict(DEFAULT_APP_PERMISSIONS))
                    app.installations[inst.id] = inst
                if perms is not None:
                    inst.permissions = dict(perms)
                ids[account] = inst.id
            return app_id, ids

    # ---- authentication -----------------------------------------------------------------
    def verify_jwt(self, token: str) -> App:
        try:
            header_claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise ApiError(401, "A JSON web token could not be decoded", APP_DOCS) from exc
        iss = str(header_claims.get("iss", ""))
        app = None
        with self.lock:
            for a in self.apps.values():
                if iss in (str(a.id), f"Iv1.{a.id:016x}"):
                    app = a
        if app is None:
            raise ApiError(401, "A JSON web token could not be decoded", APP_DOCS)
        try:
            # Expiry is checked against the emulator clock (tests may advance it), not by PyJWT.
            claims = jwt.decode(token, app.public_key, algorithms=["RS256"],
                                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                                         "require": ["iat", "exp", "iss"]})
        except jwt.PyJWTError as exc:
            raise ApiError(401, "A JSON web token could not be decoded", APP_DOCS) from exc
        now = self.now()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, (int, float)) or iat > now + 60:
            raise ApiError(401, "'Issued at' claim ('iat') must be an Integer representing the time that the "
                           "assertion was issued.", APP_DOCS)
        if not isinstance(exp, (int, float)) or exp <= now:
            raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value representing the future "
                           "time at which the assertion expires.", APP_DOCS)
        if exp - iat > 600 + 60:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future.", APP_DOCS)
        return app

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal behind an Authorization header; None when absent. Raises 401 for a bad one."""
        if not authorization:
            return None
        parts = authorization.split(None, 1)
        if len(parts) != 2 or parts[0].lower() not in ("bearer", "token"):
            raise bad_credentials()
        token = parts[1].strip()
        if token.count(".") == 2 and token.startswith("eyJ"):
            app = self.verify_jwt(token)
            return Principal("jwt", f"app:{app.id}", app=app)
        with self.lock:
            scopes = self.pats.get(token)
            if scopes is not None:
                return Principal("pat", f"pat:{fingerprint(token)}", scopes=scopes, limit=self.rate_limit)
            it = self.install_tokens.get(token)
            if it is not None:
                if it.expires_at <= self.now():
                    del self.install_tokens[token]
                    raise bad_credentials()
                app_id = next((a.id for a in self.apps.values() if it.installation_id in a.installations), None)
                if app_id is None:
                    raise bad_credentials()
                app = self.apps[app_id]
                inst = Installation(it.installation_id, app_id, app.installations[it.installation_id].account,
                                    it.permissions)
                return Principal("installation", f"inst:{fingerprint(token)}", app=app, installation=inst,
                                 limit=self.installation_rate_limit)
        return Principal("unknown", f"tok:{fingerprint(token)}")

    def installation_token(self, app: App, installation_id: int, requested: Mapping[str, str] | None) -> dict[str, Any]:
        inst = app.installations.get(installation_id)
        if inst is None:
            raise ApiError(404, "Not Found", APP_DOCS)
        perms = dict(inst.permissions)
        if requested:
            rank = {"read": 1, "write": 2, "admin": 3}
            for name, level in requested.items():
                if rank.get(perms.get(name, ""), 0) < rank.get(level, 9):
                    raise ApiError(422, "The permissions requested are not granted to this installation.", APP_DOCS)
            perms = dict(requested)
        token = "ghs_" + secrets.token_hex(18)
        expires = self.now() + self.installation_token_ttl
        with self.lock:
            self.install_tokens[token] = _InstallToken(installation_id, expires, perms)
        return {"token": token, "expires_at": iso(expires), "permissions": perms, "repository_selection": "all"}

    # ---- primary rate limit -------------------------------------------------------------
    def consume(self, p: Principal, cost: int = 1) -> dict[str, str]:
        """Count a request against the principal's bucket; raise 403 once it is empty. Returns the headers."""
        with self.lock:
            now = self.now()
            start, used = self.buckets.get(p.key, (now, 0))
            if now - start >= self.rate_window:
                start, used = now, 0
            reset = int(start + self.rate_window)
            if self.exhausted or used + cost > p.limit:
                headers = {"x-ratelimit-limit": str(p.limit), "x-ratelimit-remaining": "0",
                           "x-ratelimit-used": str(p.limit if self.exhausted else used),
                           "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"}
                self.buckets[p.key] = (start, used)
                who = f"installation ID {p.installation.id}" if p.installation else "user ID 1"
                raise ApiError(self.limit_status, f"API rate limit exceeded for {who}.",
                               "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api", headers=headers)
            used += cost
            self.buckets[p.key] = (start, used)
            return {"x-ratelimit-limit": str(p.limit), "x-ratelimit-remaining": str(p.limit - used),
                    "x-ratelimit-used": str(used), "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"}

    def peek(self, p: Principal) -> dict[str, int]:
        with self.lock:
            now = self.now()
            start, used = self.buckets.get(p.key, (now, 0))
            if now - start >= self.rate_window:
                start, used = now, 0
            remaining = 0 if self.exhausted else p.limit - used
            return {"limit": p.limit, "remaining": remaining, "used": p.limit - remaining, "reset": int(start + self.rate_window)}
