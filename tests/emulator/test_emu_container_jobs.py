"""`container:` and `services:` jobs: the stand-in runner on the host, against the host's engine.

Images come from the test registry (tests/_support/registry.py): busybox and a health-checked httpd
service, built offline, pushed, and pulled by the stand-in as the real worker pulls (`docker pull`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from emu_helpers import Api, wait_for

from emulator import Emulator
from tests._support.registry import Registry, build_busybox, build_service

SCOPE = "acme/widgets"
RUN_TIMEOUT = 60


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, str]]:
    """busybox and the httpd service, in a registry on loopback, by the names the host engine pulls."""
    client = docker.from_env()
    with Registry(client) as reg:
        yield {"busybox": reg.push(build_busybox(client), "busybox").host_ref,
               "service": reg.push(build_service(client), "service").host_ref}
    client.close()


class Runner:
    """A configured stand-in runner (run.sh) in its own folder; killed at teardown."""

    def __init__(self, emu: Emulator, api: Api, root: Path, env: dict[str, str]) -> None:
        self.emu, self.root, self.env = emu, root, env
        token = api.post(f"/repos/{SCOPE}/actions/runners/registration-token").json()["token"]
        res = subprocess.run([str(root / "config.sh"), "--url", f"{emu.url}/{SCOPE}", "--token", token,
                              "--unattended", "--name", "containers", "--labels", "docker"],
                             env=env, cwd=root, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert res.returncode == 0, res.stdout + res.stderr
        self.log = open(root / "run.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([str(root / "run.sh")], env=env, cwd=root, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    @property
    def instance_label(self) -> str:
        """The label the worker puts on every container and network of this runner."""
        return hashlib.sha256((self.root / ".runner").read_bytes()).hexdigest()[:6]

    @property
    def workspace(self) -> Path:
        return self.root / "_work" / "widgets" / "widgets"

    def job(self, script: str, **kw: Any) -> dict[str, Any]:
        jid = self.emu.enqueue_job(SCOPE, ["docker"], script, timeout=120, **kw)
        return self.emu.wait_job(jid, timeout=150)

    def leftovers(self) -> dict[str, str]:
        label = f"label={self.instance_label}"
        ps = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", label], capture_output=True, text=True)
        nets = subprocess.run(["docker", "network", "ls", "--quiet", "--filter", label], capture_output=True, text=True)
        return {k: v for k, v in (("containers", ps.stdout.strip()), ("networks", nets.stdout.strip())) if v}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def runner(emu: Emulator, api: Api, runner_dir: Path, runner_env: dict[str, str]) -> Iterator[Runner]:
    r = Runner(emu, api, runner_dir, runner_env)
    try:
        yield r
        assert r.leftovers() == {}, "the job left containers or networks behind"
    finally:
        r.close()
        label = f"label={r.instance_label}"
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        subprocess.run(["docker", "network", "prune", "-f", "--filter", label], capture_output=True)


def ok(job: dict[str, Any]) -> dict[str, Any]:
    assert job["conclusion"] == "success", job["output"]
    return job


# ---- the job payload --------------------------------------------------------------------------------
def test_job_payload_takes_workflow_shapes(emu: Emulator) -> None:
    """container as an image string or a mapping, services by id: normalised, every key present."""
    jid = emu.enqueue_job(SCOPE, ["x"], "true", container="busybox:1",
                          services={"db": {"image": "pg", "env": {"N": 1, "B": True}, "ports": [5432]},
                                    "off": {"image": ""}})
    job = emu.job(jid)
    assert job["container"] == {"image": "busybox:1", "env": {}, "ports": [], "volumes": [], "options": ""}
    assert job["services"] == {"db": {"image": "pg", "env": {"N": "1", "B": "true"}, "ports": ["5432"],
                                      "volumes": [], "options": ""}}


@pytest.mark.parametrize("body, message", [
    ({"container": {"image": "x", "credentials": {"username": "u", "password": "p"}}}, "container.credentials"),
    ({"container": {"image": "x", "entrypoint": "sh"}}, "unknown keys"),
    ({"services": {"1db": {"image": "x"}}}, "not a valid service id"),
    ({"services": {"db": "postgres"}}, "services.db must be a mapping"),
    ({"services": {"db": {"image": "x", "ports": "80"}}}, "services.db.ports must be a list"),
])
def test_control_api_refuses_bad_shapes(api: Api, body: dict[str, Any], message: str) -> None:
    """POST /_emulator/jobs answers 422 naming the key for shapes a workflow file could not have."""
    resp = api.control("POST", "/jobs", json={"scope": SCOPE, "labels": ["x"], "script": "true", **body})
    assert resp.status_code == 422, resp.text
    assert message in resp.json()["message"]


def test_control_api_carries_container_and_services(api: Api) -> None:
    """The control API takes the same shapes and shows them on the job."""
    resp = api.control("POST", "/jobs", json={"scope": SCOPE, "labels": ["x"], "script": "true",
                                              "container": {"image": "b", "options": "--cpus 1"},
                                              "services": {"web": {"image": "s", "volumes": ["/data"]}}})
    assert resp.status_code == 201, resp.text
    assert resp.json()["container"]["options"] == "--cpus 1"
    assert resp.json()["services"]["web"]["volumes"] == ["/data"]


# ---- running them (real engine) -----------------------------------------------------------------------
@pytest.mark.docker
def test_container_job_runs_steps_in_the_job_container(runner: Runner, images: dict[str, str]) -> None:
    """Steps run in the job container, in /__w/<repo>/<repo>, seeing the checked-out workspace; mounts as upstream."""
    runner.workspace.mkdir(parents=True, exist_ok=True)
    (runner.workspace / "checked-out.txt").write_text("the sources\n")
    script = "\n".join([
        'echo "workspace=$GITHUB_WORKSPACE pwd=$(pwd) home=$HOME temp=$RUNNER_TEMP greeting=$GREETING"',
        "cat checked-out.txt",
        "test -d /__e && test -d /github/workflow && test -d /__w/_actions && test -d /__w/_tool",
        "if touch /__e/x 2>/dev/null; then echo externals-writable; exit 9; fi",
        "tr '\\0' ' ' </proc/1/cmdline; echo",
        "echo written-in-container > result.txt",
    ])
    job = ok(runner.job(script, container={"image": images["busybox"], "env": {"GREETING": "hi"}}))
    out = job["output"]
    assert ("workspace=/__w/widgets/widgets pwd=/__w/widgets/widgets home=/github/home temp=/__w/_temp "
            "greeting=hi") in out
    assert "the sources" in out
    assert "tail -f /dev/null" in out
    assert (runner.workspace / "result.txt").read_text() == "written-in-container\n"
    assert "docker network create --label " + runner.instance_label + " github_network_" in out
    assert f" -v {runner.root / '_work'}:/__w " in out and ":/__e:ro " in out
    assert "--entrypoint tail" in out and " exec -i --workdir /__w/widgets/widgets " in out


@pytest.mark.docker
def test_failing_step_in_a_container_fails_the_job_and_cleans_up(runner: Runner, images: dict[str, str]) -> None:
    """A step's exit code in the job container is the job's; containers and the network are removed after it."""
    job = runner.job("echo before; exit 3", container=images["busybox"])
    assert (job["conclusion"], job["exit_code"]) == ("failure", 3)
    assert "docker rm --force" in job["output"] and "docker network rm github_network_" in job["output"]


@pytest.mark.docker
def test_service_reached_by_alias_from_a_container_job(runner: Runner, images: dict[str, str]) -> None:
    """A container job reaches its service by the service id on the job network, after the health wait."""
    job = ok(runner.job("wget -q -O- http://web:80/index.html",
                        container=images["busybox"],
                        services={"web": {"image": images["service"], "env": {"READY_AFTER": "2"}}}))
    out = job["output"]
    assert "hello from service" in out
    assert "--network-alias web" in out
    assert "web service is starting" in out and "web service is healthy." in out


@pytest.mark.docker
def test_service_reached_on_localhost_from_a_host_job(runner: Runner, images: dict[str, str]) -> None:
    """A job on the runner itself reaches a service at localhost:<published port> (`docker port`)."""
    script = "\n".join([
        'echo "context=$STANDIN_JOB_CONTEXT"',
        'port=$STANDIN_SERVICE_WEB_PORT_80; echo "published=$port"',
        'exec 3<>"/dev/tcp/127.0.0.1/$port"',
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' >&3",
        "cat <&3",
    ])
    job = ok(runner.job(script, services={"web": {"image": images["service"], "ports": ["80"]}}))
    lines = job["output"].splitlines()
    assert "hello from service" in job["output"]
    context = json.loads(next(ln for ln in lines if ln.startswith("context="))[len("context="):])
    published = next(ln for ln in lines if ln.startswith("published="))[len("published="):]
    assert context["services"]["web"]["ports"] == {"80": published}
    assert context["services"]["web"]["network"].startswith("github_network_")
    assert "docker port " in job["output"]


@pytest.mark.docker
def test_unhealthy_service_fails_the_job_before_its_steps(runner: Runner, images: dict[str, str]) -> None:
    """A service whose health check fails ends the job as failed, its steps never run, and nothing is left."""
    options = "--health-cmd false --health-interval 1s --health-retries 1 --health-start-period 1s"
    job = runner.job("echo step-ran", services={"web": {"image": images["service"], "options": options}})
    assert job["conclusion"] == "failure"
    assert "Failed to initialize, web service is unhealthy." in job["output"]
    assert "step-ran" not in job["output"].replace("echo step-ran", "")


@pytest.mark.docker
def test_stale_resources_of_an_earlier_job_are_removed_first(runner: Runner, images: dict[str, str]) -> None:
    """Before a container job, containers and networks carrying the runner's label (a crashed job) are removed."""
    label = runner.instance_label
    subprocess.run(["docker", "network", "create", "--label", label, f"github_network_stale{os.getpid()}"],
                   check=True, capture_output=True)
    subprocess.run(["docker", "create", "--label", label, images["busybox"], "true"], check=True, capture_output=True)
    job = ok(runner.job("true", container=images["busybox"]))
    assert f"docker ps --all --quiet --no-trunc --filter label={label}" in job["output"]
    assert f"docker network prune --force --filter label={label}" in job["output"]


