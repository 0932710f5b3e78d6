"""`pulumi up / refresh / destroy` against a second Docker engine over tcp:// + TLS and ssh://."""
from __future__ import annotations

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
pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]


def _pulumi(args, env, cwd, *, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["pulumi", *args, "--non-interactive"], cwd=cwd, env=env, input=stdin,
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, f"pulumi {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def project(tmp_path):
    if shutil.which("pulumi") is None:
        pytest.fail("pulumi is not on PATH: run the tests through `make test` (it sources toolchain/env.sh)")
    env = dict(os.environ, PULUMI_BACKEND_URL=f"file://{tmp_path / 'backend'}",
               PULUMI_CONFIG_PASSPHRASE="remote", PYTHONPATH=str(ROOT))
    (tmp_path / "backend").mkdir()
    proj = tmp_path / "project"
    shutil.copytree(PROJECT, proj)
    y = proj / "Pulumi.yaml"
    y.write_text(y.read_text().replace("../../../.venv", str(ROOT / ".venv")))
    _pulumi(["stack", "init", "remote"], env, proj)
    yield env, proj, tmp_path / "backend"
    subprocess.run(["pulumi", "destroy", "--yes", "--non-interactive"], cwd=proj, env=env, capture_output=True, timeout=900)


@pytest.mark.parametrize("transport", ["tcp+tls", "ssh"])
def test_image_and_container_on_a_remote_engine(remote_engine, project, transport):
    """The image is built and the container runs on the remote engine; destroy removes both."""
    env, proj, backend = project
    name = f"ghr-remote-{uuid.uuid4().hex[:8]}"
    tag = f"ghr-remote-test:{uuid.uuid4().hex[:8]}"
    cfg = {"containerName": name, "tag": tag, "mark": transport}
    if transport == "ssh":
        cfg["hostUrl"] = remote_engine.ssh_url
        _pulumi(["config", "set-all", "--path", *[
            a for i, o in enumerate(remote_engine.ssh_options) for a in ("--plaintext", f"sshOptions[{i}]={o}")
        ]], env, proj)
    else:
        cfg["hostUrl"] = remote_engine.tcp_url
        cfg["useTls"] = "true"
        for key, value in remote_engine.tls.items():
            _pulumi(["config", "set", "--secret", "--path", f"tls.{key}"], env, proj, stdin=value)
    for key, value in cfg.items():
        _pulumi(["config", "set", key, value], env, proj)

    _pulumi(["up", "--yes", "--skip-preview"], env, proj)
    out = json.loads(_pulumi(["stack", "output", "--json"], env, proj))
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
    state_text = "".join(p.read_text() for p in backend.rglob("*.json"))
    assert "PRIVATE KEY" not in state_text
    assert "PRIVATE KEY" not in (proj / "Pulumi.remote.yaml").read_text()

    _pulumi(["refresh", "--yes"], env, proj)
    assert remote.containers.get(name).id == out["container_id"]

    _pulumi(["destroy", "--yes"], env, proj)
    with pytest.raises(docker.errors.NotFound):
        remote.containers.get(name)
    with pytest.raises(docker.errors.ImageNotFound):
        remote.images.get(tag)
