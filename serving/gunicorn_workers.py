"""gunicorn workers and logger that speak the service's JSON.

The workers answer the requests gunicorn rejects itself in the JSON error shape;
the logger writes gunicorn's own log lines as JSON.

gunicorn rejects some requests before Flask sees them (a malformed request
line or header, a URL or header block over its limits) and answers with an HTML
page. These workers answer those with the body from `serving.errors.error_body`.

The gunicorn master imports this module to find the worker class, so it must
stay light: gunicorn and the standard library only, no onnxruntime, no app.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from http import HTTPStatus

from gunicorn import glogging, util
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from serving.errors import error_body
from serving.logs import JsonFormatter

# Same header as serving.observability.REQUEST_ID_HEADER (not imported: that
# module pulls in Flask), so these responses carry an id like all others.
REQUEST_ID_HEADER = "X-Request-ID"
# gunicorn's diagnosis can quote the whole request line (up to 4094 bytes);
# a short prefix is enough to see what was wrong.
MAX_REASON_CHARS = 200

# Code and message for each status gunicorn answers itself, see
# Worker.handle_error in gunicorn/workers/base.py. 500 matches the app's code.
GUNICORN_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "malformed HTTP request"),
    403: ("forbidden", "request forbidden"),
    414: ("uri_too_long", "request line is too long"),
    417: ("expectation_failed", "the Expect header cannot be met"),
    431: (
        "request_header_fields_too_large",
        "request headers are too large or too many",
    ),
    500: ("internal_error", "internal server error"),
    501: ("not_implemented", "not implemented"),
}


def describe_status(status: int, reason: str) -> tuple[str, str]:
    """Return the (code, message) for a status gunicorn answers itself."""
    if status in GUNICORN_ERRORS:
        return GUNICORN_ERRORS[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = reason
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_"), phrase.lower()


def render_json_error(status: int, reason: str, mesg: str) -> bytes:
    """Render a complete HTTP/1.1 error response with the JSON error body."""
    code, message = describe_status(status, reason)
    details = {"reason": mesg[:MAX_REASON_CHARS]} if mesg else None
    # ensure_ascii keeps the body ASCII, so its length in bytes is len(body).
    body = json.dumps(error_body(code, message, details), separators=(",", ":"))
    if status != 400 and reason == "Bad Request":
        # gunicorn passes this reason with some other statuses (e.g. 501 for an
        # unsupported Transfer-Encoding); the status line must agree.
        reason = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{REQUEST_ID_HEADER}: {uuid.uuid4().hex}\r\n"
        "\r\n"
    )
    return (head + body).encode("ascii")


def write_json_error(
    sock: socket.socket, status_int: int, reason: str, mesg: str
) -> None:
    """Write gunicorn's own error response as JSON (util.write_error's signature)."""
    util.write_nonblock(sock, render_json_error(status_int, reason, mesg))


class JsonErrorsMixin:
    """Make a gunicorn worker render its own error responses as JSON."""

    def init_process(self) -> None:
        """Install the JSON error writer, then run the worker."""
        # Worker.handle_error chooses the status, reason and message, logs the
        # bad request, and only then renders it with util.write_error, looked up
        # at call time. Swapping that one function keeps gunicorn's rules and
        # logging and replaces just the HTML; overriding handle_error would mean
        # copying its ~100 lines. This runs after the fork, so only the worker
        # process changes, never the master; the function is stateless, so the
        # gthread pool's threads can share it.
        util.write_error = write_json_error
        super().init_process()


# gunicorn silently swaps any worker_class ending in "SyncWorker" for its own
# ThreadWorker when threads > 1, so neither name ends that way.
class SyncWorkerWithJsonErrors(JsonErrorsMixin, SyncWorker):
    """gunicorn's sync worker, with JSON error responses."""


class ThreadWorkerWithJsonErrors(JsonErrorsMixin, ThreadWorker):
    """gunicorn's gthread worker, with JSON error responses."""


class GunicornJsonLogger(glogging.Logger):
    """gunicorn's own log (start-up, workers, bad requests) as JSON lines.

    Its access log stays off (accesslog is None): the app writes one richer
    line per request, with the request id and route.
    """

    def setup(self, cfg) -> None:
        """Set gunicorn's handlers up as usual, then make them write JSON."""
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonFormatter())
