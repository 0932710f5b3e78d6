"""`python -m emulator`: run the emulator standalone and print its URL and the credentials it accepts."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import Emulator


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("GHR_EMULATOR_PORT", "0")))
    ap.add_argument("--admin-token", default=os.environ.get("GHR_EMULATOR_ADMIN_TOKEN"),
                    help="fixed admin PAT (default: random); also GHR_EMULATOR_ADMIN_TOKEN")
    ap.add_argument("--public-url", default=None, help="base URL to hand out in links and JIT configs")
    ap.add_argument("--app-account", action="append", default=[],
                    help="create a demo GitHub App installed on this org (repeatable)")
    ap.add_argument("--state-dir", default=None, help="where to write the demo App's private key")
    ap.add_argument("--json", action="store_true", help="print the banner as one JSON line")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="a run-time option (repeatable): " + ", ".join(Emulator.RUNTIME_OPTIONS))
    args = ap.parse_args(argv)
    options: dict[str, object] = {}
    for item in args.option:
        name, sep, raw = item.partition("=")
        if not sep or name not in Emulator.RUNTIME_OPTIONS:
            ap.error(f"--option {item!r}: want NAME=VALUE with NAME one of {', '.join(Emulator.RUNTIME_OPTIONS)}")
        try:
            options[name] = raw.lower() in ("1", "true", "yes") if name == "jit_labels_read_only" else float(raw)
        except ValueError:
            ap.error(f"--option {item!r}: {name} takes a number of seconds")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")

    emu = Emulator(args.host, args.port, admin_token=args.admin_token, public_url=args.public_url).start()
    emu.set_options(**options)
    banner: dict[str, object] = {"url": emu.url, "api_url": emu.api_url, "admin_token": emu.admin_token,
                                 "download_url": emu.download_url(), "sha256": emu.tarball_sha256}
    if args.app_account:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        app_id, installs = emu.add_app(None, pub, installations=args.app_account)
        state_dir = Path(args.state_dir or tempfile.mkdtemp(prefix="ghr-emulator-"))
        state_dir.mkdir(parents=True, exist_ok=True)
        key_path = state_dir / f"app-{app_id}.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        banner.update(app_id=app_id, app_private_key_file=str(key_path), app_installations=installs)

    # The banner is the one place credentials are printed: this is a local test server.
    if args.json:
        print(json.dumps(banner), flush=True)
    else:
        print("GitHub emulator running", flush=True)
        for k, v in banner.items():
            print(f"  {k}: {v}", flush=True)
        print(f"  try: curl -H 'Authorization: Bearer {emu.admin_token}' {emu.api_url}/orgs/acme/actions/runners",
              flush=True)

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
