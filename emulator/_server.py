"""HTTP layer: routing, authentication, rate limits, fault injection, request log, control API."""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ._auth import APP_PERMISSION_FOR, PAT_SCOPE_FOR, Principal, bad_credentials, fingerprint
from ._contract import Ctx, EmulatorApi, FaultDecision, Reply, Route
from ._errors import APP_DOCS, DOCS, RUNNER_DOCS, ActionsError, ApiError, not_found
from ._state import iso, scope_kind, tenant_of

log = logging.getLogger("emulator")

API_VERSIONS = {"2022-11-28", "2026-03-10"}
SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                     "If you reach out to GitHub Support for help, please include the request ID {rid}.")
RATE_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
MAX_BODY = 16 << 20
SERVICE_PREFIX = "/_services/pipelines/"  # the Actions service: <base>/_services/pipelines/<tenant>/_apis/...


def _area(template: str) -> str:
    if template.startswith("/_emulator/"):
        return "internal"
    return "actions" if template.startswith("/_apis/") else "api"


def _json_body(raw: bytes) -> Any:
    """A request body as JSON (None when empty); GitHub's 400 when it does not parse."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "Problems parsing JSON", DOCS) from exc


def _scope_of(params: dict[str, str]) -> str | None:
    if "enterprise" in params:
        return f"enterprises/{params['enterprise']}"
    if "owner" in params and "repo" in params:
        return f"{params['owner']}/{params['repo']}"
    return params.get("org")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], emulator: EmulatorApi, routes: list[Route]) -> None:
        self.emulator = emulator
        self.routes = routes  # the table from _routes.build_routes
        super().__init__(addr, Handler)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    timeout = 120  # idle keep-alive connections give their thread back
    disable_nagle_algorithm = True  # small JSON answers: no 40 ms Nagle/delayed-ACK stalls

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("event=http_server_message detail=%s", (format % args).replace(" ", "_")[:200])

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_HEAD(self) -> None:
        # GitHub answers HEAD like GET, without the body.
        self._dispatch("HEAD")

    # -------------------------------------------------------------------------------------
    def _base_url(self) -> str:
        emu = self.server.emulator
        if emu.public_url:
            return emu.public_url
        host = self.headers.get("Host")
        return f"http://{host}" if host else emu.url

    def _dispatch(self, method: str) -> None:
        emu = self.server.emulator
        started = time.monotonic()
        generation = emu.requests.generation
        split = urlsplit(self.path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        rid = f"{secrets.token_hex(4).upper()}:{secrets.token_hex(4).upper()}"
        entry: dict[str, Any] = {"time": iso(time.time()), "method": method, "path": path, "request_id": rid}
        reply: Reply | None
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ApiError(413, "Request body too large", DOCS)
            raw = self.rfile.read(length) if length else b""
            if path == "/api/v3" or path.startswith("/api/v3/"):
                api_path = path[len("/api/v3"):] or "/"
                reply = self._api(method, api_path, query, raw, entry)
            elif path.startswith("/_emulator/"):
                reply = self._internal(method, path, query, raw, entry)
            elif path.startswith(SERVICE_PREFIX):
                reply = self._actions(method, path, query, raw, entry)
            else:
                entry["endpoint"] = f"{method} {path}"
                reply = Reply(404, not_found().body())
        except ApiError as err:
            reply = Reply(err.status, err.body(), dict(err.headers))
        except Exception:  # a bug must answer 500, not kill the connection silently
            log.exception("event=handler_error method=%s path=%s", method, path)
            reply = Reply(500, {"message": "Server Error", "documentation_url": DOCS})
        entry.setdefault("endpoint", f"{method} {path}")
        entry["status"] = reply.status if reply else "dropped"
        entry["ms"] = round((time.monotonic() - started) * 1000, 1)
        if not entry.pop("_skip_log", False):
            emu.requests.add(entry, generation)
        log.info("event=request method=%s endpoint=%s status=%s ms=%s principal=%s request_id=%s",
                 method, entry["endpoint"].split(" ", 1)[1].replace(" ", "_"), entry["status"], entry["ms"],
                 entry.get("principal", "-"), rid)
        if reply is None:
            # Dropped connection: close the socket without a byte of answer.
            self.close_connection = True
            return
        reply.headers.setdefault("X-GitHub-Request-Id", rid)
        self._send(reply, head=method == "HEAD")

    def _send(self, reply: Reply, head: bool = False) -> None:
        data = reply.raw if reply.raw is not None else (
            b"" if reply.body is None else json.dumps(reply.body).encode())
        try:
            self.send_response(reply.status)
            if reply.status != 204:
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(data)))
            for k, v in reply.headers.items():
                self.send_header(k, v)
            # Headers and body in one write.
            body = b"" if head or reply.status == 204 else data
            self._headers_buffer.append(b"\r\n" + body)  # type: ignore[attr-defined]
            self.flush_headers()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _match(self, method: str, path: str, area: str) -> tuple[Route, dict[str, str]] | None:
        path_known = False
        for r in self.server.routes:
            if _area(r.template) != area:
                continue
            m = r.regex.match(path)
            if m:
                if r.method == method or (method == "HEAD" and r.method == "GET"):
                    return r, {k: unquote(v) for k, v in m.groupdict().items()}
                path_known = True
        if path_known:
            raise ApiError(404, "Not Found", DOCS)
        return None

    # ---- GitHub API ---------------------------------------------------------------------
    def _api(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
             entry: dict[str, Any]) -> Reply | None:
        emu = self.server.emulator
        found = self._match(method, path.rstrip("/") or "/", "api")
        if found is None:
            entry["endpoint"] = f"{method} {path}"
            raise not_found()
        route, params = found
        entry["endpoint"] = f"{method} {route.template}"
        # One decision per request, taken now: faults changed while it is in flight do not touch it.
        fault = emu.decide_fault(entry["endpoint"])
        stop, early = self._early_fault(fault, entry)
        if stop:
            return early
        if not self.headers.get("User-Agent"):
            raise ApiError(403, "Request forbidden by administrative rules. Please make sure your request has a "
                           "User-Agent header (https://docs.github.com/rest/overview/resources-in-the-rest-api"
                           "#user-agent-required).", DOCS)
        version = self.headers.get("X-GitHub-Api-Version")
        if version is not None and version not in API_VERSIONS:
            raise ApiError(400, f"API version {version} is not supported.", DOCS)
        body = _json_body(raw)
        principal: Principal | None = None
        headers: dict[str, str] = {"X-GitHub-Api-Version-Selected": version or "2022-11-28",
                                   "X-GitHub-Media-Type": "github.v3; format=json"}
        if route.auth != "remote":
            principal = emu.authenticate(self.headers.get("Authorization"))
            if principal is None:
                principal = Principal("anonymous", f"ip:{self.client_address[0]}", limit=60)
            entry["principal"] = principal.kind
            if principal.kind == "unknown":
                raise bad_credentials()
            if principal.kind == "pat":
                headers["X-OAuth-Scopes"] = ", ".join(sorted(principal.scopes))
        ctx = Ctx(emu, self.path, self.headers, params, query, body, principal, self._base_url(), _scope_of(params),
                  method)
        try:
            if principal is not None and route.auth != "ratelimit":
                headers.update(emu.creds.consume(principal))
            self._secondary(fault, entry)
            self._authorize(route, ctx, method, headers)
            reply = route.fn(ctx)
        except ApiError as err:
            err.headers = {**headers, **err.headers}
            raise
        reply.headers = {**headers, **reply.headers}
        return reply

    @staticmethod
    def _early_fault(fault: FaultDecision, entry: dict[str, Any]) -> tuple[bool, Reply | None]:
        """Latency, then (True, None) for a dropped connection, (True, 5xx answer), or (False, None): go on."""
        if fault.latency > 0:
            time.sleep(fault.latency)
        if fault.kind == "drop":
            entry["fault"] = "drop"
            return True, None
        if fault.kind == "error":
            entry["fault"] = "error"
            status = fault.status or 502
            msg = {502: "Server Error", 503: "Service Unavailable", 504: "Gateway Timeout"}.get(status, "Server Error")
            return True, Reply(status, {"message": msg, "documentation_url": DOCS})
        return False, None

    @staticmethod
    def _secondary(fault: FaultDecision, entry: dict[str, Any]) -> None:
        if fault.kind == "secondary":
            entry["fault"] = "secondary"
            extra = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else {}
            raise ApiError(fault.status or 403, SECONDARY_MESSAGE.format(rid=entry["request_id"]),
                           RATE_DOCS + "#about-secondary-rate-limits", headers=extra)

    # ---- Actions service (runner scale sets) ---------------------------------------------
    def _actions(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
                 entry: dict[str, Any]) -> Reply | None:
        """`<base>/_services/pipelines/<tenant>/_apis/...`: admin JWT (tenant of its scope) or a queue token."""
        emu = self.server.emulator
        tenant, _, rest = path[len(SERVICE_PREFIX):].partition("/")
        sub = "/" + rest
        found = self._match(method, sub.rstrip("/") or "/", "actions")
        if found is None:
            entry["endpoint"] = f"{method} {sub}"
            raise ActionsError(404, "NotFoundException", f"The resource {sub} does not exist.")
        route, params = found
        entry["endpoint"] = f"{method} {route.template}"
        fault = emu.decide_fault(entry["endpoint"])
        stop, early = self._early_fault(fault, entry)
        if stop:
            return early
        headers = {"ActivityId": str(uuid.uuid4())}
        try:
            body = _json_body(raw)
            principal: Principal | None = None
            if route.auth in ("actions", "acquire"):
                parts = (self.headers.get("Authorization") or "").split(None, 1)
                token = parts[1].strip() if len(parts) == 2 and parts[0].lower() == "bearer" else ""
                t = emu.state.check_token(token, ("runner_admin",)) if token else None
                if t is not None and tenant_of(t.scope) == tenant:
                    principal = Principal("runner_admin", f"radm:{fingerprint(token)}", scope=t.scope)
                elif route.auth == "actions":
                    raise ActionsError(401, "VssUnauthorizedException",
                                       "The admin token is expired or not valid for this service URL.")
                if "api-version" not in query:
                    raise ActionsError(400, "VssVersionNotSpecifiedException",
                                       "The api-version query parameter is required (6.0-preview).")
            entry["principal"] = principal.kind if principal is not None else "queue"
            self._secondary(fault, entry)
            params["_tenant"] = tenant
            ctx = Ctx(emu, self.path, self.headers, params, query, body, principal, self._base_url(), None, method)
            reply = route.fn(ctx)
        except ApiError as err:
            err.headers = {**headers, **err.headers}
            raise
        reply.headers = {**headers, **reply.headers}
        return reply

    def _authorize(self, route: Route, ctx: Ctx, method: str, headers: dict[str, str]) -> None:
        p = ctx.principal
        if route.auth in ("public", "ratelimit", "remote"):
            return
        if p is None or p.kind == "anonymous":
            raise ApiError(401, "Requires authentication", DOCS)
        if route.auth == "jwt":
            if p.kind != "jwt":
                raise ApiError(401, "A JSON web token could not be decoded", APP_DOCS)
            return
        if route.auth == "runner_admin":
            if p.kind != "runner_admin":
                raise bad_credentials()
            return
        # Runner endpoints.
        assert ctx.scope is not None
        kind = scope_kind(ctx.scope)
        if p.kind == "pat":
            needed = PAT_SCOPE_FOR[kind]
            headers["X-Accepted-OAuth-Scopes"] = needed
            if needed not in p.scopes:
                raise ApiError(403, "Resource not accessible by personal access token", RUNNER_DOCS,
                               headers={"X-Accepted-OAuth-Scopes": needed})
            return
        if p.kind == "runner_admin":
            # The token config.sh gets from runner-registration: reads and delete on its own scope only.
            ok_templates = ("/runners", "/runner-groups", "/runners/{runner_id}")
            if p.scope == ctx.scope.lower() and any(route.template.endswith(t) for t in ok_templates) \
                    and method in ("GET", "DELETE"):
                return
            raise ApiError(403, "Resource not accessible by integration", RUNNER_DOCS)
        if p.kind == "installation":
            assert p.installation is not None
            owner = ctx.scope.split("/")[0].lower()
            perm = APP_PERMISSION_FOR.get(kind)
            level = p.installation.permissions.get(perm or "", "")
            need = "read" if method == "GET" else "write"
            if kind == "enterprise" or p.installation.account != owner or \
                    {"read": 1, "write": 2, "admin": 3}.get(level, 0) < {"read": 1, "write": 2}[need]:
                raise ApiError(403, "Resource not accessible by integration", RUNNER_DOCS)
            return
        raise ApiError(403, "Resource not accessible by integration", RUNNER_DOCS)

    # ---- control API and runner protocol ------------------------------------------------
    def _internal(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
                  entry: dict[str, Any]) -> Reply:
        emu = self.server.emulator
        found = self._match(method, path.rstrip("/"), "internal")
        if found is None:
            raise not_found()
        route, params = found
        entry["endpoint"] = f"{method} {route.template}"
        if route.template == "/_emulator/requests":
            entry["_skip_log"] = True  # reading the log must not change it
        body = _json_body(raw)
        ctx = Ctx(emu, self.path, self.headers, params, query, body, None, self._base_url(), None, method)
        auth = self.headers.get("Authorization") or ""
        token = auth.split(None, 1)[1].strip() if len(auth.split(None, 1)) == 2 else ""
        if route.auth == "control":
            if not secrets.compare_digest(token.encode(), emu.admin_token.encode()):
                raise ApiError(401, "The control API wants the admin token as a Bearer token.", DOCS)
            entry["principal"] = "admin"
        elif route.auth == "runner":
            runner = emu.state.runner_by_secret(token) if token else None
            if runner is None:
                raise ApiError(401, "Bad credentials: unknown or deleted runner registration.", RUNNER_DOCS)
            entry["principal"] = "runner"
            ctx.params["_runner_id"] = str(runner.id)
        return route.fn(ctx)
