"""The test-owned second engine cleans up after itself and after earlier runs that died."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._support import second_engine
from tests._support.second_engine import (
    OWNER_LOCK,
    SecondEngine,
    clean_stale_engines,
    missing_prerequisites,
    mounts_under,
    remove_tree,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A stand-in for /run, unmounted whatever a test leaves in it."""
    yield tmp_path
    second_engine.unmount_all(tmp_path)


def _engine_folder(run_dir: Path, name: str) -> Path:
    """A folder as a dead run leaves it: a mount, and an nsfs one in it as host networking makes."""
    folder = run_dir / f"{second_engine.PREFIX}{name}"
    (folder / "exec").mkdir(parents=True)
    (folder / "docker.pid").write_text("999999999")  # no such process
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder / "exec")], check=True)
    (folder / "exec" / "netns").mkdir()
    (folder / "exec" / "netns" / "default").touch()
    subprocess.run(["mount", "--bind", "/proc/self/ns/net", str(folder / "exec" / "netns" / "default")], check=True)
    assert len(mounts_under(folder)) == 2
    return folder


@needs_root
def test_remove_tree_unmounts_deepest_first(run_dir: Path) -> None:
    """remove_tree unmounts nested and stacked mounts, then deletes the folder."""
    folder = run_dir / "f"
    (folder / "a").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder / "a")], check=True)
    (folder / "a" / "b").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder / "a" / "b")], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder / "a" / "b")], check=True)
    remove_tree(folder)
    assert mounts_under(folder) == [] and not folder.exists()


def test_remove_tree_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mount that will not go makes remove_tree raise, naming it; nothing is deleted under it."""
    monkeypatch.setattr(second_engine, "unmount_all", lambda root: [f"{root}/exec/netns/default"])
    (tmp_path / "exec").mkdir()
    with pytest.raises(RuntimeError, match="exec/netns/default"):
        remove_tree(tmp_path)
    assert (tmp_path / "exec").exists()


@needs_root
def test_stale_folders_of_dead_engines_are_removed(run_dir: Path) -> None:
    """A folder whose engine is dead is unmounted and removed; one whose owner lives stays."""
    dead = _engine_folder(run_dir, "dead")
    (dead / OWNER_LOCK).touch()
    alive = run_dir / f"{second_engine.PREFIX}alive"
    alive.mkdir()
    fd = os.open(alive / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    # flock locks are per open file description: a second open() in this process cannot take it.
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert clean_stale_engines(run_dir) == [dead]
    finally:
        os.close(fd)
    assert not dead.exists() and mounts_under(dead) == []
    assert alive.exists()


@needs_root
def test_fresh_unlocked_folder_is_left_alone(run_dir: Path) -> None:
    """A folder without an owner lock is only judged stale once it is old (it may be being created)."""
    young = run_dir / f"{second_engine.PREFIX}young"
    young.mkdir()
    assert clean_stale_engines(run_dir) == []
    old = 1_000_000_000
    os.utime(young, (old, old))
    assert clean_stale_engines(run_dir) == [young]


@pytest.mark.docker
@pytest.mark.slow
def test_close_leaves_no_mount_and_no_folder_after_host_network() -> None:
    """After a host-network container ran, close() unmounts everything under the folder and removes it."""
    problem = missing_prerequisites()
    if problem:
        pytest.fail(problem)
    engine = SecondEngine()
    try:
        engine.start()
        engine.load_image("ghr-base:bookworm")
        engine.client().containers.run("ghr-base:bookworm", ["true"], network_mode="host", remove=True)
        assert any(p.endswith("/exec/netns/default") for p in mounts_under(engine.dir))
    except BaseException:
        engine.close()
        raise
    engine.close()
    assert mounts_under(engine.dir) == []
    assert not engine.dir.exists()
