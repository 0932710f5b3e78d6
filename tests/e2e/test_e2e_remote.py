"""The whole Fleet on a second Docker engine the test starts itself, over ssh:// and tcp:// + TLS."""

from __future__ import annotations

from urllib.parse import urlparse

import docker
import pytest

from tests._support.polling import wait_for
from tests.e2e.e2e_helpers import write_stack_config

pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]


@pytest.mark.parametrize("transport", ["ssh", "tcp+tls"])
def test_fleet_on_a_remote_host(remote_engine, program_stack, emulator, transport):
    """Images, manager and runners live on the remote engine; a job runs; destroy cleans both sides."""
    stack = program_stack("rem")
    socket_path = urlparse(remote_engine.unix_url).path
    if transport == "ssh":
        host = {"name": "far", "url": remote_engine.ssh_url, "sshOptions": remote_engine.ssh_options,
                "socketPath": socket_path}
    else:
        host = {"name": "far", "url": remote_engine.tcp_url, "socketPath": socket_path}
    write_stack_config(stack, emulator, slots=1, hosts=[host], labels=["self-hosted", f"far-{stack.stack}"])
    if transport == "tcp+tls":
        for key, value in remote_engine.tls.items():
            stack.set_config(f"ghr:hosts[0].tls.{key}", value, secret=True, path=True)

    stack.up()
    prefix = f"{stack.stack}-cpu-far"
    wait_for(lambda: [r for r in emulator.runners("acme") if r["name"].startswith(prefix) and r["status"] == "online"],
             240, "the remote runner online")
    remote = remote_engine.client()
    assert remote.containers.get(f"ghr-{stack.stack}-cpu-manager").status == "running"
    assert not docker.from_env().containers.list(all=True, filters={"label": f"ghr.stack={stack.stack}"})
    job = emulator.wait_job(emulator.enqueue_job("acme", [f"far-{stack.stack}"], "echo remote-ok", timeout=120),
                            timeout=180)
    assert job["conclusion"] == "success" and "remote-ok" in job["output"]
    stored = stack.stored_text()
    assert "PRIVATE KEY" not in stored and emulator.admin_token not in stored

    stack.destroy()
    assert not [r for r in emulator.runners("acme") if r["name"].startswith(prefix)]
    assert not remote.containers.list(all=True, filters={"label": f"ghr.stack={stack.stack}"})
