"""Fixtures for the emulator suite: a fresh emulator per test, a small HTTP helper, App keys, runner folders."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from emu_helpers import HTTP_TIMEOUT, Api

from emulator import Emulator


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


@pytest.fixture
def api(emu: Emulator) -> Iterator[Api]:
    a = Api(emu, emu.admin_token)
    yield a
    a.s.close()


@pytest.fixture(scope="session")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def runner_dir(tmp_path: Path, emu: Emulator) -> Path:
    """The stand-in runner tarball, downloaded from the emulator and unpacked, as a runner folder."""
    resp = requests.get(emu.download_url(), timeout=HTTP_TIMEOUT)
    resp.raise_for_status()
    root = tmp_path / "actions-runner"
    root.mkdir()
    with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
        tar.extractall(root, filter="data")
    return root


@pytest.fixture
def runner_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_RUNNER_INPUT_")}
    env["RUNNER_ALLOW_RUNASROOT"] = "1"  # the suite may run as root; the refusal has its own test
    env["GHR_STANDIN_MAX_OUTAGE"] = "10"
    return env
