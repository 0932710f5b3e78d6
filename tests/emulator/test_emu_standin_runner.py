"""The stand-in runner end to end, as local subprocesses against a loopback emulator."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from emu_helpers import Api, wait_for

from emulator import Emulator

RUN_TIMEOUT = 60


class Proc:
    """A runner subprocess whose output goes to a file (no pipe to fill); always reaped."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log = cwd / f"proc-{os.getpid()}-{id(self)}.log"
        self.fh = open(self.log, "wb")  # noqa: SIM115 - closed in wait()/kill()
        self.p = subprocess.Popen(args, env=env, cwd=cwd, stdout=self.fh, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        try:
            return self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s; output:\n{self.output}") from None
        finally:
            self.fh.close()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(timeout=10)
        self.fh.close()

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT)


def configure(runner_dir: Path, env: dict[str, str], url: str, token: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run([str(runner_dir / "config.sh"), "--url", url, "--token", token, "--unattended", *extra], env, runner_dir)


def reg_token(api: Api, prefix: str) -> str:
    return str(api.post(f"{prefix}/runners/registration-token").json()["token"])


def test_tarball_layout(runner_dir: Path) -> None:
    """The tarball keeps the real layout with executable scripts."""
    for name in ("config.sh", "run.sh", "env.sh", "bin/Runner.Listener", "bin/installdependencies.sh"):
        assert (runner_dir / name).stat().st_mode & stat.S_IXUSR, name


def test_configure_and_run_persistent_runner(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str],
                                             procs: list[Proc]) -> None:
    """config.sh registers (default + custom labels, files written); run.sh takes jobs until SIGTERM."""
    res = configure(runner_dir, runner_env, f"{emu.url}/acme/widgets", reg_token(api, "/repos/acme/widgets/actions"),
                    "--name", "persist", "--labels", "gpu,big")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Runner successfully added" in res.stdout
    for name in (".runner", ".credentials", ".credentials_rsaparams"):
        assert stat.S_IMODE((runner_dir / name).stat().st_mode) == 0o600
    conf = json.loads((runner_dir / ".runner").read_text())
    assert conf["agentName"] == "persist" and conf["ephemeral"] is False
    runner = api.get("/repos/acme/widgets/actions/runners?name=persist").json()["runners"][0]
    assert [lb["name"] for lb in runner["labels"]] == ["self-hosted", "Linux", "X64", "gpu", "big"]
    assert runner["labels"][0]["type"] == "read-only" and runner["labels"][3]["type"] == "custom"

    p = Proc([str(runner_dir / "run.sh")], runner_env, runner_dir)
    procs.append(p)
    wait_for(lambda: api.get(f"/repos/acme/widgets/actions/runners/{runner['id']}").json()["status"] == "online")
    j1 = emu.enqueue_job("acme/widgets", ["self-hosted", "gpu"], "echo first; pwd")
    j2 = emu.enqueue_job("acme/widgets", ["gpu"], "echo second >&2; exit 4")
    done1, done2 = emu.wait_job(j1, 30), emu.wait_job(j2, 30)
    assert (done1["exit_code"], done1["conclusion"], done1["runner_name"]) == (0, "success", "persist")
    assert done1["output"] == f"first\n{runner_dir / '_work' / 'widgets' / 'widgets'}\n"
    assert (done2["exit_code"], done2["conclusion"], done2["output"]) == (4, "failure", "second\n")

    p.p.send_signal(signal.SIGTERM)
    assert p.wait() == 0, p.output
    assert api.get(f"/repos/acme/widgets/actions/runners/{runner['id']}").json()["status"] == "offline"


