"""HTTP plumbing: strict JSON in and out, and one error shape for every failure.

Every non-2xx body is {"error": {"code", "message", "details"}}: the status
gives the category, `code` is a fixed string clients can match on. Routes read
their body the usual Flask way (`request.get_json()`); the request class and
the handlers here make that strict and give every route the same codes.

Paths that speak an inference protocol (KServe V1, Open Inference Protocol V2)
answer errors the way those protocols' clients read them: {"error": "<message>"},
with the same code in the X-Error-Code header.
"""

from __future__ import annotations

import collections
import io
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from flask import Flask, Request, Response, current_app, request
from flask.json.provider import JSONProvider
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_content_length

from serving.telemetry import STARTED_KEY, current_request_id

logger = logging.getLogger("serving.http")

JSON_MIMETYPE = "application/json"
DRAIN_LIMIT_BYTES = 16 * 1024 * 1024
READ_PIECE_BYTES = 64 * 1024  # progress is seen once per piece of a body
PROBE_METHODS = frozenset({"GET", "HEAD"})
UNSIZED_KEY = "digits.unsized_body"  # environ flag: sent without Content-Length
LATE_BODY_KEY = "digits.late_body"  # environ: why the body counts as timed out
STALL_CHECK_INTERVAL_S = 1.0
# Codes for the Werkzeug exceptions whose default name is not the one clients
# already match on; every other one is named after its reason phrase.
WERKZEUG_CODES = {413: "payload_too_large"}
# app.config key: path prefixes whose errors take the protocols' shape.
PROTOCOL_PREFIXES_KEY = "DIGITS_PROTOCOL_PATH_PREFIXES"
ERROR_CODE_HEADER = "X-Error-Code"
# A protocol error is one string; keep it readable whatever the request held.
MAX_PROTOCOL_MESSAGE_CHARS = 1000
# Error details name what was wrong, boundedly: an answer stays a few KB
# whatever the request held (unknown keys by the thousand, a 2 MB key name).
MAX_REPORTED_DETAILS = 10
MAX_DETAIL_KEY_CHARS = 64
MAX_DETAIL_TEXT_CHARS = 200
MORE_DETAILS_KEY = "_more"
# app.config key: most arrays and objects a request's JSON may hold.
MAX_JSON_CONTAINERS_KEY = "DIGITS_MAX_JSON_CONTAINERS"


class ServingError(Exception):
    """Base class: subclasses set the status and the machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidJSON(ServingError):
    status = 400
    code = "invalid_json"


class JSONTooComplex(ServingError):
    status = 400
    code = "json_too_complex"


class UnsupportedMediaType(ServingError):
    status = 415
    code = "unsupported_media_type"


class BadRequest(ServingError):
    status = 400
    code = "bad_request"


class BodyTimeout(ServingError):
    status = 408
    code = "request_timeout"


class NotReady(ServingError):
    status = 503
    code = "not_ready"


class MetricsDown(ServingError):
    status = 503
    code = "metrics_unavailable"


class InvalidInput(ServingError):
    """A protocol request that is well-formed JSON but not a valid inference."""

    status = 400
    code = "invalid_input"


class ModelNotFound(ServingError):
    status = 404
    code = "model_not_found"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict:
    """Build the one error body shape used for every non-2xx response."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


class OrjsonProvider(JSONProvider):
    """Serialise responses and parse requests with orjson.

    orjson parses strict RFC 8259 JSON: it refuses NaN, Infinity and numbers
    too large for a double (1e400), which Python's json module would let
    through as floats; it is also several times faster on number arrays.
    """

    mimetype = JSON_MIMETYPE

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        check_json_containers(s, self._app.config[MAX_JSON_CONTAINERS_KEY])
        return orjson.loads(s)

    def response(self, *args: Any, **kwargs: Any) -> Response:
        """Build a JSON response without a str round trip."""
        obj = self._prepare_response_obj(args, kwargs)
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        return self._app.response_class(body, mimetype=self.mimetype)


def check_json_containers(text: str | bytes, limit: int) -> None:
    """Refuse JSON with more arrays, objects or keys than any valid request has.

    A valid body holds one array per row, a few around them and a few keys.
    Parsing builds one Python object per container and per key, and some are
    slow to build: 2 MB of nested empty arrays took orjson 0.35 s, 40x a valid
    1024-row batch, and 150,000 unknown keys cost marshmallow 0.33 s and 40 MiB.
    Counting brackets and colons is one C-speed pass over the bytes, before any
    of that; those inside strings count too, which no valid request has many of.
    """
    if isinstance(text, str):
        text = text.encode()
    containers = text.count(b"[") + text.count(b"{")
    keys = text.count(b":")
    if containers > limit or keys > limit:
        raise JSONTooComplex(
            f"request JSON has {containers} arrays and objects and {keys} colons "
            f"(inside strings included); at most {limit} of each are accepted"
        )


