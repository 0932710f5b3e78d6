"""Endpoint handlers: the GitHub REST surface, the runner's registration flow, the control API and the
stand-in runner's long-poll protocol. Each handler takes a Ctx and returns a Reply."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any
from urllib.parse import urlencode, urlsplit

from ._contract import Ctx, EmulatorApi, Faults, Reply, Route
from ._errors import APP_DOCS, DOCS, RUNNER_DOCS, ActionsError, ApiError, not_found, unprocessable
from ._scalesets import SCALE_SETS
from ._state import MIN_RUNNER_VERSION, RUNNER_VERSION, _version_tuple, iso, parse_scope, scope_kind, tenant_of
from ._tarball import ARCHES, filename_for

PREFIXES = {"repo": "/repos/{owner}/{repo}/actions", "org": "/orgs/{org}/actions",
            "enterprise": "/enterprises/{enterprise}/actions"}


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(template))
    return re.compile(f"^{pattern}$")


def paginate(ctx: Ctx, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """GitHub's per_page/page slicing and its Link header (first/prev/next/last as they apply)."""
    try:
        per_page = int(ctx.q("per_page") or 30)
        page = int(ctx.q("page") or 1)
    except ValueError:
        per_page, page = 30, 1
    per_page = 30 if per_page < 1 else min(per_page, 100)
    page = max(page, 1)
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    path = urlsplit(ctx.path).path
    other = {k: v[0] for k, v in ctx.query.items() if k not in ("page", "per_page")}

    def url(p: int) -> str:
        return f"{ctx.base_url}{path}?{urlencode({**other, 'per_page': per_page, 'page': p})}"

    links = []
    if page > 1:
        links += [f'<{url(min(page - 1, last))}>; rel="prev"']
    if page < last:
        links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
    if page > 1:
        links += [f'<{url(1)}>; rel="first"']
    return chunk, ({"Link": ", ".join(links)} if links else {})


def _emu(ctx: Ctx) -> EmulatorApi:
    return ctx.emu


def _runner_id(ctx: Ctx) -> int:
    try:
        return int(ctx.params["runner_id"])
    except ValueError:
        raise not_found(RUNNER_DOCS) from None


def _scope(ctx: Ctx) -> str:
    assert ctx.scope is not None
    return ctx.scope


# ---- runner endpoints (repo / org / enterprise) ------------------------------------------
def registration_token(ctx: Ctx) -> Reply:
    token, exp = _emu(ctx).state.create_token("registration", _scope(ctx))
    return Reply(201, {"token": token, "expires_at": iso(exp)})


def remove_token(ctx: Ctx) -> Reply:
    token, exp = _emu(ctx).state.create_token("remove", _scope(ctx))
    return Reply(201, {"token": token, "expires_at": iso(exp)})


def generate_jitconfig(ctx: Ctx) -> Reply:
    body = ctx.body if isinstance(ctx.body, dict) else None
    if body is None:
        raise unprocessable("Invalid request.", errors=["a JSON object body is required"])
    runner, encoded = _emu(ctx).state.generate_jitconfig(_scope(ctx), body, ctx.base_url)
    return Reply(201, {"runner": runner, "encoded_jit_config": encoded})


def list_runners(ctx: Ctx) -> Reply:
    runners = _emu(ctx).state.list_runners(_scope(ctx), ctx.q("name"))
    page, headers = paginate(ctx, runners)
    return Reply(200, {"total_count": len(runners), "runners": page}, headers)


def get_runner(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).state.get_runner(_scope(ctx), _runner_id(ctx)))


def delete_runner(ctx: Ctx) -> Reply:
    _emu(ctx).state.delete_runner(_scope(ctx), _runner_id(ctx))
    return Reply(204)


def _labels(labels: list[dict[str, Any]]) -> Reply:
    return Reply(200, {"total_count": len(labels), "labels": labels})


def get_labels(ctx: Ctx) -> Reply:
    return _labels(_emu(ctx).state.labels(_scope(ctx), _runner_id(ctx)))


def add_labels(ctx: Ctx) -> Reply:
    return _labels(_emu(ctx).state.add_labels(_scope(ctx), _runner_id(ctx), _obj(ctx)))


