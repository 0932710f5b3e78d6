"""Docker host connections: a spec (URL, ssh options, TLS material) turned into a client.

The spec travels through Pulumi state as three properties of every docker resource:
``docker_host`` (``unix://...``, ``ssh://user@host[:port]``, ``tcp://host:port``),
``ssh_options`` (list of ``Key=Value`` strings passed to ``ssh -o``) and ``tls``
(``{"ca": PEM, "cert": PEM, "key": PEM}``, a secret). A client is built inside each
provider method with :func:`docker_client` and closed when the method returns; nothing is
kept on the provider object.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import docker
from docker.transport.sshconn import (
    SSHConnection,
    SSHConnectionPool,
    SSHHTTPAdapter,
    SSHSocket,
)

API_VERSION = "1.41"
DEFAULT_TIMEOUT = 120
_SSH_DEFAULT_OPTIONS = ("BatchMode=yes", "ConnectTimeout=10", "ServerAliveInterval=15")


class HostSpecError(ValueError):
    """A host connection spec is malformed (raised before any connection is made)."""


def default_host_url() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def validate_host_spec(url: object, ssh_options: Sequence[str] | None, tls: Mapping[str, Any] | None) -> list[str]:
    """Return problems with a host spec (empty when fine). Pure: no I/O."""
    problems: list[str] = []
    if not isinstance(url, str) or not url:
        return ["the Docker host URL is empty; use unix:///var/run/docker.sock, ssh://user@host or tcp://host:2376"]
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "unix":
        if not parsed.path:
            problems.append(f"{url!r} has no socket path; use unix:///var/run/docker.sock")
    elif parsed.scheme == "ssh":
        if not parsed.hostname:
            problems.append(f"{url!r} has no host; use ssh://user@host[:port]")
        try:
            _ = parsed.port  # raises on a port that is not a number
        except ValueError:
            problems.append(f"{url!r} has an invalid port")
    elif parsed.scheme == "tcp":
        if not parsed.hostname:
            problems.append(f"{url!r} has no host; use tcp://host:2376")
        try:
            if parsed.port is None:
                problems.append(f"{url!r} has no port; use tcp://host:2376")
        except ValueError:
            problems.append(f"{url!r} has an invalid port")
    else:
        problems.append(f"{url!r} has an unsupported scheme; use unix://, ssh:// or tcp://")
    if ssh_options:
        if parsed.scheme != "ssh":
            problems.append("ssh options are only used with ssh:// hosts")
        for opt in ssh_options:
            if not isinstance(opt, str) or "=" not in opt or opt.startswith("-"):
                problems.append(f"ssh option {opt!r} is not of the form Key=Value (e.g. StrictHostKeyChecking=no)")
    if tls:
        if parsed.scheme != "tcp":
            problems.append("TLS material is only used with tcp:// hosts")
        missing = [k for k in ("ca", "cert", "key") if not tls.get(k)]
        if missing:
            problems.append(f"TLS material is missing {', '.join(missing)} (all of ca, cert and key are needed)")
    return problems


# ---- ssh:// with options: shell out to ssh with our -o options -------------------------

class _OptSSHSocket(SSHSocket):
    def __init__(self, host: str, options: Sequence[str]) -> None:
        super().__init__(host)
        self._options = list(options)

    def connect(self, *_args: Any, **_kwargs: Any) -> None:
        args = ["ssh"]
        for opt in self._options:
            args += ["-o", opt]
        if self.user:
            args += ["-l", self.user]
        if self.port:
            args += ["-p", str(self.port)]
        args += ["--", self.host, "docker system dial-stdio"]
        env = dict(os.environ)
        env.pop("LD_LIBRARY_PATH", None)
        env.pop("SSL_CERT_FILE", None)
        self.proc = subprocess.Popen(  # noqa: S603
            args, env=env, stdout=subprocess.PIPE, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


class _OptSSHConnection(SSHConnection):
    def __init__(self, timeout: float, host: str, options: Sequence[str]) -> None:
        super().__init__(ssh_transport=None, timeout=math.ceil(timeout), host=host)
        self._options = options

    def connect(self) -> None:
        sock = _OptSSHSocket(self.ssh_host or "", self._options)
        sock.settimeout(self.timeout)
        sock.connect()
        self.sock = sock


class _OptSSHPool(SSHConnectionPool):
    def __init__(self, timeout: float, maxsize: int, host: str, options: Sequence[str]) -> None:
        super().__init__(ssh_client=None, timeout=math.ceil(timeout), maxsize=maxsize, host=host)
        self._timeout = timeout
        self._options = options

    # urllib3's stubs want its connection protocol; docker's SSHConnection (an http.client one) serves here.
    def _new_conn(self) -> _OptSSHConnection:  # type: ignore[override]
        return _OptSSHConnection(self._timeout, self.ssh_host or "", self._options)


class _OptSSHAdapter(SSHHTTPAdapter):
    def __init__(self, base_url: str, options: Sequence[str], timeout: float) -> None:
        super().__init__(base_url, timeout=math.ceil(timeout), shell_out=True)
        self._options = list(options)

    def get_connection(self, url: Any, proxies: Any = None) -> _OptSSHPool:  # noqa: ARG002
        return _OptSSHPool(self.timeout, self.max_pool_size, self.ssh_host, self._options)

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None, cert: Any = None) -> _OptSSHPool:  # noqa: ARG002
        return self.get_connection(request.url, proxies)


def _ssh_options(options: Sequence[str] | None) -> list[str]:
    given = {o.split("=", 1)[0].lower() for o in options or ()}
    defaults = [o for o in _SSH_DEFAULT_OPTIONS if o.split("=", 1)[0].lower() not in given]
    return defaults + list(options or ())


@contextlib.contextmanager
def docker_client(
    url: str | None = None,
    ssh_options: Sequence[str] | None = None,
    tls: Mapping[str, Any] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[docker.DockerClient]:
    """Yield a DockerClient for one host spec; closes it (and removes TLS temp files) on exit."""
    url = url or default_host_url()
    problems = validate_host_spec(url, ssh_options, tls)
    if problems:
        raise HostSpecError("; ".join(problems))
    scheme = urllib.parse.urlparse(url).scheme
    tmpdir: str | None = None
    client: docker.DockerClient | None = None
    try:
        if scheme == "ssh":
            client = docker.DockerClient(base_url=url, version=API_VERSION, timeout=timeout, use_ssh_client=True)
            adapter = _OptSSHAdapter(url, _ssh_options(ssh_options), timeout)
            vars(client.api)["_custom_adapter"] = adapter  # docker's own slot for an ssh adapter (not in its stubs)
            client.api.mount("http+docker://ssh", adapter)
        elif scheme == "tcp" and tls:
            tmpdir = tempfile.mkdtemp(prefix="ghr-tls-")
            paths = {}
            for key in ("ca", "cert", "key"):
                path = os.path.join(tmpdir, f"{key}.pem")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(str(tls[key]))
                paths[key] = path
            tls_config = docker.tls.TLSConfig(
                client_cert=(paths["cert"], paths["key"]), ca_cert=paths["ca"], verify=True
            )
            client = docker.DockerClient(base_url=url, tls=tls_config, version=API_VERSION, timeout=timeout)
            # requests lets REQUESTS_CA_BUNDLE override the session's CA, which would verify the
            # engine against the system store instead of the host's own CA.
            client.api.trust_env = False
        else:
            client = docker.DockerClient(base_url=url, version=API_VERSION, timeout=timeout)
        yield client
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def host_props(host: Any) -> dict[str, Any]:
    """Normalise a host argument (a URL string, a HostConnection dict or None) into resource props."""
    if host is None:
        return {"docker_host": default_host_url(), "ssh_options": [], "tls": None}
    if isinstance(host, str):
        return {"docker_host": host, "ssh_options": [], "tls": None}
    url = host.get("url") or default_host_url()
    tls = host.get("tls")
    if tls is None and any(host.get(k) is not None for k in ("tls_ca", "tls_cert", "tls_key")):
        tls = {"ca": host.get("tls_ca"), "cert": host.get("tls_cert"), "key": host.get("tls_key")}
    return {"docker_host": url, "ssh_options": list(host.get("ssh_options") or []), "tls": tls}


@contextlib.contextmanager
def client_from_props(props: Mapping[str, Any], *, timeout: float = DEFAULT_TIMEOUT) -> Iterator[docker.DockerClient]:
    with docker_client(props.get("docker_host"), props.get("ssh_options") or None, props.get("tls") or None,
                       timeout=timeout) as c:
        yield c
