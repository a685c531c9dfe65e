"""Telemetry: JSON logs, request ids, the access log and Prometheus metrics.

Runs on every request, so the hooks read Flask's request proxy once, keep their
state in the WSGI environ and write the access line themselves.

Metrics are correct under several worker processes: with
PROMETHEUS_MULTIPROC_DIR set (`python -m serving` always sets it), every worker
writes its samples to files in that directory and /metrics sums them, so a
scrape sees the whole server rather than whichever worker answered.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import ParamSpec

import numpy as np
import orjson
from flask import Flask, Response, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from contract import CLASSES
from serving.config import ENV_NAMES
from serving.metrics_files import (
    directory_lock,
    merge_dead_workers,
    reserve_files,
)
from serving.metrics_room import DISABLED_VARIABLE, lack_of_room

P = ParamSpec("P")

# Attributes every LogRecord has; anything else came in through `extra=`.
STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime"}


def utc_timestamp(seconds: float) -> str:
    """Format a Unix time as ISO 8601 UTC with milliseconds, as every line uses."""
    millis = int(seconds * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    """Render a record and its `extra` fields as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which worker
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in STANDARD_ATTRIBUTES:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str) -> None:
    """Send the service's logs to stderr as JSON lines at `level`.

    Libraries' own warnings reach the root logger; they get JSON lines too.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("serving")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(logging.WARNING)


def server_logging_config() -> dict:
    """logging.config dict that makes the HTTP server's own lines JSON too."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {"_granian": {"handlers": ["stderr"], "propagate": False}},
    }


# From sub-millisecond single predictions to multi-second stalls.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

