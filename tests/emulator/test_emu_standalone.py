"""`python -m emulator`: the standalone server prints its URL and credentials and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            return proc.stdout.readline()
        assert proc.poll() is None, "the emulator exited early"
    raise TimeoutError("no banner")


def test_standalone_banner_and_shutdown(tmp_path: Path) -> None:
    """--json prints url, api_url, admin token, download and demo App; the token works; SIGTERM exits 0."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "emulator", "--json", "--admin-token", "ghp_standalone",
                             "--app-account", "acme", "--state-dir", str(tmp_path), "--log-level", "WARNING"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)})
    try:
        banner = json.loads(_first_line(proc, 30))
        assert banner["admin_token"] == "ghp_standalone" and banner["url"].startswith("http://127.0.0.1:")
        assert banner["api_url"] == banner["url"] + "/api/v3"
        key = Path(banner["app_private_key_file"])
        assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----") and (key.stat().st_mode & 0o077) == 0
        r = requests.get(banner["api_url"] + "/orgs/acme/actions/runners", timeout=10,
                         headers={"Authorization": "Bearer ghp_standalone", "User-Agent": "t"})
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
