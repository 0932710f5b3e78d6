"""Runner scale sets: the Actions service as GitHub's Go client (actions/scaleset v0.4.0) speaks it, over
real HTTP on loopback: admin JWT, runner groups, scale sets, message sessions and queue, job offers,
acquisition and re-offers, JIT configs, agents, faults, and the stand-in runner taking a scale set's job."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from emu_helpers import HTTP_TIMEOUT, Api, Service, job_messages, wait_for

from emulator import Emulator

SS = "_apis/runtime/runnerscalesets"
AGENTS = "_apis/distributedtask/pools/0/agents"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(message_poll_wait=0.1, acquire_timeout=30, reassign_delay=0) as e:
        yield e


@pytest.fixture
def svc(api: Api) -> Service:
    return Service(api, "acme")


def _offer(svc: Service, emu: Emulator, name: str = "linux-ss") -> tuple[dict[str, Any], dict[str, Any]]:
    """A scale set with a session and a reported capacity."""
    ss = svc.create(name)
    sess = svc.session(ss["id"])
    assert svc.poll(sess).status_code == 202
    return ss, sess


def _drain(svc: Service, sess: dict[str, Any], capacity: int = 10) -> list[dict[str, Any]]:
    """Every job message now waiting, each queue message acknowledged."""
    out: list[dict[str, Any]] = []
    while True:
        r = svc.poll(sess, capacity)
        if r.status_code == 202:
            return out
        out += job_messages(r)
        assert svc.ack(sess, r.json()["messageId"]).status_code == 204


# ---- connection ----------------------------------------------------------------------------------------
class TestConnection:
    def test_registration_answers_service_url_and_jwt(self, emu: Emulator, svc: Service) -> None:
        """runner-registration answers the Actions-service URL on the emulator and an admin JWT with exp."""
        assert svc.url.startswith(emu.url + "/_services/pipelines/") and svc.url.endswith("/")
        claims = jwt.decode(svc.token, options={"verify_signature": False})
        assert 3500 < claims["exp"] - time.time() <= 3601 and claims["sub"] == "acme"

    def test_admin_token_lifetime_is_an_option(self, api: Api, emu: Emulator) -> None:
        """actions_token_ttl sets the JWT's lifetime (clients refresh before exp)."""
        emu.set_options(actions_token_ttl=90)
        claims = jwt.decode(Service(api).token, options={"verify_signature": False})
        assert 80 < claims["exp"] - time.time() <= 91

    def test_expired_admin_token_is_401(self, emu: Emulator, svc: Service) -> None:
        """An admin token past its exp (emulator clock) answers 401; a fresh registration works again."""
        assert svc("GET", SS).status_code == 200
        emu.advance_clock(3700)
        r = svc("GET", SS)
        assert r.status_code == 401 and "VssUnauthorizedException" in r.json()["typeName"]

    @pytest.mark.parametrize("token", ["nope", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
    def test_wrong_admin_token_is_401(self, svc: Service, token: str) -> None:
        """Unknown tokens answer 401."""
        assert svc("GET", SS, token=token).status_code == 401

    def test_token_of_another_scope_is_401(self, api: Api, svc: Service) -> None:
        """An admin token only serves the tenant URL of its own scope."""
        other = Service(api, "other-org")
        assert other.url != svc.url
        assert svc("GET", SS, token=other.token).status_code == 401

    def test_admin_token_still_serves_config_sh(self, api: Api, svc: Service) -> None:
        """The same JWT is the runner-admin token config.sh uses on the REST API."""
        assert api.get("/orgs/acme/actions/runners", token=svc.token).status_code == 200

    def test_api_version_is_required(self, svc: Service) -> None:
        """Admin calls without api-version answer 400 (GitHub's client always sends 6.0-preview)."""
        assert svc("GET", SS, version=False).status_code == 400

    def test_runner_groups_by_name(self, emu: Emulator, svc: Service) -> None:
        """runnergroups/?groupName= answers {count, value[{id, name, size, isDefaultGroup}]}."""
        gid = emu.add_runner_group("acme", "gpu")
        r = svc("GET", "_apis/runtime/runnergroups/", params={"groupName": "Default"})
        assert r.status_code == 200
        assert r.json() == {"count": 1, "value": [{"id": 1, "name": "Default", "size": 0, "isDefaultGroup": True}]}
        assert svc("GET", "_apis/runtime/runnergroups/", params={"groupName": "GPU"}).json()["value"][0]["id"] == gid
        assert svc("GET", "_apis/runtime/runnergroups/", params={"groupName": "none"}).json() == {"count": 0, "value": []}


# ---- scale sets ----------------------------------------------------------------------------------------
class TestScaleSets:
    def test_create_answers_the_scale_set(self, svc: Service) -> None:
        """POST answers 200 with id, group, {type, name} labels, RunnerSetting, statistics, runnerJitConfigUrl."""
        ss = svc.create("linux-ss", ["linux-ss", "gpu"])
        assert isinstance(ss["id"], int) and ss["name"] == "linux-ss"
        assert ss["runnerGroupId"] == 1 and ss["runnerGroupName"] == "Default"
        assert ss["labels"] == [{"type": "System", "name": "linux-ss"}, {"type": "System", "name": "gpu"}]
        assert ss["RunnerSetting"] == {"disableUpdate": True} and ss["createdOn"].endswith("Z")
        assert ss["runnerJitConfigUrl"].startswith(svc.url) and ss["statistics"]["totalAssignedJobs"] == 0

    def test_labels_default_to_the_name(self, svc: Service) -> None:
        """A scale set created without labels gets one label: its name."""
        r = svc("POST", SS, {"name": "bare", "runnerGroupId": 1})
        assert r.json()["labels"] == [{"type": "System", "name": "bare"}]

    def test_get_and_find(self, svc: Service) -> None:
        """GET by id; GET ?runnerGroupId=&name= finds it within its group only."""
        ss = svc.create("finder")
        assert svc("GET", f"{SS}/{ss['id']}").json()["name"] == "finder"
        found = svc("GET", SS, params={"runnerGroupId": 1, "name": "FINDER"}).json()
        assert found["count"] == 1 and found["value"][0]["id"] == ss["id"]
        assert svc("GET", SS, params={"runnerGroupId": 1, "name": "other"}).json() == {"count": 0, "value": []}

    def test_name_unique_within_group(self, emu: Emulator, svc: Service) -> None:
        """Same name in the same group: 409; in another group: allowed."""
        svc.create("dup")
        r = svc("POST", SS, {"name": "DUP", "runnerGroupId": 1})
        assert r.status_code == 409 and "RunnerScaleSetExistsException" in r.json()["typeName"]
        gid = emu.add_runner_group("acme", "other")
        assert svc("POST", SS, {"name": "dup", "runnerGroupId": gid}).status_code == 200

    @pytest.mark.parametrize("body", [{"name": ""}, {"name": "has space"}, {"name": "x" * 46},
                                      {"name": "ok", "labels": [{"type": "System", "name": ""}]}])
    def test_bad_input_is_400(self, svc: Service, body: dict[str, Any]) -> None:
        """Names outside 1-45 of [A-Za-z0-9._-] and empty labels answer 400."""
        assert svc("POST", SS, {"runnerGroupId": 1, **body}).status_code == 400

    def test_unknown_group_is_404(self, svc: Service) -> None:
        """A scale set in a runner group that does not exist: 404."""
        assert svc("POST", SS, {"name": "x", "runnerGroupId": 99}).status_code == 404

    def test_update_name_labels_group(self, emu: Emulator, svc: Service) -> None:
        """PATCH changes name, labels and group; the answer and a later GET agree."""
        ss = svc.create("old")
        gid = emu.add_runner_group("acme", "moved")
        body = {"name": "new", "runnerGroupId": gid, "labels": [{"type": "System", "name": "new"}, {"name": "x"}],
                "RunnerSetting": {}, "createdOn": "0001-01-01T00:00:00Z"}
        r = svc("PATCH", f"{SS}/{ss['id']}", body)
        assert r.status_code == 200
        got = svc("GET", f"{SS}/{ss['id']}").json()
        assert got["name"] == "new" and got["runnerGroupId"] == gid and got["runnerGroupName"] == "moved"
        assert got["labels"] == [{"type": "System", "name": "new"}, {"type": "System", "name": "x"}]

    def test_update_to_a_taken_name_is_409(self, svc: Service) -> None:
        """Renaming onto another scale set's name in the group: 409."""
        svc.create("a")
        b = svc.create("b")
        assert svc("PATCH", f"{SS}/{b['id']}", {"name": "A"}).status_code == 409

    def test_delete(self, svc: Service) -> None:
        """DELETE answers 204; the scale set is gone (404, not found by name)."""
        ss = svc.create("gone")
        assert svc("DELETE", f"{SS}/{ss['id']}").status_code == 204
        r = svc("GET", f"{SS}/{ss['id']}")
        assert r.status_code == 404 and "RunnerScaleSetNotFoundException" in r.json()["typeName"]
        assert svc("GET", SS, params={"runnerGroupId": 1, "name": "gone"}).json()["count"] == 0
        assert svc("POST", f"{SS}/{ss['id']}/sessions", {"ownerName": "x"}).status_code == 404

    def test_other_scopes_scale_sets_are_invisible(self, api: Api, svc: Service) -> None:
        """A scale set belongs to the scope of the admin token that created it."""
        ss = svc.create("mine")
        other = Service(api, "acme/widgets")
        assert other("GET", f"{SS}/{ss['id']}").status_code == 404
        assert other("GET", SS).json()["count"] == 0


# ---- sessions ------------------------------------------------------------------------------------------
class TestSessions:
    def test_create_answers_queue_and_statistics(self, svc: Service) -> None:
        """A session: sessionId, ownerName, runnerScaleSet, messageQueueUrl, its own token, statistics."""
        ss = svc.create("s1")
        sess = svc.session(ss["id"], "owner-1")
        assert sess["ownerName"] == "owner-1" and sess["runnerScaleSet"]["id"] == ss["id"]
        assert sess["messageQueueUrl"].startswith(svc.url) and sess["messageQueueAccessToken"] != svc.token
        assert set(sess["statistics"]) == {"totalAvailableJobs", "totalAcquiredJobs", "totalAssignedJobs",
                                           "totalRunningJobs", "totalRegisteredRunners", "totalBusyRunners",
                                           "totalIdleRunners"}

    def test_second_session_conflicts_until_deleted(self, emu: Emulator, svc: Service) -> None:
        """One session per scale set: 409 TaskAgentSessionConflictException until the first is deleted."""
        ss = svc.create("s2")
        sess = svc.session(ss["id"])
        r = svc("POST", f"{SS}/{ss['id']}/sessions", {"ownerName": "second"})
        assert r.status_code == 409 and "TaskAgentSessionConflictException" in r.json()["typeName"]
        assert r.json()["message"]
        assert svc("DELETE", f"{SS}/{ss['id']}/sessions/{sess['sessionId']}").status_code == 204
        assert svc.poll(sess).status_code == 401  # its queue token died with it
        assert svc.session(ss["id"], "second")["ownerName"] == "second"
        assert [x["ownerName"] for x in emu.scale_set_sessions()] == ["second"]

    def test_session_expires_when_silent(self, emu: Emulator, svc: Service) -> None:
        """A session nobody polls for scale_set_session_timeout is gone: a new one may be created."""
        ss = svc.create("s3")
        svc.session(ss["id"])
        emu.advance_clock(121)
        assert svc.session(ss["id"], "after")["ownerName"] == "after"

    def test_refresh_gives_a_new_queue_token(self, emu: Emulator, svc: Service) -> None:
        """PATCH session answers the session with a new queue token; an expired queue token is 401."""
        emu.set_options(message_queue_token_ttl=60)
        ss = svc.create("s4")
        sess = svc.session(ss["id"])
        emu.advance_clock(61)
        assert svc.poll(sess).status_code == 401
        r = svc("PATCH", f"{SS}/{ss['id']}/sessions/{sess['sessionId']}")
        assert r.status_code == 200
        fresh = r.json()
        assert fresh["sessionId"] == sess["sessionId"] and fresh["messageQueueAccessToken"] != sess["messageQueueAccessToken"]
        assert svc.poll(fresh).status_code == 202

    def test_unknown_session_is_404(self, svc: Service) -> None:
        """Refreshing or deleting a session that does not exist: 404."""
        ss = svc.create("s5")
        path = f"{SS}/{ss['id']}/sessions/00000000-0000-0000-0000-000000000000"
        assert svc("PATCH", path).status_code == 404
        assert svc("DELETE", path).status_code == 404

    def test_queue_token_is_not_an_admin_token(self, svc: Service) -> None:
        """The queue token does not open admin endpoints, nor another scale set's queue."""
        a, b = svc.create("qa"), svc.create("qb")
        sa, sb = svc.session(a["id"]), svc.session(b["id"])
        assert svc("GET", SS, token=sa["messageQueueAccessToken"]).status_code == 401
        assert svc.poll(sb, token=sa["messageQueueAccessToken"]).status_code == 401


# ---- messages and jobs ---------------------------------------------------------------------------------
class TestMessages:
    def test_empty_queue_answers_202_after_the_wait(self, emu: Emulator, svc: Service) -> None:
        """Nothing to say: 202 once message_poll_wait has passed (set_message_poll_wait changes it)."""
        emu.set_message_poll_wait(0.6)
        ss = svc.create("m1")
        sess = svc.session(ss["id"])
        started = time.monotonic()
        r = svc.poll(sess)
        assert r.status_code == 202 and 0.5 < time.monotonic() - started < 5

    def test_long_poll_wakes_on_a_job(self, emu: Emulator, svc: Service) -> None:
        """A held GET answers as soon as a matching job is enqueued."""
        ss, sess = _offer(svc, emu, "m2")
        emu.set_message_poll_wait(10)
        timer = threading.Timer(0.5, lambda: emu.enqueue_job("acme/widgets", ["m2"], "true"))
        started = time.monotonic()
        timer.start()
        msgs = job_messages(svc.poll(sess, capacity=1))
        assert time.monotonic() - started < 5 and msgs[0]["messageType"] == "JobAvailable"

    def test_job_available_message_and_statistics(self, emu: Emulator, svc: Service) -> None:
        """A matching job is offered: JobAvailable with the job's fields and acquireJobUrl; statistics count it."""
        ss, sess = _offer(svc, emu)
        jid = emu.enqueue_job("acme/widgets", ["linux-ss"], "true")
        r = svc.poll(sess)
        body = r.json()
        (msg,) = job_messages(r)
        assert msg["messageType"] == "JobAvailable" and isinstance(msg["runnerRequestId"], int)
        assert msg["acquireJobUrl"].startswith(svc.url) and msg["acquireJobUrl"].endswith(f"{ss['id']}/acquirejobs")
        assert msg["ownerName"] == "acme" and msg["repositoryName"] == "widgets" and msg["requestLabels"] == ["linux-ss"]
        assert isinstance(msg["jobId"], str) and msg["workflowRunId"] == jid and msg["queueTime"].endswith("Z")
        assert msg["runnerAssignTime"] == "0001-01-01T00:00:00Z"
        assert body["statistics"]["totalAvailableJobs"] == 1 and body["statistics"]["totalAssignedJobs"] == 1
        assert emu.job(jid)["scale_set_id"] == ss["id"]

    def test_jobs_of_other_labels_or_scopes_are_not_offered(self, emu: Emulator, svc: Service) -> None:
        """Only jobs whose labels the scale set has, from its org's repos, are offered."""
        ss, sess = _offer(svc, emu)
        emu.enqueue_job("acme/widgets", ["linux-ss", "gpu"], "true")
        emu.enqueue_job("other/widgets", ["linux-ss"], "true")
        assert svc.poll(sess).status_code == 202

    def test_unacknowledged_message_is_redelivered(self, emu: Emulator, svc: Service) -> None:
        """Not deleted: the same message comes again to the next session, whatever lastMessageId it sends."""
        ss, sess = _offer(svc, emu)
        emu.enqueue_job("acme/widgets", ["linux-ss"], "true")
        first = svc.poll(sess).json()
        assert svc.poll(sess, last=first["messageId"]).status_code == 202  # this session has it
        assert svc.poll(sess, last=0).json()["messageId"] == first["messageId"]  # asked again from the start
        svc("DELETE", f"{SS}/{ss['id']}/sessions/{sess['sessionId']}")
        again = svc.session(ss["id"])
        r = svc.poll(again, last=first["messageId"])
        assert r.json()["messageId"] == first["messageId"] and r.json()["body"] == first["body"]
        assert svc.ack(again, first["messageId"]).status_code == 204
        assert svc.poll(again).status_code == 202

    def test_offers_respect_max_capacity(self, emu: Emulator, svc: Service) -> None:
        """No more jobs are assigned than the X-ScaleSetMaxCapacity last reported; more once it grows."""
        ss = svc.create("cap")
        sess = svc.session(ss["id"])
        assert svc.poll(sess, capacity=2).status_code == 202
        for _ in range(5):
            emu.enqueue_job("acme/widgets", ["cap"], "true")
        first = _drain(svc, sess, capacity=2)
        assert [m["messageType"] for m in first] == ["JobAvailable"] * 2
        r = svc.poll(sess, capacity=5)
        assert len(job_messages(r)) == 3 and r.json()["statistics"]["totalAssignedJobs"] == 5

    def test_nothing_is_offered_before_a_capacity_is_reported(self, emu: Emulator, svc: Service) -> None:
        """Until a GET reports X-ScaleSetMaxCapacity the scale set is offered nothing; the job stays queued."""
        ss = svc.create("nocap")
        jid = emu.enqueue_job("acme/widgets", ["nocap"], "true")
        assert emu.job(jid)["scale_set_id"] is None
        sess = svc.session(ss["id"])
        assert len(job_messages(svc.poll(sess, capacity=1))) == 1

    def test_at_most_50_job_messages_per_answer(self, emu: Emulator, svc: Service) -> None:
        """60 offers arrive as 50 then 10."""
        ss, sess = _offer(svc, emu)
        for _ in range(60):
            emu.enqueue_job("acme/widgets", ["linux-ss"], "true")
        r1 = svc.poll(sess, capacity=100)
        assert len(job_messages(r1)) == 50
        svc.ack(sess, r1.json()["messageId"])
        assert len(job_messages(svc.poll(sess, capacity=100, last=r1.json()["messageId"]))) == 10

    def test_acquire_then_job_assigned(self, emu: Emulator, svc: Service) -> None:
        """acquirejobs (queue token, as GitHub's client sends it) answers {count, value}; JobAssigned follows."""
        ss, sess = _offer(svc, emu)
        emu.enqueue_job("acme/widgets", ["linux-ss"], "true")
        (avail,) = _drain(svc, sess)
        rid = avail["runnerRequestId"]
        r = svc.acquire(ss["id"], [rid, 999999], token=sess["messageQueueAccessToken"])
        assert r.status_code == 200 and r.json() == {"count": 1, "value": [rid]}
        r = svc.poll(sess)
        (assigned,) = job_messages(r)
        assert assigned["messageType"] == "JobAssigned" and assigned["runnerRequestId"] == rid
        assert r.json()["statistics"]["totalAcquiredJobs"] == 1 and r.json()["statistics"]["totalAvailableJobs"] == 0

    def test_acquire_needs_a_list_of_ids(self, svc: Service) -> None:
        """acquirejobs with anything but a JSON list of integers: 400."""
        ss = svc.create("acq")
        assert svc("POST", f"{SS}/{ss['id']}/acquirejobs", {"ids": [1]}).status_code == 400
        assert svc("POST", f"{SS}/{ss['id']}/acquirejobs", [True]).status_code == 400

    def test_unacquired_offer_is_cancelled_and_offered_again(self, emu: Emulator, svc: Service) -> None:
        """Not acquired in time: JobCompleted(canceled) for that request, then a new offer (new request id);
        after 3 re-offers the job is cancelled."""
        emu.set_options(acquire_timeout=0.3)
        ss, sess = _offer(svc, emu)
        jid = emu.enqueue_job("acme/widgets", ["linux-ss"], "true")
        seen: list[tuple[str, int, str | None]] = []
        deadline = time.monotonic() + 20
        while emu.job(jid)["status"] != "completed" and time.monotonic() < deadline:
            seen += [(m["messageType"], m["runnerRequestId"], m.get("result")) for m in _drain(svc, sess)]
            time.sleep(0.1)
        seen += [(m["messageType"], m["runnerRequestId"], m.get("result")) for m in _drain(svc, sess)]
        kinds = [k for k, _, _ in seen]
        assert kinds == ["JobAvailable", "JobCompleted"] * 4, seen
        assert all(r == "canceled" for k, _, r in seen if k == "JobCompleted")
        assert len({rid for _, rid, _ in seen}) == 4
        job = emu.job(jid)
        assert job["conclusion"] == "cancelled" and job["cancelled_assignments"] == 4


# ---- JIT configs and agents ----------------------------------------------------------------------------
class TestJitAndAgents:
    def test_generatejitconfig(self, emu: Emulator, svc: Service) -> None:
        """generatejitconfig answers 200 {runner{id, name, runnerScaleSetId}, encodedJITConfig} decodable like REST's."""
        ss = svc.create("jit-ss", ["jit-ss", "gpu"])
        r = svc.jit(ss["id"], "r-1")
        assert r.status_code == 200
        body = r.json()
        assert body["runner"]["name"] == "r-1" and body["runner"]["runnerScaleSetId"] == ss["id"]
        files = json.loads(base64.b64decode(body["encodedJITConfig"]))
        conf = json.loads(base64.b64decode(files[".runner"]))
        assert conf["agentId"] == body["runner"]["id"] and conf["ephemeral"] is True
        assert conf["runnerScaleSetId"] == ss["id"]
        (runner,) = [x for x in emu.runners("acme") if x["name"] == "r-1"]
        assert runner["scale_set_id"] == ss["id"] and runner["jit"] is True
        assert [(lb["name"], lb["type"]) for lb in runner["labels"]] == [("jit-ss", "read-only"), ("gpu", "read-only")]
        assert svc("GET", SS + f"/{ss['id']}").json()["statistics"]["totalRegisteredRunners"] == 1

    def test_duplicate_runner_name_is_agent_exists(self, svc: Service) -> None:
        """A runner name taken in the scope: 409 with an AgentExistsException type name."""
        ss = svc.create("jit-dup")
        assert svc.jit(ss["id"], "same").status_code == 200
        r = svc.jit(ss["id"], "same")
        assert r.status_code == 409 and "AgentExistsException" in r.json()["typeName"]

    def test_agents_by_id_and_name(self, svc: Service) -> None:
        """agents/{id} and agents?agentName= find the runner; unknown id is 404 AgentNotFoundException."""
        ss = svc.create("ag")
        rid = svc.jit(ss["id"], "agent-1").json()["runner"]["id"]
        got = svc("GET", f"{AGENTS}/{rid}").json()
        assert got["id"] == rid and got["name"] == "agent-1" and got["runnerScaleSetId"] == ss["id"]
        found = svc("GET", AGENTS, params={"agentName": "agent-1"}).json()
        assert found["count"] == 1 and found["value"][0]["id"] == rid
        assert svc("GET", AGENTS, params={"agentName": "none"}).json() == {"count": 0, "value": []}
        r = svc("GET", f"{AGENTS}/999999")
        assert r.status_code == 404 and "AgentNotFoundException" in r.json()["typeName"]
        assert svc("DELETE", f"{AGENTS}/{rid}").status_code == 204
        assert svc("GET", f"{AGENTS}/{rid}").status_code == 404

    def test_rest_jit_labels_read_only_option(self, api: Api, emu: Emulator) -> None:
        """jit_labels_read_only: REST JIT runners report every label read-only (default keeps custom)."""
        emu.set_options(jit_labels_read_only=True)
        r = api.jit("/orgs/acme/actions", "ro", ["self-hosted", "cpu"])
        assert [lb["type"] for lb in r.json()["runner"]["labels"]] == ["read-only", "read-only"]


# ---- the stand-in runner takes the scale set's job ------------------------------------------------------
def _start(runner_dir: Path, env: dict[str, str], jit: str) -> subprocess.Popen[bytes]:
    """run.sh --jitconfig, its output in runner_dir/run.log."""
    with open(runner_dir / "run.log", "ab") as log:
        return subprocess.Popen([str(runner_dir / "run.sh"), "--jitconfig", jit], env=env, cwd=runner_dir,
                                stdout=log, stderr=subprocess.STDOUT)


def test_standin_runner_takes_the_scale_sets_job(emu: Emulator, svc: Service, runner_dir: Path,
                                                 runner_env: dict[str, str]) -> None:
    """Offer, acquire, JIT runner: JobStarted and JobCompleted(succeeded) carry the runner's id and name;
    deleting the busy agent is refused (JobStillRunningException); the runner is removed after its job."""
    ss, sess = _offer(svc, emu)
    jid = emu.enqueue_job("acme/widgets", ["linux-ss"], "echo from-scale-set; sleep 1.5")
    (avail,) = _drain(svc, sess)
    svc.acquire(ss["id"], [avail["runnerRequestId"]], token=sess["messageQueueAccessToken"])
    jit = svc.jit(ss["id"], "ss-runner-1").json()
    rid = jit["runner"]["id"]
    proc = _start(runner_dir, runner_env, jit["encodedJITConfig"])
    try:
        wait_for(lambda: emu.job(jid)["status"] == "in_progress", timeout=20)
        r = svc("DELETE", f"{AGENTS}/{rid}")
        assert r.status_code == 400 and "JobStillRunningException" in r.json()["typeName"]
        assert svc("GET", f"{AGENTS}/{rid}").json()["busy"] is True
        job = emu.wait_job(jid, timeout=30)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert job["conclusion"] == "success" and "from-scale-set" in job["output"]
    assert f"Runner scale set: {ss['id']}" in (runner_dir / "run.log").read_text()
    assert job["runner_id"] == rid and job["runner_name"] == "ss-runner-1"
    msgs = _drain(svc, sess)
    started = [m for m in msgs if m["messageType"] == "JobStarted"]
    completed = [m for m in msgs if m["messageType"] == "JobCompleted"]
    assert [m["messageType"] for m in msgs] == ["JobAssigned", "JobStarted", "JobCompleted"]
    assert (started[0]["runnerId"], started[0]["runnerName"]) == (rid, "ss-runner-1")
    assert (completed[0]["runnerId"], completed[0]["runnerName"], completed[0]["result"]) == (rid, "ss-runner-1",
                                                                                            "succeeded")
    assert completed[0]["finishTime"] != "0001-01-01T00:00:00Z"
    assert not [x for x in emu.runners() if x["id"] == rid]
    stats = svc("GET", f"{SS}/{ss['id']}").json()["statistics"]
    assert stats["totalAssignedJobs"] == 0 and stats["totalRegisteredRunners"] == 0


def test_scale_set_runner_takes_only_acquired_jobs(emu: Emulator, svc: Service, runner_dir: Path,
                                                   runner_env: dict[str, str]) -> None:
    """A scale set's runner waits for an acquired job: an offered, unacquired one is not taken; regular
    runners never take a job offered to a scale set."""
    ss, sess = _offer(svc, emu)
    jid = emu.enqueue_job("acme/widgets", ["linux-ss"], "true")
    (avail,) = _drain(svc, sess)
    jit = svc.jit(ss["id"], "waiting").json()
    proc = _start(runner_dir, runner_env, jit["encodedJITConfig"])
    try:
        wait_for(lambda: any(r["status"] == "online" for r in emu.runners() if r["name"] == "waiting"), timeout=20)
        time.sleep(0.5)
        assert emu.job(jid)["status"] == "queued"
        svc.acquire(ss["id"], [avail["runnerRequestId"]])  # the admin token works here too
        assert emu.wait_job(jid, timeout=30)["runner_name"] == "waiting"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_deleting_a_scale_set_returns_its_queued_jobs(emu: Emulator, svc: Service) -> None:
    """DELETE of a scale set: its unstarted jobs go back to the queue, its idle runners and sessions go."""
    ss, sess = _offer(svc, emu)
    jid = emu.enqueue_job("acme/widgets", ["linux-ss"], "true")
    svc.jit(ss["id"], "idle-one")
    assert emu.job(jid)["scale_set_id"] == ss["id"]
    assert svc("DELETE", f"{SS}/{ss['id']}").status_code == 204
    assert emu.job(jid)["scale_set_id"] is None and emu.job(jid)["status"] == "queued"
    assert not [r for r in emu.runners() if r["name"] == "idle-one"]
    assert emu.scale_sets() == [] and emu.scale_set_sessions() == []


# ---- faults, HEAD, realism, control API -----------------------------------------------------------------
class TestFaultsAndRealism:
    def test_error_fault_applies(self, emu: Emulator, svc: Service) -> None:
        """errors=N answers the Actions-service endpoints with that 5xx, matched by template."""
        emu.set_faults(errors=1, error_status=503, match="runnerscalesets")
        assert svc("GET", SS).status_code == 503
        assert svc("GET", SS).status_code == 200
        assert emu.request_counts()["GET /_apis/runtime/runnerscalesets"] == 2

    def test_secondary_fault_applies(self, emu: Emulator, svc: Service) -> None:
        """secondary=N answers GitHub's secondary-limit message with retry-after."""
        emu.set_faults(secondary=1, secondary_status=429, retry_after=3)
        r = svc("GET", SS)
        assert r.status_code == 429 and r.headers["retry-after"] == "3"

    def test_drop_fault_applies_to_the_queue(self, emu: Emulator, svc: Service) -> None:
        """drop=N closes the message GET's connection without an answer."""
        ss = svc.create("dropq")
        sess = svc.session(ss["id"])
        emu.set_faults(drop=1, match="/messages")
        with pytest.raises(requests.ConnectionError):
            svc.poll(sess)
        assert svc.poll(sess).status_code == 202

    def test_latency_applies(self, emu: Emulator, svc: Service) -> None:
        """latency adds its seconds to Actions-service answers."""
        emu.set_faults(latency=0.4, match="runnergroups")
        started = time.monotonic()
        svc("GET", "_apis/runtime/runnergroups/", params={"groupName": "Default"})
        assert time.monotonic() - started >= 0.4

    def test_head_is_answered_like_get(self, api: Api, svc: Service) -> None:
        """HEAD gets GET's status and headers without a body, on REST and the Actions service."""
        r = api("HEAD", "/orgs/acme/actions/runners")
        assert r.status_code == 200 and r.content == b"" and int(r.headers["Content-Length"]) > 0
        assert "x-ratelimit-remaining" in r.headers
        assert api("HEAD", "/orgs/acme/actions/runners/999").status_code == 404
        assert api("HEAD", "/orgs/acme/actions/runners/registration-token").status_code == 404
        r = svc("HEAD", SS)
        assert r.status_code == 200 and r.content == b""

    def test_busy_and_removal_lag(self, api: Api, emu: Emulator, runner_dir: Path,
                                  runner_env: dict[str, str]) -> None:
        """state_lag: busy/online show late, and a finished ephemeral runner stays listed that long."""
        emu.set_options(state_lag=1.0)
        jit = api.jit("/orgs/acme/actions", "lagging", ["self-hosted", "lag"]).json()
        jid = emu.enqueue_job("acme/widgets", ["lag"], "sleep 1.6")
        proc = _start(runner_dir, runner_env, jit["encoded_jit_config"])
        rid = jit["runner"]["id"]
        try:
            wait_for(lambda: emu.job(jid)["status"] == "in_progress", timeout=20)
            assert api.get(f"/orgs/acme/actions/runners/{rid}").json()["busy"] is False  # not yet shown
            wait_for(lambda: api.get(f"/orgs/acme/actions/runners/{rid}").json()["busy"], timeout=5)
            emu.wait_job(jid, timeout=30)
            assert api.get(f"/orgs/acme/actions/runners/{rid}").status_code == 200  # still listed
            wait_for(lambda: api.get(f"/orgs/acme/actions/runners/{rid}").status_code == 404, timeout=10)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def test_control_api(self, api: Api, emu: Emulator, svc: Service) -> None:
        """/_emulator/scalesets, /_emulator/scaleset-sessions and /_emulator/options mirror the Python API."""
        ss, sess = _offer(svc, emu)
        body = api.control("GET", "/scalesets").json()["scale_sets"]
        assert body[0]["id"] == ss["id"] and body[0]["max_capacity"] == 10 and body[0]["sessions"] == [sess["sessionId"]]
        assert api.control("GET", "/scaleset-sessions").json()["sessions"][0]["sessionId"] == sess["sessionId"]
        r = api.control("PATCH", "/options", json={"message_poll_wait": 0.1})
        assert r.status_code == 200 and r.json()["message_poll_wait"] == 0.1
        assert api.control("PATCH", "/options", json={"bogus": 1}).status_code == 422
        assert emu.options()["message_poll_wait"] == 0.1


def test_request_log_names_actions_templates(emu: Emulator, svc: Service) -> None:
    """The request log keys Actions-service calls by template, without the tenant prefix."""
    ss = svc.create("logged")
    svc("GET", f"{SS}/{ss['id']}")
    counts = emu.request_counts()
    assert counts["POST /_apis/runtime/runnerscalesets"] == 1
    assert counts["GET /_apis/runtime/runnerscalesets/{scale_set_id}"] == 1
    assert HTTP_TIMEOUT > 0


def test_standalone_rejects_unknown_options() -> None:
    """`python -m emulator --option NAME=VALUE` takes only the run-time options."""
    res = subprocess.run([sys.executable, "-m", "emulator", "--option", "bogus=1"], capture_output=True, text=True,
                         timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 2 and "message_poll_wait" in res.stderr


def test_enterprise_scale_set_takes_linked_orgs_jobs(api: Api, emu: Emulator) -> None:
    """An enterprise scale set is offered the jobs of repos in orgs linked to the enterprise, not others."""
    emu.link_org("bigco", "acme")
    ent = Service(api, "enterprises/bigco")
    ss = ent.create("ent-ss")
    sess = ent.session(ss["id"])
    assert ent.poll(sess).status_code == 202
    emu.enqueue_job("other/repo", ["ent-ss"], "true")
    jid = emu.enqueue_job("acme/widgets", ["ent-ss"], "true")
    msgs = _drain(ent, sess)
    assert [m["workflowRunId"] for m in msgs] == [jid]


def test_expired_session_loses_its_queue(emu: Emulator, svc: Service) -> None:
    """Once a silent session has expired its queue token answers 401 and refresh answers 404."""
    ss = svc.create("quiet")
    sess = svc.session(ss["id"])
    emu.advance_clock(121)
    assert svc.poll(sess).status_code == 401
    assert svc("PATCH", f"{SS}/{ss['id']}/sessions/{sess['sessionId']}").status_code == 404


def test_scale_set_runner_in_the_rest_list(api: Api, svc: Service) -> None:
    """A scale set's JIT runner is a runner of the scope: REST lists it, ephemeral, labels read-only."""
    ss = svc.create("listed", ["listed", "cpu"])
    rid = svc.jit(ss["id"], "listed-1").json()["runner"]["id"]
    got = api.get(f"/orgs/acme/actions/runners/{rid}").json()
    assert got["name"] == "listed-1" and got["ephemeral"] is True and got["status"] == "offline"
    assert {(lb["name"], lb["type"]) for lb in got["labels"]} == {("listed", "read-only"), ("cpu", "read-only")}


def test_repo_scope_has_only_the_default_group(api: Api) -> None:
    """A repository's Actions service knows one runner group, Default (id 1)."""
    repo = Service(api, "acme/widgets")
    body = repo("GET", "_apis/runtime/runnergroups/").json()
    assert [(g["id"], g["name"]) for g in body["value"]] == [(1, "Default")]


def test_control_can_end_sessions_and_expire_tokens(api: Api, emu: Emulator, svc: Service) -> None:
    """end_scale_set_sessions / expire_queue_tokens / expire_admin_tokens (and their control API) force the
    paths a client must survive: 401 on the queue, refresh, a new session, a new admin token."""
    ss = svc.create("forced")
    sess = svc.session(ss["id"])
    assert emu.expire_queue_tokens(ss["id"]) == 1
    assert svc.poll(sess).status_code == 401
    fresh = svc("PATCH", f"{SS}/{ss['id']}/sessions/{sess['sessionId']}").json()
    assert svc.poll(fresh).status_code == 202
    r = api.control("DELETE", f"/scaleset-sessions?scale_set_id={ss['id']}")
    assert r.status_code == 200 and r.json() == {"ended": 1}
    assert svc.poll(fresh).status_code == 401
    assert svc.session(ss["id"])["sessionId"] != sess["sessionId"]
    r = api.control("POST", "/scaleset-tokens/expire", json={"kind": "admin"})
    assert r.status_code == 200 and r.json()["expired"] >= 1
    assert svc("GET", SS).status_code == 401
    assert Service(api)("GET", SS).status_code == 200
