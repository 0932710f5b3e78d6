"""A second Docker engine that the tests start themselves, reached over tcp:// with TLS and over
ssh:// through an sshd on loopback. It shares the machine with the main engine but has its own
data root, exec root, containerd namespace, sockets and bridge; test containers
use host networking."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from ._certs import make_tls_material


@dataclass(frozen=True)
class RemoteEngine:
    unix_url: str
    tcp_url: str
    tls: dict[str, str]
    ssh_url: str
    ssh_options: list[str]

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.unix_url, version="1.41", timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, what: str, deadline_s: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up within {deadline_s:.0f}s\n{tail}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def remote_engine():
    if os.geteuid() != 0 or shutil.which("dockerd") is None or not Path("/usr/sbin/sshd").exists():
        pytest.fail("the remote-host tests need root, dockerd and openssh-server: run them through `make test`")
    # Short path: unix socket paths are limited to 108 bytes.
    d = Path(tempfile.mkdtemp(prefix="ghr-remote-", dir="/run"))
    tls = make_tls_material()
    files = {"ca.pem": tls.ca, "server.pem": tls.server_cert, "server-key.pem": tls.server_key}
    for name, content in files.items():
        (d / name).write_text(content)
        (d / name).chmod(0o600)
    (d / "daemon.json").write_text("{}")
    tcp_port, ssh_port = _free_port(), _free_port()
    sock = d / "docker.sock"
    dockerd_log = d / "dockerd.log"
    # The engine gets a bridge of its own: with --bridge=none dockerd deletes the interface
    # named docker0, which belongs to the main engine. 192.0.2.0/24 is TEST-NET-1: nothing
    # real lives there, and test containers use host networking anyway.
    bridge = f"ghrrb{d.name[-6:]}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", "192.0.2.1/24", "dev", bridge], check=True)
    dockerd = subprocess.Popen(
        [
            "dockerd", "--config-file", str(d / "daemon.json"),
            "--data-root", str(d / "data"), "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"),
            "-H", f"unix://{sock}", "-H", f"tcp://127.0.0.1:{tcp_port}",
            "--tlsverify", "--tlscacert", str(d / "ca.pem"), "--tlscert", str(d / "server.pem"),
            "--tlskey", str(d / "server-key.pem"),
            "--bridge", bridge, "--iptables=false", "--ip-masq=false",
            "--containerd-namespace", "ghr-remote", "--containerd-plugins-namespace", "ghr-remote-plugins",
        ],
        stdout=open(dockerd_log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    sshd = None
    try:
        def engine_answers() -> bool:
            if dockerd.poll() is not None:
                raise RuntimeError(f"the second dockerd exited:\n{dockerd_log.read_text()[-3000:]}")
            try:
                docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=5).ping()
                return True
            except Exception:  # noqa: BLE001 - not up yet
                return False
        _wait(engine_answers, "the second dockerd", 60, dockerd_log)

        # The tests' images come from the main engine: no registry is reachable here.
        remote = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=300)
        remote.images.load(docker.from_env(timeout=300).images.get("ghr-base:bookworm").save(named=True))

        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key")], check=True)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        Path("/run/sshd").mkdir(exist_ok=True)
        (d / "sshd_config").write_text(
            f"Port {ssh_port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {d}/sshd.pid\n"
            # `docker system dial-stdio` on the far side must reach the second engine, not the main one.
            f"SetEnv DOCKER_HOST=unix://{sock}\n"
        )
        sshd_log = d / "sshd.log"
        sshd = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
            stdout=open(sshd_log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )

        def sshd_listens() -> bool:
            try:
                socket.create_connection(("127.0.0.1", ssh_port), timeout=1).close()
                return True
            except OSError:
                return False
        _wait(sshd_listens, "sshd", 30, sshd_log)

        yield RemoteEngine(
            unix_url=f"unix://{sock}",
            tcp_url=f"tcp://127.0.0.1:{tcp_port}",
            tls={"ca": tls.ca, "cert": tls.client_cert, "key": tls.client_key},
            ssh_url=f"ssh://root@127.0.0.1:{ssh_port}",
            ssh_options=[
                f"IdentityFile={d}/client_key", "IdentitiesOnly=yes",
                "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR",
            ],
        )
    finally:
        if sshd is not None:
            _stop(sshd)
        try:
            client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=30)
            for c in client.containers.list(all=True):
                c.remove(force=True)
        except Exception:  # noqa: BLE001 - best effort before the engine stops
            pass
        _stop(dockerd)
        subprocess.run(["umount", "-R", str(d / "data")], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