def set_labels(ctx: Ctx) -> Reply:
    return _labels(_emu(ctx).state.set_labels(_scope(ctx), _runner_id(ctx), _obj(ctx)))


def clear_labels(ctx: Ctx) -> Reply:
    return _labels(_emu(ctx).state.clear_labels(_scope(ctx), _runner_id(ctx)))


def remove_label(ctx: Ctx) -> Reply:
    return _labels(_emu(ctx).state.remove_label(_scope(ctx), _runner_id(ctx), ctx.params["name"]))


def _obj(ctx: Ctx) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise unprocessable("Validation Failed", errors=["a JSON object body is required"])
    return ctx.body


def downloads(ctx: Ctx) -> Reply:
    emu = _emu(ctx)
    emu.state.require_scope(_scope(ctx))
    out = [{"os": "linux", "architecture": arch, "filename": filename_for(arch),
            "download_url": f"{ctx.base_url}/_emulator/downloads/{filename_for(arch)}",
            "sha256_checksum": emu.tarball_sha256} for arch in ARCHES]
    return Reply(200, out)


_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


def deprecation(ctx: Ctx) -> Reply:
    """Only in GitHub's ghec.json description (not api.github.com.json); emulated from the notes:
    versions older than the minimum are blocked already; current ones have no schedule."""
    _emu(ctx).state.require_scope(_scope(ctx))
    version = ctx.params["version"].lstrip("v")
    if not _VERSION_RE.match(version):
        raise not_found(RUNNER_DOCS)
    configured = _emu(ctx).deprecations.get(version)
    if configured is not None:
        reg, run = configured
    elif _version_tuple(version) < _version_tuple(MIN_RUNNER_VERSION):
        reg = run = "2026-01-01T00:00:00Z"
    else:
        reg = run = None
    return Reply(200, {"runner_version": version, "registration_deprecates_at": reg, "runtime_deprecates_at": run})


def runner_groups(ctx: Ctx) -> Reply:
    scope = _scope(ctx)
    api = f"{ctx.base_url}/api/v3"
    prefix = f"{api}/enterprises/{scope.split('/')[1]}" if scope_kind(parse_scope(scope)) == "enterprise" \
        else f"{api}/orgs/{scope}"
    groups = [{"id": g.id, "name": g.name, "visibility": "all", "default": g.default,
               "runners_url": f"{prefix}/actions/runner-groups/{g.id}/runners", "inherited": False,
               "allows_public_repositories": False, "restricted_to_workflows": False, "selected_workflows": [],
               "workflow_restrictions_read_only": False}
              for g in _emu(ctx).state.list_groups(scope)]
    page, headers = paginate(ctx, groups)
    return Reply(200, {"total_count": len(groups), "runner_groups": page}, headers)


# ---- GitHub App endpoints ----------------------------------------------------------------
def _installation_for(ctx: Ctx, account: str) -> Reply:
    app = ctx.principal.app if ctx.principal else None
    assert app is not None
    with _emu(ctx).creds.lock:
        installs = list(app.installations.values())
    for inst in installs:
        if inst.account == account.lower():
            return Reply(200, inst.as_json(ctx.base_url, app.slug))
    raise ApiError(404, "Not Found", APP_DOCS)


def repo_installation(ctx: Ctx) -> Reply:
    return _installation_for(ctx, ctx.params["owner"])


def org_installation(ctx: Ctx) -> Reply:
    return _installation_for(ctx, ctx.params["org"])


def enterprise_installation(ctx: Ctx) -> Reply:
    return _installation_for(ctx, f"enterprises/{ctx.params['enterprise']}")


def app_installations(ctx: Ctx) -> Reply:
    app = ctx.principal.app if ctx.principal else None
    assert app is not None
    with _emu(ctx).creds.lock:
        installs = sorted(app.installations.values(), key=lambda i: i.id)
    items = [i.as_json(ctx.base_url, app.slug) for i in installs]
    page, headers = paginate(ctx, items)
    return Reply(200, page, headers)