class StrictJsonRequest(Request):
    """`get_json()` failures raise the service's errors, not Flask's bare 400/415.

    Every way of reading the body (`get_json`, `get_data`) also refuses a
    Content-Encoding: the service reads bodies as sent.
    """

    @property
    def is_json(self) -> bool:
        """Only application/json itself (any charset), not every +json type."""
        return self.mimetype == JSON_MIMETYPE

    def get_data(self, *args: Any, **kwargs: Any) -> Any:
        """The body as sent; a compressed one is refused, never misread as JSON."""
        coding = self.headers.get("Content-Encoding", "").strip().lower()
        if coding not in ("", "identity"):
            raise UnsupportedMediaType(
                f"Content-Encoding {coding[:40]!r} is not supported; "
                "send the body uncompressed"
            )
        return super().get_data(*args, **kwargs)

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:  # Flask's signal for a Content-Type that is not JSON
            raise UnsupportedMediaType(
                f"Content-Type must be {JSON_MIMETYPE}, "
                f"got {self.mimetype or 'nothing'!r}"
            )
        raise InvalidJSON(f"request body is not valid JSON: {e}")


def require_one_host() -> None:
    """An HTTP/1.1 request needs exactly one Host header (RFC 9112, 3.2).

    The HTTP server passes a request without one, or with two (joined by a
    comma), on to the app; answer it as the RFC says, with a 400.
    """
    environ = request.environ
    host = environ.get("HTTP_HOST")
    if environ.get("SERVER_PROTOCOL") == "HTTP/1.1" and not host:
        raise BadRequest("an HTTP/1.1 request needs a Host header")
    if host is not None and "," in host:
        raise BadRequest("a request must have exactly one Host header")


def parse_json_body(body: bytes) -> Any:
    """Parse a raw body as strict JSON (for routes that take more than JSON)."""
    try:
        return current_app.json.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidJSON(f"request body is not valid JSON: {error}") from None


def pieces(stream, size: int, on_piece: Callable[[], None] | None) -> Iterator[bytes]:
    """Yield up to `size` bytes of `stream` (fewer if it ends), a piece at a time.

    The server's read blocks until the piece is in: `on_piece`, called after
    each one, sees an upload making progress.
    """
    while size > 0:
        piece = stream.read(min(READ_PIECE_BYTES, size))
        if not piece:
            return
        size -= len(piece)
        if on_piece:
            on_piece()
        yield piece


def read_pieces(stream, size: int, on_piece: Callable[[], None] | None) -> bytes:
    """Read up to `size` bytes of `stream`: one read for a small body."""
    if size <= READ_PIECE_BYTES or on_piece is None:
        return stream.read(size)
    return b"".join(pieces(stream, size, on_piece))


def discard(stream, length: int, on_piece: Callable[[], None] | None = None) -> None:
    """Read and drop up to `length` bytes of `stream`."""
    for _ in pieces(stream, length, on_piece):
        pass


def buffer_body(
    environ: dict, limit: int, on_piece: Callable[[], None] | None = None
) -> None:
    """Read the whole body (within `limit`) before the app runs.

    A slow upload then waits here, holding a server thread but no app slot.
    A declared length over the limit is read and dropped when modest, so a
    client still sending it reads the 413 instead of a broken pipe. The HTTP
    server decodes chunked framing itself and hands over a stream that ends
    with the body; Werkzeug would read such a stream only up to the limit and
    silently drop the rest, so read one byte past it and declare the length
    read: a body over the limit then gets the usual 413.
    """
    length = get_content_length(environ)  # None: no length, or chunked framing
    if length is not None and length > limit:
        if length <= DRAIN_LIMIT_BYTES:  # larger: not worth the thread's time
            discard(environ["wsgi.input"], length, on_piece)
        environ["wsgi.input"] = io.BytesIO()
        return
    wanted = limit + 1 if length is None else length
    body = read_pieces(environ["wsgi.input"], wanted, on_piece)
    environ["wsgi.input"] = io.BytesIO(body)
    if length is None:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ[UNSIZED_KEY] = True


class FifoGate:
    """Let at most `slots` threads in at once, strictly in arrival order.

    threading.Semaphore lets a newcomer take a slot that was just released
    while a woken waiter re-queues at the back: under load some requests wait
    for many others. Here a leaving holder hands its slot to the oldest waiter.
    """

    def __init__(self, slots: int) -> None:
        self._lock = threading.Lock()
        self._free = slots
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def __enter__(self) -> None:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder that hands over its slot

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._free += 1


