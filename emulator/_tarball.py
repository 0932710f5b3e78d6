"""The stand-in runner release tarball, built deterministically from `emulator/standin/`.

Same layout as actions/runner's release (`./config.sh`, `./run.sh`, `./env.sh`, `./bin/...`), sorted
entries, fixed owner and mtime, gzip without a timestamp: the SHA-256 only changes when a file does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from ._state import RUNNER_VERSION

SOURCE = Path(__file__).parent / "standin"
ARCHES = ("x64", "arm64")  # the stand-in is Python: one tarball serves both names
MTIME = 1767225600  # 2026-01-01T00:00:00Z
_EXECUTABLE = {"config.sh", "run.sh", "env.sh", "run-helper.sh", "bin/Runner.Listener", "bin/installdependencies.sh"}


def filename_for(arch: str) -> str:
    return f"actions-runner-linux-{arch}-{RUNNER_VERSION}.tar.gz"


def build(source: Path = SOURCE) -> bytes:
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    dirs = sorted({p.parent for p in files if p.parent != source})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.size, ti.mtime = kind, mode, size, MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            return ti

        tar.addfile(info("./", tarfile.DIRTYPE, 0o755))
        for d in dirs:
            tar.addfile(info(f"./{d.relative_to(source).as_posix()}/", tarfile.DIRTYPE, 0o755))
        for f in files:
            rel = f.relative_to(source).as_posix()
            data = f.read_bytes()
            tar.addfile(info(f"./{rel}", tarfile.REGTYPE, 0o755 if rel in _EXECUTABLE else 0o644, len(data)),
                        io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="", compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
