"""Per-request bookkeeping: request ids, latency, metrics and the access log.

This runs on every request, so it reads Flask's request proxy once per hook,
keeps its state in the WSGI environ, and writes the access line itself.
"""

from __future__ import annotations

import os
import re
import sys
import time

import orjson
from flask import Flask, Response, has_request_context, request

from serving.metrics import record_request

REQUEST_ID_HEADER = "X-Request-ID"
# Echo a caller's id only if it is short and plain, so logs and headers stay
# clean; anything else is replaced by a fresh one.
ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ENDPOINT = "unmatched"  # one label for every unknown path
# Metric labels must come from a closed set, or clients could create series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
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


def write_access_line(entry: dict) -> None:
    """Write one JSON line to stderr in a single write, so workers never interleave.

    Not through `logging`: a LogRecord costs more than the prediction itself.
    """
    os.write(sys.stderr.fileno(), orjson.dumps(entry) + b"\n")


def finish_request(response: Response, write_access_log: bool) -> Response:
    """Echo the id, record metrics and log one line for the finished request."""
    environ = request.environ
    rule = request.url_rule
    seconds = time.perf_counter() - environ.get(STARTED_KEY, time.perf_counter())
    endpoint = rule.rule if rule else UNMATCHED_ENDPOINT
    request_id = environ.get(REQUEST_ID_KEY, "-")
    method = environ["REQUEST_METHOD"]
    status = response.status_code
    response.headers[REQUEST_ID_HEADER] = request_id
    record_request(
        endpoint, method if method in KNOWN_METHODS else "other", status, seconds
    )
    if write_access_log:
        write_access_line(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "level": "info",
                "logger": "serving.access",
                "pid": os.getpid(),
                "message": "request",
                "request_id": request_id,
                "method": method,
                "route": endpoint,
                "path": environ.get("PATH_INFO", ""),
                "status": status,
                "latency_ms": round(seconds * 1000, 3),
            }
        )
    return response


def install_request_hooks(app: Flask, write_access_log: bool) -> None:
    """Run start_request/finish_request around every request of `app`."""
    app.before_request(start_request)
    app.after_request(lambda response: finish_request(response, write_access_log))
