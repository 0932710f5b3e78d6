"""The real Pulumi engine drives a real container and a Python dynamic resource (no mocks)."""
import uuid
from pathlib import Path

import docker
import pytest

from tests._support.pulumi_cli import PulumiStack

pytestmark = [pytest.mark.engine, pytest.mark.docker]


@pytest.fixture
def stack(tmp_path):
    s = PulumiStack(Path(__file__).parent / "project", tmp_path, "smoke")
    yield s
    s.destroy(check=False)


def test_up_refresh_destroy_drive_a_real_container(stack):
    """`pulumi up` creates the container, `refresh` keeps it, `destroy` removes it."""
    name = f"ghr-smoke-{uuid.uuid4().hex[:8]}"
    stack.set_config("marker", "hello")
    stack.set_config("containerName", name)
    stack.set_config("image", "ghr-base:bookworm")
    client = docker.from_env()

    stack.up()
    outputs = stack.outputs()
    container = client.containers.get(name)
    assert container.id == outputs["container_id"]
    assert container.status == "running"
    assert container.labels["ghr.smoke"] == "hello"
    assert outputs["marker"] == "hello"
    kinds = {r["type"] for r in stack.resources()}
    assert {"pulumi-python:dynamic/smoke:Token", "pulumi-python:dynamic/docker:Container"} <= kinds, kinds

    stack.refresh()
    assert client.containers.get(name).id == outputs["container_id"]

    stack.destroy()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)


def test_a_stack_without_any_config_runs(tmp_path):
    """The language host hands an empty config to a stack that has none."""
    stack = PulumiStack(Path(__file__).parent / "empty", tmp_path, "bare")
    stack.up()
    assert stack.outputs() == {"answer": 42}
    stack.destroy()
