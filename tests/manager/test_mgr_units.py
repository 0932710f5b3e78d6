"""Small pure pieces: credentials loading, backoff bounds, log lines, the JIT handoff archive."""

from __future__ import annotations

import io
import json
import logging
import random
import tarfile
from pathlib import Path

import pytest

from pool_manager._backoff import Backoff
from pool_manager._containers import JIT_FILE, jit_archive
from pool_manager.credentials import CredentialsError, load_credentials


def test_credentials_from_file(tmp_path: Path) -> None:
    """A PAT credentials file loads; the token is not in the auth object's repr."""
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"type": "pat", "token": "ghp_secretvalue123"}))
    auth = load_credentials(path, environ={})
    assert "ghp_secretvalue123" not in repr(auth)


def test_credentials_from_environment_are_scrubbed() -> None:
    """GHR_GITHUB_TOKEN is read, then removed so no child process inherits it."""
    env = {"GHR_GITHUB_TOKEN": "ghp_fromenv456", "OTHER": "1"}
    load_credentials(None, environ=env)
    assert env == {"OTHER": "1"}


@pytest.mark.parametrize(
    ("content", "needle"),
    [({"type": "pat"}, "credentials.token"), ({"type": "oauth"}, "credentials.type"),
     ({"type": "app", "app_id": 1, "private_key": "nope"}, "credentials.private_key")],
)
def test_bad_credentials_name_the_field(tmp_path: Path, content: dict[str, object], needle: str) -> None:
    """Malformed credentials are refused naming the field, never echoing a secret."""
    path = tmp_path / "creds.json"
    path.write_text(json.dumps(content))
    with pytest.raises(CredentialsError, match=needle.replace(".", r"\.")) as info:
        load_credentials(path, environ={})
    assert "nope" not in str(info.value)


def test_no_credentials_is_an_error() -> None:
    """Neither a file nor the environment: a clear error saying what to set."""
    with pytest.raises(CredentialsError, match="GHR_GITHUB_TOKEN"):
        load_credentials(None, environ={})


def test_backoff_grows_caps_and_resets() -> None:
    """Delays double up to the cap, each within [cap/2, cap], and start over after reset."""
    backoff = Backoff(1.0, 8.0, random.Random(7))
    caps = [1, 2, 4, 8, 8, 8]
    for cap in caps:
        assert cap / 2 <= backoff.next() <= cap
    backoff.reset()
    assert backoff.next() <= 1.0


def test_jit_archive_is_private_to_the_runner_user() -> None:
    """The handoff tar holds one file, mode 0400, owned by uid/gid 1001."""
    with tarfile.open(fileobj=io.BytesIO(jit_archive("blob")), mode="r") as tar:
        (member,) = tar.getmembers()
        assert member.name == JIT_FILE and member.mode == 0o400 and (member.uid, member.gid) == (1001, 1001)
        assert tar.extractfile(member).read() == b"blob"  # type: ignore[union-attr]


def test_log_lines_are_key_value_and_redacted(caplog: pytest.LogCaptureFixture) -> None:
    """One event per line as key=value; registered secrets never appear."""
    from github_client import register_secret
    from pool_manager._log import event

    register_secret("ghp_neverlogged789")
    with caplog.at_level(logging.INFO, logger="pool_manager"):
        event("thing_happened", pool="cpu", error="token ghp_neverlogged789 refused", count=3)
    line = caplog.records[-1].getMessage()
    assert line.startswith("event=thing_happened pool=cpu error=") and "count=3" in line
    assert "ghp_neverlogged789" not in line
