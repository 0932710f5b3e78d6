"""The control API (HTTP, mirrored by Emulator methods) and runner lifecycle on the server side."""

from __future__ import annotations

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from emu_helpers import Api, app_jwt, public_pem, wait_for

from emulator import Emulator


def _session(emu: Emulator, api: Api, scope_prefix: str, name: str, labels: list[str]) -> tuple[object, str]:
    """A JIT runner with an open session, driven directly through the state (no subprocess)."""
    rid = api.jit(scope_prefix, name, labels).json()["runner"]["id"]
    runner = emu.state.runners[rid]
    return runner, emu.state.open_session(runner, "Linux", "2.337.0")


def test_control_api_needs_the_admin_token(emu: Emulator) -> None:
    """Control endpoints answer 401 without the admin token."""
    assert requests.get(emu.url + "/_emulator/jobs", timeout=10).status_code == 401
    other = emu.add_pat(None, None)
    r = requests.get(emu.url + "/_emulator/jobs", headers={"Authorization": f"Bearer {other}"}, timeout=10)
    assert r.status_code == 401


def test_health_is_public(emu: Emulator) -> None:
    """/_emulator/health answers without credentials."""
    body = requests.get(emu.url + "/_emulator/health", timeout=10).json()
    assert body["ok"] is True and body["api_url"] == emu.api_url


def test_enqueue_and_read_jobs_over_http(api: Api) -> None:
    """POST /_emulator/jobs returns the queued job; GET lists and reads it."""
    r = api.control("POST", "/jobs", json={"scope": "acme/widgets", "labels": ["cpu"], "script": "echo hi"})
    assert r.status_code == 201
    job = r.json()
    assert job["status"] == "queued" and job["exit_code"] is None and job["runner_name"] is None
    assert api.control("GET", f"/jobs/{job['id']}").json()["id"] == job["id"]
    assert [j["id"] for j in api.control("GET", "/jobs").json()["jobs"]] == [job["id"]]
    assert api.control("GET", "/jobs/999").status_code == 404


@pytest.mark.parametrize("body", [{"scope": "acme", "labels": [], "script": "x"},
                                  {"scope": "a/b/c/d", "labels": ["x"], "script": "x"},
                                  {"scope": "acme", "labels": ["x"], "script": 3}])
def test_enqueue_bad_job_is_refused(api: Api, body: dict[str, object]) -> None:
    """Jobs need a valid scope, at least one label and a script."""
    assert api.control("POST", "/jobs", json=body).status_code in (404, 422)


def test_request_counts_and_reset(api: Api, emu: Emulator) -> None:
    """Counts are kept per endpoint template; reset clears them (HTTP and Python)."""
    api.jit("/orgs/acme/actions", "a")
    api.jit("/orgs/other/actions", "b")
    api.get("/repos/acme/widgets/actions/runners")
    counts = api.control("GET", "/requests").json()["counts"]
    assert counts["POST /orgs/{org}/actions/runners/generate-jitconfig"] == 2
    assert counts["GET /repos/{owner}/{repo}/actions/runners"] == 1
    assert emu.request_counts() == counts
    assert api.control("DELETE", "/requests").status_code == 204
    assert emu.request_counts() == {}


def test_request_log_never_holds_tokens(api: Api, emu: Emulator) -> None:
    """The request log names principals by kind, never by token."""
    api.post("/orgs/acme/actions/runners/registration-token")
    text = str(emu.request_log())
    assert emu.admin_token not in text and "pat" in text


def test_faults_over_http(api: Api) -> None:
    """PUT /_emulator/faults sets, GET reads, DELETE clears; unknown fields are refused."""
    assert api.control("PUT", "/faults", json={"errors": 1, "error_status": 503}).json()["errors"] == 1
    assert api.get("/orgs/acme/actions/runners").status_code == 503
    assert api.control("GET", "/faults").json()["errors"] == 0
    assert api.control("PUT", "/faults", json={"bogus": 1}).status_code == 422
    api.control("PUT", "/faults", json={"errors": 5})
    assert api.control("DELETE", "/faults").status_code == 204
    assert api.get("/orgs/acme/actions/runners").status_code == 200


