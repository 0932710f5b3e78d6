"""The manager's credentials never reach the engine's storage (issue 12, deliverable 3).

They live in a per-pool folder of the host's /dev/shm (a tmpfs), bind-mounted into the manager,
and in the manager's memory. These tests read what the engine stores for the container (its
overlay upper dir, its folder under DockerRootDir/containers, `docker inspect`) and find no token;
the file is in /dev/shm, mode 0400; an in-place rotation writes the new one there; a lost file (a
reboot) is found by `up --refresh` and delivered again; `destroy` leaves no credentials (nor their folder).
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from components.docker import DockerContainerProvider
from components.pool import CREDENTIALS_PATH, SECRETS_DIR, secrets_host_dir
from tests._support.polling import wait_for
from tests._support.pulumi_cli import ROOT
from tests.e2e.e2e_helpers import write_stack_config

pytestmark = [pytest.mark.engine, pytest.mark.docker, pytest.mark.slow]

BASE_IMAGE = "ghr-base:bookworm"
# A stand-in that takes SIGHUP (a reload) without dying and TERM at once.
STANDIN = ["sh", "-c", "trap : HUP; trap 'exit 0' TERM; while :; do sleep 0.2; done"]


def _storage_hits(container_id: str, secrets: list[str], must_hold: str) -> list[str]:
    """Where the engine's storage for the container holds any of `secrets`: every file of its overlay upper
    dir and of its DockerRootDir/containers/<id> folder, and its `docker inspect`. `must_hold` is a path the
    upper dir must have (proves this is the container's layer: the spec file the program uploaded)."""
    client = docker.from_env()
    info = client.api.inspect_container(container_id)
    root = Path(client.info()["DockerRootDir"])
    upper = Path(info["GraphDriver"]["Data"]["UpperDir"])
    assert (upper / must_hold.lstrip("/")).is_file(), f"{must_hold} not in {upper}: not this container's layer?"
    hits = [f"docker inspect ({s[:8]}...)" for s in secrets if s in json.dumps(info)]
    scanned = 0
    for folder in (upper, root / "containers" / container_id):
        for path in folder.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            scanned += 1
            hits += [f"{path} ({s[:8]}...)" for s in secrets if s.encode() in data]
    assert scanned >= 3, f"only {scanned} files under {upper} and {root}/containers/{container_id}"
    return hits


def _on_tmpfs(path: Path) -> bool:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip() == "tmpfs"


def _assert_host_file(path: Path, token: str) -> None:
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o400 and st.st_uid == 0, oct(st.st_mode)
    assert token in path.read_text()
    assert _on_tmpfs(path), f"{path} is not on a tmpfs"


# ---- the DockerContainer provider on the engine, without Pulumi --------------------------------------------

@pytest.fixture
def shm_dir() -> Iterator[Path]:
    folder = Path("/dev/shm") / f"ghr-test-{uuid.uuid4().hex[:8]}"
    yield folder / "box"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("stopped_at_delete", [False, True])
def test_provider_writes_uploads_through_a_bind_mount_only(shm_dir: Path, stopped_at_delete: bool) -> None:
    """Create (uploads into a created container), reload (into a running one), read (a lost file), delete
    (running or stopped): the secret is only ever in the host folder, never in the engine's storage."""
    tok1, tok2 = f"ghp_store{uuid.uuid4().hex}", f"ghp_store{uuid.uuid4().hex}"
    props: dict[str, Any] = {
        "docker_host": "unix:///var/run/docker.sock", "name": f"ghr-test-creds-{uuid.uuid4().hex[:6]}", "image": BASE_IMAGE,
        "command": STANDIN, "restart_policy": "always", "reload_signal": "SIGHUP", "startup_check": 0.5,
        "stop_timeout": 5, "labels": {"ghr.role": "test"},
        "mounts": [{"type": "bind", "source": str(shm_dir), "target": "/run/s", "create_source": True}],
        "uploads": [{"path": "/etc/ghr/pool.json", "content": "{}", "mode": 0o444, "reloadable": True},
                    {"path": "/run/s/credentials.json", "content": json.dumps({"token": tok1}), "mode": 0o400,
                     "reloadable": True}],
    }
    p = DockerContainerProvider()
    assert p.check({}, props).failures == []
    assert not shm_dir.exists()  # the engine creates it (legacy bind)
    created = p.create(props)
    cid = str(created.id)
    try:
        host_file = shm_dir / "credentials.json"
        _assert_host_file(host_file, tok1)
        assert _storage_hits(cid, [tok1], "/etc/ghr/pool.json") == []

        news = {**props, "uploads": [props["uploads"][0], {**props["uploads"][1],
                                                           "content": json.dumps({"token": tok2})}]}
        assert p.diff(cid, created.outs, news).replaces == []
        updated = p.update(cid, created.outs, news)
        assert updated.outs["state"] == "running"
        _assert_host_file(host_file, tok2)
        assert tok1 not in host_file.read_text()
        assert _storage_hits(cid, [tok1, tok2], "/etc/ghr/pool.json") == []

        assert p.read(cid, updated.outs).outs["missing_uploads"] == []
        host_file.unlink()  # what a reboot does to /dev/shm
        outs = p.read(cid, updated.outs).outs
        assert outs["missing_uploads"] == ["/run/s/credentials.json"]
        assert p.diff(cid, outs, news).replaces == ["missing_uploads"]

        # Delete removes the file from the host, the container running or already stopped.
        p.update(cid, updated.outs, {**news, "uploads": props["uploads"]})  # the file is back (tok1)
        assert host_file.is_file()
        if stopped_at_delete:
            docker.from_env().containers.get(cid).stop(timeout=5)
        p.delete(cid, news)
        assert not host_file.exists() and not shm_dir.exists()  # the file, then its (empty) folder
        left = docker.from_env().containers.list(all=True, filters={"label": f"ghr.cleanup-of={props['name']}"})
        assert left == []  # the helper removed itself
    finally:
        try:
            docker.from_env().containers.get(cid).remove(force=True)
        except docker.errors.NotFound:
            pass


# ---- the Pulumi program: up, rotation in place, a lost file, destroy -----------------------------------------

def _manager(stack_name: str) -> Any:
    return docker.from_env().containers.get(f"ghr-{stack_name}-cpu-manager")


def _online(emu: Any, prefix: str) -> list[dict[str, Any]]:
    return [r for r in emu.runners("acme") if r["name"].startswith(prefix + "-") and r["status"] == "online"]


@pytest.fixture(scope="module")
def tokens(emulator: Any) -> dict[str, str]:
    return {"first": emulator.add_pat(), "second": emulator.add_pat()}


@pytest.fixture(scope="module")
def code_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkout as it is now, copied: the manager image is built from the code, so an edit of the working
    tree between two `up`s (a shared checkout) would rebuild it and replace the manager the rotation keeps."""
    tree = tmp_path_factory.mktemp("code") / "tree"
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"], check=True,
                            capture_output=True, text=True, timeout=60).stdout.split("\0")
    extra_ca = [p.relative_to(ROOT) for p in (ROOT / "runner-image" / "extra-ca").glob("*.crt")]  # not committed
    for rel in [*filter(None, listed), *map(str, extra_ca)]:
        if (ROOT / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tree / rel)
    return tree


@pytest.fixture(scope="module")
def stack(program_stack: Any, emulator: Any, tokens: dict[str, str], code_snapshot: Path) -> Any:
    s = program_stack("cred")
    s.env.update(GHR_REPO_ROOT=str(code_snapshot), PYTHONPATH=str(code_snapshot))
    s.set_config("ghr:github.token", tokens["first"], secret=True, path=True)  # write_stack_config keeps it
    write_stack_config(s, emulator, slots=1)
    return s


def test_1_up_keeps_the_token_off_the_engine_storage(stack: Any, emulator: Any, tokens: dict[str, str]) -> None:
    """After `up`: the credentials file is in /dev/shm/ghr/<stack>-cpu (tmpfs, 0400, root), mounted at
    /run/ghr-secrets; no file of the manager's engine storage and no `docker inspect` holds the token."""
    stack.up()
    wait_for(lambda: _online(emulator, f"{stack.stack}-cpu-local"), 180, "a runner online")
    manager = _manager(stack.stack)
    (mount,) = [m for m in manager.attrs["Mounts"] if m["Destination"] == SECRETS_DIR]
    assert mount["Type"] == "bind" and mount["Source"] == secrets_host_dir(stack.stack, "cpu") and mount["RW"]
    assert manager.attrs["Args"][manager.attrs["Args"].index("--credentials-file") + 1] == CREDENTIALS_PATH
    _assert_host_file(Path(secrets_host_dir(stack.stack, "cpu")) / "credentials.json", tokens["first"])
    assert _storage_hits(manager.id, [tokens["first"]], "/etc/ghr/pool.json") == []


def test_2_rotation_in_place_writes_only_to_the_host_tmpfs(stack: Any, emulator: Any, tokens: dict[str, str]) -> None:
    """A new token: the same manager takes it on SIGHUP (no restart); the new file is in /dev/shm; the old
    token can be revoked and runners are still minted; the engine's storage holds neither token."""
    before = _manager(stack.stack)
    stack.set_config("ghr:github.token", tokens["second"], secret=True, path=True)
    stack.up()
    after = _manager(stack.stack)
    assert after.id == before.id and after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]
    wait_for(lambda: "credentials" in after.logs().decode(errors="replace").split("event=spec_reloaded")[-1],
             30, "the manager's reload of the credentials")
    host_file = Path(secrets_host_dir(stack.stack, "cpu")) / "credentials.json"
    _assert_host_file(host_file, tokens["second"])
    assert tokens["first"] not in host_file.read_text()
    assert _storage_hits(after.id, list(tokens.values()), "/etc/ghr/pool.json") == []
    emulator.remove_pat(tokens["first"])
    prefix = f"{stack.stack}-cpu-local"
    job = emulator.enqueue_job("acme", ["self-hosted", "e2e"], "echo rotated", timeout=120)
    assert emulator.wait_job(job, timeout=180)["conclusion"] == "success"
    wait_for(lambda: _online(emulator, prefix), 180, "a runner minted with the new token")