def test_ephemeral_runner_exits_after_one_job(api: Api, emu: Emulator, runner_dir: Path,
                                              runner_env: dict[str, str]) -> None:
    """config.sh --ephemeral: run.sh exits 0 after one job and the emulator deletes the runner."""
    res = configure(runner_dir, runner_env, f"{emu.url}/acme", reg_token(api, "/orgs/acme/actions"),
                    "--name", "eph", "--ephemeral", "--no-default-labels", "--labels", "cpu")
    assert res.returncode == 0, res.stderr
    first = emu.enqueue_job("acme/app", ["cpu"], "echo one")
    second = emu.enqueue_job("acme/app", ["cpu"], "echo two")
    res = run([str(runner_dir / "run.sh")], runner_env, runner_dir)
    assert res.returncode == 0, res.stdout
    assert emu.job(first)["status"] == "completed" and emu.job(second)["status"] == "queued"
    assert api.get("/orgs/acme/actions/runners").json()["total_count"] == 0


def test_jitconfig_flow_reports_output_and_exit_code(api: Api, emu: Emulator, runner_dir: Path,
                                                     runner_env: dict[str, str]) -> None:
    """run.sh --jitconfig: writes the files, runs one job, reports output and exit code, exits 0."""
    jit = api.jit("/orgs/acme/actions", "jit-run", ["self-hosted", "cpu"]).json()["encoded_jit_config"]
    jid = emu.enqueue_job("acme/widgets", ["cpu"], "echo out; echo err >&2; exit 7")
    res = run([str(runner_dir / "run.sh"), "--jitconfig", jit], runner_env, runner_dir)
    assert res.returncode == 0, res.stdout
    job = emu.job(jid)
    assert (job["exit_code"], job["conclusion"], job["runner_name"]) == (7, "failure", "jit-run")
    assert job["output"] == "out\nerr\n"
    assert (runner_dir / ".runner").exists() and (runner_dir / ".credentials").exists()
    assert api.get("/orgs/acme/actions/runners").json()["total_count"] == 0


def test_reused_jitconfig_exits_1(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str],
                                  procs: list[Proc]) -> None:
    """A JIT config is single-use: a second listener with it exits 1 (also while the first is still idle)."""
    jit = api.jit("/orgs/acme/actions", "once", ["cpu"]).json()["encoded_jit_config"]
    listener = str(runner_dir / "bin" / "Runner.Listener")
    first = Proc([listener, "run", "--jitconfig", jit], runner_env, runner_dir)
    procs.append(first)
    wait_for(lambda: api.get("/orgs/acme/actions/runners?name=once").json()["runners"][0]["status"] == "online")
    second = run([listener, "run", "--jitconfig", jit], runner_env, runner_dir)
    assert second.returncode == 1, second.stdout
    jid = emu.enqueue_job("acme", ["cpu"], "true")
    assert emu.wait_job(jid, 30)["exit_code"] == 0
    assert first.wait() == 0
    third = run([listener, "run", "--jitconfig", jit], runner_env, runner_dir)
    assert third.returncode == 1


