"""container.hardened: read-only root, tmpfs for the writable paths, no capabilities, no new privileges.

On the real Docker engine with the emulator and the stand-in runner image (which keeps the real
runner's layout: its root is /home/runner, the JIT files are written through the image's symlinks).
"""

from __future__ import annotations

import re
from typing import Any

import docker
import pytest

from pool_manager import _containers as C
from pool_manager import load_spec
from tests._support.polling import wait_for
from tests.manager.mgr_helpers import InProcessManager, make_spec, online_idle, pool_containers

# Prints one `key=value` line per check; the second job in the slot reports what it finds of the first.
PROBE = r"""
grep -o 'containers/[0-9a-f]\{64\}' /proc/self/mountinfo | head -1 | cut -d/ -f2 | sed 's/^/container=/'
echo "uid=$(id -u)"
for p in / /usr /home/runner; do
  if err=$(touch "$p/ghr-probe" 2>&1); then echo "write[$p]=ok"; else echo "write[$p]=failed: $err"; fi
done
for p in /tmp "$GITHUB_WORKSPACE" /home/runner/_work /home/runner/_diag /home/runner/.cache /home/runner/.config \
         /home/runner/.local; do
  if touch "$p/ghr-probe" 2>/dev/null; then echo "write[$p]=ok"; else echo "write[$p]=failed"; fi
done
if cp /bin/true /tmp/ghr-true && /tmp/ghr-true; then echo "exec[/tmp]=ok"; fi
sudo -n true 2>/dev/null && echo "sudo=yes" || echo "sudo=no"
grep -E '^(CapEff|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
test -e /run/ghr/jitconfig && echo "jitconfig=present" || echo "jitconfig=gone"
test -s /home/runner/.credentials && echo "credentials=saved" || echo "credentials=missing"
for f in /tmp/leftover /home/runner/_work/leftover /home/runner/.cache/leftover /run/ghr/leftover \
         "$GITHUB_WORKSPACE/leftover"; do
  if test -e "$f"; then echo "leftover=$f"; fi
done
for f in /tmp/leftover /home/runner/_work/leftover /home/runner/.cache/leftover /run/ghr/leftover \
         "$GITHUB_WORKSPACE/leftover"; do
  echo dirty > "$f" || echo "cannot-write=$f"
done
echo done
"""


