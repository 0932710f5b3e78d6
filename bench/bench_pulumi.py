"""Benchmark: the Pulumi program against the bare Docker way, measured in the same run.

    . toolchain/env.sh && .venv/bin/python -m bench.bench_pulumi [--runners 10]

Figures (wall clock, local engine, GitHub emulator on loopback; image layers warmed first so
neither side pays a cold apt cache):
  up       `pulumi up` from empty until N runners are online
           vs baseline: build the two images + N bare `docker run`s (JIT config copied in) until online
  preview  `pulumi preview` with no changes
           vs baseline: `pulumi preview` of an empty Python program (the engine's own floor)
  destroy  `pulumi destroy` until zero registrations
           vs baseline: `docker rm -f` the N containers + delete their N registrations
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import docker

from components.docker import context_tar
from components.image import MANAGER_CONTEXT, MANAGER_DOCKERFILE, RUNNER_CONTEXT, RUNNER_DOCKERFILE
from github_client import GitHubClient, PatAuth, parse_scope
from tests._support.polling import wait_for
from tests._support.pulumi_cli import PulumiStack
from tests.e2e.e2e_helpers import write_stack_config

ROOT = Path(__file__).resolve().parents[1]


def _build(client: docker.DockerClient, context: str, dockerfile: str, tag: str, args: dict[str, str]) -> str:
    image, _ = client.images.build(fileobj=context_tar(context, dockerfile), custom_context=True,
                                   dockerfile=dockerfile, tag=tag, buildargs=args, network_mode="host", rm=True)
    return image.id


def _online(emu, prefix: str) -> int:
    return sum(1 for r in emu.runners("acme") if r["name"].startswith(prefix) and r["status"] == "online")


def _jit_tar(blob: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("jitconfig")
        info.size, info.mode, info.uid, info.gid, info.mtime = len(blob), 0o400, 1001, 1001, int(time.time())
        tar.addfile(info, io.BytesIO(blob.encode()))
    return buf.getvalue()


def baseline(emu, n: int, runner_args: dict[str, str]) -> tuple[float, float]:
    client = docker.from_env()
    gh = GitHubClient(parse_scope(f"{emu.url}/acme"), PatAuth(emu.admin_token))
    tag = uuid.uuid4().hex[:6]
    prefix = f"bare-{tag}"
    t0 = time.monotonic()
    runner = _build(client, RUNNER_CONTEXT, RUNNER_DOCKERFILE, f"ghr-bench-runner:{tag}", runner_args)
    _build(client, MANAGER_CONTEXT, MANAGER_DOCKERFILE, f"ghr-bench-manager:{tag}",
           {"BASE_IMAGE": runner_args["BASE_IMAGE"]})
    containers, ids = [], []
    for i in range(n):
        jit = gh.generate_jitconfig(f"{prefix}-{i}-{uuid.uuid4().hex[:6]}", ["self-hosted", "bench-bare"])
        ids.append(jit.runner.id)
        c = client.containers.create(runner, network_mode="host", labels={"ghr.bench": tag}, detach=True)
        c.put_archive("/run/ghr", _jit_tar(jit.encoded_jit_config))
        c.start()
        containers.append(c)
    wait_for(lambda: _online(emu, prefix) >= n, 300, f"{n} bare runners online")
    t_up = time.monotonic() - t0
    t0 = time.monotonic()
    for c in containers:
        c.remove(force=True)
    for rid in ids:
        gh.delete_runner(rid, missing_ok=True)
    t_down = time.monotonic() - t0
    for t in (f"ghr-bench-runner:{tag}", f"ghr-bench-manager:{tag}"):
        client.images.remove(t)
    return t_up, t_down


def _empty_preview(tmp: Path) -> float:
    """`pulumi preview` of a program that declares nothing: CLI, language host and SDK start-up."""
    src = tmp / "empty-src"
    src.mkdir()
    (src / "Pulumi.yaml").write_text("name: empty\nruntime:\n  name: python\n  options:\n    virtualenv: .venv\n")
    (src / "__main__.py").write_text("import pulumi  # noqa: F401\n")
    (tmp / "empty").mkdir()
    empty = PulumiStack(src, tmp / "empty", "empty", passphrase="bench")
    empty.preview()  # first run creates the stack's state; time the second, like the real one
    t0 = time.monotonic()
    empty.preview()
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runners", type=int, default=10)
    a = ap.parse_args()
    from emulator import Emulator

    n = a.runners
    with Emulator() as emu, tempfile.TemporaryDirectory(prefix="ghr-bench-") as tmp:
        runner_args = {"BASE_IMAGE": "ghr-base:bookworm", "RUNNER_VERSION": "2.337.0",
                       "RUNNER_URL": emu.download_url(), "RUNNER_SHA256": emu.tarball_sha256, "EXTRA_PACKAGES": ""}
        print("warming the image layer cache ...", flush=True)
        client = docker.from_env()
        _build(client, RUNNER_CONTEXT, RUNNER_DOCKERFILE, "ghr-bench-warm:runner", runner_args)
        _build(client, MANAGER_CONTEXT, MANAGER_DOCKERFILE, "ghr-bench-warm:manager", {"BASE_IMAGE": "ghr-base:bookworm"})

        print(f"baseline: build + {n} bare docker runs ...", flush=True)
        base_up, base_down = baseline(emu, n, runner_args)

        stack = PulumiStack(ROOT / "tests" / "e2e" / "project", Path(tmp), f"bench{uuid.uuid4().hex[:4]}",
                            passphrase="bench", env={"GHR_REPO_ROOT": str(ROOT), "GHR_SKIP_VERSION_CHECK": "1"})
        write_stack_config(stack, emu, slots=n)
        prefix = f"{stack.stack}-cpu-local"
        try:
            print(f"pulumi up until {n} runners online ...", flush=True)
            t0 = time.monotonic()
            stack.up()
            wait_for(lambda: _online(emu, prefix) >= n, 300, f"{n} runners online")
            t_up = time.monotonic() - t0
            t0 = time.monotonic()
            stack.preview()
            t_preview = time.monotonic() - t0
            base_preview = _empty_preview(Path(tmp))
            t0 = time.monotonic()
            stack.destroy()
            wait_for(lambda: not [r for r in emu.runners("acme") if r["name"].startswith(prefix)],
                     120, "zero registrations")
            t_down = time.monotonic() - t0
        finally:
            stack.destroy(check=False)
        for t in ("ghr-bench-warm:runner", "ghr-bench-warm:manager"):
            try:
                client.images.remove(t)
            except docker.errors.APIError:
                pass

    print()
    print(f"{'measure':<34}{'pulumi':>10}{'baseline':>10}{'ratio':>8}")
    print(f"{'up until ' + str(n) + ' runners online (s)':<34}{t_up:>10.1f}{base_up:>10.1f}{t_up / base_up:>8.2f}")
    print(f"{'destroy until 0 registrations (s)':<34}{t_down:>10.1f}{base_down:>10.1f}{t_down / base_down:>8.2f}")
    print(f"{'preview, no changes (s)':<34}{t_preview:>10.1f}{base_preview:>10.1f}{t_preview / base_preview:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
