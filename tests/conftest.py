"""Fixtures shared by several suites.

`remote_engine`: a second Docker engine that the tests start themselves, reached over tcp://
with TLS and over ssh:// through an sshd on loopback (see tests/_support/second_engine.py).
One per session, started only when a test asks for it."""
from __future__ import annotations

from dataclasses import dataclass

import docker
import pytest

from tests._support.second_engine import LoopbackSshd, SecondEngine, missing_prerequisites


@dataclass(frozen=True)
class RemoteEngine:
    unix_url: str
    tcp_url: str
    tls: dict[str, str]
    ssh_url: str
    ssh_options: list[str]
    engine: SecondEngine

    def client(self) -> docker.DockerClient:
        return self.engine.client()


@pytest.fixture(scope="session")
def remote_engine():
    problem = missing_prerequisites()
    if problem:
        pytest.fail(problem)
    engine = SecondEngine()
    sshd = None
    try:
        engine.start()
        engine.load_image("ghr-base:bookworm")
        sshd = LoopbackSshd(engine)
        yield RemoteEngine(engine.unix_url, engine.tcp_url, engine.tls, sshd.url, sshd.options, engine)
    finally:
        if sshd is not None:
            sshd.close()
        engine.close()