def _fields(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def _jit_volume(client: docker.DockerClient, container_id: str) -> str:
    mounts = client.api.inspect_container(container_id)["Mounts"]
    (vol,) = [m for m in mounts if m["Type"] == "volume" and m["Destination"] == C.JIT_DIR]
    return str(vol["Name"])


def _volume_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.api.inspect_volume(name)
        return True
    except docker.errors.NotFound:
        return False


def test_hardened_pool_runs_jobs_on_a_read_only_root(new_spec: Any, emulator: Any, docker_client: Any) -> None:
    """Two jobs in one slot: read-only root, writable tmpfs, no caps, no sudo; the second sees nothing of the first,
    and each container's JIT volume is gone with the container."""
    spec = new_spec(slots=1, container={"hardened": True, "memory": "1g"})
    manager = InProcessManager(spec, emulator).start()
    volumes: list[str] = []
    try:
        outputs = []
        for _ in range(2):
            wait_for(lambda: online_idle(emulator, spec), 90, "an idle hardened runner")
            (box,) = [c for c in pool_containers(docker_client, spec, all=False)]
            info = docker_client.api.inspect_container(box["Id"])["HostConfig"]
            assert info["ReadonlyRootfs"] is True and info["CapDrop"] == ["ALL"]
            assert "no-new-privileges:true" in info["SecurityOpt"]
            assert set(info["Tmpfs"]) == set(C.HARDENED_TMPFS), info["Tmpfs"]
            volume = _jit_volume(docker_client, box["Id"])
            volumes.append(volume)
            # The entrypoint deleted the JIT config once the runner was up (it is online).
            code, out = docker_client.containers.get(box["Id"]).exec_run(["ls", "-A", C.JIT_DIR])
            assert code == 0 and out.decode().split() == [], out
            job = emulator.wait_job(emulator.enqueue_job("acme", spec["labels"], PROBE, timeout=60), timeout=90)
            assert job["conclusion"] == "success", job["output"]
            fields = _fields(job["output"])
            assert fields["container"] == box["Id"], job["output"]
            outputs.append(fields)
            # The manager removes the finished container, and its anonymous volume with it.
            wait_for(lambda b=box: b["Id"] not in [c["Id"] for c in pool_containers(docker_client, spec)], 60,
                     "the finished job's container removed")
            wait_for(lambda v=volume: not _volume_exists(docker_client, v), 30, f"volume {volume[:12]} removed")
            dangling = [v["Name"] for v in docker_client.api.volumes(filters={"dangling": True})["Volumes"] or []]
            assert volume not in dangling
        first, second = outputs
        for fields in outputs:
            assert fields["uid"] == "1001"
            for path in ("/", "/usr", "/home/runner"):
                assert "Read-only file system" in fields[f"write[{path}]"], fields
            for path in ("/tmp", "/home/runner/_work", "/home/runner/_diag", "/home/runner/.cache",
                         "/home/runner/.config", "/home/runner/.local"):
                assert fields[f"write[{path}]"] == "ok", (path, fields)
            assert any(k.startswith("write[/home/runner/_work/") and v == "ok" for k, v in fields.items()), fields
            assert fields["exec[/tmp]"] == "ok"
            assert fields["sudo"] == "no"
            assert int(fields["CapEff"], 16) == 0
            assert fields["NoNewPrivs"] == "1"
            assert fields["jitconfig"] == "gone" and fields["credentials"] == "saved"
            assert not any(k.startswith("cannot-write") for k in fields), fields
        assert "leftover" not in first and "leftover" not in second, (first, second)
        assert first["container"] != second["container"]
    finally:
        manager.stop()
    assert pool_containers(docker_client, spec) == []
    assert [v for v in volumes if _volume_exists(docker_client, v)] == []


def test_pool_volume_replaces_a_hardened_default(emulator: Any, runner_image: str) -> None:
    """A pool tmpfs on a default target wins (size from the spec); other defaults stay; JIT volume is anonymous."""
    spec = load_spec(make_spec(emulator, runner_image, container={
        "hardened": True, "volumes": [{"type": "tmpfs", "target": "/home/runner/_work", "size": "8g"}]}))
    kwargs = C.create_kwargs(spec, slot=0, runner_name=f"{spec.name_prefix}-0-abcdef", runner_id=1)
    assert kwargs["read_only"] is True
    assert kwargs["tmpfs"]["/home/runner/_work"] == f"mode=1777,size={8 * 1024**3}"
    assert kwargs["tmpfs"]["/tmp"] == "mode=1777,exec,size=1g"
    assert kwargs["tmpfs"][C.RUNNER_STATE_DIR] == "mode=0700,uid=1001,gid=1001,size=1m"
    (jit,) = kwargs["mounts"]
    assert jit["Target"] == C.JIT_DIR and jit["Type"] == "volume" and not jit.get("Source")


@pytest.mark.parametrize("container", [{}, {"no_new_privileges": True, "cap_drop": ["NET_RAW"]},
                                       {"volumes": [{"type": "tmpfs", "target": "/scratch", "size": "16m"}]}])
def test_other_pools_are_unchanged(emulator: Any, runner_image: str, container: dict[str, Any]) -> None:
    """Without hardened: writable root, no JIT volume, no default tmpfs (exactly the settings asked for)."""
    spec = load_spec(make_spec(emulator, runner_image, container=container))
    kwargs = C.create_kwargs(spec, slot=0, runner_name=f"{spec.name_prefix}-0-abcdef", runner_id=1)
    assert "read_only" not in kwargs and "mounts" not in kwargs
    assert kwargs.get("tmpfs", {}) == ({"/scratch": f"mode=1777,size={16 * 1024**2}"} if "volumes" in container
                                       else {})
    assert not re.search(r"ghr-state|/run/ghr", repr(kwargs))
