"""The runner REST surface for repository, organisation and enterprise scopes."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json

import pytest
import requests
from emu_helpers import Api

from emulator import Emulator

PREFIXES = {
    "repo": "/repos/acme/widgets/actions",
    "org": "/orgs/acme/actions",
    "enterprise": "/enterprises/bigco/actions",
}
ALL = pytest.mark.parametrize("prefix", list(PREFIXES.values()), ids=list(PREFIXES))


@ALL
@pytest.mark.parametrize("kind", ["registration-token", "remove-token"])
def test_tokens_are_created(api: Api, prefix: str, kind: str) -> None:
    """registration-token and remove-token answer 201 {token, expires_at}."""
    r = api.post(f"{prefix}/runners/{kind}")
    assert r.status_code == 201
    body = r.json()
    assert isinstance(body["token"], str) and len(body["token"]) >= 20
    assert body["expires_at"].endswith("Z")


@ALL
def test_jitconfig_creates_an_offline_runner(api: Api, prefix: str) -> None:
    """generate-jitconfig answers the runner (offline, os unknown) and a decodable config."""
    r = api.jit(prefix, "jit-1", ["self-hosted", "cpu"])
    assert r.status_code == 201
    body = r.json()
    runner = body["runner"]
    assert runner["name"] == "jit-1" and runner["status"] == "offline" and runner["os"] == "unknown"
    assert runner["busy"] is False and runner["ephemeral"] is True and runner["runner_group_id"] == 1
    assert [(lb["name"], lb["type"]) for lb in runner["labels"]] == [("self-hosted", "read-only"), ("cpu", "custom")]
    files = json.loads(base64.b64decode(body["encoded_jit_config"]))
    assert set(files) == {".runner", ".credentials", ".credentials_rsaparams"}
    conf = json.loads(base64.b64decode(files[".runner"]))
    assert conf["agentId"] == runner["id"] and conf["agentName"] == "jit-1" and conf["ephemeral"] is True


@ALL
def test_jitconfig_duplicate_name_is_409(api: Api, prefix: str) -> None:
    """A second runner with the same name in the same scope is refused with 409."""
    assert api.jit(prefix, "dup").status_code == 201
    r = api.jit(prefix, "DUP")
    assert r.status_code == 409
    assert "already exists" in r.json()["message"]
    assert r.json()["documentation_url"].startswith("https://docs.github.com")


@pytest.mark.parametrize("body", [
    {"runner_group_id": 1, "labels": ["a"]},
    {"name": "x", "labels": ["a"]},
    {"name": "x", "runner_group_id": 1},
    {"name": "x", "runner_group_id": 1, "labels": []},
    {"name": "x", "runner_group_id": 1, "labels": [f"l{i}" for i in range(101)]},
    {"name": "x", "runner_group_id": 1, "labels": [""]},
    {"name": "", "runner_group_id": 1, "labels": ["a"]},
    {"name": "x", "runner_group_id": "1", "labels": ["a"]},
    {"name": "x", "runner_group_id": 99, "labels": ["a"]},
    {"name": "x", "runner_group_id": 1, "labels": ["a"], "work_folder": "/abs"},
], ids=["no-name", "no-group", "no-labels", "zero-labels", "101-labels", "empty-label", "empty-name",
        "group-string", "unknown-group", "absolute-work"])
def test_jitconfig_bad_input_is_422(api: Api, body: dict[str, object]) -> None:
    """Bad generate-jitconfig input answers 422 with GitHub's body."""
    r = api.post("/orgs/acme/actions/runners/generate-jitconfig", json=body)
    assert r.status_code == 422
    assert set(r.json()) >= {"message", "documentation_url"}


def test_jitconfig_accepts_100_labels(api: Api) -> None:
    """100 labels is the upper bound and is accepted."""
    assert api.jit("/orgs/acme/actions", "many", [f"l{i}" for i in range(100)]).status_code == 201


