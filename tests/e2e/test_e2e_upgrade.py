"""Upgrade: a stack deployed by the code before issue 8 is refreshed, updated and destroyed by today's code.

Dynamic providers are pickled into the state by reference to their module path and class name;
`refresh` and `destroy` unpickle them with the code that runs them. The old code is a git worktree
of the last commit before the providers' helpers and the credentials seam moved (BASE_COMMIT). As a
user upgrades a checkout in place, today's code then replaces the old one in the same folder.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dill
import docker
import pytest

from tests._support.pulumi_cli import ROOT, PulumiStack
from tests.e2e.e2e_helpers import write_stack_config

pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]

PROJECT = Path(__file__).parent / "project"

BASE_COMMIT = "ffb66a7"  # the last commit before issue 8 ("one credentials seam ..."); its providers are in state
# The provider classes the old code pickled into the state (by reference): each must still import here.
PICKLED_PROVIDERS = {
    "components.registration.RunnerRegistrationProvider",
    "components.readiness.RunnerPoolReadyProvider",
    "components.docker._container.DockerContainerProvider",
    "components.docker._image.DockerImageProvider",
}


def _git(*args: str) -> None:
    subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def old_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A worktree of BASE_COMMIT, with this machine's extra CAs (not committed) for its image builds."""
    tree = tmp_path_factory.mktemp("old") / "tree"
    _git("worktree", "add", "--detach", str(tree), BASE_COMMIT)
    try:
        _copy_extra_ca(tree)
        yield tree
    finally:
        _git("worktree", "remove", "--force", str(tree))


def _use(stack: PulumiStack, root: Path) -> None:
    """Run the program (and so its dynamic providers) from the code at `root`."""
    stack.env.update(GHR_REPO_ROOT=str(root), PYTHONPATH=str(root))


def _upgrade_in_place(tree: Path) -> None:
    """Replace the old code in `tree` by today's (tracked and new files of the checkout, as they are now)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"], check=True,
                            capture_output=True, text=True, timeout=60).stdout.split("\0")
    for child in tree.iterdir():
        if child.name != ".git":  # the worktree's link to the repository
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / rel)
    _copy_extra_ca(tree)


def _copy_extra_ca(tree: Path) -> None:
    for ca in (ROOT / "runner-image" / "extra-ca").glob("*.crt"):  # this machine's CAs: not committed
        shutil.copy2(ca, tree / "runner-image" / "extra-ca" / ca.name)


def _manager_image(stack: PulumiStack) -> dict[str, Any]:
    (image,) = [r["outputs"] for r in stack.resources()
                if r["type"].endswith(":Image") and r["outputs"].get("dockerfile", "").endswith("manager.Dockerfile")]
    return image


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory, emulator: Any, old_tree: Path) -> Iterator[PulumiStack]:
    """A one-slot sandbox stack of the code in `old_tree` (old until test 2 upgrades it in place)."""
    name = f"upg{uuid.uuid4().hex[:6]}"
    stack = PulumiStack(PROJECT, tmp_path_factory.mktemp(name), name, passphrase="e2e",
                        env={"GHR_SKIP_VERSION_CHECK": "1"})
    _use(stack, old_tree)
    write_stack_config(stack, emulator, slots=1)
    try:
        yield stack
    finally:
        _upgrade_in_place(old_tree)
        stack.destroy(check=False)
        stack.run("stack", "rm", "--yes", "--force", check=False)


def _our_containers(stack_name: str) -> list[Any]:
    return docker.from_env().containers.list(all=True, filters={"label": f"ghr.stack={stack_name}"})


def _runners(emu: Any, stack_name: str) -> list[dict[str, Any]]:
    return [r for r in emu.runners("acme") if r["name"].startswith(f"{stack_name}-")]


def _pickled_providers(stack: PulumiStack) -> list[bytes]:
    """Every dynamic provider the state holds, as the pickle it stored (secrets shown: the Docker ones are)."""
    state = json.loads(stack.run("stack", "export", "--show-secrets").stdout)
    blobs = []
    for res in state.get("deployment", {}).get("resources") or []:
        blob = (res.get("outputs") or {}).get("__provider")
        if isinstance(blob, dict):  # a secret: {<sig>: ..., "plaintext": "<json string>"}
            blob = json.loads(blob.get("plaintext") or "null")
        if isinstance(blob, str):
            blobs.append(base64.b64decode(blob))
    return blobs


def test_1_old_code_deploys_and_its_providers_load_here(upgraded: PulumiStack, emulator: Any,
                                                        old_tree: Path) -> None:
    """The code of BASE_COMMIT brings the stack up; every provider it pickled unpickles with today's code."""
    upgraded.up()
    assert upgraded.outputs()["pools"]["cpu"]["local"]["registration"]["ready"] is True
    assert _manager_image(upgraded)["context"] == str(old_tree)  # the old code's own folder
    loaded = [dill.loads(blob) for blob in _pickled_providers(upgraded)]
    assert {f"{type(p).__module__}.{type(p).__name__}" for p in loaded} == set(PICKLED_PROVIDERS)
    for provider in loaded:
        assert provider.check({}, {}).failures is not None  # a working instance of today's class


def test_2_new_code_refreshes_the_old_state(upgraded: PulumiStack, emulator: Any, old_tree: Path) -> None:
    """`refresh` with today's code reads every resource through the providers the old code pickled."""
    _upgrade_in_place(old_tree)
    assert not (old_tree / "components" / "docker" / "_common.py").exists()  # a module only the old code had
    upgraded.refresh()
    (reg,) = [r for r in upgraded.resources() if r["type"].endswith("RunnerRegistration")]
    assert reg["outputs"]["online"] >= 1


def test_3_new_code_updates_the_old_stack(upgraded: PulumiStack, emulator: Any) -> None:
    """`up` with today's code over the old state succeeds and the pool is ready again."""
    before = _manager_image(upgraded)
    upgraded.up()
    after = _manager_image(upgraded)
    assert after["context"] == before["context"] and after["context_hash"] != before["context_hash"]
    entry = upgraded.outputs()["pools"]["cpu"]["local"]
    assert entry["registration"]["ready"] is True and entry["manager_container"]["state"] == "running"


def test_4_new_code_destroys_and_leaves_nothing(upgraded: PulumiStack, emulator: Any) -> None:
    """`destroy` with today's code: no container with the stack's labels, no registration, no resource."""
    upgraded.destroy()
    assert _our_containers(upgraded.stack) == []
    assert _runners(emulator, upgraded.stack) == []
    assert not upgraded.resources()