REQUESTS = Counter(
    "digits_http_requests_total",
    "HTTP requests by route, method and status.",
    ["endpoint", "method", "status"],
)
LATENCY = Histogram(
    "digits_http_request_duration_seconds",
    "Time from request start to response, by route.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
ROWS_PREDICTED = Counter(
    "digits_predicted_rows_total", "Images classified, over every predict route."
)
PREDICTIONS = Counter(
    "digits_predictions_total", "Predicted digits, by class.", ["digit"]
)
MODEL_INFO = Gauge(
    "digits_model_info",
    "The loaded model (always 1); its identity is in the labels.",
    ["name", "version", "sha256"],
    # Only live workers count: a dead worker's model must not linger.
    multiprocess_mode="livemax",
)

STALLED_BODIES = Counter(
    "digits_stalled_request_bodies_total",
    "Request bodies still incomplete after SERVE_TIMEOUT seconds (each counted "
    "once, while it hangs; it is answered 408 if it ever completes).",
)
MODEL_RELOADS = Counter(
    "digits_model_reloads_total",
    "SIGHUP model reloads, by result: accepted, or refused (the old model stays).",
    ["result"],
)

# Label children are looked up once: `labels()` costs a lock and a dict lookup.
PREDICTIONS_BY_CLASS = [PREDICTIONS.labels(digit=str(label)) for label in CLASSES]


class MetricsUnavailable(RuntimeError):
    """The metrics cannot be read or written; serving goes on without them."""


# Why this process's metrics stopped working, once they have; None while fine.
# The launcher may have started the workers without metrics already.
metrics_problem: str | None = os.environ.get(DISABLED_VARIABLE)

# prometheus-client reads the same variable once, at import, as this does.
METRICS_DIRECTORY = os.environ.get(ENV_NAMES["metrics_dir"])
SPACE_CHECK_INTERVAL_S = 1.0  # a statvfs call, at most this often
_space_checked_at = -SPACE_CHECK_INTERVAL_S


def disable_metrics(problem: str) -> None:
    """Stop writing metrics in this process, saying why once."""
    global metrics_problem
    if metrics_problem is None:
        metrics_problem = problem
        logging.getLogger("serving.metrics").error(
            f"metrics disabled in this worker: {problem}"
        )


def check_metrics_space() -> None:
    """Disable metrics before the metrics filesystem fills up (metrics_room)."""
    global _space_checked_at
    now = time.monotonic()
    if not METRICS_DIRECTORY or now - _space_checked_at < SPACE_CHECK_INTERVAL_S:
        return
    _space_checked_at = now
    problem = lack_of_room(METRICS_DIRECTORY)
    if problem:
        disable_metrics(problem)


def never_fails(record: Callable[P, None]) -> Callable[P, None]:
    """Metrics degrade, serving does not: a failed metric write (the metrics
    directory deleted, read-only or full) is logged once per process and the
    request goes on. GET /metrics then answers 503, saying why."""

    @functools.wraps(record)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        if metrics_problem is not None:
            return
        try:
            check_metrics_space()
            if metrics_problem is None:
                record(*args, **kwargs)
        except Exception as error:  # prometheus-client raises OSError and others
            disable_metrics(f"{type(error).__name__}: {error}")

    return guarded


@never_fails
def record_prediction(label: int) -> None:
    """Count one predicted class index (POST /predict)."""
    ROWS_PREDICTED.inc()
    PREDICTIONS_BY_CLASS[label].inc()


@never_fails
def record_predictions(labels: np.ndarray) -> None:
    """Count (n,) predicted class indices, overall and per class."""
    ROWS_PREDICTED.inc(len(labels))
    counts = np.bincount(labels, minlength=len(CLASSES))
    for index in np.flatnonzero(counts).tolist():
        PREDICTIONS_BY_CLASS[index].inc(int(counts[index]))


@functools.cache
def request_counter(endpoint: str, method: str, status: int) -> Counter:
    """The labelled child for one (route, method, status): labels() takes a lock.

    The label values come from closed sets (routes, known methods, statuses),
    so this cache stays small.
    """
    return REQUESTS.labels(endpoint, method, str(status))


@functools.cache
def latency_histogram(endpoint: str) -> Histogram:
    """The labelled latency child for one route."""
    return LATENCY.labels(endpoint)


@never_fails
def record_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count one finished request and observe its latency."""
    request_counter(endpoint, method, status).inc()
    latency_histogram(endpoint).observe(seconds)


@never_fails
def record_reload(accepted: bool) -> None:
    """Count one model reload by its result (in the launcher process)."""
    MODEL_RELOADS.labels("accepted" if accepted else "refused").inc()


@never_fails
def record_model(name: str, version: str, sha256: str) -> None:
    """Publish which model this worker serves."""
    MODEL_INFO.labels(name, version, sha256).set(1)


@never_fails
def prepare_metric_files(endpoints: Iterable[str]) -> None:
    """Set up this worker's metric files at start-up, while there is room.

    Every route's latency series is created here, so the worker has all its
    files, and their pages are allocated: new series then land on pages that
    exist, and a metrics filesystem that fills up later cannot kill the worker
    with SIGBUS between two room checks. Only a file that grows past its size
    here (prometheus-client starts at 64 KiB and doubles; the latency file
    has grown to hold every route) could, and the once-a-second room check
    covers that. The files of workers that have exited (a reload, a crash)
    are merged first, so they do not pile up on a server nobody scrapes.
    """
    for endpoint in (*endpoints, UNMATCHED_ENDPOINT):
        latency_histogram(endpoint)
    if METRICS_DIRECTORY:
        merge_when_room(METRICS_DIRECTORY)
        # record_model has run: the gauge file exists too, and is reserved.
        reserve_files(METRICS_DIRECTORY, os.getpid())


def merge_when_room(metrics_dir: str) -> None:
    """Merge exited workers' metric files if the filesystem has room for it.

    Never raises: files that cannot be merged are read as they are.
    """
    try:
        if lack_of_room(metrics_dir) is None:
            merge_dead_workers(metrics_dir)
    except Exception as error:  # OSError and whatever a torn file raises
        logging.getLogger("serving.metrics").warning(
            f"exited workers' metric files not merged: {type(error).__name__}: {error}"
        )


def render_metrics(metrics_dir: str) -> tuple[bytes, str]:
    """Return the exposition text (summed over workers) and its content type.

    Raises MetricsUnavailable when they cannot be read, or this worker could
    not write its own (the figures would be silently short).
    """
    if metrics_problem is not None:
        raise MetricsUnavailable(f"metrics are not being recorded: {metrics_problem}")
    if not metrics_dir:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    if not os.path.isdir(metrics_dir):
        raise MetricsUnavailable(
            f"the metrics directory {metrics_dir} is gone or is not a directory"
        )
    merge_when_room(metrics_dir)
    try:
        with directory_lock(metrics_dir, exclusive=False):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=metrics_dir)
            return generate_latest(registry), CONTENT_TYPE_LATEST
    except Exception as error:  # OSError, ValueError, a torn file's struct.error
        raise MetricsUnavailable(
            f"cannot read the metrics directory {metrics_dir}: "
            f"{type(error).__name__}: {error}"
        ) from None


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


def assign_request_id(environ: dict) -> str:
    """Return the request's id, giving it one first if it has none yet: the
    caller's X-Request-ID if short and plain, else a fresh one."""
    request_id = environ.get(REQUEST_ID_KEY)
    if request_id is None:
        offered = environ.get("HTTP_X_REQUEST_ID", "")
        fresh = offered if ACCEPTABLE_REQUEST_ID.fullmatch(offered) else None
        # setdefault: the body watcher may name a stalled request meanwhile.
        request_id = environ.setdefault(REQUEST_ID_KEY, fresh or new_request_id())
    return request_id


def start_request() -> None:
    """Stamp the request with its id."""
    # STARTED_KEY is stamped by the HTTP layer when the body is in, before
    # the request waits for an app slot, so latency includes that wait.
    assign_request_id(request.environ)


@never_fails
def count_stalled_body() -> None:
    """Count one request body still incomplete after SERVE_TIMEOUT."""
    STALLED_BODIES.inc()


def report_stalled_body(environ: dict, seconds: float) -> None:
    """Log and count a request whose body has not arrived after `seconds`.

    Runs in the HTTP layer's watcher thread while the request still waits;
    the id it logs is the one the request's 408 and access line carry later.
    """
    logging.getLogger("serving.http").warning(
        "request body stalled",
        extra={
            "request_id": assign_request_id(environ),
            "method": environ.get("REQUEST_METHOD", ""),
            "path": request_path(environ),
            "waited_s": round(seconds, 1),
        },
    )
    count_stalled_body()


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
