"""The emulator's answers fit GitHub's OpenAPI description (pinned @octokit/openapi in .cache/openapi).

A light self-check for the emulator's own shapes; tests/conformance/ holds the formal suite.
Skipped when the description has not been fetched (tests/conformance/fetch_openapi.sh).
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from emu_helpers import Api, app_jwt, public_pem
from openapi_schema_validator import OAS30ReadValidator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
SPEC = Path(os.environ.get("GHR_OPENAPI_DIR", ROOT / ".cache" / "openapi")) / "23.0.2" / "ghec.json"

pytestmark = pytest.mark.skipif(not SPEC.exists(), reason=f"{SPEC} not fetched (tests/conformance/fetch_openapi.sh)")


@cache
def _spec() -> dict[str, Any]:
    return dict(json.loads(SPEC.read_text()))


def check(method: str, template: str, status: int, body: Any) -> None:
    spec = _spec()
    esc = template.replace("~", "~0").replace("/", "~1")
    pointer = f"/paths/{esc}/{method.lower()}/responses/{status}"
    response = spec["paths"][template][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        pointer = response["$ref"][1:]
    registry: Registry = Registry().with_resource("urn:ghec", Resource.from_contents(spec, default_specification=DRAFT4))
    validator = OAS30ReadValidator({"$ref": f"urn:ghec#{pointer}/content/application~1json/schema"},
                                   registry=registry, format_checker=oas30_format_checker)
    errors = list(validator.iter_errors(body))
    detail = [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:3]]
    detail += [f"  {'/'.join(map(str, c.path))}: {c.message[:120]}" for e in errors[:3] for c in (e.context or [])[:6]]
    assert not errors, f"{method} {template} {status}: " + "; ".join(detail)


PREFIXES = [("/repos/{owner}/{repo}/actions", "/repos/acme/widgets/actions"),
            ("/orgs/{org}/actions", "/orgs/acme/actions"),
            ("/enterprises/{enterprise}/actions", "/enterprises/bigco/actions")]


@pytest.mark.parametrize("template,prefix", PREFIXES, ids=["repo", "org", "enterprise"])
def test_runner_endpoints_match_the_description(api: Api, emu: Emulator, template: str, prefix: str) -> None:
    """Every runner endpoint's success body validates against its response schema."""
    T = template
    for kind in ("registration-token", "remove-token"):
        r = api.post(f"{prefix}/runners/{kind}")
        check("POST", f"{T}/runners/{kind}", 201, r.json())
    r = api.jit(prefix, "shape", ["self-hosted", "cpu"])
    check("POST", f"{T}/runners/generate-jitconfig", 201, r.json())
    rid = r.json()["runner"]["id"]
    check("GET", f"{T}/runners", 200, api.get(f"{prefix}/runners").json())
    check("GET", f"{T}/runners/{{runner_id}}", 200, api.get(f"{prefix}/runners/{rid}").json())
    check("GET", f"{T}/runners/downloads", 200, api.get(f"{prefix}/runners/downloads").json())
    check("GET", f"{T}/runners/deprecations/{{version}}", 200,
          api.get(f"{prefix}/runners/deprecations/2.300.0").json())
    L = f"{T}/runners/{{runner_id}}/labels"
    check("GET", L, 200, api.get(f"{prefix}/runners/{rid}/labels").json())
    check("POST", L, 200, api.post(f"{prefix}/runners/{rid}/labels", json={"labels": ["x"]}).json())
    check("PUT", L, 200, api.put(f"{prefix}/runners/{rid}/labels", json={"labels": ["y"]}).json())
    check("DELETE", L + "/{name}", 200, api.delete(f"{prefix}/runners/{rid}/labels/y").json())
    check("DELETE", L, 200, api.delete(f"{prefix}/runners/{rid}/labels").json())
    if "repos" not in T:
        check("GET", f"{T}/runner-groups", 200, api.get(f"{prefix}/runner-groups").json())
    check("POST", f"{T}/runners/generate-jitconfig", 409, api.jit(prefix, "shape").json())
    check("POST", f"{T}/runners/generate-jitconfig", 422,
          api.post(f"{prefix}/runners/generate-jitconfig", json={"name": "x"}).json())
    check("POST", f"{T}/runners/generate-jitconfig", 404, api.jit("/orgs/-bad-/actions", "x").json())


def test_app_endpoints_match_the_description(api: Api, emu: Emulator, app_key: rsa.RSAPrivateKey) -> None:
    """Installation lookups, listing and access tokens validate against their schemas."""
    _, ids = emu.add_app(42, public_pem(app_key), installations=["acme"])
    tok = app_jwt(app_key, 42)
    check("GET", "/repos/{owner}/{repo}/installation", 200, api.get("/repos/acme/w/installation", token=tok).json())
    check("GET", "/orgs/{org}/installation", 200, api.get("/orgs/acme/installation", token=tok).json())
    check("GET", "/app/installations", 200, api.get("/app/installations", token=tok).json())
    r = api.post(f"/app/installations/{ids['acme']}/access_tokens", token=tok)
    check("POST", "/app/installations/{installation_id}/access_tokens", 201, r.json())
    check("GET", "/rate_limit", 200, api.get("/rate_limit").json())
