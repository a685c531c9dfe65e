"""Run the project's nginx configuration natively, outside Docker.

deploy/nginx/default.conf (the server in front of the API) is used as Compose
mounts it, with two lines changed and nothing else: `listen 8080` becomes a
local port and the upstream `http://api:8000` (a Docker service name) becomes
a local address or an upstream{} group. nginx looks a variable's host up among
the upstream{} groups before asking its resolver, so the Docker resolver line
stays, unused. The main configuration around it keeps the worker and
connection limits of deploy/nginx/nginx.conf, with its files under a
temporary prefix and nginx in the foreground.

Used by tests/test_nginx.py and the proxy benchmark (bench/proxy.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "default.conf"
NGINX_MAIN_CONF = REPO_ROOT / "deploy" / "nginx" / "nginx.conf"
# The two lines written for Compose, which a native run replaces.
COMPOSE_LISTEN = "listen 8080;"
COMPOSE_UPSTREAM = "set $api_upstream http://api:8000;"
HOST = "127.0.0.1"
START_TIMEOUT_S = 10


class NginxMissing(FileNotFoundError):
    """nginx is not installed."""


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        raise NginxMissing(
            "Debian's nginx is needed: run 'apt-get update && apt-get install -y "
            "nginx' as root (make test does so when it is missing)"
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def deployment_limits() -> str:
    """The worker and connection limits of the main config Compose mounts."""
    text = NGINX_MAIN_CONF.read_text()
    (workers,) = re.findall(r"^worker_processes\s+\d+;$", text, re.MULTILINE)
    (rlimit,) = re.findall(r"^worker_rlimit_nofile\s+\d+;$", text, re.MULTILINE)
    (events,) = re.findall(r"^events \{.*?^\}$", text, re.MULTILINE | re.DOTALL)
    return f"{workers}\n{rlimit}\n{events}\n"


def substitute_once(text: str, old: str, new: str) -> str:
    # Exactly once: if the Compose line changed, fail rather than run a
    # config that still points at a Docker service name.
    if text.count(old) != 1:
        raise ValueError(f"{old!r} must appear once in {NGINX_CONF}")
    return text.replace(old, new)


def server_block(port: int, upstream: str) -> str:
    """deploy/nginx/default.conf with only its listen and its upstream changed."""
    text = NGINX_CONF.read_text()
    text = substitute_once(text, COMPOSE_LISTEN, f"listen {HOST}:{port};")
    return substitute_once(text, COMPOSE_UPSTREAM, f"set $api_upstream {upstream};")


def upstream_group(name: str, ports: list[int]) -> str:
    servers = " ".join(f"server {HOST}:{port};" for port in ports)
    return f"    upstream {name} {{ {servers} }}\n"


def main_config(prefix: Path, replica_groups: dict[str, list[int]]) -> str:
    """The nginx.conf around the server block: foreground, files under prefix."""
    groups = "".join(upstream_group(n, ports) for n, ports in replica_groups.items())
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # Started as root, nginx runs its workers as `nobody`, who could not write
    # spooled request bodies into this root-only temporary directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"daemon off;\n{user}pid {prefix / 'nginx.pid'};\n"
        f"error_log stderr notice;\n{deployment_limits()}"
        f"http {{\n{temp_paths}{groups}    include {prefix / 'server.conf'};\n}}\n"
    )


@dataclass
class NativeNginx:
    port: int
    process: subprocess.Popen
    access_log: Path  # JSON lines, one per request (the config's stdout)
    error_log: Path  # nginx's own text lines


def wait_until_accepting(nginx: NativeNginx) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if nginx.process.poll() is not None:
            raise RuntimeError(f"nginx exited: {nginx.error_log.read_text()[-2000:]}")
        try:
            socket.create_connection((HOST, nginx.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # not listening yet
    raise RuntimeError(f"nginx did not listen within {START_TIMEOUT_S}s")


@contextmanager
def running_nginx(
    directory: Path, upstream: str, replica_groups: dict[str, list[int]] | None = None
) -> Iterator[NativeNginx]:
    """nginx in the foreground with the project's configuration; stopped after."""
    binary = nginx_binary()
    prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir=directory))
    port = free_port()
    (prefix / "server.conf").write_text(server_block(port, upstream))
    (prefix / "nginx.conf").write_text(main_config(prefix, replica_groups or {}))
    access_log, error_log = prefix / "access.log", prefix / "error.log"
    command = [binary, "-p", prefix, "-c", prefix / "nginx.conf", "-e", "stderr"]
    with access_log.open("w") as stdout, error_log.open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    nginx = NativeNginx(port, process, access_log, error_log)
    try:
        wait_until_accepting(nginx)
        yield nginx
    finally:
        process.send_signal(signal.SIGTERM)  # fast shutdown: drops slow clients
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
