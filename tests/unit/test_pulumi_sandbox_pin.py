"""The sandbox stack pins the emulator's stand-in runner tarball by checksum."""
from pathlib import Path

import yaml

from emulator import _tarball

ROOT = Path(__file__).resolve().parents[2]


def test_sandbox_runner_checksum_matches_the_stand_in_tarball():
    """Pulumi.sandbox.yaml's runnerSha256 is the SHA-256 of the tarball the emulator serves."""
    stack = yaml.safe_load((ROOT / "Pulumi.sandbox.yaml").read_text())
    pinned = {pool["image"]["runnerSha256"] for pool in stack["config"]["ghr:pools"]}
    assert pinned == {_tarball.sha256(_tarball.build())}, (
        "the stand-in runner changed: run `make demo` once (it updates the pin) and commit Pulumi.sandbox.yaml"
    )