@ALL
def test_list_get_delete(api: Api, prefix: str) -> None:
    """A runner is listed, fetched by id and deleted (204), then 404."""
    rid = api.jit(prefix, "r1").json()["runner"]["id"]
    listed = api.get(f"{prefix}/runners").json()
    assert listed["total_count"] == 1 and listed["runners"][0]["id"] == rid
    assert api.get(f"{prefix}/runners/{rid}").json()["name"] == "r1"
    assert api.delete(f"{prefix}/runners/{rid}").status_code == 204
    assert api.get(f"{prefix}/runners/{rid}").status_code == 404
    assert api.delete(f"{prefix}/runners/{rid}").status_code == 404


def test_runner_of_another_scope_is_404(api: Api) -> None:
    """A runner id is only visible under the scope that owns it."""
    rid = api.jit("/orgs/acme/actions", "r1").json()["runner"]["id"]
    assert api.get(f"/orgs/other/actions/runners/{rid}").status_code == 404
    assert api.get(f"/repos/acme/widgets/actions/runners/{rid}").status_code == 404
    assert api.get("/orgs/acme/actions/runners/notanumber").status_code == 404


def test_list_filters_by_name(api: Api) -> None:
    """GET runners?name= returns only the runner with that name."""
    for n in ("a", "b", "c"):
        api.jit("/orgs/acme/actions", n)
    body = api.get("/orgs/acme/actions/runners", params={"name": "b"}).json()
    assert body["total_count"] == 1 and [r["name"] for r in body["runners"]] == ["b"]


def _links(resp: requests.Response) -> dict[str, str]:
    return {rel: link["url"] for rel, link in resp.links.items()}


def test_pagination_defaults_to_30_with_link_header(api: Api) -> None:
    """Default page size is 30; Link has next and last on the first page."""
    for i in range(65):
        api.jit("/repos/acme/widgets/actions", f"r{i:02d}")
    r = api.get("/repos/acme/widgets/actions/runners")
    assert r.json()["total_count"] == 65 and len(r.json()["runners"]) == 30
    links = _links(r)
    assert set(links) == {"next", "last"}
    assert "page=2" in links["next"] and "page=3" in links["last"] and "per_page=30" in links["next"]
    assert links["next"].startswith(api.emu.api_url + "/repos/acme/widgets/actions/runners?")


def test_pagination_follows_links_to_every_runner(api: Api) -> None:
    """Following rel=next visits every runner once; middle pages have first/prev/next/last."""
    for i in range(25):
        api.jit("/orgs/acme/actions", f"r{i:02d}")
    seen: list[str] = []
    url = api.emu.api_url + "/orgs/acme/actions/runners?per_page=10"
    for _ in range(10):  # bounded
        r = api.get(url)
        seen += [x["name"] for x in r.json()["runners"]]
        if "page=2" in url:
            assert set(_links(r)) == {"first", "prev", "next", "last"}
        if "next" not in r.links:
            assert set(_links(r)) == {"first", "prev"}
            break
        url = r.links["next"]["url"]
    assert seen == [f"r{i:02d}" for i in range(25)]


@pytest.mark.parametrize("per_page,expected", [(500, 100), (0, 30), (1, 1)])
def test_per_page_is_clamped(api: Api, per_page: int, expected: int) -> None:
    """per_page is capped at 100 and falls back to 30 when invalid."""
    for i in range(120):
        api.jit("/orgs/acme/actions", f"r{i}")
    r = api.get("/orgs/acme/actions/runners", params={"per_page": per_page})
    assert len(r.json()["runners"]) == expected


def test_single_page_has_no_link_header(api: Api) -> None:
    """One page of results carries no Link header."""
    api.jit("/orgs/acme/actions", "only")
    assert "Link" not in api.get("/orgs/acme/actions/runners").headers


