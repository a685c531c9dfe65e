"""Run the app on granian: native HTTP/1.1 keep-alive, HTTP parsed in Rust.

Workers are forked from the launcher, which has already imported the libraries
(Flask, numpy, onnxruntime) to check the model: the workers share those pages,
so each costs less memory than a spawned one and starts in about a third of the
time (README, Benchmark). Each then builds the app
(`serving.app:create_worker_app`) and its own onnxruntime session; the
launcher's check session is gone by then, and with one onnxruntime thread per
session no library thread exists at the fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from granian.constants import HTTPModes, Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server import Server

from serving.config import ENV_NAMES, ServeConfig
from serving.metrics_files import remove_metric_files
from serving.metrics_room import DISABLED_VARIABLE, lack_of_room
from serving.rollout import reload_model

APP_FACTORY = "serving.app:create_worker_app"
METRICS_DIR_VARIABLE = ENV_NAMES["metrics_dir"]  # read by prometheus-client
M_ARENA_MAX = -8  # glibc's <malloc.h>


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for this process and the workers it forks.

    glibc gives threads their own arenas, up to 8 per core, and an arena keeps
    what was freed in it. A worker's request threads then each hold the peak of
    the requests they ran: after 1024-row batches, about 13 MiB more per worker
    (README, Benchmark). Returns whether the cap was set: 0 keeps glibc's
    default, and a libc without mallopt (musl, macOS) is left alone.
    """
    if arenas == 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_ARENA_MAX, arenas) == 1


class MetricsDirectoryError(OSError):
    """No directory the workers can share their metrics in."""


@contextmanager
def metrics_directory(configured: str) -> Iterator[str]:
    """Yield an empty directory for the workers' metric files.

    The metric files are removed at exit, and with them a fresh temporary
    directory; a configured one stays. Only prometheus-client's own files are
    touched: a shared directory may hold others.
    """
    try:
        path = configured or tempfile.mkdtemp(prefix="digits-metrics-")
        os.makedirs(path, exist_ok=True)
        remove_metric_files(path)
    except OSError as error:
        where = repr(configured) if configured else "a temporary directory"
        raise MetricsDirectoryError(
            f"cannot use {where} for the workers' metrics: "
            f"{error.strerror or error}; set {METRICS_DIR_VARIABLE} to a writable "
            "directory, or give the process a writable TMPDIR (a tmpfs at /tmp "
            "on a read-only root filesystem)"
        ) from None
    try:
        yield path
    finally:
        if not configured:
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # gone or read-only: nothing to do
                remove_metric_files(path)


class PortInUse(OSError):
    """Another process already listens on HOST:PORT."""


def ensure_port_is_free(host: str, port: int) -> None:
    """Refuse to start on a port another process listens on.

    granian listens with SO_REUSEPORT, so a second server on a busy port would
    start without error and quietly take a share of the first one's traffic
    (an old instance with an old model, say). A plain bind, which
    SO_REUSEPORT listeners refuse, finds that out first.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    )[0]
    with socket.socket(family, kind, proto) as probe:
        # Connections of an earlier run in TIME_WAIT must not count as busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise PortInUse(
                f"cannot listen on {host}:{port}: {error.strerror.lower()}"
            ) from None


def build_server(config: ServeConfig, target: str = APP_FACTORY) -> Server:
    """granian's server with the service's settings; `target` is an app factory."""
    # Imported here, not at the top: prometheus-client picks its multiprocess
    # mode when first imported, so only after serve() has set the directory.
    from serving.telemetry import server_logging_config

    server = Server(
        target,
        factory=True,
        address=config.host,
        port=config.port,
        interface=Interfaces.WSGI,
        # HTTP/1.1 only: what every client and proxy in front of this speaks,
        # and no HTTP/2 preface sniffing on each connection.
        http=HTTPModes.http1,
        websockets=False,
        workers=config.worker_count,
        # Connections, idle or still sending headers, are held in Rust and cost
        # no thread; `backpressure` bounds how many each worker keeps open.
        backpressure=config.connections,
        # Requests are taken in by these threads; one waiting for a slow upload
        # holds one, so there are more threads than cores (granian warns). The
        # HTTP layer lets SERVE_APP_CONCURRENCY of them run the app at once.
        blocking_threads=config.threads,
        http1_settings=HTTP1Settings(
            header_read_timeout=config.timeout * 1000, keep_alive=True
        ),
        log_level=LogLevels(config.log_level),
        log_dictconfig=server_logging_config(),
        # The app writes its own JSON access line, with the request id.
        log_access=False,
        # Without a kill timeout, a worker that misses SIGTERM (it may still be
        # starting) keeps the whole server alive; with it, shutdown is bounded.
        workers_kill_timeout=config.graceful_timeout,
        respawn_failed_workers=True,
        # SIGHUP starts each new worker this long before stopping the old one.
        # A forked worker is ready in about 0.3 s; granian's default of 3.5 s
        # per worker also delays a SIGTERM that arrives during a reload.
        respawn_interval=1.0,
    )
    # SIGHUP: granian calls this in the launcher, then forks new workers from
    # it, which open whatever model it holds: the new one if it checked out.
    server.on_reload(lambda: reload_model(config.model_path))
    return server


def serve(config: ServeConfig, start_line: str = "", target: str = APP_FACTORY) -> None:
    """Serve until SIGTERM or SIGINT; SIGHUP replaces the workers one by one.

    `start_line` is logged (as JSON, like every line) once the server is set up.
    """
    with metrics_directory(config.metrics_dir) as metrics_dir:
        # Before anything imports prometheus-client: it reads this at import,
        # and the forked workers inherit what the launcher imported. With no
        # room for its files, mapping one would kill the process (SIGBUS):
        # serve without metrics then, and /metrics says why.
        no_room = lack_of_room(metrics_dir)
        if no_room:
            os.environ.pop(METRICS_DIR_VARIABLE, None)
            os.environ[DISABLED_VARIABLE] = no_room
        else:
            os.environ[METRICS_DIR_VARIABLE] = metrics_dir
        from serving.telemetry import configure_logging

        configure_logging(config.log_level)
        if no_room:
            logging.getLogger("serving.metrics").error(f"metrics disabled: {no_room}")
        if start_line:
            logging.getLogger("serving.main").info(start_line)
        # Before the workers and their threads exist.
        limit_malloc_arenas(config.malloc_arenas)
        # Explicit: Python 3.14 changes the default, and granian follows it.
        multiprocessing.set_start_method("fork", force=True)
        build_server(config, target).serve()
