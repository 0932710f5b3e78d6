"""A second Docker engine that a test starts itself, and an sshd on loopback in front of it.

It shares the machine with the main engine but has its own data root, exec root, containerd
namespace, sockets and bridge, so tests may stop, restart or break it without touching the
main engine. It listens on a unix socket and on tcp://127.0.0.1 with TLS (certificates made
for the run); test containers use host networking.
"""
from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import docker

from .certs import make_tls_material
from .polling import free_port, wait_for

API_VERSION = "1.41"
RUN_DIR = Path("/run")
PREFIX = "ghr-engine-"
OWNER_LOCK = "owner.lock"  # flock'd by the process that owns the folder, for as long as it lives
# A folder of an earlier run without an owner lock (older code) is only judged stale past this age:
# younger, it may be one that another process is creating right now.
UNLOCKED_GRACE_S = 300.0


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


def _unescape(field: str) -> str:
    """A mountinfo path field: space, tab, newline and backslash come octal-escaped."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or under ``root`` in this mount namespace, deepest first."""
    prefix = str(root).rstrip("/")
    points = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = _unescape(line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            points.add(point)
    return sorted(points, key=lambda p: (p.count("/"), p), reverse=True)


def unmount_all(root: Path, attempts: int = 3) -> list[str]:
    """Unmount everything mounted at or under ``root``, deepest first; returns what is still mounted.

    Stacked mounts take one pass each, hence the passes; a busy mount is detached lazily
    (``umount -l``) as a last resort.
    """
    for _ in range(attempts):
        points = mounts_under(root)
        if not points:
            return []
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True)
    return mounts_under(root)


def remove_tree(root: Path) -> None:
    """Unmount everything under ``root`` and delete it; RuntimeError naming what is left if that fails."""
    still_mounted = unmount_all(root)
    errors: list[str] = []
    if not still_mounted and root.exists():
        def note(_fn: object, path: str, exc_info: tuple[type[BaseException], BaseException, object]) -> None:
            errors.append(f"{path}: {exc_info[1]}")

        shutil.rmtree(root, onerror=note)
    if still_mounted or root.exists():
        left = sorted(str(p) for p in root.rglob("*"))[:20] if root.exists() else []
        raise RuntimeError(
            f"could not remove {root}: still mounted {still_mounted or 'nothing'}; errors {errors[:10] or 'none'}; "
            f"left {left}. Check `grep {root} /proc/self/mountinfo` and what holds those mounts (fuser -m)"
        )


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError) as exc:
        return isinstance(exc, OSError) and exc.errno == errno.EPERM
    return True


def _owned(folder: Path) -> bool:
    """Whether a live process still owns ``folder`` (its owner lock is held, or its daemons run)."""
    lock = folder / OWNER_LOCK
    if lock.exists():
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
    elif time.time() - folder.stat().st_mtime < UNLOCKED_GRACE_S:
        return True
    return any(_pid_alive(folder / name) for name in ("docker.pid", "sshd.pid"))


def clean_stale_engines(run_dir: Path = RUN_DIR) -> list[Path]:
    """Remove the folders (mounts, bridge) that earlier runs' second engines left when they died.

    Folders whose owner is alive are left alone; one that cannot be removed is a warning, not a
    failure of this run. Returns the folders removed.
    """
    removed = []
    for folder in sorted(run_dir.glob(PREFIX + "*")):
        try:
            if not folder.is_dir() or _owned(folder):
                continue
            bridge = folder / "bridge"
            if bridge.exists():
                subprocess.run(["ip", "link", "del", bridge.read_text().strip()], capture_output=True)
            remove_tree(folder)
            removed.append(folder)
        except (OSError, RuntimeError) as exc:
            warnings.warn(f"a stale second-engine folder of an earlier run stays: {exc}", stacklevel=2)
    return removed


def missing_prerequisites() -> str | None:
    if os.geteuid() != 0 or shutil.which("dockerd") is None or not Path("/usr/sbin/sshd").exists():
        return "these tests need root, dockerd and openssh-server: run them through `make test`"
    return None


class SecondEngine:
    """`start()`, `stop()`, `restart()`, `close()`; the data root survives a restart."""

    def __init__(self) -> None:
        clean_stale_engines()
        # Short path: unix socket paths are limited to 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix=PREFIX, dir=RUN_DIR))
        # Held until close(): a later run's clean_stale_engines leaves this folder alone while we live.
        self._owner_fd: int | None = os.open(self.dir / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._owner_fd, fcntl.LOCK_EX)
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
        (self.dir / "bridge").write_text(self.bridge)  # for clean_stale_engines if this run dies
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
        """Stop the engine, unmount everything under its folder, delete the bridge and the folder.

        Raises RuntimeError, naming what is left, when the folder cannot be removed.
        """
        if self._proc is not None:
            try:
                for c in self.client(timeout=30).containers.list(all=True):
                    c.remove(force=True)
            except Exception:  # noqa: BLE001 - best effort before the engine stops
                pass
        self.stop()
        try:
            remove_tree(self.dir)
        finally:
            subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
            if self._owner_fd is not None:
                os.close(self._owner_fd)
                self._owner_fd = None


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
