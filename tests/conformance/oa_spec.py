"""GitHub's OpenAPI description (pinned @octokit/openapi) as a request/response validator.

An exchange (method, URL, request body, status, response body) is matched to the
operation whose path template fits (literal segments beat parameters, so
``/runners/downloads`` is not taken for ``/runners/{runner_id}``), then checked:
path and query parameters, the request body, the status code and the response body,
with OpenAPI 3.0 semantics (``nullable``, formats) via openapi-schema-validator and
``$ref`` resolved against the whole document. Enterprise paths are checked against
the ``ghec`` description; anything else against ``api.github.com``, falling back to
``ghec`` for operations only it documents (e.g. runner deprecations).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from openapi_schema_validator import OAS30ReadValidator, OAS30WriteValidator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FETCH = HERE / "fetch_openapi.sh"


def pinned_version() -> str:
    text = FETCH.read_text()
    match = re.search(r'^PINNED_VERSION="([^"]+)"', text, re.M)
    assert match, "PINNED_VERSION missing from fetch_openapi.sh"
    return os.environ.get("OCTOKIT_OPENAPI_VERSION", match.group(1))


def spec_dir() -> Path:
    base = Path(os.environ.get("GHR_OPENAPI_DIR", ROOT / ".cache" / "openapi"))
    return base / pinned_version()


def ensure_downloaded() -> Path:
    """Run fetch_openapi.sh if needed (it is idempotent) and return the spec folder."""
    folder = spec_dir()
    if not (folder / ".complete").exists():
        subprocess.run(["bash", str(FETCH)], check=True, timeout=900)
    return folder


# Statuses GitHub may answer on any endpoint even where an operation does not list them
# (auth failures, unknown resources, rate limits, outages). Their body, if JSON, must still be an error.
GENERIC_STATUSES = {401, 403, 404, 429, 500, 502, 503, 504}


@dataclass
class Operation:
    method: str
    template: str
    op: dict[str, Any]
    pointer: str  # JSON pointer of the operation inside the spec
    spec_name: str
    regex: re.Pattern[str]
    literal_segments: int
    params: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def operation_id(self) -> str:
        return str(self.op.get("operationId", f"{self.method} {self.template}"))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class Spec:
    """One OpenAPI document with a route table and validators."""

    def __init__(self, name: str, document: dict[str, Any]) -> None:
        self.name = name
        self.doc = document
        self.uri = f"urn:github-openapi:{name}"
        self.registry: Registry[Any] = Registry().with_resource(
            self.uri, Resource(contents=document, specification=DRAFT4)
        )
        self.routes: list[Operation] = []
        for template, item in document["paths"].items():
            shared = item.get("parameters", [])
            for method, op in item.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "([^/]+)", re.escape(template)) + "$"
                literal = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
                operation = Operation(
                    method.upper(),
                    template,
                    op,
                    f"/paths/{_escape(template)}/{method}",
                    name,
                    re.compile(pattern),
                    literal,
                )
                for param in [*shared, *op.get("parameters", [])]:
                    resolved = self.resolve(param)
                    operation.params[(resolved["in"], resolved["name"])] = resolved
                self.routes.append(operation)
        # Most literal first so fixed segments win over {parameters}.
        self.routes.sort(key=lambda o: -o.literal_segments)

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            node = self.doc
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def find(self, method: str, path: str) -> Operation | None:
        for operation in self.routes:
            if operation.method == method and operation.regex.match(path):
                return operation
        return None

    def schema_errors(self, schema: Any, instance: Any, *, read: bool) -> list[str]:
        cls = OAS30ReadValidator if read else OAS30WriteValidator
        wrapper = {"$ref": f"{self.uri}#{schema}"} if isinstance(schema, str) else schema
        validator = cls(wrapper, registry=self.registry, format_checker=oas30_format_checker)
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:300]}"
            for e in validator.iter_errors(instance)
        ]


@cache
def load(name: str) -> Spec:
    folder = ensure_downloaded()
    with open(folder / f"{name}.json", encoding="utf-8") as fh:
        return Spec(name, json.load(fh))


@dataclass
class Exchange:
    """One recorded HTTP request and its response."""

    method: str
    url: str
    request_body: Any
    status: int
    response_body: Any
    response_headers: dict[str, str] = field(default_factory=dict)
    client: str = "github_client"

    @property
    def api_path(self) -> str:
        path = urlsplit(self.url).path
        return path[len("/api/v3") :] if path.startswith("/api/v3/") else path

    def __str__(self) -> str:
        return f"{self.method} {self.api_path} -> {self.status}"


def match(ex: Exchange) -> Operation | None:
    path = ex.api_path
    if path.startswith("/enterprises/"):
        return load("ghec").find(ex.method, path)
    return load("api.github.com").find(ex.method, path) or load("ghec").find(ex.method, path)


def validate(ex: Exchange, ignore_query: frozenset[str] = frozenset()) -> list[str]:
    """Every way ``ex`` departs from the pinned description (empty list: conforms).

    ``ignore_query`` names query parameters to tolerate where undocumented (GitHub ignores
    unknown ones; a third-party client may send them).
    """
    operation = match(ex)
    if operation is None:
        return [f"{ex}: no operation in the OpenAPI description matches {ex.method} {ex.api_path}"]
    spec = load(operation.spec_name)
    where = f"{ex} [{operation.operation_id} @ {operation.spec_name}]"
    problems: list[str] = []

    # Path parameters.
    values = operation.regex.match(ex.api_path).groups()  # type: ignore[union-attr]
    names = re.findall(r"\{([^}]+)\}", operation.template)
    for name, raw in zip(names, values, strict=True):
        param = operation.params.get(("path", name))
        if param is None:
            problems.append(f"{where}: path parameter {name} undocumented")
            continue
        problems += [f"{where}: path {name}={raw!r}: {e}" for e in _param_errors(spec, param, raw)]

    # Query parameters.
    for key, raw in parse_qsl(urlsplit(ex.url).query, keep_blank_values=True):
        param = operation.params.get(("query", key))
        if param is None:
            if key not in ignore_query:
                problems.append(f"{where}: query parameter {key!r} is not documented")
            continue
        problems += [f"{where}: query {key}={raw!r}: {e}" for e in _param_errors(spec, param, raw)]

    # Request body.
    body_spec = spec.resolve(operation.op.get("requestBody"))
    if body_spec:
        media = (body_spec.get("content") or {}).get("application/json")
        if ex.request_body is None:
            if body_spec.get("required"):
                problems.append(f"{where}: request body required but none sent")
        elif media and "schema" in media:
            pointer = f"{operation.pointer}/requestBody/content/application~1json/schema"
            problems += [f"{where}: request body {e}" for e in spec.schema_errors(pointer, ex.request_body, read=False)]
    elif ex.request_body not in (None, {}, b""):
        problems.append(f"{where}: a request body was sent but the operation takes none")

    # Status and response body.
    responses = operation.op.get("responses", {})
    status = str(ex.status)
    if status in responses:
        response = spec.resolve(responses[status])
        media = (response.get("content") or {}).get("application/json")
        if media and "schema" in media:
            if ex.response_body is None:
                problems.append(f"{where}: response {status} should have a JSON body")
            else:
                pointer = f"{operation.pointer}/responses/{status}"
                if "$ref" in responses[status]:
                    pointer = responses[status]["$ref"][1:]
                pointer += "/content/application~1json/schema"
                problems += [f"{where}: response {e}" for e in spec.schema_errors(pointer, ex.response_body, read=True)]
        elif ex.response_body not in (None, b"", ""):
            problems.append(f"{where}: response {status} is documented without a body, but one came")
    elif ex.status in GENERIC_STATUSES:
        if ex.response_body is not None:
            problems += [
                f"{where}: generic {status} body {e}"
                for e in spec.schema_errors("/components/schemas/basic-error", ex.response_body, read=True)
            ]
    else:
        problems.append(f"{where}: status {status} not documented (documented: {', '.join(sorted(responses))})")
    return problems


def _param_errors(spec: Spec, param: dict[str, Any], raw: str) -> list[str]:
    schema = spec.resolve(param.get("schema", {}))
    value: Any = raw
    kind = schema.get("type")
    try:
        if kind == "integer":
            value = int(raw)
        elif kind == "number":
            value = float(raw)
        elif kind == "boolean":
            value = {"true": True, "false": False}[raw]
    except (ValueError, KeyError):
        return [f"not a valid {kind}"]
    return spec.schema_errors(param.get("schema", {}), value, read=False)


class Recorder:
    """Every HTTP exchange with the emulator's REST API, from any requests.Session."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.exchanges: list[Exchange] = []
        self.headers: list[dict[str, str]] = []
        self.client = "github_client"
