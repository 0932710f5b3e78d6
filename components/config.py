"""Stack configuration: parse and validate ``ghr:*`` config into typed, frozen values.

Pure (no Pulumi runtime, no network, no Docker): ``__main__.py`` reads the raw values and
calls :func:`parse_config`; unit tests call it directly. Every problem is reported at once
as a :class:`ConfigError` whose lines read ``<key path>: <what is wrong> (got <value>);
<how to fix>`` - e.g. ``ghr:pools[1].container.gpus``. Secret values are never echoed.

Keys are camelCase in ``Pulumi.<stack>.yaml`` (Pulumi's convention); snake_case spellings
are accepted too. Each pool's spec on each host (``pool_manager.spec.PoolSpec``, what its
manager runs) is built here once, by the manager's own ``load_spec``, so the program and the
manager agree on one set of rules; its errors are reported under the config key they come from.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pool_manager.spec import (
    MAX_SCALE_SET_NAME_LENGTH,
    PoolSpec,
    SpecError,
    check_scale_set_name,
    load_spec,
    parse_size,
)

from .docker import validate_host_spec

NAMESPACE = "ghr"
SECRET = "[secret]"

DEFAULT_BASE_IMAGE = "ghr-base:bookworm"
DEFAULT_RUNNER_VERSION = "2.337.0"
KNOWN_RUNNER_SHA256 = {
    "2.337.0": "70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613",
    "2.335.1": "4ef2f25285f0ae4477f1fe1e346db76d2f3ebf03824e2ddd1973a2819bf6c8cf",
}
MIN_RUNNER_VERSION = (2, 329, 0)
RUNNER_URL_TEMPLATE = (
    "https://github.com/actions/runner/releases/download/v{version}/actions-runner-linux-x64-{version}.tar.gz"
)

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,19}$")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SCOPE_PATH = re.compile(r"^/(enterprises/[A-Za-z0-9][A-Za-z0-9_-]*|[A-Za-z0-9][A-Za-z0-9_-]*(/[A-Za-z0-9._-]+)?)/?$")

GITHUB_KEYS = {"scope", "apiUrl", "token", "appId", "privateKey", "installationId"}
HOST_KEYS = {"name", "url", "sshOptions", "tls", "socketPath", "cache"}
# ghr:hosts[i].cache (issue 11): the host's caches, and ghr:pools[i].cache, which of them a pool uses.
HOST_CACHE_KEYS = {"apt", "registry", "toolCache", "metricsPort", "keepVolumes"}
APT_CACHE_KEYS = {"size"}
REGISTRY_CACHE_KEYS = {"size", "upstream", "hostPort"}
POOL_CACHE_KINDS = {"apt", "registry", "toolCache"}
APT_CACHE_PORT = 3142
REGISTRY_CACHE_PORT = 5000
DEFAULT_APT_CACHE_SIZE = 10 * 1024**3
DEFAULT_REGISTRY_CACHE_SIZE = 20 * 1024**3
DEFAULT_REGISTRY_UPSTREAM = "https://registry-1.docker.io"
DEFAULT_CACHE_METRICS_PORT = 9180
# The registry cache's port on the host's loopback only (127.0.0.1): the host's own image builds pull their base
# image through it (engines allow plain http to 127.0.0.0/8 registries); no other interface publishes it.
DEFAULT_REGISTRY_HOST_PORT = 5055
MIN_CACHE_SIZE = 64 * 1024**2
TOOL_CACHE_PATH = "/opt/hostedtoolcache"  # the runner's tool cache, as on GitHub's hosted runners
TLS_KEYS = {"ca", "cert", "key"}
POOL_KEYS = {
    "name", "hosts", "slots", "labels", "runnerGroup", "image", "container", "drainTimeout", "metricsPort",
    "readyTimeout", "scaling", "minRunners", "maxRunners", "scaleSetName", "docker", "dockerUnsafeHost", "dind",
    "cache",
}
DOCKER_MODES = ("none", "dind", "host")  # a pool's `docker`: pool_manager.spec.DOCKER_MODES
DIND_KEYS = {"security", "registryMirrors", "insecureRegistries", "runtime"}
SCALINGS = {"fixed": "fixed", "scaleSet": "scale_set", "scale_set": "scale_set"}  # config value -> spec value
MAX_RUNNERS = 64  # per host, as slots
IMAGE_KEYS = {"base", "runnerVersion", "runnerSha256", "runnerUrl", "extraPackages"}
CONTAINER_KEYS = {
    "cpus", "memory", "pidsLimit", "shmSize", "gpus", "gpuPerSlot", "volumes", "env", "networkMode",
    "hardened", "noNewPrivileges", "capDrop", "capAdd", "runtime", "labels",
}
VOLUME_KEYS = {"type", "source", "target", "readOnly", "size"}
TOP_KEYS = {"github", "hosts", "pools", "runnerVersionCheck", "managerNetworkMode"}


# ---- errors ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" + (f"; {self.fix}" if self.fix else "")


class ConfigError(ValueError):
    """Invalid stack configuration; ``problems`` lists every finding with its key path."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid stack configuration ({len(self.problems)} problem(s)), nothing was changed:\n{lines}")

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.problems]


# ---- typed values ----------------------------------------------------------------------

@dataclass(frozen=True)
class GitHubConfig:
    scope_url: str
    api_url: str | None
    auth: str  # "pat" | "app"
    token: str | None = field(default=None, repr=False)
    app_id: int | str | None = None
    private_key: str | None = field(default=None, repr=False)
    installation_id: int | None = None
    scope_kind: str = "org"


@dataclass(frozen=True)
class CacheNames:
    """The names of one stack's cache objects on a host (containers, volumes, the network)."""

    stack: str

    @property
    def network(self) -> str:
        return f"ghr-{self.stack}-cache"

    def container(self, role: str) -> str:  # role: apt | registry | metrics
        return f"ghr-{self.stack}-cache-{role}"

    def volume(self, kind: str) -> str:  # kind: apt | registry | tools | stats
        return f"ghr-{self.stack}-cache-{kind}"

    @property
    def apt_proxy(self) -> str:
        return f"http://{self.container('apt')}:{APT_CACHE_PORT}"

    @property
    def registry_mirror(self) -> str:
        return f"http://{self.container('registry')}:{REGISTRY_CACHE_PORT}"


