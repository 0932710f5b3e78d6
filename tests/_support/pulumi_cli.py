"""Drive the real `pulumi` CLI on a private copy of a project, with its own file backend."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"


class PulumiError(AssertionError):
    """A pulumi command failed; the message carries its output."""


class PulumiStack:
    """One stack of a copied project. Nothing is written into the repository."""

    def __init__(self, source: Path, workdir: Path, stack: str, *, passphrase: str = "test", env: dict | None = None):
        if shutil.which("pulumi") is None:
            raise PulumiError("pulumi is not on PATH: run the tests through `make test` (it sources toolchain/env.sh)")
        self.dir = workdir / "project"
        shutil.copytree(source, self.dir)
        manifest = self.dir / "Pulumi.yaml"
        # The copy lives elsewhere, so point its virtualenv at the repo's by absolute path.
        text = manifest.read_text()
        for rel in ("../../../.venv", "../../.venv", ".venv"):
            if f"virtualenv: {rel}\n" in text:
                text = text.replace(f"virtualenv: {rel}\n", f"virtualenv: {VENV}\n")
                break
        manifest.write_text(text)
        self.backend = workdir / "backend"
        self.backend.mkdir()
        self.stack = stack
        self.env = dict(os.environ)
        self.env.update(
            PULUMI_BACKEND_URL=f"file://{self.backend}",
            PULUMI_CONFIG_PASSPHRASE=passphrase,
            PYTHONPATH=str(ROOT),
        )
        self.env.update(env or {})
        self.run("stack", "init", stack)

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["pulumi", *args, "--non-interactive"], cwd=self.dir, env=self.env, input=stdin,
            capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise PulumiError(f"pulumi {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def set_config(self, key: str, value: str, *, secret: bool = False, path: bool = False) -> None:
        flags = ["--secret" if secret else "--plaintext"] + (["--path"] if path else [])
        # The value goes through stdin so that secrets never appear on a command line.
        self.run("config", "set", *flags, key, stdin=value)

    def up(self) -> str:
        return self.run("up", "--yes", "--skip-preview").stdout

    def preview(self, *, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("preview", check=check)

    def refresh(self) -> str:
        return self.run("refresh", "--yes").stdout

    def destroy(self, *, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("destroy", "--yes", check=check)

    def outputs(self) -> dict:
        return json.loads(self.run("stack", "output", "--json").stdout)

    def resources(self) -> list[dict]:
        exported = json.loads(self.run("stack", "export").stdout)
        return exported.get("deployment", {}).get("resources") or []

    def stored_text(self) -> str:
        """Everything the backend and the stack file hold, as text (for secret checks)."""
        parts = [p.read_text(errors="replace") for p in self.backend.rglob("*") if p.is_file()]
        stack_file = self.dir / f"Pulumi.{self.stack}.yaml"
        if stack_file.exists():
            parts.append(stack_file.read_text())
        return "\n".join(parts)
