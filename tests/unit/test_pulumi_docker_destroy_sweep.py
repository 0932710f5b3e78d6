"""Docker in jobs at `pulumi destroy`: after the registrations, the sweep removes what a killed manager left of a
dind pool - runner containers first, then their sidecars with their volumes, then any pair volume left over."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

import components.registration as registration

PROPS = {"docker_host": "unix:///var/run/docker.sock", "stack": "unit", "pool": "cpu", "host": "local"}
POOL = ["ghr.stack=unit", "ghr.pool=cpu", "ghr.host=local"]


class _Thing:
    def __init__(self, name: str, log: list[str], gone: bool = False) -> None:
        self.name, self.log, self.gone = name, log, gone

    def remove(self, **kwargs: Any) -> None:
        if self.gone:
            raise docker.errors.NotFound("gone")
        self.log.append(f"{self.name} {sorted(kwargs.items())}")


class _Engine:
    """Lists by label filter the way the engine does (every label must match)."""

    def __init__(self, containers: dict[str, list[str]], volumes: dict[str, list[str]]) -> None:
        self.log: list[str] = []
        self.filters: list[Any] = []
        self._containers, self._volumes = containers, volumes
        self.containers = self._lister(self._containers)
        self.volumes = self._lister(self._volumes)

    def _lister(self, things: dict[str, list[str]]) -> Any:
        engine = self

        class _List:
            def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[_Thing]:  # noqa: A002
                labels = (filters or {}).get("label", [])
                engine.filters.append(labels)
                return [_Thing(n, engine.log, gone=n.startswith("gone")) for n, ls in things.items()
                        if set(labels) <= set(ls)]

        return _List()


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> _Engine:
    eng = _Engine(
        containers={
            "r0": [*POOL, "ghr.role=runner"], "r0-docker": [*POOL, "ghr.role=sidecar"],
            "gone-docker": [*POOL, "ghr.role=sidecar"],
            "other-pool-docker": ["ghr.stack=unit", "ghr.pool=gpu", "ghr.host=local", "ghr.role=sidecar"],
            "manager": [*POOL, "ghr.role=manager"],
        },
        volumes={"store-r1": [*POOL, "ghr.role=sidecar"], "unrelated": ["x=y"]},
    )

    @contextlib.contextmanager
    def client(_props: Any, timeout: float) -> Iterator[_Engine]:
        yield eng

    monkeypatch.setattr(registration, "client_from_props", client)
    return eng


def test_sweep_removes_runners_then_sidecars_then_pair_volumes(engine: _Engine) -> None:
    """Only this pool's runner and sidecar containers (with their volumes) and its pair volumes are removed."""
    registration.RunnerRegistrationProvider._remove_leftover_containers(PROPS)
    assert engine.log == ["r0 [('force', True), ('v', True)]", "r0-docker [('force', True), ('v', True)]",
                          "store-r1 [('force', True)]"]


def test_sweep_without_a_docker_host_does_nothing(engine: _Engine) -> None:
    """No host props (an older state): nothing is listed."""
    registration.RunnerRegistrationProvider._remove_leftover_containers({**PROPS, "docker_host": None})
    assert engine.filters == [] and engine.log == []
