"""`pulumi up / refresh / destroy` against a second Docker engine over tcp:// + TLS and ssh://."""
from __future__ import annotations

import uuid
from pathlib import Path

import docker
import pytest

from tests._support.pulumi_cli import PulumiStack

PROJECT = Path(__file__).parent / "project"
pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def stack(tmp_path):
    s = PulumiStack(PROJECT, tmp_path, "remote", passphrase="remote")
    yield s
    s.destroy(check=False)


@pytest.mark.parametrize("transport", ["tcp+tls", "ssh"])
def test_image_and_container_on_a_remote_engine(remote_engine, stack, transport):
    """The image is built and the container runs on the remote engine; destroy removes both."""
    name = f"ghr-remote-{uuid.uuid4().hex[:8]}"
    tag = f"ghr-remote-test:{uuid.uuid4().hex[:8]}"
    stack.set_config("containerName", name)
    stack.set_config("tag", tag)
    stack.set_config("mark", transport)
    if transport == "ssh":
        stack.set_config("hostUrl", remote_engine.ssh_url)
        for i, option in enumerate(remote_engine.ssh_options):
            stack.set_config(f"sshOptions[{i}]", option, path=True)
    else:
        stack.set_config("hostUrl", remote_engine.tcp_url)
        stack.set_config("useTls", "true")
        for key, value in remote_engine.tls.items():
            stack.set_config(f"tls.{key}", value, secret=True, path=True)

    stack.up()
    out = stack.outputs()
    remote = remote_engine.client()
    container = remote.containers.get(name)
    assert container.id == out["container_id"]
    assert container.status == "running"
    assert remote.images.get(tag).id == out["image_id"]
    code, built = container.exec_run(["cat", "/built-remotely"])
    assert code == 0 and built.decode().strip() == transport
    # The main engine never saw any of it.
    with pytest.raises(docker.errors.NotFound):
        docker.from_env().containers.get(name)
    # TLS material stays encrypted in state and config.
    assert "PRIVATE KEY" not in stack.stored_text()

    stack.refresh()
    assert remote.containers.get(name).id == out["container_id"]

    stack.destroy()
    with pytest.raises(docker.errors.NotFound):
        remote.containers.get(name)
    with pytest.raises(docker.errors.ImageNotFound):
        remote.images.get(tag)
