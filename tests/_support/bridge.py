"""A user-defined bridge network for a test, and an emulator the containers on it can reach.

Why: a `docker: dind` runner shares its sidecar's network namespace (a bridge network, never the host's),
so `127.0.0.1` on the host means nothing to it and an emulator on loopback is out of its reach. The test
makes a network of its own instead and runs the emulator on that network's gateway address: the host holds
that address, so the host (and a manager on the host network) reaches the emulator there too, and nothing
listens beyond loopback and the test's own network. (bench/bench_manager.py's dind part does the same.)

The Pulumi program refuses a plain-http `ghr:github.scope` to anything but loopback (a token must not cross
a network in clear), so a stack cannot name the gateway address. `emulator_on` therefore also opens a relay
on loopback (`emu.loopback_url`, `http://127.0.0.1:PORT`, TCP forwarded to the emulator) for the stack's
scope, and pins the emulator's `public_url` to its gateway address: the URLs it hands out (the runners'
JIT configuration, links) name the address the runners reach, whichever way the request came in.

Usage::

    with BridgeNetwork(client) as net, emulator_on(net) as emu:
        ...  # containers with network_mode=net.name reach emu.url (http://<net.gateway>:PORT);
             # a stack's scope is f"{emu.loopback_url}/acme"
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import docker
import docker.errors

LABEL = "ghr.test.network"  # on every network this module makes: `docker network ls --filter label=`


class BridgeNetwork:
    """A bridge network named `<prefix>-<random>`, created on `start()` and removed on `close()`."""

    def __init__(self, client: docker.DockerClient | None = None, *, prefix: str = "ghr-test-net") -> None:
        self.client = client or docker.from_env()
        self.name = f"{prefix}-{secrets.token_hex(3)}"
        self.gateway = ""
        self._network: Any = None

    def start(self) -> BridgeNetwork:
        self._network = self.client.networks.create(self.name, driver="bridge", labels={LABEL: self.name})
        try:
            self._network.reload()
            self.gateway = str(self._network.attrs["IPAM"]["Config"][0]["Gateway"])
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove the network; containers still attached to it are disconnected first (forced)."""
        if self._network is None:
            return
        try:
            self._network.reload()
            for cid in list(self._network.attrs.get("Containers") or {}):
                try:
                    self._network.disconnect(cid, force=True)
                except docker.errors.APIError:
                    pass
            self._network.remove()
        except docker.errors.NotFound:
            pass
        self._network = None

    def __enter__(self) -> BridgeNetwork:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class LoopbackRelay:
    """Forwards TCP connections from `127.0.0.1:<port>` (an ephemeral port) to `target`, byte for byte."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)  # so the accept loop sees close()
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="loopback-relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                client.settimeout(None)
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks.update((client, upstream))
            threading.Thread(target=self._connection, args=(client, upstream), daemon=True).start()

    def _connection(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
        back.start()
        self._pipe(client, upstream)
        back.join()
        with self._lock:
            for sock in (client, upstream):
                sock.close()
                self._socks.discard(sock)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for sock in self._socks:
                sock.close()
            self._socks.clear()


@contextmanager
def emulator_on(network: BridgeNetwork, **options: Any) -> Iterator[Any]:
    """An emulator listening on `network`'s gateway address (host side), with the scope `acme`; its
    `loopback_url` is a relay to it on loopback (see the module docstring)."""
    from emulator import Emulator

    if not network.gateway:
        raise RuntimeError(f"network {network.name} is not started: no gateway address yet")
    with Emulator(host=network.gateway, **options) as emu:
        emu.add_scope("acme")
        emu.public_url = emu.url  # what it hands out names the gateway, even to a request through the relay
        relay = LoopbackRelay((network.gateway, emu.port))
        emu.loopback_url = f"http://127.0.0.1:{relay.port}"
        try:
            yield emu
        finally:
            relay.close()
