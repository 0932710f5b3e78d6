"""Authentication: classic PAT scopes, GitHub App JWTs, installation tokens, runner-registration tokens."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from emu_helpers import Api, app_jwt, public_pem

from emulator import Emulator

SCOPE_NEEDS = [
    ("/repos/acme/widgets/actions", "repo"),
    ("/orgs/acme/actions", "admin:org"),
    ("/enterprises/bigco/actions", "manage_runners:enterprise"),
]


def test_no_credentials_is_401(api: Api) -> None:
    """Runner endpoints need authentication."""
    r = api.get("/orgs/acme/actions/runners", token=None)
    assert r.status_code == 401 and r.json()["message"] == "Requires authentication"


@pytest.mark.parametrize("header", ["Bearer nope", "token nope", "Basic Zm9vOmJhcg==", "Bearer"])
def test_bad_token_is_401(api: Api, header: str) -> None:
    """An unknown token or scheme answers 401 Bad credentials, and the token is not echoed."""
    r = api.get("/orgs/acme/actions/runners", token=None, headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["message"] == "Bad credentials"
    assert "nope" not in r.text


def test_token_scheme_is_accepted(api: Api) -> None:
    """`Authorization: token <pat>` works like Bearer."""
    r = api.get("/orgs/acme/actions/runners", token=None, headers={"Authorization": f"token {api.emu.admin_token}"})
    assert r.status_code == 200


@pytest.mark.parametrize("prefix,needed", SCOPE_NEEDS)
def test_pat_with_the_needed_scope_passes(api: Api, emu: Emulator, prefix: str, needed: str) -> None:
    """A classic PAT with exactly the documented scope may manage runners of that scope kind."""
    pat = emu.add_pat(None, [needed])
    r = api.post(f"{prefix}/runners/registration-token", token=pat)
    assert r.status_code == 201
    assert r.headers["X-OAuth-Scopes"] == needed and r.headers["X-Accepted-OAuth-Scopes"] == needed


@pytest.mark.parametrize("prefix,needed", SCOPE_NEEDS)
def test_pat_without_the_scope_is_403(api: Api, emu: Emulator, prefix: str, needed: str) -> None:
    """A PAT lacking the scope answers 403 with GitHub's message and the accepted scopes header."""
    others = [s for _, s in SCOPE_NEEDS if s != needed]
    pat = emu.add_pat("ghp_partial", others)
    r = api.get(f"{prefix}/runners", token=pat)
    assert r.status_code == 403
    assert r.json()["message"] == "Resource not accessible by personal access token"
    assert r.headers["X-Accepted-OAuth-Scopes"] == needed


def test_admin_enterprise_implies_manage_runners(api: Api, emu: Emulator) -> None:
    """admin:enterprise includes manage_runners:enterprise."""
    pat = emu.add_pat(None, ["admin:enterprise"])
    assert api.get("/enterprises/bigco/actions/runners", token=pat).status_code == 200


def test_removed_pat_is_401(api: Api, emu: Emulator) -> None:
    """A revoked PAT stops working."""
    pat = emu.add_pat(None, ["admin:org"])
    emu.remove_pat(pat)
    assert api.get("/orgs/acme/actions/runners", token=pat).status_code == 401