@dataclass(frozen=True)
class HostCacheConfig:
    """``ghr:hosts[i].cache``: the caches this host runs for its pools (sizes in bytes)."""

    apt: bool = True
    apt_size: int = DEFAULT_APT_CACHE_SIZE
    registry: bool = False
    registry_size: int = DEFAULT_REGISTRY_CACHE_SIZE
    registry_upstream: str = DEFAULT_REGISTRY_UPSTREAM
    registry_host_port: int | None = DEFAULT_REGISTRY_HOST_PORT  # on 127.0.0.1 only; None: not published
    tool_cache: bool = False
    metrics_port: int = DEFAULT_CACHE_METRICS_PORT
    keep_volumes: bool = True  # `pulumi destroy` keeps the cache volumes (false: deletes them)

    def kinds(self) -> set[str]:
        return {k for k, on in (("apt", self.apt), ("registry", self.registry), ("toolCache", self.tool_cache)) if on}

    @property
    def host_mirror(self) -> str | None:
        """``127.0.0.1:<hostPort>``: the registry cache as the host's own engine reaches it (its image builds)."""
        return f"127.0.0.1:{self.registry_host_port}" if self.registry and self.registry_host_port else None


@dataclass(frozen=True)
class HostConfig:
    name: str
    url: str
    ssh_options: tuple[str, ...] = ()
    tls: Mapping[str, str] | None = field(default=None, repr=False)
    socket_path: str = "/var/run/docker.sock"
    cache: HostCacheConfig | None = None  # None: no caches on this host


@dataclass(frozen=True)
class ImageConfig:
    base: str = DEFAULT_BASE_IMAGE
    runner_version: str = DEFAULT_RUNNER_VERSION
    runner_sha256: str = KNOWN_RUNNER_SHA256[DEFAULT_RUNNER_VERSION]
    runner_url: str = RUNNER_URL_TEMPLATE.format(version=DEFAULT_RUNNER_VERSION)
    extra_packages: tuple[str, ...] = ()

    def build_args(self) -> dict[str, str]:
        return {
            "BASE_IMAGE": self.base,
            "RUNNER_VERSION": self.runner_version,
            "RUNNER_SHA256": self.runner_sha256,
            "RUNNER_URL": self.runner_url,
            "EXTRA_PACKAGES": " ".join(self.extra_packages),
        }


@dataclass(frozen=True)
class PoolConfig:
    name: str
    hosts: tuple[str, ...]
    slots: int
    labels: tuple[str, ...]
    runner_group: str = "Default"
    image: ImageConfig = field(default_factory=ImageConfig)
    container: Mapping[str, Any] = field(default_factory=dict)  # as configured, in the pool spec's snake_case
    drain_timeout: int = 600
    metrics_port: int = 9101
    ready_timeout: int = 180  # seconds `pulumi up` waits for `slots` runners online; 0: no wait
    # "fixed" (slots runners always) or "scale_set" (min..max, following demand; slots is then max_runners).
    scaling: str = "fixed"
    min_runners: int | None = None
    max_runners: int | None = None
    scale_set_name: str | None = None  # None: each host's scale set is named by its name_prefix
    # Docker in jobs: "none", "dind" (a private engine per runner) or "host" (behind docker_unsafe_host).
    docker: str = "none"
    docker_unsafe_host: bool = False
    dind: Mapping[str, Any] = field(default_factory=dict)  # as configured, in the spec's snake_case; no image
    cache: frozenset[str] = frozenset()  # the host cache kinds the pool uses: apt, registry, toolCache

    @property
    def scale_set(self) -> bool:
        return self.scaling == "scale_set"

    @property
    def dind_sidecar(self) -> bool:
        """True when each runner of this pool gets a sidecar engine (and each host needs the sidecar image)."""
        return self.docker == "dind" and self.dind.get("runtime") is None

    def name_prefix(self, stack: str, host: str) -> str:
        return f"{stack}-{self.name}-{host}"


@dataclass(frozen=True)
class FleetConfig:
    stack: str
    github: GitHubConfig
    hosts: tuple[HostConfig, ...]
    pools: tuple[PoolConfig, ...]
    runner_version_check: bool = True
    manager_network_mode: str = "host"
    specs: Mapping[tuple[str, str], PoolSpec] = field(default_factory=dict, repr=False)  # (pool, host) -> spec

    def host(self, name: str) -> HostConfig:
        return next(h for h in self.hosts if h.name == name)

    def spec(self, pool: str, host: str) -> PoolSpec:
        """The validated spec of ``pool`` on ``host``, without its image (known at deploy)."""
        return self.specs[(pool, host)]


# ---- helpers -----------------------------------------------------------------------------