def access_token(ctx: Ctx) -> Reply:
    app = ctx.principal.app if ctx.principal else None
    assert app is not None
    try:
        iid = int(ctx.params["installation_id"])
    except ValueError:
        raise ApiError(404, "Not Found", APP_DOCS) from None
    requested = ctx.body.get("permissions") if isinstance(ctx.body, dict) else None
    return Reply(201, _emu(ctx).creds.installation_token(app, iid, requested))


def rate_limit(ctx: Ctx) -> Reply:
    assert ctx.principal is not None
    core = _emu(ctx).creds.peek(ctx.principal)
    # Only `core` is metered here; `search` is required by the description and reported as untouched.
    search = {"limit": 30, "remaining": 30, "used": 0, "reset": core["reset"]}
    return Reply(200, {"resources": {"core": core, "search": search}, "rate": core})


# ---- the real runner's registration flow -------------------------------------------------
def _scope_from_url(url: Any) -> str:
    if not isinstance(url, str):
        raise ApiError(400, "url is required", DOCS)
    return parse_scope(urlsplit(url).path)


def runner_registration(ctx: Ctx) -> Reply:
    """`POST {api}/actions/runner-registration` with `RemoteAuth <registration or remove token>`."""
    parts = (ctx.headers.get("Authorization") or "").split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "remoteauth":
        raise ApiError(401, "Bad credentials", DOCS)
    body = ctx.json_body()
    event = body.get("runner_event", "register")
    kinds = ("remove",) if event == "remove" else ("registration",)
    state = _emu(ctx).state
    tok = state.check_token(parts[1].strip(), kinds)
    # GitHub answers an unknown or expired registration token with 404; the runner prints "NotFound".
    if tok is None or tok.scope != _scope_from_url(body.get("url")):
        raise ApiError(404, "Not Found", DOCS)
    service = _emu(ctx).scalesets.service_url(ctx.base_url, tok.scope)
    admin, _ = state.create_token("runner_admin", tok.scope, audience=service)
    # The Actions-service URL and its admin token (a JWT): GitHub's scale-set client needs both;
    # config.sh uses the token on the REST API.
    return Reply(200, {"url": service, "token_schema": "OAuthAccessToken", "token": admin, "use_v2_flow": True})


def runners_register(ctx: Ctx) -> Reply:
    """`POST {api}/actions/runners/register` (v2 flow). Answers the runner and the files to write.
    Emulator-specific answer shape: the stand-in has no RSA key, so the server hands out its credential."""
    assert ctx.principal is not None and ctx.principal.scope is not None
    body = ctx.json_body()
    if _scope_from_url(body.get("url")) != ctx.principal.scope:
        raise ApiError(403, "Resource not accessible by integration", RUNNER_DOCS)
    state = _emu(ctx).state
    files, runner = state.register(ctx.principal.scope, body, ctx.base_url)
    with state.cond:
        rjson = state.runner_json(runner)
    return Reply(201, {**rjson, "files": files})


# ---- Actions service (runner scale sets), under <base>/_services/pipelines/<tenant>/ ---------------
def _admin_scope(ctx: Ctx) -> str:
    assert ctx.principal is not None and ctx.principal.scope is not None
    return ctx.principal.scope


def _list(items: list[Any]) -> Reply:
    return Reply(200, {"count": len(items), "value": items})


def a_runner_groups(ctx: Ctx) -> Reply:
    return _list(_emu(ctx).scalesets.runner_groups(_admin_scope(ctx), ctx.q("groupName")))


def a_create_set(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).scalesets.create(_admin_scope(ctx), ctx.body, ctx.base_url))


def a_find_sets(ctx: Ctx) -> Reply:
    return _list(_emu(ctx).scalesets.find(_admin_scope(ctx), ctx.q("runnerGroupId"), ctx.q("name")))


def a_get_set(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).scalesets.get(_admin_scope(ctx), ctx.params["scale_set_id"]))


def a_update_set(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).scalesets.update(_admin_scope(ctx), ctx.params["scale_set_id"], ctx.body))


def a_delete_set(ctx: Ctx) -> Reply:
    _emu(ctx).scalesets.delete(_admin_scope(ctx), ctx.params["scale_set_id"])
    return Reply(204)