def test_jitconfig_from_environment_is_hidden_from_jobs(api: Api, emu: Emulator, runner_dir: Path,
                                                        runner_env: dict[str, str]) -> None:
    """ACTIONS_RUNNER_INPUT_JITCONFIG is read and removed: the job does not see it."""
    jit = api.jit("/orgs/acme/actions", "envjit", ["cpu"]).json()["encoded_jit_config"]
    jid = emu.enqueue_job("acme", ["cpu"], "env | grep -c ACTIONS_RUNNER_INPUT || echo clean; echo $RUNNER_NAME")
    env = {**runner_env, "ACTIONS_RUNNER_INPUT_JITCONFIG": jit}
    res = run([str(runner_dir / "bin" / "Runner.Listener"), "run"], env, runner_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert emu.job(jid)["output"] == "0\nclean\nenvjit\n"


def test_configure_from_environment(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str]) -> None:
    """config.sh takes every argument from ACTIONS_RUNNER_INPUT_* as well."""
    env = {**runner_env, "ACTIONS_RUNNER_INPUT_URL": f"{emu.url}/acme",
           "ACTIONS_RUNNER_INPUT_TOKEN": reg_token(api, "/orgs/acme/actions"),
           "ACTIONS_RUNNER_INPUT_NAME": "from-env", "ACTIONS_RUNNER_INPUT_LABELS": "a,b",
           "ACTIONS_RUNNER_INPUT_EPHEMERAL": "true"}
    res = run([str(runner_dir / "config.sh"), "--unattended"], env, runner_dir)
    assert res.returncode == 0, res.stderr
    r = api.get("/orgs/acme/actions/runners?name=from-env").json()["runners"][0]
    assert r["ephemeral"] is True and {"a", "b"} <= {lb["name"] for lb in r["labels"]}


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is only observable as root")
def test_config_refuses_root(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str]) -> None:
    """As root without RUNNER_ALLOW_RUNASROOT, config.sh refuses to run."""
    env = {k: v for k, v in runner_env.items() if k != "RUNNER_ALLOW_RUNASROOT"}
    res = configure(runner_dir, env, f"{emu.url}/acme", reg_token(api, "/orgs/acme/actions"))
    assert res.returncode == 1 and "Must not run with sudo" in res.stdout
    assert not (runner_dir / ".runner").exists()


def test_configure_twice_is_refused(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str]) -> None:
    """A configured runner folder cannot be configured again."""
    tok = reg_token(api, "/orgs/acme/actions")
    assert configure(runner_dir, runner_env, f"{emu.url}/acme", tok, "--name", "a").returncode == 0
    res = configure(runner_dir, runner_env, f"{emu.url}/acme", tok, "--name", "b")
    assert res.returncode == 1 and "already configured" in res.stderr


def test_existing_name_needs_replace(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str],
                                     tmp_path: Path) -> None:
    """A taken name fails unless --replace, which replaces the old registration."""
    api.jit("/orgs/acme/actions", "taken")
    old_id = api.get("/orgs/acme/actions/runners?name=taken").json()["runners"][0]["id"]
    tok = reg_token(api, "/orgs/acme/actions")
    res = configure(runner_dir, runner_env, f"{emu.url}/acme", tok, "--name", "taken")
    assert res.returncode == 1 and "same name" in res.stderr
    res = configure(runner_dir, runner_env, f"{emu.url}/acme", tok, "--name", "taken", "--replace")
    assert res.returncode == 0, res.stderr
    runners = api.get("/orgs/acme/actions/runners?name=taken").json()["runners"]
    assert len(runners) == 1 and runners[0]["id"] != old_id


def test_remove(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str]) -> None:
    """config.sh remove --token deletes the registration and the local files."""
    assert configure(runner_dir, runner_env, f"{emu.url}/acme", reg_token(api, "/orgs/acme/actions"),
                     "--name", "gone").returncode == 0
    bad = run([str(runner_dir / "config.sh"), "remove", "--token", reg_token(api, "/orgs/acme/actions")],
              runner_env, runner_dir)
    assert bad.returncode == 1  # a registration token is not a remove token
    rem = api.post("/orgs/acme/actions/runners/remove-token").json()["token"]
    res = run([str(runner_dir / "config.sh"), "remove", "--token", rem], runner_env, runner_dir)
    assert res.returncode == 0, res.stderr
    assert not (runner_dir / ".runner").exists() and not (runner_dir / ".credentials").exists()
    assert api.get("/orgs/acme/actions/runners").json()["total_count"] == 0


@pytest.mark.parametrize("extra,message", [(["--runnergroup", "nope"], "runner group"),
                                           (["--name"], "Unrecognized")])
def test_configure_errors_exit_1(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str],
                                 extra: list[str], message: str) -> None:
    """Unknown runner group or malformed arguments fail configuration with exit 1."""
    res = configure(runner_dir, runner_env, f"{emu.url}/acme", reg_token(api, "/orgs/acme/actions"), *extra)
    assert res.returncode == 1 and message in res.stderr


