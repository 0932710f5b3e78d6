"""The real Pulumi engine drives a real container and a Python dynamic resource (no mocks)."""
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import docker
import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = Path(__file__).parent / "project"
pytestmark = [pytest.mark.engine, pytest.mark.docker]


def _pulumi(args, env, cwd):
    proc = subprocess.run(
        ["pulumi", *args, "--non-interactive"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"pulumi {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def stack(tmp_path):
    if shutil.which("pulumi") is None:
        pytest.fail("pulumi is not on PATH: run the tests through `make test` (it sources toolchain/env.sh)")
    env = dict(os.environ)
    env["PULUMI_BACKEND_URL"] = f"file://{tmp_path / 'backend'}"
    env["PULUMI_CONFIG_PASSPHRASE"] = "smoke"
    env["PYTHONPATH"] = str(ROOT)
    (tmp_path / "backend").mkdir()
    # A private copy of the project, so runs never write stack files into the repo.
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    pulumi_yaml = project / "Pulumi.yaml"
    pulumi_yaml.write_text(pulumi_yaml.read_text().replace("../../../.venv", str(ROOT / ".venv")))
    name = f"ghr-smoke-{uuid.uuid4().hex[:8]}"
    _pulumi(["stack", "init", "smoke"], env, project)
    _pulumi(["config", "set", "marker", "hello"], env, project)
    _pulumi(["config", "set", "containerName", name], env, project)
    _pulumi(["config", "set", "image", "ghr-base:bookworm"], env, project)
    yield env, name, project
    subprocess.run(["pulumi", "destroy", "--yes", "--non-interactive"], cwd=project, env=env, capture_output=True, timeout=600)


def test_up_refresh_destroy_drive_a_real_container(stack):
    """`pulumi up` creates the container, `refresh` keeps it, `destroy` removes it."""
    env, name, project = stack
    client = docker.from_env()

    _pulumi(["up", "--yes", "--skip-preview"], env, project)
    outputs = json.loads(_pulumi(["stack", "output", "--json"], env, project))
    container = client.containers.get(name)
    assert container.id == outputs["container_id"]
    assert container.status == "running"
    assert container.labels["ghr.smoke"] == "hello"
    assert outputs["marker"] == "hello"

    _pulumi(["refresh", "--yes"], env, project)
    assert client.containers.get(name).id == outputs["container_id"]

    _pulumi(["destroy", "--yes"], env, project)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(name)
