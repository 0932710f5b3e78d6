"""docker "dind" pools: a runner and its sidecar engine are one unit (fast, against the fakes; no engine).

The real engine runs the same behaviour end to end in test_mgr_dind.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pool_manager import _dind as D
from pool_manager._drain import drain
from tests.manager.fakes import FakeEngine, FakeGitHub
from tests.manager.test_mgr_decisions import Pool

DIND = {"docker": "dind", "dind": {"image": "dind:1", "security": "caps",
                                   "registry_mirrors": ["http://10.0.0.5:5000"],
                                   "insecure_registries": ["10.0.0.5:5000"]}}


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def engine(github: FakeGitHub) -> FakeEngine:
    return FakeEngine(github, images=("runner:1", "dind:1"))


@pytest.fixture
def pool(github: FakeGitHub, engine: FakeEngine) -> Callable[..., Pool]:
    def make(orphan_grace: float = 30.0, **spec: Any) -> Pool:
        return Pool(github, engine, orphan_grace, **{**DIND, **spec})
    return make


def runners(engine: FakeEngine) -> list[Any]:
    return [c for c in engine.containers.values() if c.role == "runner"]


def sidecars(engine: FakeEngine) -> list[Any]:
    return [c for c in engine.containers.values() if c.role == "sidecar"]


def test_each_runner_gets_its_own_running_sidecar(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """A full pass fills every slot with a pair: the sidecar running, its runner in its network namespace."""
    p = pool(slots=2)
    p.full()
    assert p.slots() == [0, 1]
    assert len(runners(engine)) == len(sidecars(engine)) == 2
    for r in runners(engine):
        sc = engine.sidecar_of(r.labels["ghr.runner-name"])
        assert sc is not None and sc.state == "running" and sc.name == f"{r.name}-docker"
        assert r.kwargs["network_mode"] == f"container:{sc.id}" and r.kwargs["cgroupns"] == "private"
        assert r.kwargs["environment"]["DOCKER_HOST"] == D.DOCKER_HOST
        assert r.labels["ghr.pair"] == sc.labels["ghr.pair"] == r.name
        assert {k: sc.labels[k] for k in ("ghr.pool", "ghr.stack", "ghr.host")} == \
            {k: r.labels[k] for k in ("ghr.pool", "ghr.stack", "ghr.host")}


def test_the_runner_shares_the_socket_work_and_externals_of_its_sidecar(pool: Callable[..., Pool],
                                                                        engine: FakeEngine) -> None:
    """The socket, _work and externals volumes are the sidecar's, at the same paths; the image store is not shared."""
    pool(slots=1).full()
    (r,), (sc,) = runners(engine), sidecars(engine)
    own = {m["Target"]: m["Source"] for m in sc.kwargs["mounts"]}
    shared = {m["Target"]: m["Source"] for m in r.kwargs["mounts"]}
    for target in (D.SOCKET_DIR, *D.SHARED_PATHS):
        assert shared[target] == own[target]
    assert "/var/lib/docker" in own and "/var/lib/docker" not in shared
    assert set(sc.anonymous) == set(own.values())