def a_create_session(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).scalesets.create_session(_admin_scope(ctx), ctx.params["scale_set_id"], ctx.body))


def a_refresh_session(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).scalesets.refresh_session(_admin_scope(ctx), ctx.params["scale_set_id"],
                                                          ctx.params["session_id"]))


def a_delete_session(ctx: Ctx) -> Reply:
    _emu(ctx).scalesets.delete_session(_admin_scope(ctx), ctx.params["scale_set_id"], ctx.params["session_id"])
    return Reply(204)


def _bearer(ctx: Ctx) -> str:
    parts = (ctx.headers.get("Authorization") or "").split(None, 1)
    return parts[1].strip() if len(parts) == 2 and parts[0].lower() == "bearer" else ""


def _queue(ctx: Ctx, session_id: str | None) -> Any:
    """The (scale set, session) of the queue token, on this tenant's URL only (401 otherwise)."""
    ss, sess = _emu(ctx).scalesets.queue_principal(_bearer(ctx), ctx.params["scale_set_id"], session_id)
    if tenant_of(ss.scope) != ctx.params.get("_tenant"):
        raise ActionsError(401, "VssUnauthorizedException", "The message queue access token is not valid here.")
    return ss, sess


def a_get_message(ctx: Ctx) -> Reply:
    sets = _emu(ctx).scalesets
    ss, sess = _queue(ctx, ctx.params["session_id"])
    raw_cap = ctx.headers.get("X-ScaleSetMaxCapacity")
    capacity = None
    if raw_cap is not None:
        try:
            capacity = int(raw_cap)
        except ValueError:
            capacity = -1
        if capacity < 0:
            raise ActionsError(400, "ArgumentException", "X-ScaleSetMaxCapacity must be a non-negative integer.")
    try:
        last = int(ctx.q("lastMessageId") or 0)
    except ValueError:
        raise ActionsError(400, "ArgumentException", "lastMessageId must be an integer.") from None
    if ctx.method == "HEAD":  # never hand out (or hold) a message for a HEAD
        return Reply(202)
    msg = sets.get_message(ss, sess, last, capacity)
    return Reply(200, msg) if msg is not None else Reply(202)


def a_delete_message(ctx: Ctx) -> Reply:
    sets = _emu(ctx).scalesets
    ss, sess = _queue(ctx, ctx.params["session_id"])
    sets.delete_message(ss, sess, ctx.params["message_id"])
    return Reply(204)


def a_acquire(ctx: Ctx) -> Reply:
    """GitHub's client sends the session's queue token here; the admin token of the scope works too."""
    sets = _emu(ctx).scalesets
    scope = ctx.principal.scope if ctx.principal is not None and ctx.principal.kind == "runner_admin" else None
    if scope is None:
        ss, _ = _queue(ctx, None)
        scope = ss.scope
    return _list(sets.acquire(scope, ctx.params["scale_set_id"], ctx.body))


def a_generate_jit(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).scalesets.generate_jit(_admin_scope(ctx), ctx.params["scale_set_id"], ctx.body,
                                                       ctx.base_url))


def a_find_agents(ctx: Ctx) -> Reply:
    return _list(_emu(ctx).scalesets.find_agents(_admin_scope(ctx), ctx.q("agentName")))


def a_get_agent(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).scalesets.get_agent(_admin_scope(ctx), ctx.params["agent_id"]))


def a_delete_agent(ctx: Ctx) -> Reply:
    _emu(ctx).scalesets.delete_agent(_admin_scope(ctx), ctx.params["agent_id"])
    return Reply(204)


# ---- control API ---------------------------------------------------------------------------
def _control_body(ctx: Ctx) -> dict[str, Any]:
    if ctx.body is None:
        return {}
    if not isinstance(ctx.body, dict):
        raise ApiError(400, "a JSON object body is required", DOCS)
    return ctx.body


def _value_error(exc: Exception) -> ApiError:
    return ApiError(422, str(exc), DOCS)


def health(ctx: Ctx) -> Reply:
    return Reply(200, {"ok": True, "runner_version": RUNNER_VERSION, "api_url": f"{ctx.base_url}/api/v3"})