def test_bad_registration_token_exits_1(emu: Emulator, runner_dir: Path, runner_env: dict[str, str]) -> None:
    """An unknown registration token fails config.sh with NotFound and exit 1."""
    res = configure(runner_dir, runner_env, f"{emu.url}/acme", "AWRONGTOKEN")
    assert res.returncode == 1 and "404" in res.stderr


def test_deleted_registration_exits_1(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str],
                                      procs: list[Proc]) -> None:
    """A listener whose registration is deleted exits 1 (at start, and while idle)."""
    assert configure(runner_dir, runner_env, f"{emu.url}/acme", reg_token(api, "/orgs/acme/actions"),
                     "--name", "del").returncode == 0
    rid = api.get("/orgs/acme/actions/runners?name=del").json()["runners"][0]["id"]
    listener = str(runner_dir / "bin" / "Runner.Listener")
    p = Proc([listener, "run"], runner_env, runner_dir)
    procs.append(p)
    wait_for(lambda: api.get(f"/orgs/acme/actions/runners/{rid}").json()["status"] == "online")
    assert api.delete(f"/orgs/acme/actions/runners/{rid}").status_code == 204
    assert p.wait() == 1, p.output
    assert run([listener, "run"], runner_env, runner_dir).returncode == 1


def test_sigterm_while_busy_cancels_the_job(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str],
                                            procs: list[Proc]) -> None:
    """SIGTERM during a job cancels it, reports it and exits 0."""
    jit = api.jit("/orgs/acme/actions", "busy", ["cpu"]).json()["encoded_jit_config"]
    jid = emu.enqueue_job("acme", ["cpu"], "echo started; sleep 60")
    p = Proc([str(runner_dir / "bin" / "Runner.Listener"), "run", "--jitconfig", jit], runner_env, runner_dir)
    procs.append(p)
    wait_for(lambda: emu.job(jid)["status"] == "in_progress")
    wait_for(lambda: "Running job" in p.output)
    p.p.send_signal(signal.SIGTERM)
    assert p.wait() == 0, p.output
    job = emu.wait_job(jid, 10)
    assert job["conclusion"] == "cancelled" and job["exit_code"] == 143


def test_unreachable_server_exits_2(api: Api, runner_dir: Path, runner_env: dict[str, str]) -> None:
    """When the emulator cannot be reached for too long the listener exits 2 (retryable)."""
    with Emulator() as other:
        jit = Api(other, other.admin_token).jit("/orgs/acme/actions", "lost").json()["encoded_jit_config"]
    env = {**runner_env, "GHR_STANDIN_MAX_OUTAGE": "1"}
    res = run([str(runner_dir / "bin" / "Runner.Listener"), "run", "--jitconfig", jit], env, runner_dir)
    assert res.returncode == 2, res.stdout


def test_not_configured_exits_1(runner_dir: Path, runner_env: dict[str, str]) -> None:
    """run without configuration or JIT config exits 1."""
    res = run([str(runner_dir / "bin" / "Runner.Listener"), "run"], runner_env, runner_dir)
    assert res.returncode == 1 and "Not configured" in res.stderr
    assert run([str(runner_dir / "run.sh")], runner_env, runner_dir).returncode == 0  # run.sh hides it


def test_job_timeout_kills_the_job(api: Api, emu: Emulator, runner_dir: Path, runner_env: dict[str, str]) -> None:
    """A job past its timeout is killed and fails."""
    jit = api.jit("/orgs/acme/actions", "slow", ["cpu"]).json()["encoded_jit_config"]
    jid = emu.enqueue_job("acme", ["cpu"], "sleep 60", timeout=1)
    res = run([str(runner_dir / "bin" / "Runner.Listener"), "run", "--jitconfig", jit], runner_env, runner_dir)
    assert res.returncode == 0
    assert emu.job(jid)["conclusion"] == "failure"
