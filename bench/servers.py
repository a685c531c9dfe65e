"""Start a server as a user would, time it until it answers, stop it."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.system import listener_pids, process_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # never anything but loopback
START_TIMEOUT_S = 60  # torch imports take seconds on a busy 2-core machine
# Starts to try when another process turned out to listen on the same port.
PORT_ATTEMPTS = 3
STOP_TIMEOUT_S = 15
POLL_INTERVAL_S = 0.01  # cold start resolution
PROBE_TIMEOUT_S = 2
# Settings a shell may have exported for other work; a run sets its own.
ISOLATED_PREFIXES = ("SERVE_", "HOST", "PORT", "PROMETHEUS_MULTIPROC_DIR")

# A readiness check: given the port, True once the server answers as expected.
Probe = Callable[[int], bool]


class ServerError(RuntimeError):
    """A server exited or never became ready; the message holds its log tail."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def http_status(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """Send one request to 127.0.0.1:`port`; return the status, 0 if unreachable.

    A body goes as JSON unless `headers` say otherwise.
    """
    connection = http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT_S)
    if headers is None:
        headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:  # refused or reset while the server starts
        return 0
    finally:
        connection.close()


def readyz_probe(predict_body: bytes) -> Probe:
    """Ready at the first 200 from GET /readyz (a valid /predict if it is absent)."""

    def probe(port: int) -> bool:
        status = http_status(port, "GET", "/readyz")
        if status == 404:  # a build without /readyz: a real prediction then
            return http_status(port, "POST", "/predict", predict_body) == 200
        return status == 200

    return probe


def predict_probe(predict_body: bytes) -> Probe:
    """Ready at the first 200 from POST /predict: a model loaded and answering."""

    def probe(port: int) -> bool:
        return http_status(port, "POST", "/predict", predict_body) == 200

    return probe


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: `{port}` in the command is filled in at start."""

    name: str
    command: list[str]
    probe: Probe
    env: Mapping[str, str] = field(default_factory=dict)
    # A variable to point at a new empty directory on every start, for a server
    # that needs one but does not make it itself (gunicorn's metrics directory).
    fresh_dir_variable: str | None = None


@dataclass
class RunningServer:
    """A started server and how long it took to become ready."""

    spec: ServerSpec
    process: subprocess.Popen
    port: int
    log_path: Path
    cold_start_s: float

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"


def log_tail(path: Path, lines: int = 20) -> str:
    """Return the last `lines` lines of a server log."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class PortShared(ServerError):
    """Another process listens on the server's port too (SO_REUSEPORT)."""


def start_server(spec: ServerSpec, log_path: Path) -> RunningServer:
    """Start `spec` on a free port; return once its probe passes.

    The cold start is the time from Popen to the first passing probe, so it
    includes the interpreter start, imports, model load and any warm-up. If
    another process (another server binding with SO_REUSEPORT, between our
    choice of port and our bind) listens on the port too, its answers may
    have passed the probe and it would take part of the load: start again on
    another port.
    """
    for _ in range(PORT_ATTEMPTS - 1):
        try:
            return start_once(spec, log_path)
        except PortShared as error:
            print(f"[bench] {error}: starting again", file=sys.stderr, flush=True)
    return start_once(spec, log_path)


def start_once(spec: ServerSpec, log_path: Path) -> RunningServer:
    """Start `spec` once on a free port; return once its probe passes."""
    port = free_port()
    command = [part.format(port=port) for part in spec.command]
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(ISOLATED_PREFIXES)
    }
    env = {**inherited, **spec.env, "PORT": str(port), "HOST": HOST}
    if spec.fresh_dir_variable:
        env[spec.fresh_dir_variable] = tempfile.mkdtemp(dir=log_path.parent)
    with open(log_path, "w") as log:  # the child keeps its own copy of the fd
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = RunningServer(spec, process, port, log_path, cold_start_s=0.0)
    try:
        deadline = started + START_TIMEOUT_S
        while not spec.probe(port):
            if process.poll() is not None:
                raise ServerError(
                    f"{spec.name} exited with {process.returncode}:\n"
                    f"{log_tail(log_path)}"
                )
            if time.perf_counter() > deadline:
                raise ServerError(
                    f"{spec.name} not ready after {START_TIMEOUT_S}s:\n"
                    f"{log_tail(log_path)}"
                )
            time.sleep(POLL_INTERVAL_S)
        server.cold_start_s = time.perf_counter() - started
        foreign = listener_pids(port) - set(process_tree(process.pid))
        if foreign:
            raise PortShared(f"{spec.name}: port {port} also held by {foreign}")
    except BaseException:
        stop_server(server)
        raise
    return server


def stop_server(server: RunningServer) -> None:
    """SIGTERM the server and wait; SIGKILL its whole tree if it hangs."""
    process = server.process
    if process.poll() is not None:
        return
    tree = process_tree(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=STOP_TIMEOUT_S)