def test_the_pair_is_bounded_by_the_sidecars_cgroup(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """cgroup v1 + cgroupfs: the pool's limits are on the sidecar and the runner nests in its cgroup."""
    pool(slots=1, container={"network_mode": "none", "cpus": 2, "memory": "1g", "pids_limit": 500}).full()
    (r,), (sc,) = runners(engine), sidecars(engine)
    assert (sc.kwargs["nano_cpus"], sc.kwargs["mem_limit"], sc.kwargs["pids_limit"]) == (2 * 10**9, 2**30, 500)
    assert r.kwargs["cgroup_parent"] == f"/docker/{sc.id}"
    assert (r.kwargs["nano_cpus"], r.kwargs["mem_limit"], r.kwargs["pids_limit"]) == (2 * 10**9, 2**30, 500)
    assert sc.kwargs["cgroupns"] == "private"


def test_the_runner_starts_only_once_its_engine_answers(pool: Callable[..., Pool], engine: FakeEngine,
                                                       github: FakeGitHub) -> None:
    """The JIT config goes in and the runner starts after `docker version` answered in the sidecar."""
    pool(slots=1).full()
    (r,) = runners(engine)
    assert engine.execs and engine.execs[0][0] == f"{r.name}-docker"
    assert engine.execs[0][1][-3:] == ["version", "--format", "{{.Server.Version}}"]
    assert r.state == "running" and r.files
    assert github.by_name(r.name) is not None


def test_the_sidecar_gets_the_engine_settings_and_no_credential(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """The sidecar's environment is the engine's settings only; no JIT config is copied into it."""
    pool(slots=1).full()
    (sc,) = sidecars(engine)
    assert sc.kwargs["environment"] == {"GHR_DIND_SOCKET_DIR": D.SOCKET_DIR,
                                        "GHR_DIND_REGISTRY_MIRRORS": "http://10.0.0.5:5000",
                                        "GHR_DIND_INSECURE_REGISTRIES": "10.0.0.5:5000"}
    assert sc.files == {}
    assert sc.kwargs["cap_add"] == ["ALL"] and "privileged" not in sc.kwargs


def test_a_privileged_sidecar_by_default(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """dind.security privileged (the default) runs the sidecar --privileged."""
    pool(slots=1, dind={"image": "dind:1"}).full()
    (sc,) = sidecars(engine)
    assert sc.kwargs["privileged"] is True and "cap_add" not in sc.kwargs


def test_a_finished_job_removes_the_pair_and_its_volumes(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """The runner exits 0: runner, sidecar and every volume of the pair go; a fresh pair takes the slot."""
    p = pool(slots=1)
    p.full()
    (first,) = p.names()
    old_volumes = set(engine.anonymous)
    engine.finish_job(first)
    p.fast()
    (second,) = p.names()
    assert second != first and engine.sidecar_of(first) is None
    assert not old_volumes & set(engine.anonymous)
    assert engine.removed.index(first) < engine.removed.index(f"{first}-docker")  # runner first
    assert len(sidecars(engine)) == 1
    assert p.metric("ghr_pool_runner_exits_total", outcome="done") == 1


def test_a_killed_runner_takes_its_sidecar_with_it(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """`docker kill` of the runner: its sidecar is removed too, and the slot gets a fresh pair."""
    p = pool(slots=1)
    p.full()
    (first,) = p.names()
    engine.kill(first)
    p.fast()
    assert engine.sidecar_of(first) is None and len(sidecars(engine)) == 1
    assert p.metric("ghr_pool_runner_exits_total", outcome="failed") == 1


def test_a_killed_sidecar_ends_its_runner(pool: Callable[..., Pool], engine: FakeEngine, github: FakeGitHub) -> None:
    """`docker kill` of the sidecar: the runner (still running) is removed with it, its registration
    deleted, and a fresh pair fills the slot."""
    p = pool(slots=1)
    p.full()
    (first,) = p.names()
    engine.kill_sidecar(first)
    p.fast()
    (second,) = p.names()
    assert second != first and first in engine.removed
    assert github.by_name(first) is None
    assert p.metric("ghr_pool_runner_exits_total", outcome="engine_lost") == 1
    assert len(sidecars(engine)) == 1 and engine.sidecar_of(second) is not None


def test_an_orphan_sidecar_is_swept(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """A sidecar whose runner is gone (a manager killed between the two) is removed with its volumes."""
    p = pool(slots=1)
    p.full()
    (name,) = p.names()
    runner = engine.by_runner(name)
    del engine.containers[runner.id]  # gone behind the manager's back, sidecar left
    p.fast()
    assert engine.sidecar_of(name) is None
    assert p.metric("ghr_pool_orphans_removed_total", what="sidecar") == 1
    assert engine.in_use() == set(engine.anonymous)  # no volume without a container


def test_a_restarted_manager_adopts_the_pairs(pool: Callable[..., Pool], engine: FakeEngine,
                                              github: FakeGitHub) -> None:
    """A new manager on the same engine keeps the running pairs: nothing made, nothing removed."""
    pool(slots=2).full()
    created = list(engine.created)
    again = pool(slots=2)
    again.full()
    again.fast()
    assert engine.created == created and engine.removed == []
    assert len(runners(engine)) == len(sidecars(engine)) == 2


def test_an_engine_that_never_answers_fails_that_runner_not_the_others(pool: Callable[..., Pool], engine: FakeEngine,
                                                                       github: FakeGitHub) -> None:
    """A sidecar whose engine never answers: that runner is undone (pair and registration) and reported
    (`dind`); the other slots fill."""
    p = pool(slots=2)
    p.mgr.dind_ready_timeout = 0.2
    original = engine.client

    def client() -> Any:
        c = original()
        create = c.containers.create

        def create_and_break(**kwargs: Any) -> Any:
            handle = create(**kwargs)
            if kwargs["labels"].get("ghr.role") == D.SIDECAR_ROLE and not engine.dead_engines:
                engine.dead_engines.add(kwargs["name"])
            return handle
        c.containers.create = create_and_break  # type: ignore[method-assign]
        return c
    p.mgr._docker_factory = client
    with pytest.raises(Exception, match="did not answer") as err:
        p.full()
    assert getattr(err.value, "kind", None) == "dind"
    assert len(runners(engine)) == len(sidecars(engine)) == 1  # the other slot's pair
    (dead,) = engine.dead_engines
    assert engine.find(dead) is None and engine.find(dead.removesuffix("-docker")) is None
    assert github.by_name(dead.removesuffix("-docker")) is None


def test_drain_removes_idle_pairs(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """SIGTERM: idle runners and their sidecars go; no volume is left."""
    p = pool(slots=2)
    p.full()
    drain(p.mgr)
    assert engine.containers == {}
    assert engine.anonymous == {}


def test_a_missing_sidecar_image_starts_nothing(pool: Callable[..., Pool], engine: FakeEngine,
                                                github: FakeGitHub) -> None:
    """No sidecar image on the engine: the pass fails with kind `image`, nothing is made or minted."""
    engine.images.discard("dind:1")
    p = pool(slots=1)
    with pytest.raises(Exception, match="dind.image") as err:
        p.full()
    assert getattr(err.value, "kind", None) == "image"
    assert engine.containers == {} and github.calls["generate_jitconfig"] == 0


def test_a_none_pool_makes_no_sidecar_and_lists_no_volumes(github: FakeGitHub, engine: FakeEngine) -> None:
    """docker "none": no sidecar, no exec, no volume listing, the runner on the pool's own network."""
    p = Pool(github, engine, 30.0)
    p.full()
    (first,) = [c.labels["ghr.runner-name"] for c in runners(engine)][:1]
    engine.finish_job(first)
    p.fast()
    assert sidecars(engine) == [] and engine.execs == []
    assert engine.calls["volumes"] == engine.calls["exec_create"] == engine.calls["inspect_container"] == 0
    assert all("DOCKER_HOST" not in (c.kwargs.get("environment") or {}) for c in runners(engine))


def test_an_engine_restart_replaces_whole_pairs(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """The host's engine goes down and comes back (runners and sidecars all ended): each runner is
    `interrupted` and goes with its sidecar; fresh pairs fill the slots; no volume of the old ones is left."""
    p = pool(slots=2)
    p.full()
    old = set(p.names())
    p.engine_crash()
    p.full()
    assert not set(p.names()) & old and len(p.names()) == 2
    assert len(sidecars(engine)) == 2 and all(s.state == "running" for s in sidecars(engine))
    assert p.metric("ghr_pool_runner_exits_total", outcome="interrupted") == 2
    assert set(engine.anonymous) == engine.in_use()


def test_a_hardened_runner_stays_hardened_in_a_pair(pool: Callable[..., Pool], engine: FakeEngine) -> None:
    """hardened: the runner keeps its read-only root, no capabilities and no new privileges; its _work is the
    pair's shared volume (the engine must see it), not a tmpfs; the sidecar alone carries the engine's rights."""
    pool(slots=1, container={"network_mode": "none", "hardened": True}).full()
    (r,), (sc,) = runners(engine), sidecars(engine)
    assert r.kwargs["read_only"] is True and r.kwargs["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in r.kwargs["security_opt"]
    assert f"{D.SHARED_PATHS[0]}" not in r.kwargs.get("tmpfs", {})
    assert "/tmp" in r.kwargs["tmpfs"]
    shared = {m["Target"] for m in r.kwargs["mounts"]}
    assert {D.SOCKET_DIR, *D.SHARED_PATHS} <= shared
    assert "cap_add" not in r.kwargs and "privileged" not in r.kwargs
    assert sc.kwargs["cap_add"] == ["ALL"]


def test_a_reload_to_dind_replaces_idle_runners_with_pairs(github: FakeGitHub, engine: FakeEngine) -> None:
    """A none pool reloaded (SIGHUP) with docker "dind": its idle runners are retired and pairs take the slots."""
    p = Pool(github, engine, 30.0, slots=1)
    p.full()
    (before,) = p.names()
    p.respec(**DIND)
    p.full()
    (after,) = p.names()
    assert after != before and engine.sidecar_of(after) is not None


def test_a_scale_set_pool_scales_pairs_from_zero_and_back(github: FakeGitHub, engine: FakeEngine,
                                                          tmp_path: Any) -> None:
    """A scale-set dind pool: 3 jobs bring 3 pairs (within max), each job's end removes its pair; back at zero
    no sidecar or volume is left."""
    from tests.manager.fakes import FakeScaleSets
    from tests.manager.test_mgr_scaleset_decisions import SSPool

    scalesets = FakeScaleSets(github)
    p = SSPool(github, engine, scalesets, tmp_path, max_runners=3, **DIND)
    p.full()
    scalesets.enqueue(3)
    p.sync()
    names = sorted(c.labels["ghr.runner-name"] for c in runners(engine))
    assert len(names) == 3 and all(engine.sidecar_of(n) is not None for n in names)
    for name in names:
        p.run_job(name)
    p.sync()
    assert engine.containers == {} and engine.anonymous == {}
