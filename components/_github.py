"""The GitHub side of a pool, shared by the RunnerRegistration, RunnerPoolReady and RunnerScaleSet providers.

Plain functions: credentials from the provider's ``configure()`` (``ghr:github``) or the
environment, the client for a pool's scope, the pool's runners by name prefix and their counts; and
:class:`GitHubProvider`, the small base the three GitHub-side providers share (configure, an empty
pickled state, their credentials and client), so their classes stay where stack states name them.
Credentials are parsed by :mod:`github_client` (``client_from_credentials``); they live in the
provider process only (the providers pickle an empty state). :func:`config_client` serves the
program's own checks and the status command, which start from the validated :class:`GitHubConfig`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from pulumi.dynamic import ConfigureRequest, ResourceProvider

if TYPE_CHECKING:
    from .config import GitHubConfig

from github_client import CredentialsMissing, GitHubClient, Runner, client_from_credentials, credentials_from_env

__all__ = [
    "CONFIG_KEY", "STALE_LIST_MAX", "USER_AGENT", "CredentialsMissing", "GitHubProvider", "config_client", "configure",
    "configured_credentials", "credentials", "name_pattern", "pool_client", "pool_runners", "summary",
]

CONFIG_KEY = "ghr:github"
STALE_LIST_MAX = 20
USER_AGENT = "ghr-pulumi/0.1"
_SLOT = "_github"  # where configure() keeps the credentials on the provider instance (never pickled)


def configured_credentials(value: object) -> dict[str, Any] | None:
    """The ``ghr:github`` config value (an object or its JSON) when it holds a token or an App key."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, Mapping):
        return None
    github = {str(k): v for k, v in value.items()}
    if github.get("token") or github.get("privateKey") or github.get("private_key"):
        return github
    return None


def configure(state: MutableMapping[str, Any], req: ConfigureRequest) -> None:
    """A provider's ``configure``: keep the stack's ``ghr:github`` credentials in ``state`` (its ``__dict__``)."""
    github = configured_credentials(req.config.get(CONFIG_KEY))
    if github is not None:
        state[_SLOT] = github


def credentials(state: Mapping[str, Any], resource: str) -> Mapping[str, Any]:
    """What ``configure`` kept, else the ``GHR_GITHUB_*`` environment; CredentialsMissing if neither."""
    creds = state.get(_SLOT) or credentials_from_env()
    if not creds:
        raise CredentialsMissing(
            f"no GitHub credentials reached the {resource} provider: set ghr:github.token "
            "(pulumi config set --secret --path ghr:github.token <PAT>) or ghr:github.appId + "
            "ghr:github.privateKey, or export GHR_GITHUB_TOKEN"
        )
    return creds


def pool_client(creds: Mapping[str, Any], props: Mapping[str, Any], *, timeout: float = 10.0,
                max_retries: int = 3) -> GitHubClient:
    """A client for the pool's scope (``scope_url``, ``api_url``) with bounded timeouts and retries."""
    return client_from_credentials(creds, props["scope_url"], props.get("api_url") or None, where=CONFIG_KEY,
                                   timeout=timeout, max_retries=max_retries, max_wait=30.0, user_agent=USER_AGENT)


def config_client(github: GitHubConfig, *, timeout: float, max_retries: int, max_wait: float,
                  user_agent: str = USER_AGENT) -> GitHubClient:
    """A client for the stack's scope from its validated ``ghr:github`` (PAT or App)."""
    creds: dict[str, Any] = ({"token": github.token} if github.auth == "pat" else
                             {"appId": github.app_id, "privateKey": github.private_key,
                              "installationId": github.installation_id})
    return client_from_credentials(creds, github.scope_url, github.api_url, where=CONFIG_KEY, timeout=timeout,
                                   max_retries=max_retries, max_wait=max_wait, user_agent=user_agent)


def name_pattern(prefix: str) -> re.Pattern[str]:
    """Runner names of one pool on one host: ``<prefix>-<slot>-<random6>``."""
    return re.compile(rf"^{re.escape(prefix)}-\d+-[a-z0-9]{{6}}$")


def pool_runners(client: GitHubClient, prefix: str) -> list[Runner]:
    """The scope's runners that belong to the pool with this name prefix."""
    pattern = name_pattern(prefix)
    return [r for r in client.list_runners() if pattern.match(r.name)]


def summary(runners: Sequence[Runner]) -> dict[str, Any]:
    """Counts of a pool's runners (online, busy, idle, offline, total) and the stale (offline) names."""
    online = [r for r in runners if r.status == "online"]
    busy = [r for r in online if r.busy]
    offline = [r for r in runners if r.status != "online"]
    return {
        "total": len(runners),
        "online": len(online),
        "busy": len(busy),
        "idle": len(online) - len(busy),
        "offline": len(offline),
        "stale": sorted(r.name for r in offline)[:STALE_LIST_MAX],
    }


class GitHubProvider(ResourceProvider):
    """Base of the GitHub-side dynamic providers: keeps what ``configure`` gave it, pickles nothing.

    A subclass names its resource in ``resource`` (for the missing-credentials message). Subclasses are
    pickled into stack states by reference (module and class name) with an empty state: configured
    credentials are process-local, and whatever an older version pickled (nothing, so far) is ignored
    on load, since ``configure()`` runs again.
    """

    serialize_as_secret_always = False  # nothing secret is captured: the provider pickles to a class reference
    resource = "GitHub"

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: object) -> None:
        pass

    def configure(self, req: ConfigureRequest) -> None:
        configure(self.__dict__, req)

    def _credentials(self) -> Mapping[str, Any]:
        return credentials(self.__dict__, self.resource)

    def _client(self, props: Mapping[str, Any], *, timeout: float = 10.0, max_retries: int = 3) -> GitHubClient:
        return pool_client(self._credentials(), props, timeout=timeout, max_retries=max_retries)
