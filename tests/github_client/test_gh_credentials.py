"""The credentials seam: a mapping (file or stack-config form) or the environment into an auth object and a client."""

from __future__ import annotations

from typing import Any

import pytest

from github_client import (
    AppAuth,
    CredentialsError,
    CredentialsMissing,
    GitHubClient,
    GitHubError,
    PatAuth,
    auth_from_env,
    auth_from_mapping,
    client_from_credentials,
    credentials_from_env,
)

TOKEN = "ghp_seamtoken0123456789"


@pytest.mark.parametrize("data", [{"type": "pat", "token": TOKEN}, {"token": TOKEN, "scope": "https://github.com/o"}])
def test_pat_from_either_form(data: dict[str, Any]) -> None:
    """The manager's file form and the stack-config form both give a PatAuth; other keys are ignored."""
    auth = auth_from_mapping(data)
    assert isinstance(auth, PatAuth) and auth.token == TOKEN and TOKEN not in repr(auth)


@pytest.mark.parametrize("form", ["file", "camel", "snake"])
def test_app_from_either_form(private_key_pem: str, form: str) -> None:
    """An App from the file form, the camelCase config form or snake_case keys: same AppAuth."""
    data: dict[str, Any] = {
        "file": {"type": "app", "app_id": "123", "private_key": private_key_pem, "installation_id": 9},
        "camel": {"appId": 123, "privateKey": private_key_pem, "installationId": "9"},
        "snake": {"app_id": 123, "private_key": private_key_pem, "installation_id": 9},
    }[form]
    auth = auth_from_mapping(data)
    assert isinstance(auth, AppAuth) and (auth.app_id, auth.installation_id) == (123, 9)


@pytest.mark.parametrize(("data", "where", "field"), [
    ({"type": "pat"}, "credentials", "credentials.token"),
    ({"type": "pat", "token": "  "}, "credentials", "credentials.token"),
    ({"type": "oauth"}, "credentials", "credentials.type"),
    ({"type": "app", "app_id": 1, "private_key": "nope-secret"}, "credentials", "credentials.private_key"),
    ({"type": "app", "app_id": True, "private_key": "x"}, "credentials", "credentials.app_id"),
    ({"appId": 1}, "ghr:github", "ghr:github.privateKey"),
    ({"privateKey": "nope-secret"}, "ghr:github", "ghr:github.appId"),
    ({"appId": 1, "privateKey": "-----BEGIN PRIVATE KEY-----nope-secret", "installationId": "x"}, "ghr:github",
     "ghr:github.installationId"),
])
def test_errors_name_the_field_never_the_secret(data: dict[str, Any], where: str, field: str) -> None:
    """A malformed mapping is refused with the field's name, in the caller's spelling, and no secret."""
    with pytest.raises(CredentialsError) as info:
        auth_from_mapping(data, where=where)
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")
    assert "nope-secret" not in str(info.value)


def test_unparsable_key_names_the_field(private_key_pem: str) -> None:
    """A PEM that does not load is refused as the private key, without quoting it."""
    lines = private_key_pem.splitlines()
    broken = "\n".join([lines[0], "QUJD" * 16, *lines[2:]])
    with pytest.raises(CredentialsError, match=r"^credentials\.private_key: cannot load the App key") as info:
        auth_from_mapping({"type": "app", "app_id": 1, "private_key": broken})
    assert "QUJD" not in str(info.value)


def test_an_empty_config_form_is_missing() -> None:
    """No token and no App key: CredentialsMissing (a CredentialsError)."""
    with pytest.raises(CredentialsMissing, match="ghr:github"):
        auth_from_mapping({"scope": "https://github.com/o"}, where="ghr:github")


def test_errors_are_github_errors_and_value_errors() -> None:
    """Callers may catch GitHubError (every error of the package) or ValueError (refused input)."""
    assert issubclass(CredentialsError, GitHubError) and issubclass(CredentialsError, ValueError)


def test_environment_token_and_scrub() -> None:
    """GHR_GITHUB_TOKEN gives a PatAuth; with scrub every GHR_GITHUB_* variable is removed."""
    env = {"GHR_GITHUB_TOKEN": TOKEN, "GHR_GITHUB_APP_ID": "1", "OTHER": "1"}
    assert credentials_from_env(env) == {"token": TOKEN}
    auth = auth_from_env(env, scrub=True)
    assert isinstance(auth, PatAuth) and env == {"OTHER": "1"}


def test_environment_app(private_key_pem: str) -> None:
    """GHR_GITHUB_APP_ID + GHR_GITHUB_APP_PRIVATE_KEY [+ installation id] give an AppAuth."""
    env = {"GHR_GITHUB_APP_ID": "42", "GHR_GITHUB_APP_PRIVATE_KEY": private_key_pem,
           "GHR_GITHUB_APP_INSTALLATION_ID": "7"}
    auth = auth_from_env(env)
    assert isinstance(auth, AppAuth) and (auth.app_id, auth.installation_id) == (42, 7)
    assert "GHR_GITHUB_APP_ID" in env  # no scrub unless asked


def test_environment_without_credentials_is_none() -> None:
    """No variable set: None (the caller says what to set)."""
    assert auth_from_env({}) is None and credentials_from_env({}) is None


def test_half_an_app_in_the_environment_names_the_missing_variable() -> None:
    """An App id without its key is refused naming GHR_GITHUB_APP_PRIVATE_KEY."""
    env = {"GHR_GITHUB_APP_ID": "42"}
    with pytest.raises(CredentialsError, match="^GHR_GITHUB_APP_PRIVATE_KEY: "):
        auth_from_env(env, scrub=True)
    assert env == {}  # scrubbed even on error


@pytest.mark.parametrize("credentials", [{"token": TOKEN}, {"type": "pat", "token": TOKEN}, PatAuth(TOKEN)])
def test_client_from_credentials(credentials: Any) -> None:
    """A mapping or an auth object, a scope URL and an API URL make a client for that scope."""
    client = client_from_credentials(credentials, "http://127.0.0.1:9/acme", "http://127.0.0.1:9/api/v3",
                                     timeout=5.0, max_retries=0, user_agent="ghr-test")
    assert isinstance(client, GitHubClient)
    assert (client.scope.kind, client.scope.owner, client.scope.api_url) == ("org", "acme", "http://127.0.0.1:9/api/v3")


def test_client_from_bad_credentials_fails_before_any_request() -> None:
    """A malformed mapping fails at construction, naming the field under `where`."""
    with pytest.raises(CredentialsError, match=r"^ghr:github\.token: "):
        client_from_credentials({"type": "pat", "token": ""}, "https://github.com/acme", where="ghr:github")


def test_manager_error_is_the_same_class() -> None:
    """pool_manager.credentials.CredentialsError stays importable and is github_client's."""
    from pool_manager.credentials import CredentialsError as ManagerError

    assert ManagerError is CredentialsError