def test_3_a_lost_file_is_found_by_refresh_and_delivered_by_up(stack: Any, emulator: Any,
                                                               tokens: dict[str, str]) -> None:
    """What a host reboot does (an empty /dev/shm, the manager restarted): the manager refuses to start and
    says the file is missing; `up --refresh` finds it missing and replaces the manager, the file delivered again."""
    host_file = Path(secrets_host_dir(stack.stack, "cpu")) / "credentials.json"
    before = _manager(stack.stack)
    host_file.unlink()
    before.restart(timeout=30)
    wait_for(lambda: "credentials_refused" in before.logs().decode(errors="replace"), 60, "the manager to refuse")
    assert CREDENTIALS_PATH in before.logs().decode(errors="replace")

    def status_names_it() -> str:  # the container is `restarting` between its attempts, briefly `running`
        res = subprocess.run([sys.executable, "-m", "components.status", "--stack", stack.stack, "--cwd", str(stack.dir)],
                             env=stack.env, capture_output=True, text=True, timeout=120)
        return res.stdout if "credentials_refused" in res.stdout else ""

    # `make status` says why the manager is down, and the fix.
    text = wait_for(status_names_it, 90, "make status to name the refused credentials file", interval=1.0)
    assert "manager of cpu@local is restarting" in text and "pulumi up --refresh" in text, text
    assert not any(t in text for t in tokens.values())
    # The fix the README gives: one `up --refresh` (read finds the file missing, the diff replaces the manager).
    out = stack.run("up", "--yes", "--skip-preview", "--refresh").stdout
    assert "replaced" in out, out
    after = _manager(stack.stack)
    assert after.id != before.id and after.status == "running"
    _assert_host_file(host_file, tokens["second"])
    assert stack.outputs()["pools"]["cpu"]["local"]["registration"]["ready"] is True
    assert _storage_hits(after.id, list(tokens.values()), "/etc/ghr/pool.json") == []


def test_4_destroy_leaves_no_credentials(stack: Any, emulator: Any) -> None:
    """`destroy` removes the file from /dev/shm, and then its folder."""
    folder = Path(secrets_host_dir(stack.stack, "cpu"))
    assert (folder / "credentials.json").is_file()
    stack.destroy()
    assert not folder.exists()
    assert docker.from_env().containers.list(all=True, filters={"label": f"ghr.stack={stack.stack}"}) == []
    assert docker.from_env().containers.list(all=True, filters={"label": f"ghr.cleanup-of=ghr-{stack.stack}-cpu-manager"}) == []
