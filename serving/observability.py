"""Per-request bookkeeping: request ids, latency, metrics and the access log."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from serving.metrics import record_request

REQUEST_ID_HEADER = "X-Request-ID"
# Echo a caller's id only if it is short and plain, so logs and headers stay
# clean; anything else is replaced by a fresh one.
ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
UNMATCHED_ENDPOINT = "unmatched"  # one label for every unknown path
# Metric labels must come from a closed set, or clients could create series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger("serving.access")


def current_request_id() -> str:
    """Return the id of the request being handled."""
    return g.get("request_id", "-")


def start_request() -> None:
    """Stamp the request with its id and start time."""
    g.started = time.perf_counter()
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = (
        offered if ACCEPTABLE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
    )


def finish_request(response: Response, write_access_log: bool) -> Response:
    """Echo the id, record metrics and log one line for the finished request."""
    seconds = time.perf_counter() - g.get("started", time.perf_counter())
    endpoint = request.url_rule.rule if request.url_rule else UNMATCHED_ENDPOINT
    response.headers[REQUEST_ID_HEADER] = current_request_id()
    method = request.method if request.method in KNOWN_METHODS else "other"
    record_request(endpoint, method, response.status_code, seconds)
    if write_access_log:
        access_log.info(
            "request",
            extra={
                "request_id": current_request_id(),
                "method": request.method,
                "route": endpoint,
                "path": request.path,
                "status": response.status_code,
                "latency_ms": round(seconds * 1000, 3),
            },
        )
    return response


def install_request_hooks(app: Flask, write_access_log: bool) -> None:
    """Run start_request/finish_request around every request of `app`."""
    app.before_request(start_request)
    app.after_request(lambda response: finish_request(response, write_access_log))