class TestApp:
    @pytest.fixture
    def app(self, emu: Emulator, app_key: rsa.RSAPrivateKey) -> tuple[int, dict[str, int]]:
        return emu.add_app(42, public_pem(app_key), installations=["acme", "enterprises/bigco"])

    def test_jwt_lists_installations(self, api: Api, app_key: rsa.RSAPrivateKey, app: tuple[int, dict[str, int]]) -> None:
        """GET /app/installations with a valid JWT lists the app's installations."""
        r = api.get("/app/installations", token=app_jwt(app_key, 42))
        assert r.status_code == 200
        assert {i["account"]["login"] for i in r.json()} == {"acme", "bigco"}
        assert all(i["app_id"] == 42 for i in r.json())

    @pytest.mark.parametrize("path,account", [("/repos/acme/widgets/installation", "acme"),
                                              ("/orgs/acme/installation", "acme"),
                                              ("/enterprises/bigco/installation", "bigco")])
    def test_installation_lookup(self, api: Api, app_key: rsa.RSAPrivateKey, app: tuple[int, dict[str, int]],
                                 path: str, account: str) -> None:
        """The repo/org/enterprise installation lookups find the installation on the owner."""
        r = api.get(path, token=app_jwt(app_key, 42))
        assert r.status_code == 200 and r.json()["account"]["login"] == account

    def test_installation_lookup_unknown_owner_is_404(self, api: Api, app_key: rsa.RSAPrivateKey,
                                                       app: tuple[int, dict[str, int]]) -> None:
        """An owner without the app installed answers 404."""
        assert api.get("/orgs/other/installation", token=app_jwt(app_key, 42)).status_code == 404

    @pytest.mark.parametrize("iat,exp,message", [
        (-700, -60, "'Expiration time' claim"),
        (-60, 1200, "too far in the future"),
        (300, 500, "'Issued at' claim"),
    ], ids=["expired", "too-long", "issued-in-future"])
    def test_bad_jwt_times_are_401(self, api: Api, app_key: rsa.RSAPrivateKey, app: tuple[int, dict[str, int]],
                                   iat: int, exp: int, message: str) -> None:
        """Expired, too long-lived or future-issued JWTs answer 401."""
        r = api.get("/app/installations", token=app_jwt(app_key, 42, iat_offset=iat, exp_offset=exp))
        assert r.status_code == 401 and message in r.json()["message"]

    def test_jwt_signed_by_another_key_is_401(self, api: Api, other_key: rsa.RSAPrivateKey,
                                             app: tuple[int, dict[str, int]]) -> None:
        """A JWT whose signature does not verify answers 401."""
        r = api.get("/app/installations", token=app_jwt(other_key, 42))
        assert r.status_code == 401 and r.json()["message"] == "A JSON web token could not be decoded"

    def test_jwt_of_unknown_app_is_401(self, api: Api, app_key: rsa.RSAPrivateKey,
                                       app: tuple[int, dict[str, int]]) -> None:
        """A JWT for an app id the emulator does not know answers 401."""
        assert api.get("/app/installations", token=app_jwt(app_key, 7)).status_code == 401

    def test_hs256_jwt_is_401(self, api: Api, app: tuple[int, dict[str, int]]) -> None:
        """Only RS256 is accepted."""
        token = jwt.encode({"iat": 0, "exp": 1, "iss": "42"}, "secret-key-long-enough-for-hs256-xxxxxxxx",
                           algorithm="HS256")
        assert api.get("/app/installations", token=token).status_code == 401

    def test_pat_on_app_endpoint_is_401(self, api: Api, app: tuple[int, dict[str, int]]) -> None:
        """App endpoints want a JWT."""
        assert api.get("/app/installations").status_code == 401

    def _install_token(self, api: Api, key: rsa.RSAPrivateKey, iid: int, **body: object) -> dict[str, Any]:
        r = api.post(f"/app/installations/{iid}/access_tokens", token=app_jwt(key, 42), json=body or None)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def test_installation_token_manages_org_runners(self, api: Api, app_key: rsa.RSAPrivateKey,
                                                    app: tuple[int, dict[str, int]]) -> None:
        """An installation token on the org may mint JIT configs for the org and its repos."""
        tok = self._install_token(api, app_key, app[1]["acme"])
        assert tok["expires_at"] and tok["permissions"]["organization_self_hosted_runners"] == "write"
        r = api.post("/orgs/acme/actions/runners/generate-jitconfig", token=str(tok["token"]),
                     json={"name": "app-r", "runner_group_id": 1, "labels": ["x"]})
        assert r.status_code == 201
        assert api.get("/repos/acme/widgets/actions/runners", token=str(tok["token"])).status_code == 200

    def test_installation_token_other_org_is_403(self, api: Api, app_key: rsa.RSAPrivateKey,
                                                app: tuple[int, dict[str, int]]) -> None:
        """An installation token does not reach another account."""
        tok = self._install_token(api, app_key, app[1]["acme"])
        r = api.get("/orgs/other/actions/runners", token=str(tok["token"]))
        assert r.status_code == 403 and r.json()["message"] == "Resource not accessible by integration"

    def test_app_tokens_are_refused_on_enterprise(self, api: Api, app_key: rsa.RSAPrivateKey,
                                                  app: tuple[int, dict[str, int]]) -> None:
        """Enterprise runner endpoints refuse GitHub App tokens, even from an enterprise installation."""
        tok = self._install_token(api, app_key, app[1]["enterprises/bigco"])
        r = api.post("/enterprises/bigco/actions/runners/registration-token", token=str(tok["token"]))
        assert r.status_code == 403

    def test_jwt_is_refused_on_runner_endpoints(self, api: Api, app_key: rsa.RSAPrivateKey,
                                                app: tuple[int, dict[str, int]]) -> None:
        """The App JWT itself cannot manage runners; an installation token is needed."""
        assert api.get("/orgs/acme/actions/runners", token=app_jwt(app_key, 42)).status_code == 403

    def test_missing_permission_is_403(self, api: Api, emu: Emulator, app_key: rsa.RSAPrivateKey) -> None:
        """An installation without the runner permission gets 403; read allows GET only."""
        _, ids = emu.add_app(43, public_pem(app_key), installations={"acme": {"organization_self_hosted_runners": "read"}})
        r = api.post(f"/app/installations/{ids['acme']}/access_tokens", token=app_jwt(app_key, 43))
        tok = r.json()["token"]
        assert api.get("/orgs/acme/actions/runners", token=tok).status_code == 200
        assert api.post("/orgs/acme/actions/runners/registration-token", token=tok).status_code == 403
        assert api.get("/repos/acme/widgets/actions/runners", token=tok).status_code == 403  # needs administration

    def test_requesting_more_permission_than_granted_is_422(self, api: Api, emu: Emulator,
                                                           app_key: rsa.RSAPrivateKey) -> None:
        """An access token cannot ask for more than the installation has."""
        _, ids = emu.add_app(44, public_pem(app_key), installations={"acme": {"administration": "read"}})
        r = api.post(f"/app/installations/{ids['acme']}/access_tokens", token=app_jwt(app_key, 44),
                     json={"permissions": {"administration": "write"}})
        assert r.status_code == 422

    def test_unknown_installation_is_404(self, api: Api, app_key: rsa.RSAPrivateKey,
                                         app: tuple[int, dict[str, int]]) -> None:
        """Access tokens for an installation of another app answer 404."""
        assert api.post("/app/installations/999999/access_tokens", token=app_jwt(app_key, 42)).status_code == 404

    def test_installation_token_expires(self, app_key: rsa.RSAPrivateKey) -> None:
        """An installation token stops working after its configured lifetime (emulator clock)."""
        with Emulator(installation_token_ttl=120) as emu:
            api = Api(emu, None)
            _, ids = emu.add_app(42, public_pem(app_key), installations=["acme"])
            tok = self._install_token(api, app_key, ids["acme"])
            assert api.get("/orgs/acme/actions/runners", token=str(tok["token"])).status_code == 200
            emu.advance_clock(121)
            r = api.get("/orgs/acme/actions/runners", token=str(tok["token"]))
            assert r.status_code == 401 and r.json()["message"] == "Bad credentials"

    def test_add_app_refuses_a_private_key(self, emu: Emulator, app_key: rsa.RSAPrivateKey) -> None:
        """add_app wants the public key; a private key is a caller mistake."""
        from cryptography.hazmat.primitives import serialization
        pem = app_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        with pytest.raises(ValueError):
            emu.add_app(45, pem)


