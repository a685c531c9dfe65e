"""Prometheus metrics, correct under several gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (the gunicorn config does it), every worker
writes its samples to files in that directory and /metrics sums them, so a
scrape sees the whole server rather than whichever worker answered.
"""

from __future__ import annotations

import functools

import numpy as np
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
    "digits_predicted_rows_total", "Images classified, over both predict routes."
)
PREDICTIONS = Counter(
    "digits_predictions_total", "Predicted digits, by class.", ["digit"]
)
MODEL_INFO = Gauge(
    "digits_model_info",
    "The loaded model (always 1); its identity is in the labels.",
    ["name", "version", "sha256"],
    multiprocess_mode="max",  # every worker loads the same file
)

# Label children are looked up once: `labels()` costs a lock and a dict lookup.
PREDICTIONS_BY_CLASS = [PREDICTIONS.labels(digit=str(label)) for label in CLASSES]


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


def record_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count one finished request and observe its latency."""
    request_counter(endpoint, method, status).inc()
    latency_histogram(endpoint).observe(seconds)


def record_model(name: str, version: str, sha256: str) -> None:
    """Publish which model this worker serves."""
    MODEL_INFO.labels(name, version, sha256).set(1)


def render_metrics(metrics_dir: str) -> tuple[bytes, str]:
    """Return the exposition text and its content type."""
    if metrics_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=metrics_dir)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
