"""Real-engine end-to-end fixtures: an emulator on loopback, a private stack of the program."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._support.pulumi_cli import ROOT, PulumiStack

PROJECT = Path(__file__).parent / "project"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    from emulator import Emulator

    with Emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def program_stack(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], PulumiStack]:
    made: list[PulumiStack] = []

    def make(prefix: str) -> PulumiStack:
        name = f"{prefix}{uuid.uuid4().hex[:6]}"
        s = PulumiStack(PROJECT, tmp_path_factory.mktemp(name), name, passphrase="e2e",
                        env={"GHR_REPO_ROOT": str(ROOT), "GHR_SKIP_VERSION_CHECK": "1"})
        made.append(s)
        return s

    yield make
    for s in made:
        s.destroy(check=False)
        s.run("stack", "rm", "--yes", "--force", check=False)