def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _normalise(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Accept snake_case spellings of camelCase keys (shallow)."""
    return {(_camel(k) if isinstance(k, str) and "_" in k else k): v for k, v in obj.items()}


def _close(key: str, allowed: set[str]) -> list[str]:
    import difflib

    exact = [a for a in sorted(allowed) if a.lower() == key.lower().replace("_", "")]
    return exact or difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _spec_path_to_config(field_path: str) -> str:
    """``container.volumes[1].read_only`` -> ``container.volumes[1].readOnly``."""
    m = re.match(r"^(.*?\.(?:env|labels)\.)(.*)$", field_path)
    if m:  # user-chosen keys (env names, label keys) stay as written
        return _spec_path_to_config(m.group(1)[:-1]) + "." + m.group(2)
    parts = re.split(r"(\.|\[\d+\])", field_path)
    return "".join(_camel(p) if p and not p.startswith(("[", ".")) else p for p in parts)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str, fix: str = "") -> None:
        self.problems.append(Problem(path, message, fix))

    def unknown_keys(self, obj: Mapping[str, Any], allowed: set[str], path: str) -> None:
        for key in obj:
            if key not in allowed:
                close = _close(str(key), allowed)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(allowed))}"
                self.add(f"{path}.{key}", "is not a known setting", hint)

    def mapping(self, value: Any, path: str, fix: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.add(path, f"expected an object, got {_show(value)}", fix)
            return None
        return _normalise(value)

    def int_in(self, value: Any, path: str, lo: int, hi: int, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(path, f"expected a whole number, got {_show(value)}", f"use an integer between {lo} and {hi}")
            return default
        if not lo <= value <= hi:
            self.add(path, f"{value} is out of range", f"use an integer between {lo} and {hi}")
            return default
        return int(value)

    def unique_name(self, value: Any, path: str, kind: str, example: str, seen: set[str]) -> str | None:
        """A host's or pool's name: required, short, and unique among its kind."""
        name = self.string(value, path, f"give the {kind} a short name like {example}")
        if name and not _NAME.match(name):
            self.add(path, f"got {_show(name)}", "use 1-20 lowercase letters, digits or '-'")
        if name in seen:
            self.add(path, f"{kind} {name!r} is defined twice", f"give every {kind} a unique name")
        seen.add(name or "")
        return name

    def string(self, value: Any, path: str, fix: str, *, required: bool = True, default: str | None = None) -> str | None:
        if value is None:
            if required:
                self.add(path, "is required", fix)
            return default
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"expected a non-empty string, got {_show(value)}", fix)
            return default
        return value.strip()


# ---- sections ------------------------------------------------------------------------------

def _parse_github(c: _Checker, raw: Any, secret_keys: set[str]) -> GitHubConfig | None:
    path = f"{NAMESPACE}:github"
    fix_root = "set it in Pulumi.<stack>.yaml, e.g. ghr:github: {scope: https://github.com/acme}"
    if raw is None:
        c.add(path, "is required", fix_root)
        return None
    gh = c.mapping(raw, path, fix_root)
    if gh is None:
        return None
    c.unknown_keys(gh, GITHUB_KEYS, path)
    scope = c.string(gh.get("scope"), f"{path}.scope",
                     "use https://github.com/ORG, https://github.com/OWNER/REPO or https://github.com/enterprises/SLUG")
    api_url = c.string(gh.get("apiUrl"), f"{path}.apiUrl", "use https://HOST/api/v3 for GitHub Enterprise Server",
                       required=False)
    kind = "org"
    if scope:
        parts = urllib.parse.urlsplit(scope)
        if parts.scheme not in ("http", "https") or not parts.hostname or not _SCOPE_PATH.match(parts.path or ""):
            c.add(f"{path}.scope", f"is not a runner scope URL (got {_show(scope)})",
                  "use https://github.com/ORG, https://github.com/OWNER/REPO or https://github.com/enterprises/SLUG")
        else:
            segs = [s for s in parts.path.split("/") if s]
            kind = "enterprise" if segs[0] == "enterprises" else ("repo" if len(segs) == 2 else "org")
            if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
                c.add(f"{path}.scope", f"uses plain http to a non-loopback host (got {_show(scope)})",
                      "use https:// (plain http is only allowed for a local emulator)")
    if api_url:
        ap = urllib.parse.urlsplit(api_url)
        if ap.scheme not in ("http", "https") or not ap.hostname or ap.username or ap.query:
            c.add(f"{path}.apiUrl", f"is not an API root URL (got {_show(api_url)})",
                  "use https://HOST/api/v3 (no credentials, no query)")
    token = gh.get("token")
    app_id = gh.get("appId")
    key = gh.get("privateKey")
    inst = gh.get("installationId")
    secret = f"{NAMESPACE}:github" in secret_keys
    auth = "pat"
    if token is not None and (app_id is not None or key is not None):
        c.add(path, "has both a token and GitHub App settings",
              "keep either ghr:github.token (PAT) or ghr:github.appId + ghr:github.privateKey (GitHub App)")
    elif token is not None:
        if not isinstance(token, str) or not token.strip():
            c.add(f"{path}.token", f"expected a non-empty token, got {SECRET}",
                  "pulumi config set --secret --path ghr:github.token <PAT>")
        elif not secret:
            c.add(f"{path}.token", "is stored in plain text",
                  "store it encrypted: pulumi config set --secret --path ghr:github.token <PAT>")
    elif app_id is not None or key is not None:
        auth = "app"
        if app_id is None:
            c.add(f"{path}.appId", "is required with a private key", "set ghr:github.appId to the App's id (a number)")
        elif isinstance(app_id, bool) or not (
            (isinstance(app_id, int) and app_id > 0) or (isinstance(app_id, str) and re.match(r"^(\d+|Iv[0-9a-zA-Z.]+)$", app_id))
        ):
            c.add(f"{path}.appId", f"expected the App id (a positive number) or client id, got {_show(app_id)}",
                  "copy it from the App's settings page")
        if key is None:
            c.add(f"{path}.privateKey", "is required with an App id",
                  "pulumi config set --secret --path ghr:github.privateKey < app.private-key.pem")
        elif not isinstance(key, str) or "PRIVATE KEY-----" not in key:
            c.add(f"{path}.privateKey", f"is not a PEM private key (got {SECRET})",
                  "paste the whole .pem the App settings page downloaded, BEGIN and END lines included")
        elif not secret:
            c.add(f"{path}.privateKey", "is stored in plain text",
                  "store it encrypted: pulumi config set --secret --path ghr:github.privateKey < key.pem")
        if inst is not None and (isinstance(inst, bool) or not isinstance(inst, int) or inst <= 0):
            c.add(f"{path}.installationId", f"expected a positive number, got {_show(inst)}",
                  "remove it to look the installation up automatically")
        if kind == "enterprise":
            c.add(f"{path}.appId", "GitHub App tokens are not accepted for enterprise runners",
                  "use a classic PAT with manage_runners:enterprise in ghr:github.token")
    else:
        c.add(path, "has no credentials",
              "set a PAT (pulumi config set --secret --path ghr:github.token <PAT>) or a GitHub App "
              "(ghr:github.appId and --secret ghr:github.privateKey)")
    if inst is not None and auth == "pat":
        c.add(f"{path}.installationId", "only applies to GitHub App auth", "remove it, or configure appId + privateKey")
    if not scope:
        return None
    return GitHubConfig(
        scope_url=scope, api_url=api_url, auth=auth,
        token=token if auth == "pat" else None,
        app_id=app_id if auth == "app" else None,
        private_key=key if auth == "app" else None,
        installation_id=inst if auth == "app" else None,
        scope_kind=kind,
    )


def _parse_hosts(c: _Checker, raw: Any, secret_keys: set[str]) -> list[HostConfig]:
    path = f"{NAMESPACE}:hosts"
    if raw is None:
        return [HostConfig(name="local", url="unix:///var/run/docker.sock")]
    if not isinstance(raw, list) or not raw:
        c.add(path, f"expected a non-empty list of hosts, got {_show(raw)}",
              "e.g. ghr:hosts: [{name: local, url: unix:///var/run/docker.sock}]")
        return []
    hosts: list[HostConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        hp = f"{path}[{i}]"
        h = c.mapping(item, hp, "each host is {name, url[, sshOptions][, tls]}")
        if h is None:
            continue
        c.unknown_keys(h, HOST_KEYS, hp)
        name = c.unique_name(h.get("name"), f"{hp}.name", "host", "gpu1", seen)
        url = c.string(h.get("url"), f"{hp}.url",
                       "use unix:///var/run/docker.sock, ssh://user@host[:port] or tcp://host:2376")
        ssh_options = h.get("sshOptions") or []
        if not isinstance(ssh_options, list):
            c.add(f"{hp}.sshOptions", f"expected a list of Key=Value strings, got {_show(ssh_options)}",
                  "e.g. [StrictHostKeyChecking=accept-new, IdentityFile=~/.ssh/id_ed25519]")
            ssh_options = []
        tls = h.get("tls")
        if tls is not None:
            if not isinstance(tls, Mapping):
                c.add(f"{hp}.tls", f"expected {{ca, cert, key}}, got {SECRET}", "set each as a secret PEM")
                tls = None
            else:
                c.unknown_keys(tls, TLS_KEYS, f"{hp}.tls")
                for k in ("ca", "cert", "key"):
                    v = tls.get(k)
                    if not isinstance(v, str) or "-----BEGIN" not in v:
                        c.add(f"{hp}.tls.{k}", f"is missing or not PEM (got {SECRET})",
                              f"pulumi config set --secret --path '{hp}.tls.{k}' < {k}.pem")
                if f"{NAMESPACE}:hosts" not in secret_keys and tls.get("key"):
                    c.add(f"{hp}.tls.key", "is stored in plain text",
                          f"store it encrypted: pulumi config set --secret --path '{hp}.tls.key' < key.pem")
        if url:
            for problem in validate_host_spec(url, [str(o) for o in ssh_options],
                                              tls if isinstance(tls, Mapping) else None):
                if "TLS material is missing" in problem:
                    continue  # reported per key above
                where = f"{hp}.sshOptions" if "ssh option" in problem else (
                    f"{hp}.tls" if problem.startswith("TLS") else f"{hp}.url")
                c.add(where, problem)
        socket_path = c.string(h.get("socketPath"), f"{hp}.socketPath", "the Docker socket path on that host",
                               required=False, default=None)
        if socket_path is None:
            parsed = urllib.parse.urlparse(url or "")
            socket_path = parsed.path if parsed.scheme == "unix" and parsed.path else "/var/run/docker.sock"
        cache = _parse_host_cache(c, h.get("cache"), f"{hp}.cache")
        if name and url:
            hosts.append(HostConfig(name=name, url=url, ssh_options=tuple(str(o) for o in ssh_options),
                                    tls=dict(tls) if isinstance(tls, Mapping) else None, socket_path=socket_path,
                                    cache=cache))
    return hosts


def _version_tuple(version: str) -> tuple[int, int, int] | None:
    m = _VERSION.match(version)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def _parse_image(c: _Checker, raw: Any, path: str) -> ImageConfig:
    img = c.mapping(raw, path, "image: {base, runnerVersion, runnerSha256, runnerUrl, extraPackages}") or {}
    c.unknown_keys(img, IMAGE_KEYS, path)
    base = c.string(img.get("base"), f"{path}.base", "an image reference like ghr-base:bookworm or ubuntu:24.04",
                    required=False, default=DEFAULT_BASE_IMAGE) or DEFAULT_BASE_IMAGE
    if re.search(r"\s", base):
        c.add(f"{path}.base", f"is not an image reference (got {_show(base)})", "e.g. ubuntu:24.04")
    version = c.string(img.get("runnerVersion"), f"{path}.runnerVersion", "e.g. 2.337.0",
                       required=False, default=DEFAULT_RUNNER_VERSION) or DEFAULT_RUNNER_VERSION
    vt = _version_tuple(version)
    if vt is None:
        c.add(f"{path}.runnerVersion", f"expected a version like 2.337.0, got {_show(version)}",
              "use the number of an actions/runner release, without a leading v")
    elif vt < MIN_RUNNER_VERSION:
        c.add(f"{path}.runnerVersion", f"runner {version} can no longer register with GitHub",
              "use 2.329.0 or newer (GitHub refuses older runners)")
    sha = img.get("runnerSha256")
    url = img.get("runnerUrl")
    if sha is None:
        sha = KNOWN_RUNNER_SHA256.get(version)
        if sha is None:
            c.add(f"{path}.runnerSha256", f"is required for runner {version} (no known checksum)",
                  "copy the SHA-256 of actions-runner-linux-x64-<version>.tar.gz from the release notes")
    elif not isinstance(sha, str) or not _SHA256.match(sha):
        c.add(f"{path}.runnerSha256", f"expected 64 lowercase hex digits, got {_show(sha)}",
              "copy the SHA-256 from the runner release notes")
    if url is None:
        url = RUNNER_URL_TEMPLATE.format(version=version)
    elif not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        c.add(f"{path}.runnerUrl", f"expected an http(s) URL of the runner tarball, got {_show(url)}",
              "leave it out to download from github.com/actions/runner releases")
    pkgs = img.get("extraPackages") or []
    if not isinstance(pkgs, list):
        c.add(f"{path}.extraPackages", f"expected a list of Debian/Ubuntu package names, got {_show(pkgs)}",
              "e.g. [build-essential, python3-venv]")
        pkgs = []
    for j, p in enumerate(pkgs):
        if not isinstance(p, str) or not _PACKAGE.match(p):
            c.add(f"{path}.extraPackages[{j}]", f"is not an apt package name, got {_show(p)}",
                  "use names like build-essential or libssl-dev (optionally name=version)")
    return ImageConfig(base=base, runner_version=version, runner_sha256=str(sha or ""), runner_url=str(url),
                       extra_packages=tuple(str(p) for p in pkgs))


def _container_to_spec(c: _Checker, raw: Any, path: str) -> dict[str, Any]:
    cont = c.mapping(raw, path, "container: {cpus, memory, gpus, volumes, ...}") or {}
    c.unknown_keys(cont, CONTAINER_KEYS, path)
    out: dict[str, Any] = {}
    for key, value in cont.items():
        if key not in CONTAINER_KEYS:
            continue
        if key == "volumes" and isinstance(value, list):
            vols = []
            for j, v in enumerate(value):
                if isinstance(v, Mapping):
                    nv = _normalise(v)
                    c.unknown_keys(nv, VOLUME_KEYS, f"{path}.volumes[{j}]")
                    vols.append({_snake(k): x for k, x in nv.items()})
                else:
                    vols.append(v)
            value = vols
        elif key == "gpus" and isinstance(value, Mapping):
            value = {_snake(k): x for k, x in _normalise(value).items()}
        out[_snake(key)] = value
    if out.get("privileged"):
        c.add(f"{path}.privileged", "privileged runner containers are not supported", "remove it")
    for j, v in enumerate(out.get("volumes") or []):
        if isinstance(v, Mapping) and str(v.get("source", "")).rstrip("/") in ("/var/run/docker.sock", "/run/docker.sock"):
            c.add(f"{path}.volumes[{j}].source", "mounts the host's Docker socket into every job (root on the host)",
                  "remove it; set the pool's docker: dind for a private engine per job")
    return out


def _parse_docker(c: _Checker, p: Mapping[str, Any], pp: str) -> tuple[str, bool, dict[str, Any]]:
    """A pool's ``docker`` mode, ``dockerUnsafeHost`` and ``dind`` settings (snake_case, as the spec takes them).
    The settings' values (mirror URLs, security, runtime, what combines with ``container``) are checked by the
    spec's ``load_spec`` and reported under these keys."""
    mode = p.get("docker")
    if mode is None:
        mode = "none"
    if mode not in DOCKER_MODES:
        c.add(f"{pp}.docker", f"expected none, dind or host, got {_show(mode)}",
              "dind gives each job a private Docker engine; leave docker out for no Docker in jobs")
        mode = "none"
    unsafe = p.get("dockerUnsafeHost", False)
    if unsafe is None:
        unsafe = False
    if not isinstance(unsafe, bool):
        c.add(f"{pp}.dockerUnsafeHost", f"expected true or false, got {_show(unsafe)}",
              "true only if every job may have root on the host (docker: host)")
        unsafe = False
    if mode == "host" and not unsafe:
        c.add(f"{pp}.docker", "host hands every job the host's Docker socket: root on the host and every other job's"
              " containers", "use docker: dind (a private engine per job), or add dockerUnsafeHost: true to accept that")
    if unsafe and mode != "host":
        c.add(f"{pp}.dockerUnsafeHost", f"only applies to docker: host (this pool has docker: {mode})", "remove it")
    raw = p.get("dind")
    if raw is not None and mode != "dind":
        c.add(f"{pp}.dind", f"only applies to docker: dind (this pool has docker: {mode})",
              "add docker: dind, or remove dind")
        return str(mode), bool(unsafe), {}
    dind = c.mapping(raw, f"{pp}.dind", "dind: {security, registryMirrors, insecureRegistries, runtime}") or {}
    c.unknown_keys(dind, DIND_KEYS, f"{pp}.dind")
    return str(mode), bool(unsafe), {_snake(k): v for k, v in dind.items() if k in DIND_KEYS}


def _parse_pools(c: _Checker, raw: Any, hosts: Sequence[HostConfig], github: GitHubConfig | None,
                 host_names_ok: bool) -> list[PoolConfig]:
    path = f"{NAMESPACE}:pools"
    if raw is None:
        c.add(path, "is required", "define at least one pool: ghr:pools: [{name: cpu, slots: 2, labels: [self-hosted, linux]}]")
        return []
    if not isinstance(raw, list) or not raw:
        c.add(path, f"expected a non-empty list of pools, got {_show(raw)}",
              "e.g. ghr:pools: [{name: cpu, slots: 2, labels: [self-hosted, linux]}]")
        return []
    host_names = [h.name for h in hosts]
    pools: list[PoolConfig] = []
    seen: set[str] = set()
    ports: dict[tuple[str, int], str] = {}
    prefixes: dict[str, tuple[str, str]] = {}
    for i, item in enumerate(raw):
        pp = f"{path}[{i}]"
        p = c.mapping(item, pp, "each pool is {name, slots, labels, ...}")
        if p is None:
            continue
        c.unknown_keys(p, POOL_KEYS, pp)
        name = c.unique_name(p.get("name"), f"{pp}.name", "pool", "cpu or gpu", seen)
        ph = p.get("hosts")
        if ph is None:
            ph = host_names[:1]
        if not isinstance(ph, list) or not ph:
            c.add(f"{pp}.hosts", f"expected a non-empty list of host names, got {_show(ph)}",
                  f"pick from: {', '.join(host_names) or '(define ghr:hosts first)'}")
            ph = []
        for j, hn in enumerate(ph):
            if host_names_ok and hn not in host_names:
                c.add(f"{pp}.hosts[{j}]", f"names no host defined in ghr:hosts (got {_show(hn)})",
                      f"use one of: {', '.join(host_names)}")
        if len(set(map(str, ph))) != len(ph):
            c.add(f"{pp}.hosts", "lists a host twice", "list each host once")
        scaling, min_runners, max_runners, scale_set_name = _parse_scaling(c, p, pp, len(ph))
        if scaling == "scale_set":
            slots = max_runners or 1  # the capacity
        else:
            slots = c.int_in(p.get("slots"), f"{pp}.slots", 1, 64, 1)
            if p.get("slots") is None:
                c.add(f"{pp}.slots", "is required", "set how many runners this pool keeps per host, e.g. slots: 2"
                      " (or scaling: scaleSet with minRunners and maxRunners to follow demand)")
        labels = p.get("labels")
        if not isinstance(labels, list) or not labels:
            c.add(f"{pp}.labels", f"expected a non-empty list of runner labels, got {_show(labels)}",
                  "e.g. labels: [self-hosted, linux, x64]")
            labels = []
        elif len(labels) > 100:
            c.add(f"{pp}.labels", f"has {len(labels)} labels", "GitHub accepts at most 100")
        for j, lab in enumerate(labels):
            if not isinstance(lab, str) or not lab.strip() or "," in lab or len(lab) > 256:
                c.add(f"{pp}.labels[{j}]", f"is not a valid label (got {_show(lab)})",
                      "use a non-empty string without commas, at most 256 characters")
        lower = [str(x).lower() for x in labels]
        if len(set(lower)) != len(lower):
            c.add(f"{pp}.labels", "lists a label twice (labels are case-insensitive)", "remove the duplicate")
        group = c.string(p.get("runnerGroup"), f"{pp}.runnerGroup", "the name of an organisation runner group",
                         required=False, default="Default") or "Default"
        if github is not None and github.scope_kind == "repo" and group.lower() != "default":
            c.add(f"{pp}.runnerGroup", f"repository runners can only join the Default group (got {_show(group)})",
                  "remove runnerGroup, or use an organisation scope")
        image = _parse_image(c, p.get("image"), f"{pp}.image")
        container = _container_to_spec(c, p.get("container"), f"{pp}.container")
        docker, docker_unsafe_host, dind = _parse_docker(c, p, pp)
        cache_kinds = _parse_pool_cache(c, p.get("cache"), f"{pp}.cache")
        drain = c.int_in(p.get("drainTimeout"), f"{pp}.drainTimeout", 0, 86400, 600)
        port = c.int_in(p.get("metricsPort"), f"{pp}.metricsPort", 1024, 65535, 9101 + i)
        ready_timeout = c.int_in(p.get("readyTimeout"), f"{pp}.readyTimeout", 0, 3600, 180)
        for hn in ph:
            other = ports.get((str(hn), port))
            if other is not None:
                c.add(f"{pp}.metricsPort", f"{port} is already used by pool {other!r} on host {hn!r}",
                      "give each pool on a host its own metricsPort")
            ports[(str(hn), port)] = name or "?"
        for hn in ph:
            prefix = f"{name}-{hn}"
            if prefix in prefixes and prefixes[prefix] != (name, hn):
                c.add(f"{pp}.name", f"pool {name!r} on host {hn!r} gives the same runner name prefix as pool "
                      f"{prefixes[prefix][0]!r} on host {prefixes[prefix][1]!r}",
                      "rename the pool or the host so their runners can be told apart")
            prefixes[prefix] = (name or "", str(hn))
        if name:
            pools.append(PoolConfig(name=name, hosts=tuple(str(h) for h in ph), slots=slots,
                                    labels=tuple(str(x) for x in labels), runner_group=group, image=image,
                                    container=container, drain_timeout=drain, metrics_port=port,
                                    ready_timeout=ready_timeout, scaling=scaling, min_runners=min_runners,
                                    max_runners=max_runners, scale_set_name=scale_set_name, docker=docker,
                                    docker_unsafe_host=docker_unsafe_host, dind=dind, cache=cache_kinds))
    return pools


def _parse_scaling(c: _Checker, p: Mapping[str, Any], pp: str,
                   host_count: int) -> tuple[str, int | None, int | None, str | None]:
    """A pool's ``scaling`` (``fixed`` or ``scaleSet``) and, for a scale-set pool, min/max runners and its name.

    Runner scale sets exist for every runner scope (repository, organisation and enterprise: GitHub's own
    client and actions-runner-controller register them at all three); a server without them (GitHub
    Enterprise Server before 3.9) is only known at deploy, where RunnerScaleSet reports it."""
    raw = p.get("scaling")
    scale_keys = [k for k in ("minRunners", "maxRunners", "scaleSetName") if p.get(k) is not None]
    if raw is None or raw == "fixed":
        for key in scale_keys:
            c.add(f"{pp}.{key}", "only applies to a pool with scaling: scaleSet",
                  "add scaling: scaleSet to follow demand, or remove it (a fixed pool keeps `slots` runners)")
        return "fixed", None, None, None
    if raw not in SCALINGS:
        c.add(f"{pp}.scaling", f"expected fixed or scaleSet, got {_show(raw)}",
              "fixed keeps `slots` runners online; scaleSet follows demand between minRunners and maxRunners")
        return "fixed", None, None, None
    if p.get("slots") is not None:
        c.add(f"{pp}.slots", "is given together with scaling: scaleSet",
              "remove slots: a scale-set pool's capacity per host is maxRunners")
    if p.get("maxRunners") is None:
        c.add(f"{pp}.maxRunners", "is required with scaling: scaleSet",
              f"set the most runners at once per host (1-{MAX_RUNNERS}), e.g. maxRunners: 4")
    max_runners = c.int_in(p.get("maxRunners"), f"{pp}.maxRunners", 1, MAX_RUNNERS, 1)
    min_runners = c.int_in(p.get("minRunners"), f"{pp}.minRunners", 0, MAX_RUNNERS, 0)
    if min_runners > max_runners and p.get("maxRunners") is not None:
        c.add(f"{pp}.minRunners", f"{min_runners} is more than maxRunners ({max_runners})",
              "lower minRunners or raise maxRunners")
        min_runners = max_runners
    name = p.get("scaleSetName")
    if name is not None:
        try:
            name = check_scale_set_name(name)
        except SpecError as exc:
            c.add(f"{pp}.scaleSetName", exc.reason)
            name = None
        if name is not None and host_count > 1:
            c.add(f"{pp}.scaleSetName", f"names one scale set, but the pool runs on {host_count} hosts and each"
                  " host has its own scale set", "remove scaleSetName: each host's is named <stack>-<pool>-<host>")
            name = None
    return "scale_set", min_runners, max_runners, name


# ---- per-host caches (issue 11) -----------------------------------------------------------------

def _cache_size(c: _Checker, value: Any, path: str, default: int) -> int:
    if value is None:
        return default
    try:
        size = parse_size(value, path)
    except SpecError:
        c.add(path, f"is not a size (got {_show(value)})", "use a size like 10g or 512m (at least 64m)")
        return default
    if size < MIN_CACHE_SIZE:
        c.add(path, f"{_show(value)} is too small for a cache", "use at least 64m")
        return default
    return size


def _cache_kind(c: _Checker, value: Any, path: str, keys: set[str]) -> tuple[bool, dict[str, Any]]:
    """``true`` / ``false`` / ``{settings}`` -> (on, settings)."""
    if value is None or isinstance(value, bool):
        return bool(value), {}
    settings = c.mapping(value, path, "use true, false or {size: 10g}")
    if settings is None:
        return False, {}
    c.unknown_keys(settings, keys, path)
    return True, settings


def _parse_host_cache(c: _Checker, raw: Any, path: str) -> HostCacheConfig | None:
    """``ghr:hosts[i].cache``: ``true`` (an apt cache, defaults) or ``{apt, registry, toolCache, metricsPort,
    keepVolumes}``, where ``apt`` and ``registry`` are true/false or ``{size[, upstream]}``."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return HostCacheConfig()
    cfg = c.mapping(raw, path, "use true or {apt: {size: 10g}, registry: {size: 20g}, toolCache: true}")
    if cfg is None:
        return None
    c.unknown_keys(cfg, HOST_CACHE_KEYS, path)
    apt, apt_cfg = _cache_kind(c, cfg.get("apt", True), f"{path}.apt", APT_CACHE_KEYS)
    registry, reg_cfg = _cache_kind(c, cfg.get("registry", False), f"{path}.registry", REGISTRY_CACHE_KEYS)
    tool_cache = cfg.get("toolCache", False)
    if not isinstance(tool_cache, bool):
        c.add(f"{path}.toolCache", f"expected true or false, got {_show(tool_cache)}")
        tool_cache = False
    keep = cfg.get("keepVolumes", True)
    if not isinstance(keep, bool):
        c.add(f"{path}.keepVolumes", f"expected true or false, got {_show(keep)}",
              "true: pulumi destroy keeps the cache volumes; false: it deletes them")
        keep = True
    upstream = reg_cfg.get("upstream", DEFAULT_REGISTRY_UPSTREAM)
    if not isinstance(upstream, str) or not re.match(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$", upstream):
        c.add(f"{path}.registry.upstream", f"expected the upstream registry's URL, got {_show(upstream)}",
              f"e.g. {DEFAULT_REGISTRY_UPSTREAM} (no path, no credentials: the mirror holds none)")
        upstream = DEFAULT_REGISTRY_UPSTREAM
    if not (apt or registry or tool_cache):
        c.add(path, "turns every cache off", "remove cache, or turn on apt, registry or toolCache")
    host_port: int | None = DEFAULT_REGISTRY_HOST_PORT
    if reg_cfg.get("hostPort") is False:
        host_port = None
    elif reg_cfg.get("hostPort") is not None:
        host_port = c.int_in(reg_cfg.get("hostPort"), f"{path}.registry.hostPort", 1024, 65535,
                             DEFAULT_REGISTRY_HOST_PORT)
    metrics_port = c.int_in(cfg.get("metricsPort"), f"{path}.metricsPort", 1024, 65535, DEFAULT_CACHE_METRICS_PORT)
    if registry and host_port is not None and host_port == metrics_port:
        c.add(f"{path}.registry.hostPort", f"{host_port} is also the cache's metricsPort",
              f"use another port (default {DEFAULT_REGISTRY_HOST_PORT}), or false to keep the mirror off the host")
    return HostCacheConfig(
        apt=apt, apt_size=_cache_size(c, apt_cfg.get("size"), f"{path}.apt.size", DEFAULT_APT_CACHE_SIZE),
        registry=registry,
        registry_size=_cache_size(c, reg_cfg.get("size"), f"{path}.registry.size", DEFAULT_REGISTRY_CACHE_SIZE),
        registry_upstream=upstream.rstrip("/"), registry_host_port=host_port, tool_cache=tool_cache,
        metrics_port=metrics_port, keep_volumes=keep)


def _parse_pool_cache(c: _Checker, raw: Any, path: str) -> frozenset[str]:
    """``ghr:pools[i].cache``: ``true`` (every cache its hosts have) or ``{apt, registry, toolCache}`` booleans."""
    if raw is None or raw is False:
        return frozenset()
    if raw is True:
        return frozenset({"*"})
    cfg = c.mapping(raw, path, "use true, or pick kinds: {apt: true, registry: true, toolCache: true}")
    if cfg is None:
        return frozenset()
    c.unknown_keys(cfg, POOL_CACHE_KINDS, path)
    kinds = set()
    for key in sorted(POOL_CACHE_KINDS):
        value = cfg.get(key, False)
        if not isinstance(value, bool):
            c.add(f"{path}.{key}", f"expected true or false, got {_show(value)}")
        elif value:
            kinds.add(key)
    return frozenset(kinds)


def _check_caches(c: _Checker, hosts: Sequence[HostConfig], pools: Sequence[PoolConfig],
                  index: Mapping[str, int]) -> None:
    """A pool's cache kinds exist on each of its hosts; a host's cache metrics port is no pool's metrics port."""
    by_name = {h.name: (i, h) for i, h in enumerate(hosts)}
    for pool in pools:
        pp = f"{NAMESPACE}:pools[{index.get(pool.name, 0)}].cache"
        for host in pool.hosts:
            if host not in by_name:
                continue
            hi, h = by_name[host]
            if pool.cache and h.cache is None:
                c.add(pp, f"pool {pool.name!r} uses a cache, but host {host!r} has none",
                      f"add cache: {{apt: true}} to ghr:hosts[{hi}] (each host serves only its own pools), or"
                      " remove the pool's cache")
            elif h.cache is not None:
                missing = sorted(k for k in pool.cache if k != "*" and k not in h.cache.kinds())
                if missing:
                    c.add(pp, f"pool {pool.name!r} uses {', '.join(missing)}, which host {host!r} does not cache",
                          f"turn {', '.join(missing)} on in ghr:hosts[{hi}].cache, or off in the pool")
            if h.cache is not None and pool.metrics_port == h.cache.metrics_port:
                c.add(f"{NAMESPACE}:hosts[{hi}].cache.metricsPort",
                      f"{h.cache.metrics_port} is also pool {pool.name!r}'s metricsPort on host {host!r}",
                      "give the host's cache exporter another metricsPort (default 9180)")
            if h.cache is not None and h.cache.host_mirror and pool.metrics_port == h.cache.registry_host_port:
                c.add(f"{NAMESPACE}:hosts[{hi}].cache.registry.hostPort",
                      f"{h.cache.registry_host_port} is also pool {pool.name!r}'s metricsPort on host {host!r}",
                      f"give the registry cache another hostPort (default {DEFAULT_REGISTRY_HOST_PORT})")


def pool_cache_kinds(pool: PoolConfig, host: HostConfig) -> set[str]:
    """The cache kinds ``pool`` uses on ``host`` (``cache: true`` means every kind the host has)."""
    if host.cache is None or not pool.cache:
        return set()
    return set(host.cache.kinds()) if "*" in pool.cache else set(pool.cache) & host.cache.kinds()


def _add_cache(document: dict[str, Any], stack: str, pool: PoolConfig, host_cache: HostCacheConfig | None) -> None:
    """Point a pool's spec at its host's caches: the cache network (as the runners' network mode, so a dind
    sidecar joins it too), apt's proxy, the registry mirror (also a dind engine's mirror, plain http, so an
    insecure registry of that engine) and the tool-cache volume. Only this host's: never another host's."""
    if host_cache is None or not pool.cache:
        return
    kinds = set(host_cache.kinds()) if "*" in pool.cache else set(pool.cache) & host_cache.kinds()
    if not kinds:
        return
    names = CacheNames(stack)
    container = dict(document.get("container") or {})
    if container.get("network_mode", "bridge") == "bridge":
        container["network_mode"] = names.network
    cache: dict[str, Any] = {"network": names.network}
    if "apt" in kinds:
        cache["apt_proxy"] = names.apt_proxy
    if "registry" in kinds:
        cache["registry_mirror"] = names.registry_mirror
        if document.get("docker") == "dind":
            dind = dict(document.get("dind") or {})
            dind["registry_mirrors"] = [names.registry_mirror, *[m for m in dind.get("registry_mirrors") or []
                                                                 if m != names.registry_mirror]]
            host_port = names.registry_mirror.removeprefix("http://")
            dind["insecure_registries"] = [*[r for r in dind.get("insecure_registries") or [] if r != host_port],
                                           host_port]
            document["dind"] = dind
    if "toolCache" in kinds:
        volumes = list(container.get("volumes") or [])
        if not any(isinstance(v, Mapping) and v.get("target") == TOOL_CACHE_PATH for v in volumes):
            # per slot: the runner in slot N mounts <source>-N, so no two jobs write one tool cache at once
            volumes.append({"type": "cache", "source": names.volume("tools"), "target": TOOL_CACHE_PATH,
                            "per_slot": True})
        container["volumes"] = volumes
        env = dict(container.get("env") or {})
        env.setdefault("RUNNER_TOOL_CACHE", TOOL_CACHE_PATH)
        env.setdefault("AGENT_TOOLSDIRECTORY", TOOL_CACHE_PATH)
        container["env"] = env
    document["container"] = container
    document["cache"] = cache


# ---- the pool spec -----------------------------------------------------------------------------

def _spec_document(stack: str, github: GitHubConfig, pool: PoolConfig, host: str,
                   socket_path: str = "/var/run/docker.sock") -> dict[str, Any]:
    """The pool spec's JSON form (design.md, "Pool spec") as configured, without the image (nor the sidecar's).
    ``socket_path`` is the host's Docker socket (``ghr:hosts[i].socketPath``), for docker: host."""
    scaling: dict[str, Any] = {}
    if pool.scale_set:
        scaling = {"scaling": "scale_set", "min_runners": pool.min_runners, "max_runners": pool.max_runners}
        if pool.scale_set_name is not None:
            scaling["scale_set_name"] = pool.scale_set_name
    if pool.docker == "dind":
        scaling.update(docker="dind", dind=dict(pool.dind))
    elif pool.docker == "host":
        scaling.update(docker="host", docker_host_unsafe=pool.docker_unsafe_host, docker_host_socket=socket_path)
    return {
        "pool": pool.name,
        "stack": stack,
        "host": host,
        "scope_url": github.scope_url,
        "api_url": github.api_url,
        "name_prefix": pool.name_prefix(stack, host),
        "labels": list(pool.labels),
        "runner_group": pool.runner_group,
        "slots": pool.slots,
        "container": dict(pool.container),
        "drain_timeout": pool.drain_timeout,
        "metrics_port": pool.metrics_port,
        **scaling,
    }


def _build_specs(c: _Checker, stack: str, github: GitHubConfig, hosts: Sequence[HostConfig],
                 pools: Sequence[PoolConfig], index: Mapping[str, int]) -> dict[tuple[str, str], PoolSpec]:
    """Each pool's spec on each of its hosts, validated by the manager's own ``load_spec``;
    a refusal is reported under the config key it comes from (``ghr:pools[0].container.memory``)."""
    specs: dict[tuple[str, str], PoolSpec] = {}
    defined = {h.name for h in hosts}
    for i, pool in enumerate(pools):
        for host in pool.hosts:
            if host not in defined:
                continue  # reported at ghr:pools[i].hosts
            try:
                socket_path = next(h.socket_path for h in hosts if h.name == host)
                document = _spec_document(stack, github, pool, host, socket_path)
                _add_cache(document, stack, pool, next(h.cache for h in hosts if h.name == host))
                specs[(pool.name, host)] = load_spec(document, require_image=False)
            except SpecError as exc:
                key = "maxRunners" if pool.scale_set and exc.field == "slots" else _spec_path_to_config(exc.field)
                key = {"docker_host_unsafe": "dockerUnsafeHost"}.get(exc.field, key)
                path = f"{NAMESPACE}:pools[{index.get(pool.name, i)}].{key}"
                if exc.field == "docker_host_socket":  # docker: host mounts the host's own socketPath
                    path = f"{NAMESPACE}:hosts[{[h.name for h in hosts].index(host)}].socketPath"
                reason, fix = exc.reason, ""
                if exc.field == "scale_set_name" and pool.scale_set_name is None:
                    prefix = pool.name_prefix(stack, host)
                    reason = (f"the scale set on host {host!r} would be named {prefix!r} (<stack>-<pool>-<host>),"
                              f" {len(prefix)} characters; GitHub takes at most {MAX_SCALE_SET_NAME_LENGTH}")
                    fix = "set scaleSetName (one host), or shorten the pool, host or stack name"
                if not any(p.path == path and p.message == reason for p in c.problems):
                    c.add(path, reason, fix)  # once, not once per host
    return specs


def pool_spec(fleet: FleetConfig, pool: PoolConfig, host: str, image: str) -> dict[str, Any]:
    """The JSON document the manager of ``pool`` on ``host`` reads, with ``image`` as its runner image."""
    return fleet.spec(pool.name, host).with_image(image).dump()


# ---- entry point -------------------------------------------------------------------------------

def parse_config(raw: Mapping[str, Any], stack: str, secret_keys: Sequence[str] = ()) -> FleetConfig:
    """Validate the ``ghr:*`` configuration (keys without the namespace) and return it typed.

    ``raw`` maps ``github``, ``hosts``, ``pools``, ... to their parsed values; ``secret_keys``
    lists the fully-qualified keys Pulumi holds as secrets (``ghr:github``...).
    Raises :class:`ConfigError` listing every problem.
    """
    c = _Checker()
    secrets = set(secret_keys)
    raw = dict(raw)
    for key in raw:
        if key not in TOP_KEYS:
            close = _close(key, TOP_KEYS)
            c.add(f"{NAMESPACE}:{key}", "is not a known setting",
                  f"did you mean {NAMESPACE}:{close[0]}?" if close else f"known keys: {', '.join(sorted(TOP_KEYS))}")
    github = _parse_github(c, raw.get("github"), secrets)
    hosts = _parse_hosts(c, raw.get("hosts"), secrets)
    pools = _parse_pools(c, raw.get("pools"), hosts, github, host_names_ok=bool(hosts))
    check = raw.get("runnerVersionCheck", True)
    if not isinstance(check, bool):
        c.add(f"{NAMESPACE}:runnerVersionCheck", f"expected true or false, got {_show(check)}")
        check = True
    mnm = raw.get("managerNetworkMode", "host")
    if mnm not in ("host", "bridge"):
        c.add(f"{NAMESPACE}:managerNetworkMode", f"expected host or bridge, got {_show(mnm)}")
        mnm = "host"
    if not _NAME_OK.match(stack or ""):
        c.add("stack", f"stack name {stack!r} cannot be used in container and runner names",
              "use letters, digits, '.', '_' or '-'")
    # With the github section invalid (reported above), the pools' specs are still checked.
    placeholder = GitHubConfig(scope_url="https://github.com/placeholder", api_url=None, auth="pat")
    fleet_stack = stack if _NAME_OK.match(stack or "") else "stack"
    index = {str(p.get("name")): i for i, p in enumerate(raw.get("pools") or []) if isinstance(p, Mapping)}
    _check_caches(c, hosts, pools, index)
    specs = _build_specs(c, fleet_stack, github or placeholder, hosts, pools, index)
    if c.problems:
        raise ConfigError(c.problems)
    assert github is not None  # a missing github section is a problem
    return FleetConfig(stack=fleet_stack, github=github, hosts=tuple(hosts), pools=tuple(pools),
                       runner_version_check=check, manager_network_mode=mnm, specs=specs)


__all__ = [
    "CacheNames", "ConfigError", "FleetConfig", "GitHubConfig", "HostCacheConfig", "HostConfig", "ImageConfig",
    "PoolConfig", "Problem", "parse_config", "pool_cache_kinds", "pool_spec",
]