def test_busy_runner_delete_is_422(api: Api, emu: Emulator) -> None:
    """Deleting a runner that runs a job answers 422."""
    body = api.jit("/orgs/acme/actions", "busy", ["cpu"]).json()
    rid = body["runner"]["id"]
    runner = emu.state.runners[rid]
    sid = emu.state.open_session(runner, "Linux", "2.337.0")
    emu.enqueue_job("acme/widgets", ["cpu"], "true")
    assert emu.state.poll(runner, sid, 0) is not None
    r = api.delete(f"/orgs/acme/actions/runners/{rid}")
    assert r.status_code == 422 and "still running a job" in r.json()["message"]
    assert api.get(f"/orgs/acme/actions/runners/{rid}").json()["busy"] is True


class TestLabels:
    P = "/orgs/acme/actions"

    def _runner(self, api: Api) -> int:
        return int(api.jit(self.P, "lab", ["self-hosted", "cpu"]).json()["runner"]["id"])

    def test_get(self, api: Api) -> None:
        """GET labels lists the runner's labels with id, name, type."""
        rid = self._runner(api)
        body = api.get(f"{self.P}/runners/{rid}/labels").json()
        assert body["total_count"] == 2 and {lb["name"] for lb in body["labels"]} == {"self-hosted", "cpu"}
        assert all(isinstance(lb["id"], int) for lb in body["labels"])

    def test_add(self, api: Api) -> None:
        """POST labels adds custom labels once."""
        rid = self._runner(api)
        body = api.post(f"{self.P}/runners/{rid}/labels", json={"labels": ["gpu", "cpu"]}).json()
        assert [lb["name"] for lb in body["labels"]] == ["self-hosted", "cpu", "gpu"]

    def test_set_keeps_read_only(self, api: Api) -> None:
        """PUT labels replaces custom labels; read-only ones stay."""
        rid = self._runner(api)
        body = api.put(f"{self.P}/runners/{rid}/labels", json={"labels": ["a", "b"]}).json()
        assert [lb["name"] for lb in body["labels"]] == ["self-hosted", "a", "b"]
        body = api.put(f"{self.P}/runners/{rid}/labels", json={"labels": []}).json()
        assert [lb["name"] for lb in body["labels"]] == ["self-hosted"]

    def test_clear(self, api: Api) -> None:
        """DELETE labels removes every custom label and returns the read-only ones."""
        rid = self._runner(api)
        body = api.delete(f"{self.P}/runners/{rid}/labels").json()
        assert body == {"total_count": 1, "labels": [{"id": body["labels"][0]["id"], "name": "self-hosted",
                                                      "type": "read-only"}]}

    def test_remove_one(self, api: Api) -> None:
        """DELETE labels/{name} removes that custom label; unknown is 404."""
        rid = self._runner(api)
        body = api.delete(f"{self.P}/runners/{rid}/labels/cpu").json()
        assert [lb["name"] for lb in body["labels"]] == ["self-hosted"]
        assert api.delete(f"{self.P}/runners/{rid}/labels/cpu").status_code == 404

    @pytest.mark.parametrize("method,body", [("POST", {"labels": []}), ("POST", {}),
                                             ("PUT", {"labels": ["x"] * 101}), ("POST", {"labels": [3]})])
    def test_bad_input_is_422(self, api: Api, method: str, body: dict[str, object]) -> None:
        """Label bodies outside GitHub's limits answer 422."""
        rid = self._runner(api)
        assert api(method, f"{self.P}/runners/{rid}/labels", json=body).status_code == 422

    def test_unknown_runner_is_404(self, api: Api) -> None:
        """Label calls on an unknown runner answer 404."""
        assert api.get(f"{self.P}/runners/999/labels").status_code == 404


@pytest.mark.parametrize("prefix", ["/orgs/acme/actions", "/enterprises/bigco/actions"])
def test_runner_groups_have_default_id_1(api: Api, emu: Emulator, prefix: str) -> None:
    """runner-groups lists Default (id 1) and groups added through the emulator."""
    scope = "acme" if prefix.startswith("/orgs") else "enterprises/bigco"
    gid = emu.add_runner_group(scope, "gpu")
    body = api.get(f"{prefix}/runner-groups").json()
    assert body["total_count"] == 2
    default = body["runner_groups"][0]
    assert (default["id"], default["name"], default["default"]) == (1, "Default", True)
    assert body["runner_groups"][1]["id"] == gid
    assert api.jit(prefix, "in-gpu", runner_group_id=gid).json()["runner"]["runner_group_id"] == gid