class BodyWatch:
    """The requests whose body is being read, and a thread that reports stalls.

    granian reads a body in Rust with no timeout (a "wontfix" upstream), and a
    thread blocked there cannot be freed from Python: a stalled upload holds
    it until the client sends the rest or goes away. What the service can do
    is say so. A body is read in pieces; a wait for the next piece longer
    than `timeout` is a stall, as nginx's client_body_timeout counts it (a
    slow but steady upload is fine). A stall is reported once, while it
    hangs (`report(environ, seconds)`: a log line with the request id, a
    counter), and its request is answered 408 if the body ever completes. A
    buffering proxy in front closes such connections itself (the compose
    deployment's nginx does, after the same 10 s).
    """

    def __init__(self, timeout: float, report: Callable[[dict, float], None]) -> None:
        self.timeout = timeout
        self.report = report
        # By thread: [when the last piece came in (or the read began), environ].
        self.reading: dict[int, list] = {}
        self._watcher: threading.Thread | None = None
        self._starting = threading.Lock()

    def begin(self, environ: dict) -> None:
        """Note that this thread starts reading `environ`'s body."""
        if self._watcher is None:
            self._start_watcher()
        self.reading[threading.get_ident()] = [time.monotonic(), environ]

    def piece_read(self) -> None:
        """Note that a piece of this thread's body has come in."""
        entry = self.reading[threading.get_ident()]
        entry[0] = self._check_wait(entry)

    def end(self) -> None:
        """Note that this thread's read is over (the body is in, or cut short)."""
        self._check_wait(self.reading.pop(threading.get_ident()))

    def _check_wait(self, entry: list) -> float:
        """Mark the request late if it waited over the timeout; return now."""
        now = time.monotonic()
        waited = now - entry[0]
        if waited > self.timeout:
            entry[1][LATE_BODY_KEY] = (
                f"the request body stopped for {waited:.1f} s, over the "
                f"{self.timeout:g} s limit"
            )
        return now

    def _start_watcher(self) -> None:
        # Started by the first request, so in the worker, after the fork. It
        # holds only a weak reference: an app that is gone stops its watcher.
        with self._starting:
            if self._watcher is not None:  # another request started it
                return
            self._watcher = threading.Thread(
                target=watch_for_stalls,
                args=(weakref.ref(self),),
                name="body-watch",
                daemon=True,
            )
            self._watcher.start()

    def stalled(self, now: float) -> list[tuple[int, float, dict]]:
        """The reads waiting longer than the timeout: (thread, since, environ)."""
        return [
            (thread, since, environ)
            for thread, (since, environ) in list(self.reading.items())
            if now - since > self.timeout
        ]


def watch_for_stalls(watch_ref: weakref.ref[BodyWatch]) -> None:
    """Report each stall once, checking every STALL_CHECK_INTERVAL_S."""
    reported: set[tuple[int, float]] = set()
    while True:
        time.sleep(STALL_CHECK_INTERVAL_S)
        watch = watch_ref()
        if watch is None:
            return
        now = time.monotonic()
        stalled = watch.stalled(now)
        for thread, since, environ in stalled:
            if (thread, since) not in reported:
                reported.add((thread, since))
                try:
                    watch.report(environ, now - since)
                except Exception:  # a report must never stop the watcher
                    logger.exception("could not report a stalled request body")
        reported &= {(thread, since) for thread, since, _ in stalled}
        del watch


def refuse_late_body() -> None:
    """Answer 408 to a request whose body stalled past the timeout."""
    late = request.environ.get(LATE_BODY_KEY)
    if late is not None:
        raise BodyTimeout(late)


def admit_with_whole_bodies(
    wsgi_app,
    limit: int,
    concurrency: int,
    probes: frozenset[str] = frozenset(),
    watch: BodyWatch | None = None,
):
    """Read each body, then let at most `concurrency` requests run the app at once.

    The app's work is CPU-bound and holds the GIL: a few requests at a time,
    taken in arrival order, answer with a short, even tail, where many
    threads sharing the GIL make every request wait for all the others. The
    server's threads stay free to wait for slow uploads. Health probes (GET on
    a path in `probes`) skip the queue: they cost microseconds, and a probe
    stuck behind a burst of predictions would get a busy pod restarted or
    taken out of its load balancer.
    """
    slots = FifoGate(concurrency)

    def app(environ: dict, start_response):
        if watch is None:
            buffer_body(environ, limit)
        else:
            watch.begin(environ)
            try:
                buffer_body(environ, limit, watch.piece_read)
            finally:
                watch.end()
        environ[STARTED_KEY] = time.perf_counter()  # latency includes the wait
        if environ["REQUEST_METHOD"] in PROBE_METHODS and (
            environ.get("PATH_INFO") in probes
        ):
            return wsgi_app(environ, start_response)
        with slots:
            return wsgi_app(environ, start_response)

    return app


