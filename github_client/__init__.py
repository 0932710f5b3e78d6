"""The one GitHub REST client of this project: self-hosted runners for a repo, org or enterprise.

    from github_client import GitHubClient, PatAuth, parse_scope

    client = GitHubClient(parse_scope("https://github.com/acme"), PatAuth(token))
    # or from a credentials mapping ({"token": ...}, {"type": "app", ...}) or the environment:
    client = client_from_credentials(auth_from_env() or {"token": token}, "https://github.com/acme")
    jit = client.generate_jitconfig("pool-1-abc123", ["self-hosted", "linux"])

Every error is a :class:`GitHubError` subclass whose message says what to do; no
message, log line or ``repr`` carries a secret. Use :func:`redact` (or attach
:class:`RedactingFilter` to a log handler) for your own output.
"""

from ._auth import JWT_BACKDATE, JWT_LIFETIME, AppAuth, PatAuth
from ._client import DEFAULT_GROUP, MAX_PAGES, PER_PAGE, TRANSIENT_ERRORS, GitHubClient
from ._credentials import (
    ENV_VARS,
    Auth,
    CredentialsError,
    CredentialsMissing,
    auth_from_env,
    auth_from_mapping,
    client_from_credentials,
    credentials_from_env,
)
from ._errors import (
    BadCredentials,
    Conflict,
    GitHubError,
    GitHubUnavailable,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    Unprocessable,
)
from ._http import API_VERSION, DEFAULT_USER_AGENT
from ._models import (
    Access,
    JitConfig,
    RequestEvent,
    Runner,
    RunnerDeprecation,
    RunnerDownload,
    RunnerGroup,
    Token,
)
from ._redact import REDACTED, RedactingFilter, redact, register_secret
from ._scaleset import (
    ADMIN_TOKEN_REFRESH_MARGIN,
    LONG_POLL_TIMEOUT,
    MAX_CAPACITY_HEADER,
    SCALESET_API_VERSION,
    SCALESET_KIND_PREFIX,
    SESSION_CONFLICT_DELAY,
    Agent,
    JobAssigned,
    JobAvailable,
    JobCompleted,
    JobMessage,
    JobStarted,
    JobStillRunning,
    MessageBatch,
    MessageError,
    MessageSession,
    RunnerExists,
    RunnerReference,
    ScaleSet,
    ScaleSetClient,
    ScaleSetJitConfig,
    Session,
    SessionConflict,
    Statistics,
    jwt_expiry,
    parse_job_message,
    parse_message_batch,
)
from ._scope import Scope, ScopeKind, parse_scope
from ._validate import MAX_LABEL_LENGTH, MAX_LABELS, MAX_RUNNER_NAME_LENGTH

__all__ = [
    "ADMIN_TOKEN_REFRESH_MARGIN",
    "API_VERSION",
    "DEFAULT_GROUP",
    "DEFAULT_USER_AGENT",
    "ENV_VARS",
    "JWT_BACKDATE",
    "JWT_LIFETIME",
    "LONG_POLL_TIMEOUT",
    "MAX_CAPACITY_HEADER",
    "MAX_LABELS",
    "MAX_LABEL_LENGTH",
    "MAX_PAGES",
    "MAX_RUNNER_NAME_LENGTH",
    "PER_PAGE",
    "REDACTED",
    "SCALESET_API_VERSION",
    "SCALESET_KIND_PREFIX",
    "SESSION_CONFLICT_DELAY",
    "TRANSIENT_ERRORS",
    "Access",
    "Agent",
    "AppAuth",
    "Auth",
    "BadCredentials",
    "Conflict",
    "CredentialsError",
    "CredentialsMissing",
    "GitHubClient",
    "GitHubError",
    "GitHubUnavailable",
    "InvalidInput",
    "JitConfig",
    "JobAssigned",
    "JobAvailable",
    "JobCompleted",
    "JobMessage",
    "JobStarted",
    "JobStillRunning",
    "MessageBatch",
    "MessageError",
    "MessageSession",
    "NotFound",
    "PatAuth",
    "PermissionDenied",
    "RateLimited",
    "RedactingFilter",
    "RequestEvent",
    "Runner",
    "RunnerDeprecation",
    "RunnerDownload",
    "RunnerExists",
    "RunnerGroup",
    "RunnerReference",
    "ScaleSet",
    "ScaleSetClient",
    "ScaleSetJitConfig",
    "Scope",
    "ScopeKind",
    "ServerError",
    "Session",
    "SessionConflict",
    "Statistics",
    "Token",
    "Unprocessable",
    "auth_from_env",
    "auth_from_mapping",
    "client_from_credentials",
    "credentials_from_env",
    "jwt_expiry",
    "parse_job_message",
    "parse_message_batch",
    "parse_scope",
    "redact",
    "register_secret",
]
