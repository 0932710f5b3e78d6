"""GitHub's own scale-set client (github.com/actions/scaleset v0.4.0: its Client and its listener package,
built by toolchain/scaleset-conformance.sh) runs jobs through a scale set on our emulator, with stand-in
runners started from the JIT configs it gets. Loopback only, no Docker.

A failure of the Go program fails the test, except when probing shows that the emulator does not serve one of
the Actions-service endpoints at all (404/405/501 on a well-formed call): then the test skips and names it.
A wrong status, field or header on an endpoint that exists is a wire mismatch and fails."""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from emulator import Emulator

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "toolchain" / "scaleset-conformance.sh"
N_JOBS = 3
ORG = "acme"
REPO = "acme/widgets"
SCALE_SET = "ghr-conformance"
GO_TIMEOUT = 120  # the program's own bound (s); the subprocess gets a margin on top
HTTP_TIMEOUT = 15.0
MISSING = (404, 405, 501)


def _emulator_options(**wanted: Any) -> dict[str, Any]:
    """The options, after checking that this emulator takes them (a short message long-poll keeps the 202 path
    exercised; short token lifetimes exercise the client's refreshes)."""
    params = inspect.signature(Emulator.__init__).parameters
    unknown = sorted(set(wanted) - set(params))
    if unknown:
        pytest.fail(f"Emulator() takes no option {', '.join(unknown)}: see emulator/README.md for the scale-set options")
    return wanted


@pytest.fixture(scope="module")
def conformance_bin() -> Path:
    """The Go program, from make setup's cache (built on the spot, from the Go module proxy, if missing)."""
    res = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    if res.returncode != 0:
        pytest.fail(f"{BUILD.name} failed (run `make setup`):\n{res.stderr[-3000:]}")
    path = Path(res.stdout.strip().splitlines()[-1])
    assert path.is_file() and os.access(path, os.X_OK), f"{BUILD.name} printed {path!r}, not an executable"
    return path