def test_add_pat_over_http(api: Api) -> None:
    """POST /_emulator/pats registers a PAT with the given scopes."""
    tok = api.control("POST", "/pats", json={"token": "ghp_fixed", "scopes": ["repo"]}).json()["token"]
    assert tok == "ghp_fixed"
    assert api.get("/repos/acme/w/actions/runners", token=tok).status_code == 200
    assert api.get("/orgs/acme/actions/runners", token=tok).status_code == 403


def test_add_app_over_http(api: Api, app_key: rsa.RSAPrivateKey) -> None:
    """POST /_emulator/apps registers an app and returns its installation ids."""
    r = api.control("POST", "/apps", json={"app_id": 77, "public_key_pem": public_pem(app_key).decode(),
                                          "installations": ["acme"]})
    assert r.status_code == 201 and r.json()["app_id"] == 77
    iid = r.json()["installations"]["acme"]
    assert api.post(f"/app/installations/{iid}/access_tokens", token=app_jwt(app_key, 77)).status_code == 201


def test_scopes_groups_and_clock_over_http(api: Api) -> None:
    """Scopes, runner groups and the clock can be driven over HTTP."""
    assert api.control("POST", "/scopes", json={"scope": "Acme/Widgets"}).json()["scope"] == "acme/widgets"
    gid = api.control("POST", "/runner-groups", json={"scope": "acme", "name": "gpu"}).json()["id"]
    assert gid == 2
    assert api.control("POST", "/clock", json={"advance": 10}).json()["offset"] == 10


def test_runner_status_follows_the_session(api: Api, emu: Emulator) -> None:
    """A runner is offline until its listener opens a session, online while it polls, busy during a job."""
    rid = api.jit("/orgs/acme/actions", "r", ["cpu"]).json()["runner"]["id"]
    assert api.get(f"/orgs/acme/actions/runners/{rid}").json()["status"] == "offline"
    runner = emu.state.runners[rid]
    sid = emu.state.open_session(runner, "Linux", "2.337.0")
    got = api.get(f"/orgs/acme/actions/runners/{rid}").json()
    assert (got["status"], got["busy"], got["os"], got["version"]) == ("online", False, "Linux", "2.337.0")
    jid = emu.enqueue_job("acme/widgets", ["cpu"], "true")
    assert emu.state.poll(runner, sid, 0)["job_id"] == jid  # type: ignore[index]
    assert api.get(f"/orgs/acme/actions/runners/{rid}").json()["busy"] is True
    assert emu.job(jid)["status"] == "in_progress" and emu.job(jid)["runner_name"] == "r"
    emu.state.complete(runner, jid, 0, "ok\n", None)  # type: ignore[arg-type]
    assert emu.wait_job(jid, 5)["conclusion"] == "success"
    # Ephemeral: gone after its job.
    assert api.get(f"/orgs/acme/actions/runners/{rid}").status_code == 404


@pytest.mark.parametrize("runner_scope,job_scope,labels,taken", [
    ("/orgs/acme/actions", "acme/widgets", ["cpu"], True),
    ("/orgs/acme/actions", "acme", ["cpu"], True),
    ("/repos/acme/widgets/actions", "acme/widgets", ["cpu"], True),
    ("/repos/acme/widgets/actions", "acme/gadgets", ["cpu"], False),
    ("/orgs/acme/actions", "other/widgets", ["cpu"], False),
    ("/orgs/acme/actions", "acme/widgets", ["cpu", "gpu"], False),
    ("/orgs/acme/actions", "acme/widgets", ["CPU", "Self-Hosted"], True),
    ("/enterprises/bigco/actions", "acme/widgets", ["cpu"], True),
    ("/enterprises/bigco/actions", "other/widgets", ["cpu"], False),
])
def test_job_matching(api: Api, emu: Emulator, runner_scope: str, job_scope: str, labels: list[str],
                      taken: bool) -> None:
    """Jobs go to runners whose labels include the job's and whose scope is the same or a parent."""
    emu.link_org("bigco", "acme")
    runner, sid = _session(emu, api, runner_scope, "m", ["self-hosted", "cpu"])
    emu.enqueue_job(job_scope, labels, "true")
    assert (emu.state.poll(runner, sid, 0) is not None) is taken  # type: ignore[arg-type]


