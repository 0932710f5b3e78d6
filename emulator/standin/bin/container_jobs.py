"""`container:` and `services:` for the stand-in runner, through the Docker CLI as the real worker does.

Facts from actions/runner (src/Runner.Worker/ContainerOperationProvider.cs, Container/DockerCommandManager.cs,
Container/ContainerInfo.cs, Handlers/StepHost.cs, Handlers/ScriptHandler.cs); the code is ours:

- refused when `/proc/1/cgroup` has a `:/docker/` line (the runner itself in a container sharing the host's
  cgroup namespace, cgroup v1): "Container feature is not supported when runner is already running inside container.";
- `docker` from PATH, the engine from the runner's environment (`DOCKER_HOST`); every resource carries the
  label `<first 6 hex of sha256(.runner)>` (the runner's "instance label");
- before a job: `docker version` (API >= 1.35), `docker ps --all --quiet --no-trunc --filter label=L` and
  `docker rm --force` of each (left by an earlier job), `docker network prune --force --filter label=L`;
- `docker network create --label L github_network_<32 hex>`; every container joins it;
- per container (job container first, then services in order): `docker pull` (3 tries, 1-10 s back-off),
  `docker create --name <32 hex>_<image, sanitised>_<6 hex> --label L [--workdir W] --network N
  [--network-alias <service id>] [-p port]... <options> [-e K=V]... -e GITHUB_ACTIONS=true [-e CI=true]
  [-v src:dst[:ro]]... [--entrypoint tail] IMAGE [-f /dev/null]`, `docker start`, then
  `docker ps --all --filter id=ID --filter status=running --no-trunc --format "{{.ID}} {{.Status}}"`
  (not running: `docker logs --details ID` and a warning);
- the job container mounts `/var/run/docker.sock`, the user's volumes, the work folder as `/__w`, `externals`
  as `/__e` (read-only), `_temp`, `_actions` and the tool cache (under `/__w`, or `/__t` when the cache lives
  elsewhere), `_temp/_github_home` as `/github/home` (HOME) and `_temp/_github_workflow` as `/github/workflow`;
  it runs `tail -f /dev/null` with the workspace (`/__w/<repo>/<repo>`) as working directory; its PATH comes
  from `docker inspect --format "{{range .Config.Env}}{{println .}}{{end}}"`;
- a service: `docker port ID` gives its published ports (`job.services.<id>.ports`);
- health: `docker inspect --format="{{if .Config.Healthcheck}}{{print .State.Health.Status}}{{end}}" ID`
  until it is not `starting` (back-off 2, 4, 8, 16, 32 s); anything but `healthy` fails the job;
- steps in the job container: `docker exec -i --workdir <container path> -e K... ID sh -e <script>` (the
  default shell in a container is `sh -e {0}`; values travel in the CLI's environment, paths translated);
- after the job (always): `docker rm --force ID` for each container, `docker network rm N`.

Stand-in extras (the real runner evaluates `${{ job.services.<id>.ports[...] }}` instead): the step gets
`STANDIN_JOB_CONTEXT` (JSON of the `job` context: container id/network, services id/network/ports) and
`STANDIN_SERVICE_<ID>_PORT_<PORT>=<host port>` (ID upper-cased, `-` as `_`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

MIN_API = (1, 35)
PULL_TRIES = 3


class ContainerJobError(Exception):
    """A container operation failed: the job fails with this message."""


class Interrupted(Exception):
    """The job was cancelled or ran out of time while containers were being set up."""


def sanitize(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "", image)


def parse_port_lines(lines: list[str]) -> dict[str, str]:
    """`docker port` output (`80/tcp -> 0.0.0.0:49153`) -> {"80": "49153"}."""
    ports: dict[str, str] = {}
    for line in lines:
        m = re.match(r"^(\d+)/(\w+) -> (.+):(\d+)$", line.strip())
        if m:
            ports[m.group(1)] = m.group(4)
    return ports


def _as_spec(value: Any) -> dict[str, Any]:
    """A `container:`/service entry in either workflow form (image string or mapping)."""
    if isinstance(value, str):
        return {"image": value}
    return dict(value or {})


class Container:
    def __init__(self, spec: dict[str, Any], alias: str | None) -> None:
        self.image = str(spec["image"])
        self.env = {str(k): "" if v is None else str(v) for k, v in (spec.get("env") or {}).items()}
        self.ports = [str(p) for p in spec.get("ports") or []]
        self.volumes = [str(v) for v in spec.get("volumes") or []]
        self.options = str(spec.get("options") or "")
        self.alias = alias  # the service id; None for the job container
        self.name = f"{uuid.uuid4().hex}_{sanitize(self.image)}_{uuid.uuid4().hex[:6]}"
        self.id = ""
        self.ports_published: dict[str, str] = {}
        self.path = ""

    @property
    def is_job_container(self) -> bool:
        return self.alias is None


class ContainerJob:
    """The containers of one job: `start()` before the steps, `stop()` after them (always)."""

    def __init__(self, job: dict[str, Any], *, root: Path, work: Path, workspace: Path, runner_file: Path,
                 log: Callable[[str], None], tick: Callable[[], None]) -> None:
        self.log = log
        self.tick = tick  # heartbeats; raises Interrupted when the job is cancelled or out of time
        self.docker = shutil.which("docker") or ""
        self.instance_label = hashlib.sha256(runner_file.read_bytes()).hexdigest()[:6]
        self.network = ""
        self.work, self.workspace = work, workspace
        self.temp = work / "_temp"
        self.actions = work / "_actions"
        self.externals = root / "externals"
        self.tools = Path(os.environ.get("RUNNER_TOOL_CACHE") or work / "_tool")
        self.home = self.temp / "_github_home"
        self.workflow = self.temp / "_github_workflow"
        spec = _as_spec(job.get("container")) if job.get("container") else {}
        self.job_container = Container(spec, None) if spec.get("image") else None
        self.services = [Container(_as_spec(s), str(sid)) for sid, s in (job.get("services") or {}).items()
                         if _as_spec(s).get("image")]
        # Most specific first, as the worker's path mappings are consulted.
        self.mappings = [(self.workflow, "/github/workflow"), (self.home, "/github/home"), (work, "/__w"),
                         (self.tools, "/__t"), (self.externals, "/__e")]

    @property
    def containers(self) -> list[Container]:
        return ([self.job_container] if self.job_container else []) + self.services

    # ---- the CLI ---------------------------------------------------------------------------------
    def cli(self, *args: str, capture: bool = True, env: dict[str, str] | None = None,
            check: bool = False) -> tuple[int, list[str]]:
        """Run `docker ARGS`, logging the command like the worker does; output lines go to the job log."""
        if not self.docker:
            raise ContainerJobError("docker was not found in PATH: container operations need the Docker CLI")
        self.log("##[command]" + shlex.join([self.docker, *args]))
        proc = subprocess.Popen([self.docker, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if not capture else subprocess.PIPE,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        while True:
            try:
                out, err = proc.communicate(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                try:
                    self.tick()
                except Interrupted:
                    proc.kill()
                    proc.communicate()
                    raise
        lines = [ln for ln in out.decode(errors="replace").splitlines() if ln]
        for ln in lines + [ln for ln in (err or b"").decode(errors="replace").splitlines() if ln]:
            self.log(ln)
        if check and proc.returncode != 0:
            raise ContainerJobError(f"docker {args[0]} failed with exit code {proc.returncode}")
        return proc.returncode, lines

    # ---- paths -----------------------------------------------------------------------------------
    def to_container(self, value: str) -> str:
        for host, inside in self.mappings:
            h = str(host)
            if value == h:
                return inside
            if value.startswith(h + "/"):
                return inside + value[len(h):]
        return value

    # ---- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        # Upstream refuses container jobs when its own PID 1 sits in a Docker cgroup (cgroup v1 with the host's
        # cgroup namespace): a runner in a container needs `--cgroupns private` for `container:`/`services:`.
        cgroup = Path(os.environ.get("STANDIN_PROC1_CGROUP") or "/proc/1/cgroup")  # test hook
        try:
            lines = cgroup.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        if any(":/docker/" in ln.lower() for ln in lines):
            raise ContainerJobError("Container feature is not supported when runner is already running inside container.")
        self.log("##[group]Checking docker version")
        for side in ("Server", "Client"):
            _, out = self.cli("version", "--format", f"{{{{.{side}.APIVersion}}}}", check=True)
            m = re.search(r"(\d+)\.(\d+)", out[0] if out else "")
            version = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
            self.log(f"Docker {side.lower()} API version: {out[0] if out else '?'}")
            if version < MIN_API:
                raise ContainerJobError(f"Min required docker engine API {side.lower()} version is "
                                        f"'{MIN_API[0]}.{MIN_API[1]}', your docker ('{self.docker}') "
                                        f"{side.lower()} version is '{out[0] if out else '?'}'")
        self.log("##[endgroup]")
        self.log("##[group]Clean up resources from previous jobs")
        _, stale = self.cli("ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={self.instance_label}")
        for cid in stale:
            rc, _ = self.cli("rm", "--force", cid)
            if rc != 0:
                self.log(f"##[warning]Delete stale containers failed, docker rm fail with exit code {rc} "
                         f"for container {cid}")
        rc, _ = self.cli("network", "prune", "--force", "--filter", f"label={self.instance_label}")
        if rc != 0:
            self.log(f"##[warning]Delete stale container networks failed, docker network prune fail with exit code {rc}")
        self.log("##[endgroup]")
        self.log("##[group]Create local container network")
        network = f"github_network_{uuid.uuid4().hex}"
        rc, _ = self.cli("network", "create", "--label", self.instance_label, network)
        if rc != 0:
            raise ContainerJobError(f"Docker network create failed with exit code {rc}")
        self.network = network
        self.log("##[endgroup]")
        for c in self.containers:
            self._start_container(c)
        self.log("##[group]Waiting for all services to be ready")
        for c in self.services:
            self._wait_healthy(c)
        self.log("##[endgroup]")

    def _pull(self, image: str) -> None:
        rc = 0
        for attempt in range(1, PULL_TRIES + 1):
            rc, _ = self.cli("pull", image, capture=False)
            if rc == 0:
                return
            if attempt < PULL_TRIES:
                backoff = random.uniform(1.0, 10.0)
                self.log(f"##[warning]Docker pull failed with exit code {rc}, back off {backoff:.3f} seconds before retry.")
                end = time.monotonic() + backoff
                while time.monotonic() < end:
                    self.tick()
                    time.sleep(min(0.5, max(0.0, end - time.monotonic())))
        raise ContainerJobError(f"Docker pull failed with exit code {rc}")

    def _start_container(self, c: Container) -> None:
        self.log("##[group]" + ("Starting job container" if c.is_job_container else f"Starting {c.alias} service container"))
        self._pull(c.image)
        mounts: list[tuple[str | None, str, bool]] = []
        workdir = entrypoint = None
        entry_args: list[str] = []
        if c.is_job_container:
            mounts.append(("/var/run/docker.sock", "/var/run/docker.sock", False))
        mounts += [self._user_volume(v) for v in c.volumes]
        if c.is_job_container:
            for d in (self.work, self.externals, self.temp, self.actions, self.tools, self.home, self.workflow):
                d.mkdir(parents=True, exist_ok=True)
            mounts += [(str(self.work), "/__w", False), (str(self.externals), "/__e", True),
                       (str(self.temp), self.to_container(str(self.temp)), False),
                       (str(self.actions), self.to_container(str(self.actions)), False),
                       (str(self.tools), self.to_container(str(self.tools)), False),
                       (str(self.home), "/github/home", False), (str(self.workflow), "/github/workflow", False)]
            c.env["HOME"] = "/github/home"
            workdir = self.to_container(str(self.workspace))
            entrypoint, entry_args = "tail", ["-f", "/dev/null"]
        args = ["create", "--name", c.name, "--label", self.instance_label]
        if workdir:
            args += ["--workdir", workdir]
        args += ["--network", self.network]
        if c.alias:
            args += ["--network-alias", c.alias]
        for port in c.ports:
            args += ["-p", port]
        args += shlex.split(c.options)
        for key, value in c.env.items():
            args += ["-e", f"{key}={value}" if value else key]
        args += ["-e", "GITHUB_ACTIONS=true"]
        if "CI" not in c.env:
            args += ["-e", "CI=true"]
        for src, dst, ro in mounts:
            args += ["-v", (f"{src}:{dst}" if src else dst) + (":ro" if ro else "")]
        if entrypoint:
            args += ["--entrypoint", entrypoint]
        args += [c.image, *entry_args]
        rc, out = self.cli(*args)
        if rc != 0 or not out:
            raise ContainerJobError(f"Docker create failed with exit code {rc}")
        c.id = out[-1].strip()
        rc, _ = self.cli("start", c.id)
        if rc != 0:
            raise ContainerJobError(f"Docker start fail with exit code {rc}")
        fmt = "{{.ID}} {{.Status}}"
        _, ps = self.cli("ps", "--all", "--filter", f"id={c.id}", "--filter", "status=running", "--no-trunc",
                         "--format", fmt)
        if not (ps and ps[0].startswith(c.id)):
            self.cli("ps", "--all", "--filter", f"id={c.id}", "--no-trunc", "--format", fmt)
            rc, _ = self.cli("logs", "--details", c.id, capture=False)
            if rc != 0:
                self.log(f"##[warning]Docker logs fail with exit code {rc}")
            self.log(f"##[warning]Docker container {c.id} is not in running state.")
        if c.is_job_container:
            _, env_lines = self.cli("inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", c.id)
            c.path = next((ln[5:] for ln in env_lines if ln.startswith("PATH=")), "")
        else:
            _, lines = self.cli("port", c.id)
            c.ports_published = parse_port_lines(lines)
        self.log("##[endgroup]")

    @staticmethod
    def _user_volume(spec: str) -> tuple[str | None, str, bool]:
        parts = spec.split(":")
        if len(parts) == 3:
            return parts[0], parts[1], parts[2].lower() == "ro"
        if len(parts) == 2:
            if parts[1].lower() == "ro":
                return None, parts[0], True
            return parts[0], parts[1], False
        return None, spec, False

    def _wait_healthy(self, c: Container) -> None:
        fmt = "--format={{if .Config.Healthcheck}}{{print .State.Health.Status}}{{end}}"
        _, out = self.cli("inspect", fmt, c.id)
        health = out[0].strip() if out else ""
        if not health:
            return  # no HEALTHCHECK
        attempt = 0
        while health.lower() == "starting":
            backoff = min(32, 2 + (2 ** attempt - 1) * 2)
            self.log(f"{c.alias} service is starting, waiting {backoff} seconds before checking again.")
            end = time.monotonic() + backoff
            while time.monotonic() < end:
                self.tick()
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            _, out = self.cli("inspect", fmt, c.id)
            health = out[0].strip() if out else ""
            attempt += 1
        if health.lower() == "healthy":
            self.log(f"{c.alias} service is healthy.")
            return
        raise ContainerJobError(f"Failed to initialize, {c.alias} service is {health}.")

    # ---- steps -----------------------------------------------------------------------------------
    def context(self) -> dict[str, Any]:
        """The `job` context: `container.{id,network}`, `services.<id>.{id,network,ports}`."""
        return {"container": {"id": self.job_container.id if self.job_container else "", "network": self.network},
                "services": {c.alias: {"id": c.id, "network": self.network, "ports": dict(c.ports_published)}
                             for c in self.services}}

    def step_env(self) -> dict[str, str]:
        env = {"STANDIN_JOB_CONTEXT": json.dumps(self.context(), sort_keys=True)}
        for c in self.services:
            for port, host_port in c.ports_published.items():
                env[f"STANDIN_SERVICE_{(c.alias or '').upper().replace('-', '_')}_PORT_{port}"] = host_port
        return env

    def exec_command(self, script: Path, env: dict[str, str], workdir: Path) -> tuple[list[str], dict[str, str]]:
        """argv and CLI environment of `docker exec` running `script` in the job container, as a step."""
        assert self.job_container is not None
        inside = {k: self.to_container(v) for k, v in env.items()}
        argv = [self.docker, "exec", "-i", "--workdir", self.to_container(str(workdir))]
        for key in inside:
            argv += ["-e", key]
        argv += [self.job_container.id, "sh", "-e", self.to_container(str(script))]
        self.log("##[command]" + shlex.join(argv))
        return argv, {**os.environ, **inside}

    # ---- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Remove every container and the network (errors are warnings, as in the worker's post-job step)."""
        for c in self.containers:
            if c.id:
                self.log(f"Stop and remove container: {c.name}")
                rc, _ = self._cli_quiet("rm", "--force", c.id)
                if rc != 0:
                    self.log(f"##[warning]Docker rm fail with exit code {rc}")
        if self.network:
            self.log(f"Remove container network: {self.network}")
            rc, _ = self._cli_quiet("network", "rm", self.network)
            if rc != 0:
                self.log(f"##[warning]Docker network rm failed with exit code {rc}")

    def _cli_quiet(self, *args: str) -> tuple[int, list[str]]:
        """Cleanup runs after cancellation too: no tick (it would raise), a plain bounded call."""
        self.log("##[command]" + shlex.join([self.docker, *args]))
        try:
            res = subprocess.run([self.docker, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log(f"##[warning]docker {args[0]}: {exc}")
            return 1, []
        for ln in (res.stdout + res.stderr).decode(errors="replace").splitlines():
            if ln:
                self.log(ln)
        return res.returncode, res.stdout.decode(errors="replace").splitlines()
