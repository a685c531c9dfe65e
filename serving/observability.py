"""Per-request bookkeeping: request ids, latency, metrics and the access log.

This runs on every request, so it reads Flask's request proxy once per hook,
keeps its state in the WSGI environ, and writes the access line itself.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

import orjson
from flask import Flask, Response, has_request_context, request

from serving.logs import utc_timestamp
from serving.metrics import record_request

REQUEST_ID_HEADER = "X-Request-ID"
# Echo a caller's id only if it is short and plain, so logs and headers stay
# clean; anything else is replaced by a fresh one.
ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ENDPOINT = "unmatched"  # one label for every unknown path
# Metric labels must come from a closed set, or clients could create series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ACCESS_LOGGER = "serving.access"
# Keeps an access line well under PIPE_BUF (4096 bytes), so lines from several
# workers writing to one pipe never interleave.
MAX_LOGGED_PATH_CHARS = 512
STARTED_KEY = "digits.started"
REQUEST_ID_KEY = "digits.request_id"


def new_request_id() -> str:
    """Return 128 random bits as 32 hex digits (a UUID4's entropy, cheaper)."""
    return os.urandom(16).hex()


def current_request_id() -> str:
    """Return the id of the request being handled, or "-" outside one."""
    if not has_request_context():
        return "-"
    return request.environ.get(REQUEST_ID_KEY, "-")


def start_request() -> None:
    """Stamp the request with its id and start time."""
    environ = request.environ
    environ[STARTED_KEY] = time.perf_counter()
    offered = environ.get("HTTP_X_REQUEST_ID", "")
    environ[REQUEST_ID_KEY] = (
        offered if ACCEPTABLE_REQUEST_ID.fullmatch(offered) else new_request_id()
    )


class AccessLog:
    """One JSON line per request on stderr, written directly.

    Not through `logging`: a LogRecord costs more than the prediction itself.
    It still follows the `serving.access` logger's level (SERVE_LOG_LEVEL).
    A failed write drops the line; it never fails the request.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and logging.getLogger(ACCESS_LOGGER).isEnabledFor(
            logging.INFO
        )

    def write(self, entry: dict) -> None:
        """Write `entry` as one line; short lines (< PIPE_BUF) never interleave."""
        line = orjson.dumps(entry) + b"\n"
        try:
            try:
                fd = sys.stderr.fileno()  # looked up per line: stderr may be swapped
            except (AttributeError, OSError, ValueError):  # no real file behind it
                sys.stderr.write(line.decode())
                return
            while line:
                line = line[os.write(fd, line) :]
        except (AttributeError, OSError, ValueError):
            pass  # a full or closed stderr must not turn requests into 500s


def request_path(environ: dict) -> str:
    """Return the request path as text, cut so that a log line stays short."""
    # WSGI hands the path over as latin-1 characters of the raw bytes.
    path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    return path[:MAX_LOGGED_PATH_CHARS]


def finish_request(response: Response, access_log: AccessLog) -> Response:
    """Echo the id, record metrics and log one line for the finished request."""
    environ = request.environ
    rule = request.url_rule
    seconds = time.perf_counter() - environ.get(STARTED_KEY, time.perf_counter())
    endpoint = rule.rule if rule else UNMATCHED_ENDPOINT
    request_id = environ.get(REQUEST_ID_KEY, "-")
    method = environ["REQUEST_METHOD"]
    status = response.status_code
    response.headers[REQUEST_ID_HEADER] = request_id
    known_method = method if method in KNOWN_METHODS else "other"
    record_request(endpoint, known_method, status, seconds)
    if access_log.enabled:
        access_log.write(
            {
                "time": utc_timestamp(time.time()),
                "level": "info",
                "logger": ACCESS_LOGGER,
                "pid": os.getpid(),
                "message": "request",
                "request_id": request_id,
                "method": known_method,
                "route": endpoint,
                "path": request_path(environ),
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
            }
        )
    return response


def install_request_hooks(app: Flask, write_access_log: bool) -> None:
    """Run start_request/finish_request around every request of `app`."""
    access_log = AccessLog(write_access_log)
    app.before_request(start_request)
    app.after_request(lambda response: finish_request(response, access_log))
