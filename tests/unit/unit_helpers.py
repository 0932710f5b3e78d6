"""Shared helpers for the Pulumi program's unit tests (no engine, no Docker, no network)."""

from __future__ import annotations

import copy
import os
from typing import Any

import pulumi
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAKE_PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIfake\n-----END PRIVATE KEY-----\n"
FAKE_PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIfake\n-----END CERTIFICATE-----\n"
TOKEN = "ghp_unitTestTokenThatMustNeverLeak0001"

BASE: dict[str, Any] = {
    "github": {"scope": "https://github.com/acme", "token": TOKEN},
    "hosts": [{"name": "local", "url": "unix:///var/run/docker.sock"}],
    "pools": [{"name": "cpu", "hosts": ["local"], "slots": 2, "labels": ["self-hosted", "linux"]}],
}
BASE_SECRETS = ["ghr:github"]


def base() -> dict[str, Any]:
    return copy.deepcopy(BASE)


def _desecure(node: Any, path: str, secret_tops: set[str], top: str) -> Any:
    if isinstance(node, dict):
        if set(node) == {"secure"}:
            secret_tops.add(top)
            leaf = path.rsplit(".", 1)[-1]
            if leaf in ("privateKey", "key"):
                return FAKE_PEM_KEY
            if leaf in ("ca", "cert"):
                return FAKE_PEM_CERT
            return TOKEN
        return {k: _desecure(v, f"{path}.{k}", secret_tops, top) for k, v in node.items()}
    if isinstance(node, list):
        return [_desecure(v, f"{path}[{i}]", secret_tops, top) for i, v in enumerate(node)]
    return node


def load_stack_yaml(path: str) -> tuple[dict[str, Any], list[str]]:
    """A Pulumi.<stack>.yaml as (raw ghr config, secret keys), secure values replaced by fakes."""
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    raw: dict[str, Any] = {}
    secret_tops: set[str] = set()
    for key, value in (doc.get("config") or {}).items():
        ns, name = key.split(":", 1)
        if ns != "ghr":
            continue
        raw[name] = _desecure(value, key, secret_tops, key)
    return raw, sorted(secret_tops)


class FleetMocks(pulumi.runtime.Mocks):
    """Records every resource; dynamic resources echo their inputs plus fake computed outputs."""

    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outs = dict(args.inputs)
        if args.typ.endswith("docker:Image"):
            outs["image_id"] = f"sha256:{args.name}"
        elif args.typ.endswith("docker:Container"):
            outs.update(container_id=f"cid-{args.name}", state="running")
        elif args.typ.endswith("RunnerRegistration"):
            outs.update(runner_group_id=1, total=0, online=0, busy=0, idle=0, offline=0, stale=[])
        elif args.typ.endswith("RunnerScaleSet"):
            outs.update(scale_set_id=7, runner_group_id=1, owned=True, total=0, online=0, busy=0, idle=0, offline=0,
                        stale=[], statistics={"total_assigned_jobs": 0, "total_registered_runners": 0})
        elif args.typ.endswith("RunnerPoolReady"):  # the pool came up: every slot online and idle
            n = int(args.inputs.get("slots") or 0)
            outs.update(total=n, online=n, busy=0, idle=n, offline=0, stale=[], ready=True, wait_seconds=1.5)
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of_type(self, suffix: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ.endswith(suffix)]

    def named(self, suffix: str) -> dict[str, dict[str, Any]]:
        """Inputs of the resources of that type, by resource name."""
        return {r.name: r.inputs for r in self.of_type(suffix)}


SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def _secret_paths(node: Any, path: str = "") -> list[str]:
    if isinstance(node, dict):
        if node.get("4dabf18193072939515e22adb298388d") == SECRET_SIG:
            return [path]
        out: list[str] = []
        for k, v in node.items():
            out += _secret_paths(v, f"{path}.{k}" if path else k)
        return out
    if isinstance(node, list):
        out = []
        for i, v in enumerate(node):
            out += _secret_paths(v, f"{path}[{i}]")
        return out
    return []


class Registration:
    def __init__(self, request: Any) -> None:
        from google.protobuf.json_format import MessageToDict

        self.type = request.type
        self.name = request.name
        self.parent = request.parent
        self.dependencies = list(request.dependencies)
        self.additional_secret_outputs = list(request.additionalSecretOutputs)
        self.raw = MessageToDict(request.object)
        self.secret_paths = _secret_paths(self.raw)
        self.urn = ""


class RecordingMonitor(pulumi.runtime.mocks.MockMonitor):
    """A mock monitor that also keeps each registration request: parent, dependencies, secrets."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802
        reg = Registration(request)
        resp = super().RegisterResource(request)
        reg.urn = resp.urn
        self.registrations.append(reg)
        return resp

    def by_type(self, suffix: str) -> list[Registration]:
        return [r for r in self.registrations if r.type.endswith(suffix)]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)
