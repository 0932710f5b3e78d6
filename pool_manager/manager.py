"""The pool manager: keeps `slots` fresh single-job runner containers for one pool on one host.

One thread runs every decision (`run`); a second (`_events.EventWatcher`) only watches Docker's
event stream and wakes the first when a runner container dies or the stream is lost. Each
wake-up runs a *fast* pass (Docker only: remove what exited, refill the slots, one
`generate-jitconfig` call per new runner); every `reconcile_interval` a *full* pass also lists
the pool's registrations and sweeps orphans both ways. Any failure backs off (capped, jittered)
before the next pass; during a long backoff, cheap probes (`_recovery`) end it as soon as the
failed side answers again. SIGTERM drains (`_drain`).

SIGHUP (`request_reload`) re-reads the spec (and credentials) between passes. An invalid spec
is refused and the old one kept; a valid one is applied at once: a full pass then starts or
removes runners for the new `slots`, and retires idle runners made from an older spec (their
`ghr.spec-hash` label differs); busy ones finish their job and their slot is refilled with
the new spec. The same pass runs after a restart, so a restarted manager converges too.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import signal
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import Mount

from github_client import GitHubClient, GitHubError, RateLimited, Runner, Unprocessable

from . import _containers as C
from . import _dind as D
from ._backoff import Backoff
from ._box import Box, outcome
from ._drain import drain
from ._errors import PoolError, classify, start_error
from ._events import EventWatcher
from ._log import event
from ._recovery import Recovery, light_github_probe
from .credentials import CredentialsError
from .metrics import Health, Metrics
from .spec import PoolSpec, SpecError, load_spec

__all__ = ["PoolManager", "PoolError", "make_manager"]

_ALPHABET = string.ascii_lowercase + string.digits
_Box = Box  # the name before the split into modules
DEGRADED_WINDOW = 60.0  # seconds a slow, faulty or retried API answer keeps the manager `degraded`


class PoolManager:
    """Keeps the pool's slots filled until `stop` is set, then drains (see `run`)."""

    def __init__(
        self,
        spec: PoolSpec,
        github: GitHubClient,
        *,
        docker_factory: Callable[[], docker.DockerClient] | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        orphan_grace: float = 30.0,
        rng: random.Random | None = None,
        spec_source: Callable[[], Mapping[str, Any]] | None = None,
        github_source: Callable[[PoolSpec], GitHubClient | None] | None = None,
        probe_interval: float = 2.0,
        github_probe: Callable[[], object] | None = None,
    ) -> None:
        """`spec_source` returns the spec as parsed JSON for a reload (raise SpecError if
        unreadable); `github_source` returns a new client when the credentials changed, else None.
        `probe_interval`: seconds between recovery probes during a longer backoff (`_recovery`);
        `github_probe` replaces the default GitHub probe (one bounded GET) in tests."""
        self.spec = spec
        self.github = github
        self.metrics = metrics or Metrics(spec.pool)
        self.health = health or Health(pool=spec.pool, slots=spec.slots)
        self.orphan_grace = orphan_grace
        self.stop = threading.Event()
        self.fatal: SpecError | None = None
        self._docker_factory = docker_factory or (lambda: docker.from_env(timeout=60))
        self._dc: docker.DockerClient | None = None
        self._wake = threading.Event()
        # A dind pool's watcher also sees its sidecars die (the pool's labels without the role).
        watched = D.pair_label_filter(spec) if spec.dind_sidecar else C.pool_label_filter(spec)
        self._watcher = EventWatcher(self._docker_factory, watched, pool=spec.pool,
                                     stop=self.stop, on_event=self.wake, on_lost=self._engine_went_away,
                                     on_back=self._engine_back)
        self._outage_lock = threading.Lock()
        self._engine_lost = False  # True from a lost event stream until it is back (see `_boxes`)
        self._outage_exits: set[str] = set()  # containers that ended unseen while the stream was lost
        # Made while the stream was lost, on the engine that came back: never victims of that outage.
        self._born_in_outage: set[str] = set()
        self.drain_poll = 2.0  # seconds between drain passes while busy runners finish
        self._rng = rng
        self._backoff = Backoff(spec.backoff_initial, spec.backoff_max, rng)
        self._spec_source = spec_source
        self._github_source = github_source
        self._reload_requested = threading.Event()
        self._hash = spec.runner_hash()
        self._group_id: int | None = None
        self._minted: dict[str, float] = {}  # runner name -> when we minted it (wall clock)
        self._caches_ready: set[str] = set()
        self._pattern = spec.runner_name_pattern()
        self._filters = {"label": C.pool_label_filter(spec)}
        self._limits = D.Limits(nested=False)  # how a dind pair is bounded; set from the engine at connect
        self._sidecars: dict[str, Box] = {}  # dind: runner name -> its sidecar, as last listed
        self.dind_ready_timeout = D.READY_TIMEOUT
        self._draining = False
        self._reconciled = False  # True after the first successful full pass (health leaves `starting`)
        self._github_probe = github_probe
        self._light: tuple[GitHubClient, Callable[[], object]] | None = None
        self._recovery = Recovery({"github": self._probe_github, "docker": self._probe_docker},
                                  interval=probe_interval, metrics=self.metrics, pool=spec.pool)
        self.metrics.slots.set(spec.slots)
        self.health.update(spec_hash=self._hash)

    # -- docker plumbing ------------------------------------------------------------

    def _docker(self) -> docker.DockerClient:
        if self._dc is None:
            dc = self._docker_factory()
            dc.ping()
            _check_runtime(dc, self.spec)
            if self.spec.dind_sidecar:
                self._limits = D.Limits.for_engine(dc.info())
            self._dc = dc
            event("docker_connected", pool=self.spec.pool)
        return self._dc

    def _engine_went_away(self) -> None:
        """The event stream broke: deaths may go unseen until it is back; look at the engine now."""
        with self._outage_lock:
            if not self._engine_lost:
                self._born_in_outage.clear()  # every container that exists now may be this outage's victim
            self._engine_lost = True
        self.wake()

    def _made(self, container_id: str) -> None:
        """A runner container was just created (see `_born_in_outage`)."""
        with self._outage_lock:
            if self._engine_lost:
                self._born_in_outage.add(container_id)

    def _engine_back(self, ended_unseen: set[str]) -> None:
        """The event stream is back; `ended_unseen` ended while it was lost."""
        with self._outage_lock:
            self._outage_exits |= ended_unseen
            self._engine_lost = False
        self.wake()

    def _boxes(self) -> list[Box]:
        """The pool's containers; each marked `interrupted` if the engine, not its runner, ended it.

        The rule (docs/design.md): an ephemeral runner ends on its own when its job is done, so its
        container dies without the engine having signalled it. A runner container is `interrupted`
        (and its registration deleted), whatever its exit code, when
        - the engine sent it its stop signal (a `kill` event with a signal other than SIGKILL):
          dockerd stopping every container as it shuts down, or a `docker stop`; or
        - it ended while the watcher had lost the event stream (engine stopped or crashed), as
          far as the watcher can tell: exited or dead, no `die` event seen, listed while the
          stream was lost or when it came back.
        SIGKILL (`docker kill`, and the manager's own forced removals) keeps the exit-code outcome
        (137: `failed`). A manager that starts fresh adopts exited containers by exit code."""
        if self.spec.dind_sidecar or self._sidecars:
            return self._pairs()
        items = self._docker().api.containers(all=True, filters=self._filters)
        boxes = [Box.from_api(item) for item in items]
        return self._judge(boxes, {b.id for b in boxes})

    def _judge(self, boxes: list[Box], listed: set[str]) -> list[Box]:
        """Mark each box exited (a `die` event the list does not show yet) or `interrupted` (see `_boxes`)."""
        # The engine's container list lags its `die` events by up to a few hundred ms: trust the event.
        died = self._watcher.died(listed)
        stopped = {cid for cid, sig in self._watcher.signals().items() if sig != signal.SIGKILL}
        with self._outage_lock:
            if self._engine_lost:
                self._outage_exits.update(b.id for b in boxes if b.state in ("exited", "dead") and b.id not in died)
            self._outage_exits &= listed
            self._born_in_outage &= listed
            # A runner made after the loss (the engine answered again before the watcher did) that has
            # already exited finished its job: not a victim. Known by id: `Created` has whole seconds only.
            unseen = self._outage_exits - self._born_in_outage
        out = []
        for b in boxes:
            if b.id in died and b.live:
                b = dataclasses.replace(b, state="exited", exit_code=died[b.id])
            if (b.id in stopped and not b.live) or (b.id in unseen and b.id not in died):
                b = dataclasses.replace(b, interrupted=True)
            out.append(b)
        return out

    def _pairs(self) -> list[Box]:
        """A dind pool's runners (as `_boxes`), each paired with its sidecar. A runner whose sidecar is gone,
        exited or died is `engine_lost`: its job cannot go on, so it is finished like an exited runner. A
        sidecar whose runner is gone is removed here and now (an orphan: the manager makes the sidecar first
        and its runner in the same step, so no pass ever sees a pair half made)."""
        dc = self._docker()
        items = dc.api.containers(all=True, filters={"label": D.pair_label_filter(self.spec)})
        runners = [Box.from_api(i) for i in items if (i.get("Labels") or {}).get(C.ROLE) == "runner"]
        sidecars = [Box.from_api(i) for i in items if (i.get("Labels") or {}).get(C.ROLE) == D.SIDECAR_ROLE]
        listed = {b.id for b in runners} | {b.id for b in sidecars}
        boxes = self._judge(runners, listed)
        died = self._watcher.died(listed)
        self._sidecars = {s.runner_name: s for s in sidecars}
        names = {b.runner_name for b in boxes}
        out = []
        for b in boxes:
            if b.paired:
                sc = self._sidecars.get(b.runner_name)
                if b.live and (sc is None or not sc.live or sc.id in died):
                    b = dataclasses.replace(b, state="exited", exit_code=None, engine_lost=True)
            out.append(b)
        for sc in sidecars:
            if sc.runner_name not in names:
                event("orphan_sidecar", pool=self.spec.pool, runner=sc.runner_name, container=sc.id[:12])
                self._remove_sidecar(sc.runner_name)
                self.metrics.orphans.labels(what="sidecar").inc()
        return out

    def _remove_sidecar(self, runner_name: str) -> None:
        """Remove a pair's sidecar (after its runner) with its volumes, then any volume of the pair left over."""
        dc = self._docker()
        sc = self._sidecars.pop(runner_name, None)
        try:
            dc.api.remove_container(sc.id if sc else D.sidecar_name(runner_name), force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise
        try:
            left = dc.api.volumes(filters={"label": [f"{D.PAIR}={runner_name}", f"{C.POOL}={self.spec.pool}",
                                                    f"{C.STACK}={self.spec.stack}"]})
        except NotFound:
            return
        for vol in (left or {}).get("Volumes") or []:
            try:
                dc.api.remove_volume(vol["Name"], force=True)
            except (NotFound, APIError):
                pass  # still in use (its runner is being removed): the next removal or sweep takes it

    def _remove(self, box: Box, outcome: str) -> None:
        try:
            self._docker().api.remove_container(box.id, force=True, v=True)  # v: a hardened runner's /run/ghr volume
        except NotFound:
            if box.paired:
                self._remove_sidecar(box.runner_name)
            return
        except APIError as exc:
            if exc.status_code == 409:  # removal already in progress
                return
            raise
        if box.paired:  # the runner first: its sidecar's volumes are free only once it is gone
            self._remove_sidecar(box.runner_name)
        self.metrics.exits.labels(outcome=outcome).inc()
        event("runner_removed", pool=self.spec.pool, slot=box.slot, runner=box.runner_name,
              runner_id=box.runner_id, state=box.state, exit_code=box.exit_code, outcome=outcome)

    def _unregister(self, runner_id: int, name: str) -> bool | None:
        """Remove the registration: True, False if it was already gone, None if it runs a job (GitHub: 422)."""
        try:
            return self.github.delete_runner(runner_id, missing_ok=True)
        except Unprocessable:
            return None

    def _delete_registration(self, runner_id: int | None, name: str, why: str) -> bool:
        """Delete a registration; False if GitHub says it is running a job."""
        if runner_id is None:
            return True
        gone = self._unregister(runner_id, name)
        if gone is None:
            event("registration_busy", pool=self.spec.pool, runner=name, runner_id=runner_id, why=why)
            return False
        self._minted.pop(name, None)
        if gone:
            event("registration_deleted", pool=self.spec.pool, runner=name, runner_id=runner_id, why=why)
        return True

    # -- the passes -----------------------------------------------------------------

    def _finish_exited(self, boxes: list[Box], registrations: dict[str, Runner] | None,
                       defer: list[Box] | None = None) -> list[Box]:
        """Deregister containers that are done and remove them (or append them to `defer`, to
        remove after the refill); return the ones still holding a slot."""
        kept = []
        for box in boxes:
            if box.live:
                kept.append(box)
                continue
            # exited, dead, or created and never started (a manager died mid-creation).
            if registrations is not None:
                reg = registrations.get(box.runner_name)
                if reg is not None:
                    self._delete_registration(reg.id, box.runner_name, f"container {box.state}")
            elif box.exit_code != 0 or box.interrupted:
                # Exit 0 is an ephemeral runner whose job is done: GitHub already deleted it.
                self._delete_registration(box.runner_id, box.runner_name, f"container {box.state} ({box.exit_code})")
            if defer is not None:
                defer.append(box)
            else:
                self._remove(box, outcome(box))
        return kept

    def _sweep(self, boxes: list[Box], registrations: dict[str, Runner]) -> None:
        """Orphans both ways: registrations without a container, containers without a registration."""
        now = time.time()
        names = {b.runner_name for b in boxes}
        for name, reg in registrations.items():
            if name in names or reg.busy:
                continue
            minted = self._minted.get(name)
            if minted is not None and now - minted < self.orphan_grace:
                continue  # just minted; its container may still be on its way
            if self._delete_registration(reg.id, name, "no container"):
                self.metrics.orphans.labels(what="registration").inc()
        for box in boxes:
            if box.runner_name in registrations or now - box.created < self.orphan_grace:
                continue
            event("orphan_container", pool=self.spec.pool, runner=box.runner_name, container=box.id[:12])
            self._remove(box, "orphan")
            self.metrics.orphans.labels(what="container").inc()

    def _registrations(self) -> dict[str, Runner]:
        return {r.name: r for r in self.github.list_runners() if self._pattern.match(r.name)}

    def _runner_group_id(self) -> int:
        if self._group_id is None:
            group = self.spec.runner_group
            if group.casefold() == "default" or self.github.scope.kind == "repo":
                self._group_id = 1
            else:
                self._group_id = self.github.find_runner_group(group).id
        return self._group_id

    def pass_once(self, full: bool) -> None:
        """One pass: finish exited runners, (full: sweep orphans), then fill empty slots."""
        boxes = self._boxes()
        registrations = self._registrations() if full else None
        done: list[Box] = []
        try:
            boxes = self._finish_exited(boxes, registrations, defer=done)
            self._fill(boxes, registrations)
        finally:
            for box in done:  # after the refill: the replacement does not wait for the removal
                self._remove(box, outcome(box))

    def _fill(self, boxes: list[Box], registrations: dict[str, Runner] | None) -> None:
        if registrations is not None:
            self._sweep(boxes, registrations)
            boxes = [b for b in self._boxes() if b.live]
            self._report(boxes, registrations)
            if not self._reconciled:  # the first reconcile: leave `starting` even if the fill takes long
                self._reconciled = True
                self._healthy()
            if not self._draining:
                boxes = self._retire_stale(boxes, registrations)
        surplus = [b for b in boxes if b.slot >= self.spec.slots or b.slot < 0]
        for box in surplus:
            if self._delete_registration(box.runner_id, box.runner_name, "slot no longer in spec"):
                self._remove(box, "surplus")
        taken = {b.slot for b in boxes}
        empty = [s for s in range(self.spec.slots) if s not in taken]
        if empty and not self._draining:
            self._check_image()
            self._ensure_caches()
            group_id = self._runner_group_id()
            failed: PoolError | None = None
            for slot in empty:
                if self.stop.is_set():
                    return
                try:
                    self._start_runner(slot, group_id)
                except PoolError as exc:
                    if exc.kind != "dind":
                        raise
                    failed = failed or exc  # that runner's engine: the other slots still fill
            if failed is not None:
                raise failed

    def _retire_stale(self, boxes: list[Box], registrations: dict[str, Runner]) -> list[Box]:
        """Remove idle runners made from an older spec (registration first: GitHub refuses if a
        job has it); busy ones are left to finish. Returns the boxes still holding a slot."""
        if any(b.spec_hash != self._hash for b in boxes):
            self._check_image()  # never retire runners for an image that cannot start
        kept = []
        for box in boxes:
            reg = registrations.get(box.runner_name)
            if box.spec_hash == self._hash or (reg is not None and reg.busy):
                kept.append(box)
            elif self._delete_registration(box.runner_id, box.runner_name, "older spec"):
                self._remove(box, "respec")
            else:
                kept.append(box)
        return kept

    @property
    def _image(self) -> str:
        image = self.spec.image
        if image is None:  # load_spec refuses this for a manager; a guard for specs built in code
            raise PoolError("image", "the pool spec names no runner image; the Pulumi program sets it at deploy")
        return image

    def _check_image(self) -> None:
        image = self._image
        try:
            self._docker().api.inspect_image(image)  # type: ignore[no-untyped-call]  # untyped in docker's SDK
        except ImageNotFound:
            raise PoolError("image", f"image {image!r} is not on this Docker engine; build it there"
                            " (pulumi up builds it on each host) or fix the pool's image") from None
        if self.spec.dind_sidecar:
            sidecar = self.spec.dind.image if self.spec.dind else None
            if not sidecar:
                raise PoolError("image", "the pool spec names no sidecar image (dind.image); the Pulumi program sets"
                                " it at deploy (PoolSpec.with_dind_image)")
            try:
                self._docker().api.inspect_image(sidecar)  # type: ignore[no-untyped-call]
            except ImageNotFound:
                raise PoolError("image", f"sidecar image {sidecar!r} (dind.image) is not on this Docker engine;"
                                " build runner-image/dind.Dockerfile there (pulumi up builds it on each host)") from None

    def _ensure_caches(self, slots: Iterable[int] = ()) -> None:
        """Cache volumes are shared across jobs on purpose; create them writable for the runner user. A per-slot
        volume is one per slot (`<source>-<slot>`, labelled with its family and slot): made for `slots`."""
        wanted: list[tuple[str, dict[str, str]]] = []
        for vol in self.spec.container.volumes:
            if vol.type != "cache" or vol.source is None:
                continue
            if vol.per_slot:
                for slot in slots:
                    name = vol.source_for(slot)
                    assert name is not None
                    wanted.append((name, C.cache_volume_labels(self.spec, family=vol.source, slot=slot)))
            else:
                wanted.append((vol.source, C.cache_volume_labels(self.spec)))
        for name, labels in wanted:
            if name in self._caches_ready:
                continue
            dc = self._docker()
            try:
                dc.api.inspect_volume(name)
            except NotFound:
                dc.volumes.create(name, labels=labels)
                dc.containers.run(self._image, entrypoint=["chown", f"{C.RUNNER_UID}:{C.RUNNER_GID}", "/cache"],
                                  user="0", network_mode="none", remove=True,
                                  labels={C.ROLE: "init", C.STACK: self.spec.stack},
                                  mounts=[Mount(target="/cache", source=name, type="volume")])
                event("cache_volume_created", pool=self.spec.pool, volume=name)
            self._caches_ready.add(name)

    def _mint(self, name: str, group_id: int) -> tuple[int, str]:
        """Register a just-in-time runner: (its id, its encoded JIT config). A scale-set pool mints in its scale set."""
        jit = self.github.generate_jitconfig(name, list(self.spec.labels), runner_group_id=group_id)
        return jit.runner.id, jit.encoded_jit_config

    def _start_runner(self, slot: int, group_id: int) -> str:
        """Start one runner in `slot`; returns its name."""
        name = f"{self.spec.name_prefix}-{slot}-{''.join(secrets.choice(_ALPHABET) for _ in range(6))}"
        self._ensure_caches([slot])  # this slot's own volumes (per_slot), made once
        if self.spec.dind_sidecar:
            return self._start_pair(slot, group_id, name)
        runner_id, encoded_jit_config = self._mint(name, group_id)
        self._minted[name] = time.time()
        container_id: str | None = None
        try:
            dc = self._docker()
            kwargs = C.create_kwargs(self.spec, slot=slot, runner_name=name, runner_id=runner_id)
            container = dc.containers.create(**kwargs)
            container_id = container.id
            self._made(container_id or "")
            self._put_config(container, encoded_jit_config)
            container.start()
        except Exception as exc:
            self._undo_start([container_id], runner_id, name)
            raise start_error(exc, self.spec.image or "?") from exc
        self.metrics.starts.inc()
        event("runner_started", pool=self.spec.pool, slot=slot, runner=name, runner_id=runner_id,
              container=(container_id or "")[:12])
        return name

    def _put_config(self, container: Container, encoded_jit_config: str) -> None:
        """Into a created runner: its JIT config, and the host's apt proxy when the pool has one (apt in the job uses it)."""
        container.put_archive(C.JIT_DIR, C.jit_archive(encoded_jit_config))
        if self.spec.cache is not None and self.spec.cache.apt_proxy:
            container.put_archive(C.APT_PROXY_DIR, C.apt_proxy_archive(self.spec.cache.apt_proxy))

    def _undo_start(self, container_ids: Sequence[str | None], runner_id: int | None, name: str) -> None:
        """A start failed: no container without a registration, no registration without a container. Removes the
        containers made (in the order given), then the registration; the next full pass sweeps what this misses."""
        for cid in container_ids:
            if cid is not None:
                try:
                    self._docker().api.remove_container(cid, force=True, v=True)
                except DockerException:
                    pass
        try:
            self._delete_registration(runner_id, name, "start failed")
        except GitHubError:
            pass

    def _start_pair(self, slot: int, group_id: int, name: str) -> str:
        """A dind runner: its sidecar first (the engine boots while the runner is registered and made), then
        the runner, started with its JIT config only once the engine answers (bounded by
        `dind_ready_timeout`). Any failure undoes both containers and the registration; an engine that
        never answers fails this runner with kind `dind` (reported, backed off), not the other slots."""
        dc = self._docker()
        began = time.monotonic()
        runner_id: int | None = None
        sidecar_id: str | None = None
        container_id: str | None = None
        try:
            sidecar = dc.containers.create(**D.sidecar_kwargs(self.spec, slot=slot, runner_name=name,
                                                              limits=self._limits))
            sidecar_id = sidecar.id
            sidecar.start()
            runner_id, encoded_jit_config = self._mint(name, group_id)
            self._minted[name] = time.time()
            assert sidecar_id is not None
            mounts = dc.api.inspect_container(sidecar_id)["Mounts"]
            volumes = {m["Destination"]: m["Name"] for m in mounts if m.get("Type") == "volume"}
            kwargs = D.pair_runner_kwargs(C.create_kwargs(self.spec, slot=slot, runner_name=name, runner_id=runner_id),
                                          self.spec, sidecar_id=sidecar_id, volumes=volumes, limits=self._limits)
            container = dc.containers.create(**kwargs)
            container_id = container.id
            self._made(container_id or "")
            self._put_config(container, encoded_jit_config)
            waited = self._wait_engine(dc, sidecar_id, name)
            container.start()
        except Exception as exc:
            self._undo_start([container_id, sidecar_id], runner_id, name)  # the runner first: its sidecar's volumes are then free
            if isinstance(exc, PoolError):
                raise
            raise start_error(exc, self.spec.image or "?") from exc
        self.metrics.starts.inc()
        self.metrics.dind_ready.observe(waited)
        event("runner_started", pool=self.spec.pool, slot=slot, runner=name, runner_id=runner_id,
              container=(container_id or "")[:12], sidecar=(sidecar_id or "")[:12],
              engine_wait=f"{waited:.3f}", pair_start=f"{time.monotonic() - began:.3f}")
        return name

    def _wait_engine(self, dc: docker.DockerClient, sidecar_id: str, name: str) -> float:
        """Seconds from now until the sidecar's engine answers `docker version` on the pair's socket (an
        exec in the sidecar); PoolError `dind` if the sidecar exits or `dind_ready_timeout` passes."""
        start = time.monotonic()
        deadline = start + self.dind_ready_timeout
        last = ""
        while True:
            try:
                ex = dc.api.exec_create(sidecar_id, D.ready_command(), stdout=True, stderr=True)
                out = dc.api.exec_start(ex["Id"])
                if dc.api.exec_inspect(ex["Id"]).get("ExitCode") == 0:
                    return time.monotonic() - start
                last = (out.decode(errors="replace") if isinstance(out, bytes) else str(out)).strip()[-200:]
            except APIError as exc:  # 409: the sidecar is not running (it exited)
                if exc.status_code == 409:
                    raise PoolError("dind", f"the sidecar engine of {name} exited before it answered ({exc.explanation});"
                                    " see its log (docker logs) and the pool's dind.security") from None
                last = str(exc.explanation or exc)[-200:]
            if time.monotonic() >= deadline or self.stop.is_set():
                raise PoolError("dind", f"the sidecar engine of {name} did not answer within"
                                f" {self.dind_ready_timeout:.0f} s ({last or 'no answer'}); check dind.security"
                                " and the host's support for an engine in a container")
            time.sleep(0.05)

    def _busy(self, box: Box, reg: Runner | None) -> bool:
        """Whether the runner in ``box`` runs a job (its registration says so)."""
        return reg is not None and reg.busy

    def _report(self, boxes: list[Box], registrations: dict[str, Runner]) -> None:
        idle = busy = starting = 0
        for box in boxes:
            reg = registrations.get(box.runner_name)
            if self._busy(box, reg):
                busy += 1
            elif reg is not None and reg.online:
                idle += 1
            else:
                starting += 1
        self.metrics.runners.labels(state="idle").set(idle)
        self.metrics.runners.labels(state="busy").set(busy)
        self.metrics.runners.labels(state="starting").set(starting)
        self.health.update(idle=idle, busy=busy, starting=starting)
        # Forget mint times we no longer need.
        cutoff = time.time() - 10 * self.orphan_grace
        for name in [n for n, t in self._minted.items() if t < cutoff]:
            del self._minted[name]

    def _full_interval(self) -> float:
        """Seconds between full passes (registrations listed and compared)."""
        return self.spec.reconcile_interval

    # -- failure handling -----------------------------------------------------------

    def _failed(self, exc: BaseException) -> float:
        kind, message = classify(exc)
        if kind == "docker":
            self._dc = None  # reconnect next time
        delay = self._backoff.next()
        if isinstance(exc, RateLimited) and exc.retry_at is not None:
            delay = max(delay, min(exc.retry_at.timestamp() - time.time(), 3600.0))
        now = time.time()
        self.metrics.failures.labels(kind=kind).inc()
        self.metrics.last_error.labels(kind=kind).set(now)
        self.metrics.healthy.set(0)
        self.metrics.backoff.set(delay)
        state = "draining" if self._draining else kind if kind in ("github", "docker") else "error"
        self.health.set_state(state, ok=False, last_error=message, last_error_kind=kind, last_error_at=now)
        event("pass_failed", level=40, pool=self.spec.pool, kind=kind, error=message,
              retry_in=f"{delay:.2f}", failures=self._backoff.failures)
        self._recovery.arm(kind, time.monotonic() + delay, exc)
        return delay

    def _succeeded(self) -> None:
        if self._backoff.failures:
            event("recovered", pool=self.spec.pool, after_failures=self._backoff.failures)
        self._backoff.reset()
        self._recovery.disarm()
        self.metrics.healthy.set(1)
        self.metrics.backoff.set(0)
        if self._reconciled or self._draining:
            self._healthy()
        else:  # a fast pass worked, but nothing was compared with GitHub yet
            self.health.update(last_success_at=time.time())

    def _healthy(self) -> None:
        """`ok`, or `degraded` while recent GitHub answers were slow, faults or retried."""
        now = time.time()
        why = self.metrics.api_trouble(now - max(DEGRADED_WINDOW, 2 * self.spec.reconcile_interval))
        state = "draining" if self._draining else "degraded" if why else "ok"
        self.health.set_state(state, ok=True, degraded_reason=why, last_success_at=now)

    # -- recovery probes (see _recovery) -------------------------------------------------

    def _probe_github(self) -> object:
        if self._github_probe is not None:
            return self._github_probe()
        if self._light is None or self._light[0] is not self.github:
            name = f"{self.spec.name_prefix}-probe"  # never a runner's name: runners are <prefix>-<slot>-<random>
            self._light = (self.github, light_github_probe(self.github, name, self.metrics.observe_request))
        return self._light[1]()

    def _probe_docker(self) -> object:
        dc = self._docker_factory()
        try:
            return dc.ping()
        finally:
            close = getattr(dc, "close", None)
            if close is not None:
                close()

    # -- reload (SIGHUP) -------------------------------------------------------------

    def request_reload(self) -> None:
        """SIGHUP: re-read the spec (and credentials) before the next pass."""
        self._reload_requested.set()
        self._wake.set()

    def reload(self) -> bool:
        """Re-read and validate the spec; apply it if valid, else keep the old one and report why."""
        if self._spec_source is None:
            self._reload_failed("spec", "this manager has no spec file to re-read")
            return False
        try:
            new = load_spec(self._spec_source())
            fixed = self.spec.fixed_changes(new)
            if fixed:
                key = fixed[0]
                raise SpecError(key, f"cannot change while the manager runs ({getattr(self.spec, key)!r} -> "
                                f"{getattr(new, key)!r}); restart or replace the manager container for it"
                                " (pulumi up replaces it)")
            if new.container.runtime and new.container.runtime != self.spec.container.runtime:
                _check_runtime(self._docker(), new)
            github = self._github_source(new) if self._github_source is not None else None
        except SpecError as exc:
            self._reload_failed(exc.field, exc.reason)
            return False
        except CredentialsError as exc:
            self._reload_failed("credentials", str(exc))
            return False
        except Exception as exc:  # the engine, when checking a new runtime
            self._reload_failed("spec", classify(exc)[1])
            return False
        old, self.spec = self.spec, new
        changed = [f.name for f in dataclasses.fields(PoolSpec) if getattr(old, f.name) != getattr(new, f.name)]
        if github is not None:
            self.github = github
            changed.append("credentials")
        if github is not None or old.runner_group != new.runner_group:
            self._group_id = None
        if (old.backoff_initial, old.backoff_max) != (new.backoff_initial, new.backoff_max):
            self._backoff = Backoff(new.backoff_initial, new.backoff_max, self._rng)
        self._hash = new.runner_hash()
        self.metrics.slots.set(new.slots)
        self.metrics.spec_reloads.inc()
        self.metrics.spec_reload_ok.set(1)
        self.health.update(slots=new.slots, spec_hash=self._hash, spec_reload_ok=True, spec_reload_field=None,
                           spec_reload_error=None, spec_reloaded_at=time.time())
        event("spec_reloaded", pool=new.pool, changed=",".join(changed) or "nothing", slots=new.slots,
              spec_hash=self._hash)
        return True

    def _reload_failed(self, field_: str, reason: str) -> None:
        self.metrics.spec_reload_failures.inc()
        self.metrics.spec_reload_ok.set(0)
        self.health.update(spec_reload_ok=False, spec_reload_field=field_, spec_reload_error=f"{field_}: {reason}",
                           spec_reload_failed_at=time.time())
        event("spec_reload_refused", level=40, pool=self.spec.pool, field=field_, error=reason,
              kept_spec_hash=self._hash)

    # -- main loop ------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> int:
        """Run until `stop` is set, then drain. Returns the process exit code (2: bad spec)."""
        event("manager_started", pool=self.spec.pool, stack=self.spec.stack, host=self.spec.host,
              slots=self.spec.slots, image=self.spec.image, scope=self.spec.scope_url)
        self._watcher.start()
        next_full = 0.0
        not_before = 0.0
        while not self.stop.is_set():
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                if self.reload():
                    next_full = not_before = 0.0  # converge on the new spec now
            now = time.monotonic()
            if now < not_before and self._recovery.due(now) and self._recovery.probe():
                now = not_before = next_full = time.monotonic()  # it answers again: do not sleep out the backoff
            if now >= not_before:
                full = now >= next_full
                try:
                    self.pass_once(full=full)
                except SpecError as exc:
                    self.fatal = exc
                    event("spec_refused", level=50, pool=self.spec.pool, field=exc.field, error=exc.reason)
                    self.stop.set()
                    break
                except Exception as exc:  # every failure backs off; none ends the manager
                    not_before = time.monotonic() + self._failed(exc)
                    next_full = not_before  # after a failure, look at everything again
                else:
                    self._succeeded()
                    if full:
                        next_full = time.monotonic() + self._full_interval()
            # Sleep until the next full pass (or the end of the backoff, or the next recovery probe);
            # a container's death wakes us earlier for a fast pass, but never before the backoff has run out.
            until = max(not_before, next_full)
            probe_at = self._recovery.next_at()
            if probe_at is not None:
                until = min(until, probe_at)
            self.sleep(max(0.05, until - time.monotonic()))
        if self.fatal is not None:
            self.health.set_state("stopped", ok=False, last_error=str(self.fatal), last_error_kind="spec")
            return 2
        self.drain()
        return 0

    def request_stop(self) -> None:
        """SIGTERM: stop creating runners, then `run` drains and returns."""
        self.stop.set()
        self._wake.set()
        self._watcher.close()

    # -- drain ----------------------------------------------------------------------

    def drain(self) -> None:
        """Remove idle runners now; let busy ones finish up to `drain_timeout`; then force the rest (`_drain`)."""
        drain(self)

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less if a container dies or a signal comes (`wake`)."""
        self._wake.wait(seconds)
        self._wake.clear()


def make_manager(spec: PoolSpec, github: GitHubClient, **kwargs: Any) -> PoolManager:
    """The manager for `spec`: a fixed pool's `PoolManager`, or a scale-set pool's `ScaleSetManager` (`_scaleset`)."""
    if spec.scale_set:
        from ._scaleset import ScaleSetManager

        return ScaleSetManager(spec, github, **kwargs)
    return PoolManager(spec, github, **kwargs)


def _check_runtime(dc: docker.DockerClient, spec: PoolSpec) -> None:
    runtime = spec.container.runtime
    if runtime:
        runtimes = sorted((dc.info().get("Runtimes") or {}).keys())
        if runtime not in runtimes:
            known = ", ".join(runtimes) or "none"
            raise SpecError("container.runtime", f"{runtime!r} is not a runtime of this Docker engine"
                            f" (it has: {known}); install it or pick one of those")


