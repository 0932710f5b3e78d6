"""Credentials off the engine's storage: the manager's mounts and upload paths (Pulumi mocks), and the
DockerContainer provider's handling of uploads that land in a bind mount (a fake Docker client)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import docker.errors
import pulumi
import pytest
from unit_helpers import SECRET_SIG, TOKEN, base

from components import Fleet, parse_config
from components.docker import DockerContainerProvider
from components.docker._container import ContainerCleanupError, _mounts, host_uploads
from components.pool import CREDENTIALS_PATH, SECRETS_DIR, SPEC_PATH, secrets_host_dir

# ---- the manager container of a pool (Pulumi mocks) ------------------------------------------


def _uploads(inputs: dict) -> list[dict]:
    uploads = inputs["uploads"]
    if isinstance(uploads, dict) and SECRET_SIG in uploads.values():
        uploads = uploads["value"]
    return uploads


@pulumi.runtime.test
def test_manager_credentials_live_in_a_host_tmpfs_folder(mocks):
    """The credentials file is an upload into a bind mount of /dev/shm/ghr/<stack>-<pool> (created by the engine),
    the path the manager is told; the spec stays in the container's layer; both reload in place."""
    fleet = Fleet("fleet", {"config": parse_config(base(), "unit", ["ghr:github"])})

    def check(_):
        (manager,) = mocks.of_type("dynamic/docker:Container")
        inputs = manager.inputs
        assert secrets_host_dir("unit", "cpu") == "/dev/shm/ghr/unit-cpu"
        assert {"type": "bind", "source": "/dev/shm/ghr/unit-cpu", "target": SECRETS_DIR,
                "create_source": True} in inputs["mounts"]
        assert CREDENTIALS_PATH == "/run/ghr-secrets/credentials.json"
        command = inputs["command"]
        assert command[command.index("--credentials-file") + 1] == CREDENTIALS_PATH
        files = {u["path"]: u for u in _uploads(inputs)}
        assert set(files) == {SPEC_PATH, CREDENTIALS_PATH}
        assert files[CREDENTIALS_PATH]["mode"] == 0o400 and files[CREDENTIALS_PATH]["reloadable"] is True
        assert TOKEN in files[CREDENTIALS_PATH]["content"]
        # Only the credentials go to the host folder; nothing else is uploaded under it.
        assert host_uploads({"mounts": inputs["mounts"], "uploads": _uploads(inputs)}) == [CREDENTIALS_PATH]
        assert DockerContainerProvider().check({}, {**inputs, "uploads": _uploads(inputs)}).failures == []

    return fleet.pools.apply(check)


# ---- the provider -----------------------------------------------------------------------------

_SHM = {"type": "bind", "source": "/dev/shm/ghr/s-p", "target": "/run/s", "create_source": True}
_SOCK = {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}
_CREDS = {"path": "/run/s/credentials.json", "content": "tok", "mode": 0o400, "reloadable": True}
_SPEC = {"path": "/etc/ghr/pool.json", "content": "{}", "mode": 0o444, "reloadable": True}
_PROPS: dict[str, Any] = {"name": "c", "image": "img", "docker_host": None, "mounts": [_SOCK, _SHM],
                          "uploads": [_SPEC, _CREDS], "reload_signal": "SIGHUP", "stop_timeout": 5, "state": "running"}


def test_create_source_mounts_become_legacy_binds():
    """A create_source bind goes to Binds (the engine creates a missing folder); the others stay Mounts."""
    mounts, binds = _mounts([_SOCK, _SHM, {**_SHM, "source": "/dev/shm/x", "target": "/ro", "read_only": True},
                             {"type": "tmpfs", "target": "/t"}])
    assert binds == ["/dev/shm/ghr/s-p:/run/s:rw", "/dev/shm/x:/ro:ro"]
    assert [(m["Type"], m["Target"]) for m in mounts] == [("bind", "/var/run/docker.sock"), ("tmpfs", "/t")]


@pytest.mark.parametrize("mount", [
    {**_SHM, "type": "volume"}, {**_SHM, "source": "relative/dir"}, {**_SHM, "source": "/a:b"},
    {**_SHM, "create_source": "yes"},
])
def test_check_refuses_a_bad_create_source(mount):
    """create_source is a boolean, for a bind mount of an absolute host path without ':'."""
    news = {"name": "c", "image": "i", "mounts": [mount]}
    assert "mounts[0].create_source" in [f.property for f in DockerContainerProvider().check({}, news).failures]


def test_host_uploads_are_those_under_a_bind_mount():
    """Uploads under a bind mount's target (normalised paths) are on the host; the rest are in the layer."""
    props = {"mounts": [_SOCK, _SHM, {"type": "tmpfs", "target": "/tmp"}],
             "uploads": [_SPEC, _CREDS, {"path": "/run/s/../s/b", "content": ""}, {"path": "/run/sx", "content": ""},
                         {"path": "/tmp/t", "content": ""}]}
    assert host_uploads(props) == ["/run/s/credentials.json", "/run/s/b"]


def test_diff_replaces_a_container_that_lost_an_upload():
    """A read (refresh) that found an upload missing makes the next up replace the container (delivers it again)."""
    p = DockerContainerProvider()
    news = {k: v for k, v in _PROPS.items() if k != "state"}
    assert p.diff("id", {**_PROPS, "missing_uploads": []}, news).changes is False
    d = p.diff("id", {**_PROPS, "missing_uploads": [_CREDS["path"]]}, news)
    assert d.replaces == ["missing_uploads"] and d.delete_before_replace