def test_jobs_go_out_oldest_first(api: Api, emu: Emulator) -> None:
    """Queued jobs are handed out in order."""
    runner, sid = _session(emu, api, "/orgs/acme/actions", "fifo", ["cpu"])
    first = emu.enqueue_job("acme/w", ["cpu"], "true")
    emu.enqueue_job("acme/w", ["cpu"], "true")
    assert emu.state.poll(runner, sid, 0)["job_id"] == first  # type: ignore[arg-type,index]


def test_long_poll_wakes_on_enqueue(api: Api, emu: Emulator) -> None:
    """A waiting long poll gets a job enqueued after it started."""
    runner, sid = _session(emu, api, "/orgs/acme/actions", "lp", ["cpu"])
    import threading
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(emu.state.poll(runner, sid, 10)))  # type: ignore[arg-type]
    t.start()
    jid = emu.enqueue_job("acme/w", ["cpu"], "true")
    t.join(timeout=10)
    assert got and got[0]["job_id"] == jid  # type: ignore[index]


def test_silent_runner_goes_offline_and_loses_its_job() -> None:
    """A runner that stops polling turns offline after session_timeout; its job fails."""
    with Emulator(session_timeout=1.0) as emu:
        api = Api(emu, emu.admin_token)
        rid = api.jit("/orgs/acme/actions", "silent", ["cpu"]).json()["runner"]["id"]
        runner = emu.state.runners[rid]
        sid = emu.state.open_session(runner, "Linux", "2.337.0")
        jid = emu.enqueue_job("acme/w", ["cpu"], "sleep 100")
        assert emu.state.poll(runner, sid, 0) is not None
        job = emu.wait_job(jid, 10)
        assert job["conclusion"] == "failure" and "lost communication" in job["output"]
        wait_for(lambda: api.get(f"/orgs/acme/actions/runners/{rid}").status_code == 404, timeout=5)


@pytest.mark.parametrize("ephemeral", [True, False])
def test_offline_runners_are_removed_after_their_ttl(ephemeral: bool) -> None:
    """Never-connected ephemeral runners go after ephemeral_offline_ttl, persistent ones after offline_ttl."""
    with Emulator(ephemeral_offline_ttl=100, offline_ttl=1000) as emu:
        api = Api(emu, emu.admin_token)
        if ephemeral:
            rid = api.jit("/orgs/acme/actions", "eph").json()["runner"]["id"]
        else:
            reg = api.post("/orgs/acme/actions/runners/registration-token").json()["token"]
            admin = api.post("/actions/runner-registration", token=None,
                             headers={"Authorization": f"RemoteAuth {reg}"},
                             json={"url": f"{emu.url}/acme"}).json()["token"]
            rid = api.post("/actions/runners/register", token=admin,
                           json={"url": f"{emu.url}/acme", "name": "pers", "version": "2.337.0",
                                 "labels": [{"name": "x"}]}).json()["id"]
        emu.advance_clock(150)
        assert (api.get(f"/orgs/acme/actions/runners/{rid}").status_code == 404) is ephemeral
        emu.advance_clock(1000)
        assert api.get(f"/orgs/acme/actions/runners/{rid}").status_code == 404


def test_wait_job_times_out(emu: Emulator) -> None:
    """wait_job raises TimeoutError when nothing runs the job."""
    jid = emu.enqueue_job("acme", ["nobody"], "true")
    with pytest.raises(TimeoutError):
        emu.wait_job(jid, 0.2)


def test_stop_releases_a_waiting_long_poll(api: Api) -> None:
    """Stopping the emulator ends long polls promptly."""
    with Emulator() as emu:
        a = Api(emu, emu.admin_token)
        runner, sid = _session(emu, a, "/orgs/acme/actions", "stop", ["cpu"])
        import threading
        t = threading.Thread(target=lambda: emu.state.poll(runner, sid, 25))  # type: ignore[arg-type]
        t.start()
    t.join(timeout=5)
    assert not t.is_alive()