def flatten_details(details: object, prefix: str = "") -> list[str]:
    """Turn nested {field: [messages]} details into "field.sub: message" lines."""
    if isinstance(details, dict):
        lines: list[str] = []
        for key, value in details.items():
            lines += flatten_details(value, f"{prefix}{key}.")
        return lines
    if isinstance(details, list) and all(isinstance(item, str) for item in details):
        return [f"{prefix.rstrip('.')}: {item}" for item in details]
    return [f"{prefix.rstrip('.')}: {details}"]


def protocol_message(message: str, details: dict[str, Any] | None) -> str:
    """One line for the protocols' {"error": ...}: the message, then the details."""
    lines = flatten_details(details or {})[:MAX_REPORTED_DETAILS]
    text = "; ".join([message, *lines]) if lines else message
    if len(text) > MAX_PROTOCOL_MESSAGE_CHARS:
        text = text[: MAX_PROTOCOL_MESSAGE_CHARS - 3] + "..."
    return text


def speaks_protocol() -> bool:
    """Whether this request's path belongs to an inference protocol's routes."""
    return request.path.startswith(current_app.config.get(PROTOCOL_PREFIXES_KEY, ()))


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bounded_details(details: Any) -> Any:
    """At most MAX_REPORTED_DETAILS entries per level, keys and texts cut short."""
    if isinstance(details, dict):
        shown = {
            shorten(str(key), MAX_DETAIL_KEY_CHARS): bounded_details(value)
            for key, value in itertools.islice(details.items(), MAX_REPORTED_DETAILS)
        }
        if len(details) > MAX_REPORTED_DETAILS:
            hidden = len(details) - MAX_REPORTED_DETAILS
            shown[MORE_DETAILS_KEY] = [f"{hidden} more not shown"]
        return shown
    if isinstance(details, list | tuple):
        return [bounded_details(item) for item in details[:MAX_REPORTED_DETAILS]]
    if isinstance(details, str):
        return shorten(details, MAX_DETAIL_TEXT_CHARS)
    return details


def error_response(status: int, code: str, message: str, details=None) -> Response:
    """Render the error in the shape the request's path calls for, with `status`."""
    details = bounded_details(details or {})
    if speaks_protocol():
        body: dict = {"error": protocol_message(message, details)}
    else:
        body = error_body(code, message, details)
    response = current_app.json.response(body)
    response.status_code = status
    response.headers[ERROR_CODE_HEADER] = code
    return response


def handle_serving_error(error: ServingError) -> Response:
    return error_response(error.status, error.code, error.message, error.details)


def handle_validation_error(error: ValidationError) -> Response:
    details = error.messages if isinstance(error.messages, dict) else {}
    return error_response(
        422, "invalid_request", "request body failed validation", details
    )


def handle_http_error(error: HTTPException) -> Response:
    """Werkzeug's exceptions (404, 405, 413, ...) in the service's error shape."""
    status = error.code or 500
    code = WERKZEUG_CODES.get(status) or (error.name or "http_error").lower().replace(
        " ", "_"
    )
    details = None
    message = error.description or error.name
    if status == 413:
        limit = current_app.config["MAX_CONTENT_LENGTH"]
        length = request.content_length
        # buffer_body declared a length for a chunked body: not the client's.
        unsized = request.environ.get(UNSIZED_KEY)
        size = "larger than that" if unsized else f"{length} bytes"
        message = f"request body is {size}; the limit is {limit} bytes"
        details = {"limit_bytes": limit}
    response = error_response(status, code, message, details)
    # Keep the exception's own headers, such as Allow on a 405.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def handle_unexpected_error(error: Exception) -> Response:
    logger.exception(
        "unhandled error",
        exc_info=error,
        extra={
            "request_id": current_request_id(),
            "method": request.method,
            "path": request.path,
        },
    )
    return error_response(500, "internal_error", "internal server error")


def install_http_layer(
    app: Flask,
    max_content_length: int,
    concurrency: int,
    probes: frozenset[str] = frozenset(),
    body_watch: BodyWatch | None = None,
) -> None:
    """Strict JSON, the body size limit and the error shape, for every route."""
    app.request_class = StrictJsonRequest
    app.json = OrjsonProvider(app)
    app.config["MAX_CONTENT_LENGTH"] = max_content_length
    # Without this, Flask answers OPTIONS itself with an empty HTML 200.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.wsgi_app = admit_with_whole_bodies(
        app.wsgi_app, max_content_length, concurrency, probes, body_watch
    )
    app.register_error_handler(ServingError, handle_serving_error)
    app.register_error_handler(ValidationError, handle_validation_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected_error)