class _Container:
    def __init__(self, files: set[str], status: str = "running") -> None:
        self.id = "c0ffee" * 10
        self.status = status
        self.attrs = {"Image": "sha256:img"}
        self.files = files
        self.calls: list[str] = []

    def get_archive(self, path: str) -> tuple[Iterator[bytes], dict[str, Any]]:
        self.calls.append(f"get {path}")
        if path not in self.files:
            raise docker.errors.NotFound(f"Could not find the file {path}")
        return iter([b"tar"]), {"name": path}

    def stop(self, timeout: int) -> None:
        self.calls.append("stop")
        self.status = "exited"

    def remove(self, force: bool) -> None:
        self.calls.append("remove")


class _Client:
    def __init__(self, container: _Container, helper_error: Exception | None = None,
                 rmdir_error: Exception | None = None) -> None:
        self.container = container
        self.errors = {"rm": helper_error, "rmdir": rmdir_error}
        self.runs: list[dict[str, Any]] = []
        self.containers = self

    def get(self, _id: str) -> _Container:
        return self.container

    def run(self, **kwargs: Any) -> bytes:
        command = kwargs["entrypoint"][0]
        self.container.calls.append(command)
        self.runs.append(kwargs)
        if self.errors[command]:
            raise self.errors[command]
        if command == "rm":
            self.container.files -= set(kwargs["entrypoint"][3:])
        return b""


@pytest.fixture
def fake(monkeypatch):
    def use(container: _Container, **kw: Any) -> _Client:
        client = _Client(container, **kw)
        monkeypatch.setattr("components.docker._container.client_from_props",
                            lambda *_a, **_k: contextlib.nullcontext(client))
        return client
    return use


def test_read_reports_missing_uploads(fake):
    """read looks for every upload in the container (running or not): a missing one is listed."""
    fake(_Container({_SPEC["path"]}, status="restarting"))
    result = DockerContainerProvider().read("id", dict(_PROPS))
    assert result.outs["missing_uploads"] == [_CREDS["path"]] and result.outs["state"] == "restarting"
    fake(_Container({_SPEC["path"], _CREDS["path"]}))
    assert DockerContainerProvider().read("id", dict(_PROPS)).outs["missing_uploads"] == []


def test_delete_removes_host_uploads_after_stop_before_remove(fake):
    """Delete: stop (drain), then a helper of the same image with the container's mounts removes the
    host-side files, another the create_source folder (through its parent, if empty), then the container
    goes. The spec (in the container's layer) needs no helper."""
    box = _Container({_SPEC["path"], _CREDS["path"]})
    client = fake(box)
    DockerContainerProvider().delete("id", dict(_PROPS))
    assert [c for c in box.calls if not c.startswith("get")] == ["stop", "rm", "rmdir", "remove"]
    rm, rmdir = client.runs
    assert rm["image"] == "sha256:img" and rm["volumes_from"] == [box.id] and rm["remove"] is True
    assert rm["entrypoint"] == ["rm", "-f", "--", _CREDS["path"]] and rm["network_mode"] == "none"
    assert _CREDS["path"] not in box.files
    assert rmdir["volumes"] == ["/dev/shm/ghr:/ghr-cleanup/0:rw"] and "volumes_from" not in rmdir
    assert rmdir["entrypoint"] == ["rmdir", "--", "/ghr-cleanup/0/s-p"] and rmdir["image"] == "sha256:img"


def test_delete_keeps_a_folder_it_cannot_remove_and_one_it_did_not_create(fake):
    """rmdir is best effort (a folder something else wrote into stays); a bind mount without create_source
    gets its uploads removed but keeps its folder."""
    box = _Container({_CREDS["path"]})
    fake(box, rmdir_error=docker.errors.ContainerError(box, 1, "rmdir", "img", b"Directory not empty"))
    DockerContainerProvider().delete("id", dict(_PROPS))
    assert box.calls[-1] == "remove" and _CREDS["path"] not in box.files
    box2 = _Container({_CREDS["path"]})
    client2 = fake(box2)
    DockerContainerProvider().delete("id", {**_PROPS, "mounts": [_SOCK, {k: v for k, v in _SHM.items()
                                                                         if k != "create_source"}]})
    assert [r["entrypoint"][0] for r in client2.runs] == ["rm"] and box2.calls[-1] == "remove"


@pytest.mark.parametrize("status", ["exited", "created"])
def test_delete_of_a_stopped_container_still_removes_host_uploads(fake, status):
    """A stopped container is not stopped again; its host files are removed all the same."""
    box = _Container({_CREDS["path"]}, status=status)
    fake(box)
    DockerContainerProvider().delete("id", dict(_PROPS))
    assert [c for c in box.calls if not c.startswith("get")] == ["rm", "rmdir", "remove"]


def test_delete_needs_no_helper_when_the_files_are_gone(fake):
    """Files already gone (a reboot, or removed by hand): no helper, the container is removed."""
    box = _Container(set())
    client = fake(box)
    DockerContainerProvider().delete("id", dict(_PROPS))
    assert client.runs == [] and box.calls[-1] == "remove"
    box2 = _Container({_CREDS["path"]})
    client2 = fake(box2)
    DockerContainerProvider().delete("id", {**_PROPS, "mounts": [_SOCK]})  # no bind mount under the upload
    assert client2.runs == [] and box2.calls == ["stop", "remove"]


def test_delete_fails_clearly_when_the_helper_fails(fake):
    """A helper that cannot run fails the delete naming the files; the stopped container is kept."""
    box = _Container({_CREDS["path"]})
    fake(box, helper_error=docker.errors.ImageNotFound("no such image"))
    with pytest.raises(ContainerCleanupError, match="/run/s/credentials.json") as info:
        DockerContainerProvider().delete("id", dict(_PROPS))
    assert "tok" not in str(info.value) and "remove" not in box.calls and "rmdir" not in box.calls