def download(ctx: Ctx) -> Reply:
    emu = _emu(ctx)
    if ctx.params["filename"] not in {filename_for(a) for a in ARCHES}:
        raise not_found()
    return Reply(200, raw=emu.tarball, content_type="application/gzip")


def c_enqueue(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    try:
        jid = _emu(ctx).enqueue_job(b.get("scope", ""), b.get("labels", []), b.get("script", ""),
                                    timeout=float(b.get("timeout", 600)), container=b.get("container"),
                                    services=b.get("services"))
    except ApiError:
        raise
    except (ValueError, TypeError) as exc:
        raise _value_error(exc) from exc
    return Reply(201, _emu(ctx).job(jid))


def c_jobs(ctx: Ctx) -> Reply:
    return Reply(200, {"jobs": _emu(ctx).jobs()})


def c_job(ctx: Ctx) -> Reply:
    try:
        return Reply(200, _emu(ctx).job(int(ctx.params["job_id"])))
    except (KeyError, ValueError):
        raise not_found() from None


def c_runners(ctx: Ctx) -> Reply:
    return Reply(200, {"runners": _emu(ctx).runners(ctx.q("scope"))})


def c_requests(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).requests.snapshot())


def c_reset_requests(ctx: Ctx) -> Reply:
    _emu(ctx).reset_requests()
    return Reply(204)


def c_faults(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).faults_snapshot().as_json())