def test_repo_scope_has_no_runner_groups_endpoint(api: Api) -> None:
    """Runner groups exist for organisations and enterprises only."""
    assert api.get("/repos/acme/widgets/actions/runner-groups").status_code == 404


@ALL
def test_downloads_point_at_the_tarball(api: Api, emu: Emulator, prefix: str) -> None:
    """downloads lists linux x64/arm64 with a download_url on the emulator and the tarball's SHA-256."""
    body = api.get(f"{prefix}/runners/downloads").json()
    x64 = next(d for d in body if d["architecture"] == "x64")
    assert x64["os"] == "linux" and x64["filename"] == "actions-runner-linux-x64-2.337.0.tar.gz"
    data = requests.get(x64["download_url"], timeout=10).content
    assert hashlib.sha256(data).hexdigest() == x64["sha256_checksum"] == emu.tarball_sha256


def test_tarball_is_deterministic() -> None:
    """Two builds of the tarball are byte-identical (stable SHA-256)."""
    from emulator import _tarball
    assert _tarball.build() == _tarball.build()


@pytest.mark.parametrize("version,blocked", [("2.337.0", False), ("2.330.0", False), ("2.300.0", True)])
def test_deprecations(api: Api, version: str, blocked: bool) -> None:
    """deprecations/{version}: null dates for supported versions, past dates for blocked ones."""
    body = api.get(f"/orgs/acme/actions/runners/deprecations/{version}").json()
    assert body["runner_version"] == version
    assert (body["registration_deprecates_at"] is not None) is blocked
    assert api.get("/orgs/acme/actions/runners/deprecations/latest").status_code == 404


def test_unknown_scope_is_404_in_strict_mode() -> None:
    """With strict_scopes only added scopes exist; others answer 404."""
    with Emulator(strict_scopes=True) as emu:
        api = Api(emu, emu.admin_token)
        emu.add_scope("acme/widgets")
        assert api.post("/repos/acme/widgets/actions/runners/registration-token").status_code == 201
        assert api.post("/orgs/acme/actions/runners/registration-token").status_code == 201  # owner of a repo
        assert api.post("/repos/acme/gadgets/actions/runners/registration-token").status_code == 404
        assert api.jit("/orgs/nobody/actions", "x").status_code == 404


def test_malformed_scope_is_404(api: Api) -> None:
    """Names GitHub would not allow answer 404."""
    assert api.get("/orgs/-bad-/actions/runners").status_code == 404


def test_unknown_path_is_404(api: Api) -> None:
    """Unrouted API paths answer 404 with GitHub's body."""
    r = api.get("/nope")
    assert r.status_code == 404 and r.json()["message"] == "Not Found"


def test_missing_user_agent_is_403(api: Api) -> None:
    """GitHub refuses requests without a User-Agent."""
    # http.client, because requests/urllib3 add a User-Agent of their own.
    conn = http.client.HTTPConnection("127.0.0.1", api.emu.port, timeout=10)
    try:
        conn.request("GET", "/api/v3/orgs/acme/actions/runners",
                     headers={"Authorization": f"Bearer {api.emu.admin_token}"})
        resp = conn.getresponse()
        assert resp.status == 403 and "User-Agent" in json.loads(resp.read())["message"]
    finally:
        conn.close()


def test_unknown_api_version_is_400(api: Api) -> None:
    """An unsupported X-GitHub-Api-Version answers 400."""
    r = api.get("/orgs/acme/actions/runners", headers={"X-GitHub-Api-Version": "1999-01-01"})
    assert r.status_code == 400
