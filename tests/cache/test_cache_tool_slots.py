"""Slot-affine tool-cache volumes (`VolumeSpec.per_slot`): the runner in slot N mounts `<source>-<N>`, so at most
one job at a time writes any tool-cache volume and the next job in the slot finds what the last one installed.

Fast: the spec round trip, `create_kwargs` names per slot (a plain runner and a dind pair's runner), the manager's
decisions on the fakes (one volume per slot, made before the slot's runner). Real engine: two concurrent jobs in
two slots install the same tool path and neither sees the other's writes; the next job in slot 0 finds slot 0's
install; `keepVolumes: true` keeps the family at destroy, `false` drops all of it."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import docker
import docker.errors
import pytest
from docker.types import Mount

from components.cache import CacheVolumeProvider, family_volumes
from pool_manager import _containers as C
from pool_manager import _dind as D
from pool_manager.manager import PoolManager
from pool_manager.spec import SpecError, load_spec
from tests.cache.conftest import HOST, CacheUnderTest, pool_spec, run_job
from tests.manager.fakes import FakeEngine, FakeGitHub

TOOLS = "/opt/hostedtoolcache"
BASE: dict[str, Any] = {
    "pool": "cpu", "stack": "s", "host": "h1", "scope_url": "https://github.com/acme", "name_prefix": "s-cpu-h1",
    "labels": ["self-hosted"], "slots": 2, "image": "runner:1",
}
TOOL_VOLUME = {"type": "cache", "source": "ghr-s-cache-tools", "target": TOOLS, "per_slot": True}


def _spec(**changes: Any) -> Any:
    return load_spec({**BASE, "container": {"volumes": [TOOL_VOLUME]}, **changes})


def _mount(kwargs: dict[str, Any], target: str) -> Any:
    (mount,) = [m for m in kwargs["mounts"] if m["Target"] == target]
    return mount


def test_per_slot_round_trips_and_is_dumped_only_when_true() -> None:
    spec = _spec()
    assert spec.container.volumes[0].per_slot
    assert spec.dump()["container"]["volumes"][0] == TOOL_VOLUME
    assert load_spec(spec.dump()) == spec
    shared = load_spec({**BASE, "container": {"volumes": [{**TOOL_VOLUME, "per_slot": False}]}})
    assert "per_slot" not in shared.dump()["container"]["volumes"][0]
    assert shared.runner_hash() != spec.runner_hash()


@pytest.mark.parametrize("volume", [
    {"type": "tmpfs", "target": "/x", "per_slot": True},
    {"type": "bind", "source": "/srv", "target": "/x", "per_slot": True},
    {**TOOL_VOLUME, "per_slot": "yes"},
])
def test_per_slot_is_for_named_volumes_only(volume: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as err:
        load_spec({**BASE, "container": {"volumes": [volume]}})
    assert err.value.field == "container.volumes[0].per_slot"


def test_create_kwargs_mounts_the_slots_own_volume() -> None:
    spec = _spec()
    for slot in (0, 1, 7):
        kwargs = C.create_kwargs(spec, slot=slot, runner_name=f"r{slot}", runner_id=slot)
        assert _mount(kwargs, TOOLS)["Source"] == f"ghr-s-cache-tools-{slot}"
    assert C.slot_volumes(spec, 1) == [("ghr-s-cache-tools-1", "ghr-s-cache-tools")]
    shared = load_spec({**BASE, "container": {"volumes": [{**TOOL_VOLUME, "per_slot": False}]}})
    assert _mount(C.create_kwargs(shared, slot=1, runner_name="r", runner_id=1), TOOLS)["Source"] == "ghr-s-cache-tools"


def test_a_dind_pairs_runner_mounts_the_slots_own_volume() -> None:
    spec = _spec(docker="dind", dind={"image": "dind:1"})
    runner = C.create_kwargs(spec, slot=1, runner_name="r1", runner_id=1)
    pair = D.pair_runner_kwargs(runner, spec, sidecar_id="abc",
                                volumes={t: f"v{i}" for i, t in enumerate((D.SOCKET_DIR, *D.SHARED_PATHS))},
                                limits=D.Limits(nested=False))
    assert _mount(pair, TOOLS)["Source"] == "ghr-s-cache-tools-1"


def test_manager_makes_one_volume_per_slot_before_its_runner() -> None:
    """A full pass on a 2-slot pool: volumes -0 and -1 (made once, chowned for the runner), each runner mounts its
    own; a replacement runner in slot 0 reuses -0."""
    github = FakeGitHub()
    engine = FakeEngine(github)
    source = {**BASE, "container": {"network_mode": "none", "volumes": [TOOL_VOLUME]}, "metrics_port": 0}
    mgr = PoolManager(load_spec(source), github, docker_factory=engine.client)  # type: ignore[arg-type]
    mgr.pass_once(full=True)
    assert {"ghr-s-cache-tools-0", "ghr-s-cache-tools-1"} <= engine.volumes
    assert "ghr-s-cache-tools" not in engine.volumes  # the family's anchor is the program's (CacheVolume)
    runners = [c for c in engine.running() if c.role == "runner"]
    assert len(runners) == 2
    for c in runners:
        (mount,) = [m for m in c.kwargs["mounts"] if m["Target"] == TOOLS]
        assert mount["Source"] == f"ghr-s-cache-tools-{c.labels['ghr.slot']}"
    chowns = [kw for _image, kw in engine.ran if kw.get("entrypoint", [""])[0] == "chown"]
    assert sorted(kw["mounts"][0]["Source"] for kw in chowns) == ["ghr-s-cache-tools-0", "ghr-s-cache-tools-1"]
    (slot0,) = [c for c in runners if c.labels["ghr.slot"] == "0"]
    engine.finish_job(slot0.labels["ghr.runner-name"])
    mgr.pass_once(full=True)
    (again,) = [c for c in engine.running() if c.role == "runner" and c.labels["ghr.slot"] == "0"]
    assert again.id != slot0.id
    assert [m["Source"] for m in again.kwargs["mounts"] if m["Target"] == TOOLS] == ["ghr-s-cache-tools-0"]
    assert len([kw for _image, kw in engine.ran if kw.get("entrypoint", [""])[0] == "chown"]) == 2


# ---- on the real engine ------------------------------------------------------------------------------------------

INSTALL = r"""
set -eu
me=$1
dir=/opt/hostedtoolcache/tool/1.0.0/x64
if [ -f "$dir.complete" ]; then echo "found $(cat "$dir/owner")"; exit 0; fi
start=$(date +%s.%N)
mkdir -p "$dir"
# a slow, chunked install of the same files by both jobs: any interleaving would mix owners
for i in $(seq 1 40); do echo "$me" >> "$dir/owner.part"; echo "$me $i" > "$dir/file$((i % 5))"; sleep 0.05; done
sort -u "$dir/owner.part" > "$dir/owners"
echo "$me" > "$dir/owner"
touch "$dir.complete"
echo "installed $me owners=$(paste -sd, "$dir/owners") files=$(cat "$dir"/file* | cut -d' ' -f1 | sort -u | paste -sd,)"
echo "span $start $(date +%s.%N)"
"""


def _make_slot_volumes(client: docker.DockerClient, spec: Any, slots: range, image: str) -> None:
    """What PoolManager._ensure_caches does for a per-slot volume (labels from the same function)."""
    for slot in slots:
        for name, family in C.slot_volumes(spec, slot):
            client.volumes.create(name, labels=C.cache_volume_labels(spec, family=family, slot=slot))
            client.containers.run(image, entrypoint=["chown", f"{C.RUNNER_UID}:{C.RUNNER_GID}", "/cache"], user="0",
                                  network_mode="none", remove=True,
                                  mounts=[Mount(target="/cache", source=name, type="volume")])


@pytest.mark.timeout(600)
def test_concurrent_jobs_in_two_slots_never_share_a_tool_cache(docker_client: docker.DockerClient,
                                                                 host_cache: CacheUnderTest, runner_image: str) -> None:
    names = host_cache.names
    family = names.volume("tools")
    provider = CacheVolumeProvider()
    anchor = provider.create({**HOST, "name": family, "stack": names.stack, "kind": "tools", "keep": True})
    spec = pool_spec(host_cache, runner_image,
                     volumes=[{"type": "cache", "source": family, "target": TOOLS, "per_slot": True}])
    _make_slot_volumes(docker_client, spec, range(2), runner_image)
    try:
        results: dict[int, Any] = {}

        def job(slot: int) -> None:
            results[slot] = run_job(docker_client, spec, INSTALL, slot=slot, args=[f"job{slot}"])

        threads = [threading.Thread(target=job, args=(slot,)) for slot in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        for slot in (0, 1):
            res = results[slot]
            assert res.exit_code == 0, res.output
            # each job installed alone: only its own chunks in every file of the tool
            assert f"installed job{slot} owners=job{slot} files=job{slot}\n" in res.output, res.output
        spans = [[float(x) for x in results[slot].output.split("span ")[1].split()] for slot in (0, 1)]
        assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans  # they did run at the same time
        again = run_job(docker_client, spec, INSTALL, slot=0, args=["job2"])
        assert again.exit_code == 0 and "found job0" in again.output, again.output
        assert family_volumes(docker_client, family, names.stack) == [f"{family}-0", f"{family}-1"]
        # keepVolumes true: destroy keeps the anchor and the family
        provider.delete(family, dict(anchor.outs or {}))
        assert {v.name for v in docker_client.volumes.list(filters={"name": family})} >= {
            family, f"{family}-0", f"{family}-1"}
    finally:
        # keepVolumes false: destroy drops every one of them
        provider.delete(family, {**(anchor.outs or {}), "keep": False})
    left = [v.name for v in docker_client.volumes.list(filters={"name": family})]
    assert left == [], left


def test_family_is_found_by_label_or_name_and_spares_others(docker_client: docker.DockerClient) -> None:
    """Members made by the manager (labels) or by the engine on a mount (name only) are found; a volume of a longer
    name or another stack's family label is not."""
    family = f"ghr-tf{secrets.token_hex(3)}-cache-tools"
    made = [docker_client.volumes.create(f"{family}-0", labels={C.VOLUME_FAMILY: family, C.STACK: "tf"}),
            docker_client.volumes.create(f"{family}-12"),
            docker_client.volumes.create(f"{family}-x"),
            docker_client.volumes.create(f"{family}x-1")]
    try:
        assert family_volumes(docker_client, family, "tf") == [f"{family}-0", f"{family}-12"]
    finally:
        for v in made:
            try:
                v.remove(force=True)
            except docker.errors.NotFound:
                pass