@pytest.mark.docker
def test_sigterm_during_a_container_step_cancels_and_cleans_up(runner: Runner, images: dict[str, str]) -> None:
    """SIGTERM to the runner while a container step runs: the job is cancelled and its containers are removed."""
    jid = runner.emu.enqueue_job(SCOPE, ["docker"], "echo started; sleep 60", timeout=120,
                                 container=images["busybox"])
    wait_for(lambda: "started" in runner.emu.job(jid)["output"] or runner.emu.job(jid)["status"] == "completed",
             timeout=60)
    runner.proc.terminate()
    job = runner.emu.wait_job(jid, timeout=60)
    assert job["conclusion"] == "cancelled", job["output"]
    assert runner.proc.wait(timeout=30) == 0


@pytest.mark.docker
def test_refused_when_the_runner_sits_in_a_docker_cgroup(emu: Emulator, api: Api, runner_dir: Path,
                                                         runner_env: dict[str, str], images: dict[str, str]) -> None:
    """As upstream: PID 1 in a `/docker/` cgroup (host cgroup namespace, cgroup v1) fails container jobs at once."""
    cgroup = runner_dir / "proc1-cgroup"
    cgroup.write_text("12:pids:/docker/0123abcd\n1:name=systemd:/docker/0123abcd\n")
    r = Runner(emu, api, runner_dir, {**runner_env, "STANDIN_PROC1_CGROUP": str(cgroup)})
    try:
        job = r.job("echo step-ran", container=images["busybox"])
        assert job["conclusion"] == "failure"
        assert "Container feature is not supported when runner is already running inside container." in job["output"]
        assert "docker create" not in job["output"] and r.leftovers() == {}
    finally:
        r.close()