def c_set_faults(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    known = {f.name for f in fields(Faults)}
    unknown = sorted(set(b) - known)
    if unknown:
        raise ApiError(422, f"unknown fault fields: {', '.join(unknown)}", DOCS)
    _emu(ctx).set_faults(**b)
    return Reply(200, _emu(ctx).faults_snapshot().as_json())


def c_clear_faults(ctx: Ctx) -> Reply:
    _emu(ctx).clear_faults()
    return Reply(204)


def c_add_pat(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    scopes = b.get("scopes")
    token = _emu(ctx).add_pat(b.get("token"), scopes if scopes is not None else None)
    return Reply(201, {"token": token})


def c_add_app(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    try:
        app_id, ids = _emu(ctx).add_app(b.get("app_id"), b["public_key_pem"], installations=b.get("installations", []))
    except (KeyError, ValueError, TypeError) as exc:
        raise ApiError(422, f"bad app: {type(exc).__name__}", DOCS) from exc
    return Reply(201, {"app_id": app_id, "installations": ids})


def c_add_scope(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    return Reply(201, {"scope": _emu(ctx).add_scope(str(b.get("scope", "")))})


def c_add_group(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    try:
        gid = _emu(ctx).add_runner_group(str(b.get("scope", "")), str(b.get("name", "")))
    except ValueError as exc:
        raise _value_error(exc) from exc
    return Reply(201, {"id": gid})


def c_link_org(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    _emu(ctx).link_org(str(b.get("enterprise", "")), str(b.get("org", "")))
    return Reply(204)


def c_scale_sets(ctx: Ctx) -> Reply:
    scope = ctx.q("scope")
    return Reply(200, {"scale_sets": _emu(ctx).scalesets.snapshot(parse_scope(scope) if scope else None)})


def c_scale_set_sessions(ctx: Ctx) -> Reply:
    return Reply(200, {"sessions": _emu(ctx).scalesets.session_snapshot()})


def _opt_set_id(ctx: Ctx) -> int | None:
    raw = ctx.q("scale_set_id")
    try:
        return int(raw) if raw else None
    except ValueError:
        raise ApiError(422, "scale_set_id must be an integer", DOCS) from None


def c_end_sessions(ctx: Ctx) -> Reply:
    return Reply(200, {"ended": _emu(ctx).end_scale_set_sessions(_opt_set_id(ctx))})


def c_expire_tokens(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    kind = b.get("kind")
    if kind == "queue":
        n = _emu(ctx).expire_queue_tokens(_opt_set_id(ctx))
    elif kind == "admin":
        n = _emu(ctx).expire_admin_tokens()
    else:
        raise ApiError(422, 'kind must be "queue" or "admin"', DOCS)
    return Reply(200, {"expired": n})


def c_options(ctx: Ctx) -> Reply:
    return Reply(200, _emu(ctx).options())


def c_set_options(ctx: Ctx) -> Reply:
    try:
        _emu(ctx).set_options(**_control_body(ctx))
    except (TypeError, ValueError) as exc:
        raise _value_error(exc) from exc
    return Reply(200, _emu(ctx).options())


def c_clock(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    _emu(ctx).advance_clock(float(b.get("advance", 0)))
    return Reply(200, {"offset": _emu(ctx).state.clock_offset})


# ---- stand-in runner protocol ------------------------------------------------------------
def _runner(ctx: Ctx) -> Any:
    r = _emu(ctx).state.runners.get(int(ctx.params["_runner_id"]))
    if r is None:
        raise not_found(RUNNER_DOCS)
    return r


def r_open(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    sid = _emu(ctx).state.open_session(_runner(ctx), str(b.get("os") or "Linux"), str(b.get("version") or ""))
    return Reply(201, {"session_id": sid})


def r_close(ctx: Ctx) -> Reply:
    _emu(ctx).state.close_session(_runner(ctx), ctx.params["session_id"])
    return Reply(204)


def r_message(ctx: Ctx) -> Reply:
    if ctx.method == "HEAD":  # a HEAD must not take (or wait for) a job
        return Reply(204)
    try:
        wait = float(ctx.q("wait") or 20)
    except ValueError:
        wait = 20.0
    job = _emu(ctx).state.poll(_runner(ctx), ctx.params["session_id"], wait)
    return Reply(200, job) if job else Reply(204)


def _job_id(ctx: Ctx) -> int:
    try:
        return int(ctx.params["job_id"])
    except ValueError:
        raise not_found() from None


def r_heartbeat(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    _emu(ctx).state.heartbeat(_runner(ctx), _job_id(ctx), b.get("output"))
    return Reply(204)


def r_complete(ctx: Ctx) -> Reply:
    b = _control_body(ctx)
    code = b.get("exit_code")
    _emu(ctx).state.complete(_runner(ctx), _job_id(ctx), code if isinstance(code, int) else None,
                             str(b.get("output") or ""), b.get("conclusion"))
    return Reply(204)


# ---- the table -----------------------------------------------------------------------------
def build_routes() -> list[Route]:
    table: list[tuple[str, str, Any, str]] = []
    for kind, p in PREFIXES.items():
        table += [
            ("POST", f"{p}/runners/registration-token", registration_token, "runners"),
            ("POST", f"{p}/runners/remove-token", remove_token, "runners"),
            ("POST", f"{p}/runners/generate-jitconfig", generate_jitconfig, "runners"),
            ("GET", f"{p}/runners/downloads", downloads, "runners"),
            ("GET", f"{p}/runners/deprecations/{{version}}", deprecation, "runners"),
            ("GET", f"{p}/runners", list_runners, "runners"),
            ("GET", f"{p}/runners/{{runner_id}}", get_runner, "runners"),
            ("DELETE", f"{p}/runners/{{runner_id}}", delete_runner, "runners"),
            ("GET", f"{p}/runners/{{runner_id}}/labels", get_labels, "runners"),
            ("POST", f"{p}/runners/{{runner_id}}/labels", add_labels, "runners"),
            ("PUT", f"{p}/runners/{{runner_id}}/labels", set_labels, "runners"),
            ("DELETE", f"{p}/runners/{{runner_id}}/labels", clear_labels, "runners"),
            ("DELETE", f"{p}/runners/{{runner_id}}/labels/{{name}}", remove_label, "runners"),
        ]
        if kind != "repo":
            table.append(("GET", f"{p}/runner-groups", runner_groups, "runners"))
    table += [
        ("GET", "/repos/{owner}/{repo}/installation", repo_installation, "jwt"),
        ("GET", "/orgs/{org}/installation", org_installation, "jwt"),
        ("GET", "/enterprises/{enterprise}/installation", enterprise_installation, "jwt"),
        ("GET", "/app/installations", app_installations, "jwt"),
        ("POST", "/app/installations/{installation_id}/access_tokens", access_token, "jwt"),
        ("GET", "/rate_limit", rate_limit, "ratelimit"),
        ("POST", "/actions/runner-registration", runner_registration, "remote"),
        ("POST", "/actions/runners/register", runners_register, "runner_admin"),
        ("GET", "/_emulator/health", health, "public"),
        ("GET", "/_emulator/downloads/{filename}", download, "public"),
        ("POST", "/_emulator/jobs", c_enqueue, "control"),
        ("GET", "/_emulator/jobs", c_jobs, "control"),
        ("GET", "/_emulator/jobs/{job_id}", c_job, "control"),
        ("GET", "/_emulator/runners", c_runners, "control"),
        ("GET", "/_emulator/requests", c_requests, "control"),
        ("DELETE", "/_emulator/requests", c_reset_requests, "control"),
        ("GET", "/_emulator/faults", c_faults, "control"),
        ("PUT", "/_emulator/faults", c_set_faults, "control"),
        ("DELETE", "/_emulator/faults", c_clear_faults, "control"),
        ("POST", "/_emulator/pats", c_add_pat, "control"),
        ("POST", "/_emulator/apps", c_add_app, "control"),
        ("POST", "/_emulator/scopes", c_add_scope, "control"),
        ("POST", "/_emulator/runner-groups", c_add_group, "control"),
        ("POST", "/_emulator/enterprise-orgs", c_link_org, "control"),
        ("POST", "/_emulator/clock", c_clock, "control"),
        ("GET", "/_emulator/scalesets", c_scale_sets, "control"),
        ("GET", "/_emulator/scaleset-sessions", c_scale_set_sessions, "control"),
        ("DELETE", "/_emulator/scaleset-sessions", c_end_sessions, "control"),
        ("POST", "/_emulator/scaleset-tokens/expire", c_expire_tokens, "control"),
        ("GET", "/_emulator/options", c_options, "control"),
        ("PATCH", "/_emulator/options", c_set_options, "control"),
        ("POST", "/_emulator/runner/sessions", r_open, "runner"),
        ("DELETE", "/_emulator/runner/sessions/{session_id}", r_close, "runner"),
        ("GET", "/_emulator/runner/sessions/{session_id}/message", r_message, "runner"),
        ("POST", "/_emulator/runner/jobs/{job_id}/heartbeat", r_heartbeat, "runner"),
        ("POST", "/_emulator/runner/jobs/{job_id}/complete", r_complete, "runner"),
    ]
    ss, agents = SCALE_SETS, "/_apis/distributedtask/pools/{pool_id}/agents"
    table += [
        ("GET", "/_apis/runtime/runnergroups", a_runner_groups, "actions"),
        ("POST", ss, a_create_set, "actions"),
        ("GET", ss, a_find_sets, "actions"),
        ("GET", f"{ss}/{{scale_set_id}}", a_get_set, "actions"),
        ("PATCH", f"{ss}/{{scale_set_id}}", a_update_set, "actions"),
        ("DELETE", f"{ss}/{{scale_set_id}}", a_delete_set, "actions"),
        ("POST", f"{ss}/{{scale_set_id}}/sessions", a_create_session, "actions"),
        ("PATCH", f"{ss}/{{scale_set_id}}/sessions/{{session_id}}", a_refresh_session, "actions"),
        ("DELETE", f"{ss}/{{scale_set_id}}/sessions/{{session_id}}", a_delete_session, "actions"),
        ("GET", f"{ss}/{{scale_set_id}}/sessions/{{session_id}}/messages", a_get_message, "queue"),
        ("DELETE", f"{ss}/{{scale_set_id}}/sessions/{{session_id}}/messages/{{message_id}}", a_delete_message, "queue"),
        ("POST", f"{ss}/{{scale_set_id}}/acquirejobs", a_acquire, "acquire"),
        ("POST", f"{ss}/{{scale_set_id}}/generatejitconfig", a_generate_jit, "actions"),
        ("GET", agents, a_find_agents, "actions"),
        ("GET", f"{agents}/{{agent_id}}", a_get_agent, "actions"),
        ("DELETE", f"{agents}/{{agent_id}}", a_delete_agent, "actions"),
    ]
    return [Route(m, t, _compile(t), fn, auth) for m, t, fn, auth in table]