class TestRegistrationFlow:
    """The real runner's registration: runner-registration (RemoteAuth) then runners/register."""

    def _remote(self, api: Api, token: str, url: str, event: str = "register") -> requests.Response:
        return api.post("/actions/runner-registration", token=None, headers={"Authorization": f"RemoteAuth {token}"},
                        json={"url": url, "runner_event": event})

    def test_registration_answers_v2_flow(self, api: Api, emu: Emulator) -> None:
        """A registration token buys a runner-admin token and use_v2_flow: true."""
        reg = api.post("/repos/acme/widgets/actions/runners/registration-token").json()["token"]
        r = self._remote(api, reg, f"{emu.url}/acme/widgets")
        body = r.json()
        assert r.status_code == 200
        assert body["token_schema"] == "OAuthAccessToken" and body["use_v2_flow"] is True and body["url"]
        admin = body["token"]
        assert api.get("/repos/acme/widgets/actions/runners", token=admin).status_code == 200
        assert api.get("/repos/acme/other/actions/runners", token=admin).status_code == 403
        reg_body = {"url": f"{emu.url}/acme/widgets", "group_id": 1, "name": "cfg", "version": "2.337.0",
                    "updates_disabled": True, "ephemeral": False, "public_key": "",
                    "labels": [{"name": "self-hosted", "type": "read-only"}, {"name": "gpu", "type": "custom"}]}
        r2 = api.post("/actions/runners/register", token=admin, json=reg_body)
        assert r2.status_code == 201 and r2.json()["name"] == "cfg" and ".runner" in r2.json()["files"]
        assert api.post("/actions/runners/register", token=admin, json=reg_body).status_code == 409
        assert api.post("/actions/runners/register", token=admin, json={**reg_body, "replace": True}).status_code == 201

    @pytest.mark.parametrize("token", ["AWRONG", ""])
    def test_bad_registration_token_is_404(self, api: Api, emu: Emulator, token: str) -> None:
        """An unknown registration token answers 404 (the runner prints NotFound)."""
        assert self._remote(api, token or "x", f"{emu.url}/acme").status_code in (401, 404)

    def test_token_for_another_scope_is_404(self, api: Api, emu: Emulator) -> None:
        """A registration token only registers in its own scope."""
        reg = api.post("/orgs/acme/actions/runners/registration-token").json()["token"]
        assert self._remote(api, reg, f"{emu.url}/other").status_code == 404

    def test_remove_event_wants_a_remove_token(self, api: Api, emu: Emulator) -> None:
        """runner_event=remove accepts a remove token, not a registration token."""
        reg = api.post("/orgs/acme/actions/runners/registration-token").json()["token"]
        rem = api.post("/orgs/acme/actions/runners/remove-token").json()["token"]
        assert self._remote(api, reg, f"{emu.url}/acme", "remove").status_code == 404
        assert self._remote(api, rem, f"{emu.url}/acme", "remove").status_code == 200

    def test_registration_token_expires(self) -> None:
        """Registration tokens stop working after their lifetime (1 hour by default)."""
        with Emulator() as emu:
            api = Api(emu, emu.admin_token)
            reg = api.post("/orgs/acme/actions/runners/registration-token").json()["token"]
            assert self._remote(api, reg, f"{emu.url}/acme").status_code == 200
            emu.advance_clock(3601)
            assert self._remote(api, reg, f"{emu.url}/acme").status_code == 404

    def test_old_runner_version_cannot_register(self, api: Api, emu: Emulator) -> None:
        """Runners older than 2.329.0 can no longer register."""
        reg = api.post("/orgs/acme/actions/runners/registration-token").json()["token"]
        admin = self._remote(api, reg, f"{emu.url}/acme").json()["token"]
        r = api.post("/actions/runners/register", token=admin,
                     json={"url": f"{emu.url}/acme", "group_id": 1, "name": "old", "version": "2.300.0",
                           "labels": [{"name": "x", "type": "custom"}]})
        assert r.status_code == 400 and "deprecated" in r.json()["message"]
