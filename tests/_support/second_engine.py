"""A second Docker engine that a test starts itself, and an sshd on loopback in front of it.

It shares the machine with the main engine but has its own data root, exec root, containerd
namespace, sockets and bridge, so tests may stop, restart or break it without touching the
main engine. It listens on a unix socket and on tcp://127.0.0.1 with TLS (certificates made
for the run); test containers use host networking.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker

from .certs import make_tls_material
from .polling import free_port, wait_for

API_VERSION = "1.41"


def wait_until(predicate: Callable[[], bool], what: str, deadline_s: float, log: Path) -> None:
    """`wait_for`, with the tail of the daemon's log in the failure."""
    try:
        wait_for(predicate, deadline_s, what)
    except AssertionError as exc:
        raise RuntimeError(f"{exc}\n{log.read_text(errors='replace')[-3000:] if log.exists() else ''}") from None


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def missing_prerequisites() -> str | None:
    if os.geteuid() != 0 or shutil.which("dockerd") is None or not Path("/usr/sbin/sshd").exists():
        return "these tests need root, dockerd and openssh-server: run them through `make test`"
    return None


class SecondEngine:
    """`start()`, `stop()`, `restart()`, `close()`; the data root survives a restart."""

    def __init__(self) -> None:
        # Short path: unix socket paths are limited to 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="ghr-engine-", dir="/run"))
        tls = make_tls_material()
        for name, content in {"ca.pem": tls.ca, "server.pem": tls.server_cert, "server-key.pem": tls.server_key}.items():
            (self.dir / name).write_text(content)
            (self.dir / name).chmod(0o600)
        (self.dir / "daemon.json").write_text("{}")
        self.socket = self.dir / "docker.sock"
        self.unix_url = f"unix://{self.socket}"
        self.tcp_url = f"tcp://127.0.0.1:{free_port()}"
        self.tls = {"ca": tls.ca, "cert": tls.client_cert, "key": tls.client_key}
        self.log = self.dir / "dockerd.log"
        # A bridge of its own: with --bridge=none dockerd deletes the interface named docker0,
        # which belongs to the main engine. 192.0.2.0/24 is TEST-NET-1: nothing real lives there.
        # containerd namespaces allow only [A-Za-z0-9] runs joined by single . _ or -, so the
        # id is hex rather than mkdtemp's suffix.
        self.id = secrets.token_hex(4)
        self.bridge = f"ghreb{self.id}"
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", "192.0.2.1/24", "dev", self.bridge], check=True)
        self._proc: subprocess.Popen | None = None

    def client(self, timeout: float = 120) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.unix_url, version=API_VERSION, timeout=timeout)

    def start(self) -> SecondEngine:
        d = self.dir
        self._proc = subprocess.Popen(
            [
                "dockerd", "--config-file", str(d / "daemon.json"),
                "--data-root", str(d / "data"), "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"),
                "-H", self.unix_url, "-H", self.tcp_url,
                "--tlsverify", "--tlscacert", str(d / "ca.pem"), "--tlscert", str(d / "server.pem"),
                "--tlskey", str(d / "server-key.pem"),
                "--bridge", self.bridge, "--iptables=false", "--ip-masq=false",
                "--containerd-namespace", f"ghr{self.id}", "--containerd-plugins-namespace", f"ghr{self.id}-plugins",
            ],
            stdout=open(self.log, "a"), stderr=subprocess.STDOUT, start_new_session=True,
        )

        def answers() -> bool:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the second dockerd exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                self.client(timeout=5).ping()
                return True
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_until(answers, "the second dockerd", 60, self.log)
        return self

    def stop(self) -> None:
        _stop(self._proc)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def load_image(self, tag: str) -> None:
        """Copy an image from the main engine: no registry is reachable here."""
        self.client(timeout=300).images.load(docker.from_env(timeout=300).images.get(tag).save(named=True))

    def close(self) -> None:
        if self._proc is not None:
            try:
                for c in self.client(timeout=30).containers.list(all=True):
                    c.remove(force=True)
            except Exception:  # noqa: BLE001 - best effort before the engine stops
                pass
        self.stop()
        subprocess.run(["umount", "-R", str(self.dir / "data")], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class LoopbackSshd:
    """sshd on 127.0.0.1 whose sessions talk to the given engine (`docker system dial-stdio`)."""

    def __init__(self, engine: SecondEngine) -> None:
        d = engine.dir
        self.port = free_port()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key")], check=True)
        shutil.copy(d / "client_key.pub", d / "authorized_keys")
        Path("/run/sshd").mkdir(exist_ok=True)
        (d / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n"
            f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PidFile {d}/sshd.pid\n"
            # `docker system dial-stdio` on the far side must reach this engine, not the main one.
            f"SetEnv DOCKER_HOST={engine.unix_url}\n"
        )
        self.log = d / "sshd.log"
        self.url = f"ssh://root@127.0.0.1:{self.port}"
        self.options = [
            f"IdentityFile={d}/client_key", "IdentitiesOnly=yes",
            "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "LogLevel=ERROR",
        ]
        self._proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
            stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
        )

        def listens() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(listens, "sshd", 30, self.log)

    def close(self) -> None:
        _stop(self._proc)
