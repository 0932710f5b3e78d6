"""Fixtures for the pool manager tests: the Docker engine, the GitHub emulator, the images.

Images are tagged by the content they are built from and reused across tests and sessions.
Every test's pool gets its own stack name; its containers and registrations are removed after it.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests._support.second_engine import SecondEngine, missing_prerequisites
from tests.manager.mgr_helpers import BASE_IMAGE, REPO, build_image, ensure_runner_image, local_engine, make_spec

HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def _build(client: docker.DockerClient, tag: str, **kwargs: Any) -> None:
    try:
        build_image(client, tag, **kwargs)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        return local_engine(timeout=120)
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    from emulator import Emulator

    with Emulator() as emu:
        emu.add_scope("acme")
        yield emu


@pytest.fixture(scope="session")
def runner_image(docker_client: docker.DockerClient, emulator: Any) -> str:
    """The real runner Dockerfile on the local base, with the emulator's stand-in runner."""
    try:
        return ensure_runner_image(docker_client, emulator)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def _manager_context() -> tuple[bytes, str]:
    """The repository-root context as .dockerignore allows it, plus this host's extra CAs (if any)."""
    keep = [REPO / "requirements.txt", *sorted((REPO / "github_client").rglob("*.py")),
            *sorted((REPO / "pool_manager").rglob("*.py")), REPO / "runner-image" / "manager.Dockerfile",
            REPO / "runner-image" / "extra-ca" / "README.md"]
    extra = sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []
    buf = io.BytesIO()
    digest = hashlib.sha256()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in keep:
            arc = p.relative_to(REPO).as_posix()
            tar.add(p, arcname=arc)
            digest.update(arc.encode() + p.read_bytes())
        for p in extra:
            tar.add(p, arcname=f"runner-image/extra-ca/{p.name}")
            digest.update(p.read_bytes())
    return buf.getvalue(), digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def manager_image(docker_client: docker.DockerClient) -> str:
    context, digest = _manager_context()
    tag = f"ghr-manager-test:{digest}"
    try:
        docker_client.images.get(tag)
    except docker.errors.ImageNotFound:
        _build(docker_client, tag, fileobj=io.BytesIO(context), custom_context=True,
               dockerfile="runner-image/manager.Dockerfile", buildargs={"BASE_IMAGE": BASE_IMAGE})
    return tag


@pytest.fixture
def new_spec(emulator: Any, docker_client: docker.DockerClient, runner_image: str) -> Iterator[Any]:
    """Factory of pool specs; afterwards removes the containers and registrations they made."""
    made: list[dict[str, Any]] = []

    def factory(**kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("image", runner_image)
        image = kwargs.pop("image")
        spec = make_spec(emulator, image, **kwargs)
        made.append(spec)
        return spec

    yield factory
    from github_client import GitHubClient, PatAuth, parse_scope

    gh = GitHubClient(parse_scope(f"{emulator.url}/acme"), PatAuth(emulator.admin_token), max_retries=0)
    for spec in made:
        for c in docker_client.api.containers(all=True, filters={"label": f"ghr.stack={spec['stack']}"}):
            docker_client.api.remove_container(c["Id"], force=True, v=True)
        emulator.clear_faults()
        for r in gh.list_runners():
            if r.name.startswith(spec["name_prefix"] + "-"):
                try:
                    gh.delete_runner(r.id, missing_ok=True)
                except Exception:
                    pass
        if spec.get("scaling") == "scale_set":  # the scale set the manager made for the pool (and its session)
            from github_client._scaleset import ScaleSetClient

            scalesets = ScaleSetClient(gh)
            found = scalesets.get_scale_set_by_name(spec.get("scale_set_name") or spec["name_prefix"])
            if found is not None:
                scalesets.delete_scale_set(found.id, missing_ok=True)


# Tests that take any of these fixtures need the Docker engine: marked `docker`, so that
# `pytest -m "not docker"` runs this folder's fast tests (test_mgr_decisions, units, spec) alone.
_ENGINE_FIXTURES = {"docker_client", "runner_image", "manager_image", "new_spec"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.parent == here and fixtures & _ENGINE_FIXTURES:
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def restartable_engine(runner_image: str) -> Iterator[SecondEngine]:
    """A Docker engine of this test's own (tests/_support/second_engine.py), with the runner image: the test
    may stop and start it without touching the main engine."""
    problem = missing_prerequisites()
    if problem:
        pytest.fail(problem)
    eng = SecondEngine()
    try:
        eng.start()
        eng.load_image(runner_image)
        yield eng
    finally:
        eng.close()