def _unpack_runner(emu: Emulator, dest: Path) -> Path:
    """The stand-in runner as users get it: the release tarball from the emulator, unpacked."""
    resp = requests.get(emu.download_url(), timeout=HTTP_TIMEOUT)
    resp.raise_for_status()
    dest.mkdir()
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _runner_env(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_RUNNER_INPUT_")}
    env["GHR_CONFORMANCE_TOKEN"] = token  # not on the command line
    env["RUNNER_ALLOW_RUNASROOT"] = "1"  # the suite may run as root
    env["GHR_STANDIN_MAX_OUTAGE"] = "10"
    return env


# ---- probing: does the emulator serve the Actions-service endpoints at all? ---------------------------------

class _Service:
    """The Actions service as GitHub's client reaches it: admin JWT from runner-registration, api-version query."""

    def __init__(self, emu: Emulator) -> None:
        self.s = requests.Session()
        self.s.headers["User-Agent"] = "ghr-conformance-probe"
        self.emu = emu
        self.url = ""
        self.token = ""

    def connect(self, scope_url: str, reg_path: str) -> str | None:
        """None when connected; else the endpoint the emulator lacks. Raises on other failures."""
        r = self.s.post(self.emu.api_url + reg_path, headers={"Authorization": f"Bearer {self.emu.admin_token}"},
                        timeout=HTTP_TIMEOUT)
        if r.status_code in MISSING:
            return f"POST {reg_path} ({r.status_code})"
        r.raise_for_status()
        reg = r.json()["token"]
        r = self.s.post(self.emu.api_url + "/actions/runner-registration", json={"url": scope_url, "runner_event": "register"},
                        headers={"Authorization": f"RemoteAuth {reg}"}, timeout=HTTP_TIMEOUT)
        if r.status_code in MISSING:
            return f"POST /api/v3/actions/runner-registration ({r.status_code})"
        r.raise_for_status()
        self.url, self.token = r.json()["url"], r.json()["token"]
        return None

    def call(self, method: str, path: str, body: Any = None, token: str | None = None, url: str | None = None,
             query: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> requests.Response:
        target = url or urljoin(self.url.rstrip("/") + "/", path)
        q = dict(query or {})
        if url is None:
            q["api-version"] = "6.0-preview"
        sep = "&" if "?" in target else "?"
        hdrs = {"Authorization": f"Bearer {token or self.token}", **(headers or {})}
        return self.s.request(method, target + sep + urlencode(q), json=body, headers=hdrs, timeout=HTTP_TIMEOUT)


def _probe_missing(emu: Emulator) -> str | None:
    """Walks every Actions-service endpoint GitHub's client calls, once, on a scale set of its own.
    Returns the first one the emulator does not serve (404/405/501 on a call that GitHub answers), or None."""
    svc = _Service(emu)
    lack = svc.connect(f"{emu.url}/{ORG}", f"/orgs/{ORG}/actions/runners/registration-token")
    if lack:
        return lack
    if not svc.url:
        return "an Actions-service URL in the runner-registration answer"

    def lacks(label: str, r: requests.Response) -> str | None:
        return f"{label} ({r.status_code})" if r.status_code in MISSING else None

    ss = "_apis/runtime/runnerscalesets"
    groups = svc.call("GET", "_apis/runtime/runnergroups/", query={"groupName": "Default"})
    steps: list[tuple[str, requests.Response]] = [
        ("GET _apis/runtime/runnergroups/?groupName=", groups),
        (f"GET {ss}?runnerGroupId=&name=", svc.call("GET", ss, query={"runnerGroupId": 1, "name": "ghr-probe"})),
    ]
    for label, r in steps:
        if lacks(label, r):
            return lacks(label, r)
    spec = {"name": "ghr-probe", "runnerGroupId": 1, "labels": [{"type": "System", "name": "ghr-probe-only"}],
            "RunnerSetting": {"disableUpdate": True}}
    r = svc.call("POST", ss, spec)
    if lacks(f"POST {ss}", r) or not r.ok:
        return lacks(f"POST {ss}", r)
    sid = r.json().get("id")
    steps = [(f"GET {ss}/{{id}}", svc.call("GET", f"{ss}/{sid}")),
             (f"PATCH {ss}/{{id}}", svc.call("PATCH", f"{ss}/{sid}", spec))]
    r = svc.call("POST", f"{ss}/{sid}/sessions", {"ownerName": "ghr-probe"})
    steps.append((f"POST {ss}/{{id}}/sessions", r))
    session = r.json() if r.ok else {}
    r = svc.call("POST", f"{ss}/{sid}/generatejitconfig", {"name": "ghr-probe-runner", "workFolder": "_work"})
    steps.append((f"POST {ss}/{{id}}/generatejitconfig", r))
    rid = (r.json().get("runner") or {}).get("id") if r.ok else None
    agents = "_apis/distributedtask/pools/0/agents"
    if rid:
        steps.append((f"GET {agents}/{{id}}", svc.call("GET", f"{agents}/{rid}")))
        steps.append((f"GET {agents}?agentName=", svc.call("GET", agents, query={"agentName": "ghr-probe-runner"})))
    if session.get("messageQueueUrl"):
        qtok = session.get("messageQueueAccessToken", "")
        steps.append((f"POST {ss}/{{id}}/acquirejobs", svc.call("POST", f"{ss}/{sid}/acquirejobs", [], token=qtok)))
        try:
            steps.append(("GET <messageQueueUrl>", svc.call(
                "GET", "", url=session["messageQueueUrl"], token=qtok,
                headers={"X-ScaleSetMaxCapacity": "0", "Accept": "application/json; api-version=6.0-preview"})))
        except requests.Timeout:
            pass  # held as a long poll: it exists
    if rid:
        steps.append((f"DELETE {agents}/{{id}}", svc.call("DELETE", f"{agents}/{rid}")))
    if session.get("sessionId"):
        r = svc.call("DELETE", f"{ss}/{sid}/sessions/{session['sessionId']}")
        steps.append((f"DELETE {ss}/{{id}}/sessions/{{sessionId}}", r))
    steps.append((f"DELETE {ss}/{{id}}", svc.call("DELETE", f"{ss}/{sid}")))
    for label, r in steps:
        if lacks(label, r):
            return lacks(label, r)
    return None


def _missing_endpoint() -> str | None:
    """Probes a fresh emulator, so that the failed run's leftovers cannot decide."""
    with Emulator(**_emulator_options(message_poll_wait=1.0)) as probe_emu:
        return _probe_missing(probe_emu)


# ---- the tests ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scenario:
    id: str
    doc: str
    options: dict[str, Any]  # Emulator options
    max_runners: int = 4
    script: str = "echo conformance-{i}"
    faults: dict[str, Any] = field(default_factory=dict)
    scope: str = ORG  # the scale set's: org, org/repo or enterprises/<slug>; the jobs are always in REPO
    runner_group: str | None = None  # None: "default" (id 1, no lookup, as GitHub's example)
    app: bool = False  # authenticate as a GitHub App installed on the org instead of a PAT
    check_busy_delete: bool = False


SCENARIOS = [
    Scenario("basic", "three jobs, room for all of them", {"message_poll_wait": 5.0}),
    Scenario("capacity", "X-ScaleSetMaxCapacity 2: never more than 2 jobs assigned at once, all 3 run; deleting a "
             "busy runner's agent is refused (JobStillRunning)",
             {"message_poll_wait": 1.0}, max_runners=2, script="sleep 2; echo conformance-{i}", check_busy_delete=True),
    Scenario("repo-app", "repository scale set, GitHub App auth (installation token for the registration token)",
             {"message_poll_wait": 5.0}, scope=REPO, app=True),
    Scenario("enterprise-group", "enterprise scale set in a runner group looked up by name takes a linked org's jobs",
             {"message_poll_wait": 5.0}, scope="enterprises/bigco", runner_group="conformance"),
    Scenario("refresh-and-5xx",
             "queue token expires mid-run (401, PATCH session), admin JWT under 60 s (refreshed before each call), "
             "two 502s on the message queue (retried)",
             {"message_poll_wait": 1.0, "message_queue_token_ttl": 2.0, "actions_token_ttl": 30.0},
             script="sleep 3; echo conformance-{i}", faults={"errors": 2, "error_status": 502, "match": "/messages"}),
]


def _run_conformance(binary: Path, emu: Emulator, runner_dir: Path, work: Path,
                     sc: Scenario) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    args = [str(binary), "--url", f"{emu.url}/{sc.scope}", "--name", SCALE_SET, "--labels", SCALE_SET,
            "--runner-cmd", str(runner_dir / "run.sh"), "--work-dir", str(work), "--keep-work-dirs",
            "--jobs", str(N_JOBS), "--max-runners", str(sc.max_runners), "--min-runners", "0",
            "--timeout", f"{GO_TIMEOUT}s"]
    if sc.runner_group:
        args += ["--runner-group", sc.runner_group]
    if sc.check_busy_delete:
        args.append("--check-busy-delete")
    env = _runner_env(emu.admin_token)
    if sc.app:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        app_id, installs = emu.add_app(None, public, installations=[ORG])
        key_file = work.parent / "app-key.pem"
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_file.chmod(0o600)
        args += ["--app-client-id", str(app_id), "--app-installation-id", str(installs[ORG]),
                 "--app-private-key-file", str(key_file)]
        del env["GHR_CONFORMANCE_TOKEN"]
    res = subprocess.run(args, env=env, capture_output=True, text=True, timeout=GO_TIMEOUT + 60)
    try:
        summary: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        summary = {}
    return res, summary


def _fail_or_skip(res: subprocess.CompletedProcess[str], summary: dict[str, Any]) -> None:
    failure = (f"GitHub's scale-set client failed (exit {res.returncode}) at step {summary.get('step')!r}:\n"
               f"{summary.get('error') or res.stdout[-2000:]}\n--- stderr (end) ---\n{res.stderr[-4000:]}")
    try:
        missing = _missing_endpoint()
    except (requests.RequestException, KeyError, ValueError) as exc:
        pytest.fail(f"{failure}\n--- probing the emulator's endpoints failed too: {exc!r}")
    if missing:
        stopped = " ".join(str(summary.get("error") or res.stderr[-300:]).split())[:400]
        pytest.skip(f"the emulator does not serve {missing} yet, an endpoint GitHub's scale-set client calls "
                    f"(the client stopped at step {summary.get('step')!r}: {stopped})")
    pytest.fail(failure)


@pytest.mark.parametrize("sc", SCENARIOS, ids=[sc.id for sc in SCENARIOS])
def test_github_scaleset_client_runs_jobs_through_the_emulator(conformance_bin: Path, tmp_path: Path, sc: Scenario) -> None:
    """Scale set, session, one stand-in runner per assigned job, JobStarted/JobCompleted, clean delete."""
    with Emulator(**_emulator_options(**sc.options)) as emu:
        runner_dir = _unpack_runner(emu, tmp_path / "actions-runner")
        if sc.scope.startswith("enterprises/"):
            emu.link_org(sc.scope.split("/")[1], ORG)
        group_id = emu.add_runner_group(sc.scope, sc.runner_group) if sc.runner_group else 1
        job_ids = [emu.enqueue_job(REPO, [SCALE_SET], sc.script.format(i=i)) for i in range(N_JOBS)]
        if sc.faults:
            emu.set_faults(**sc.faults)

        res, summary = _run_conformance(conformance_bin, emu, runner_dir, tmp_path / "runners", sc)
        emu.clear_faults()
        if res.returncode != 0:
            _fail_or_skip(res, summary)
        assert summary.get("ok") is True, summary
        _assert_jobs_ran_once(emu, job_ids, summary)
        assert summary["maxConcurrentRunners"] <= sc.max_runners, summary
        # The emulator assigned no more jobs than the capacity the listener reported.
        assert 0 < summary["maxAssignedJobs"] <= sc.max_runners, summary
        if sc.faults:
            hit = [e for e in emu.request_log() if e.get("fault") == "error"]
            assert len(hit) == sc.faults["errors"], hit  # every injected 5xx was met, and retried past
        log = [e for e in emu.request_log() if not e.get("fault")]  # injected faults were retried: see above
        polls = [e for e in log if e["endpoint"].startswith("GET ") and e["endpoint"].endswith("/messages")]
        acks = [e for e in log if e["endpoint"].startswith("DELETE ") and e["endpoint"].endswith("/messages/{message_id}")]
        # The listener acknowledged every message it was given, and each acknowledgement was accepted.
        assert len(acks) == sum(1 for e in polls if e["status"] == 200), (polls, acks)
        assert all(e["status"] == 204 for e in acks), acks
        if sc.options.get("message_poll_wait", 50) <= 1:  # jobs outlast the poll: the client met 202 and polled on
            assert any(e["status"] == 202 for e in polls), polls
        counts = emu.request_counts()
        if "message_queue_token_ttl" in sc.options:
            refreshed = sum(n for k, n in counts.items() if k.startswith("PATCH ") and k.endswith("/sessions/{session_id}"))
            assert refreshed >= 1, counts
        if sc.options.get("actions_token_ttl", 3600) < 60:
            assert counts.get("POST /actions/runner-registration", 0) > 1, counts

        # Clean-up as GitHub's client did it: session closed, scale set deleted (the program checked the answers
        # and that the name is gone); here, the emulator's own view.
        assert summary["sessionClosed"] and summary["scaleSetDeleted"] and summary["scaleSetGoneAfterDelete"], summary
        assert "generatejitconfig with a taken name: RunnerExistsError" in summary["checks"], summary["checks"]
        if sc.check_busy_delete:
            assert "busy agent delete: JobStillRunningError" in summary["checks"], summary["checks"]
        if sc.runner_group:
            assert "runner group by name" in summary["checks"], summary["checks"]
        _assert_scale_set_gone(emu, sc.scope, group_id, summary["scaleSetId"])
        _wait_runners_gone(emu, {r["name"] for r in summary["runners"]})


def _assert_jobs_ran_once(emu: Emulator, job_ids: list[int], summary: dict[str, Any]) -> None:
    """Every job ran once, on one of the runners the client started from its JIT configs, and succeeded;
    JobStarted and JobCompleted named that runner by the name and id the Actions service gave it."""
    completed = summary["completed"]
    names = [c["runnerName"] for c in completed]
    assert len(completed) == N_JOBS and len(set(names)) == N_JOBS, completed
    assert all(c["result"].lower() == "succeeded" for c in completed), completed
    assert set(names) <= {r["name"] for r in summary["runners"]}, summary["runners"]
    assert {s["runnerName"] for s in summary["started"]} == set(names), summary["started"]
    assert len({c["runnerRequestId"] for c in completed}) == N_JOBS, completed
    jobs = [emu.job(j) for j in job_ids]
    for i, job in enumerate(jobs):
        assert job["status"] == "completed" and job["conclusion"] == "success", job
        assert f"conformance-{i}" in job["output"], job
    assert sorted(j["runner_name"] for j in jobs) == sorted(names), (jobs, completed)
    by_name = {c["runnerName"]: c for c in completed}
    for job in jobs:
        assert by_name[job["runner_name"]]["runnerId"] == job["runner_id"], (job, by_name)


def _rest_prefix(scope: str) -> str:
    return f"/enterprises/{scope.split('/')[1]}" if scope.startswith("enterprises/") else \
        f"/repos/{scope}" if "/" in scope else f"/orgs/{scope}"


def _assert_scale_set_gone(emu: Emulator, scope: str, group_id: int, scale_set_id: int) -> None:
    svc = _Service(emu)
    assert svc.connect(f"{emu.url}/{scope}", f"{_rest_prefix(scope)}/actions/runners/registration-token") is None
    r = svc.call("GET", "_apis/runtime/runnerscalesets", query={"runnerGroupId": group_id, "name": SCALE_SET})
    assert r.status_code == 200 and r.json()["count"] == 0, (r.status_code, r.text)
    r = svc.call("GET", f"_apis/runtime/runnerscalesets/{scale_set_id}")
    assert r.status_code == 404, (r.status_code, r.text)
    # A new session on the deleted scale set is refused: the old one cannot linger.
    r = svc.call("POST", f"_apis/runtime/runnerscalesets/{scale_set_id}/sessions", {"ownerName": "after"})
    assert r.status_code == 404, (r.status_code, r.text)
    # The emulator's own view (Python API), where this version has it.
    if callable(getattr(emu, "scale_sets", None)):
        assert not [x for x in emu.scale_sets() if x.get("id") == scale_set_id], emu.scale_sets()
    if callable(getattr(emu, "scale_set_sessions", None)):
        assert not [x for x in emu.scale_set_sessions() if x.get("scaleSetId") == scale_set_id], emu.scale_set_sessions()


def _wait_runners_gone(emu: Emulator, names: set[str], timeout: float = 30.0) -> None:
    """Ephemeral runners are deleted once their job is done (GitHub lags a little; so may the emulator)."""
    deadline = time.monotonic() + timeout
    left: list[str] = []
    while time.monotonic() < deadline:
        left = [r["name"] for r in emu.runners() if r["name"] in names]
        if not left:
            return
        time.sleep(0.5)
    pytest.fail(f"runners still registered {timeout}s after their jobs: {left}")
